//! Loopback HTTP servers with adjustable latency and failures, and an endpoint client for them.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_balance::{BoxError, Endpoint, ProtocolHint};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::Service;

pub type Body = Full<Bytes>;

/// What a test server does with each request.
pub struct Behaviour {
    delay_ms: AtomicU64,
    fail: AtomicBool,
    hits: AtomicUsize,
    in_flight: AtomicUsize,
    hold: watch::Sender<bool>,
}

/// A loopback HTTP/1 + HTTP/2 server; dropping or [`shutdown`](Self::shutdown) closes the
/// listener and every connection.
pub struct Server {
    pub addr: SocketAddr,
    pub behaviour: Arc<Behaviour>,
    task: tokio::task::JoinHandle<()>,
}

impl Behaviour {
    pub fn set_failing(&self, fail: bool) {
        self.fail.store(fail, Ordering::SeqCst);
    }

    /// While held, requests wait in the handler (after being counted).
    pub fn set_held(&self, held: bool) {
        self.hold.send_replace(held);
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    async fn handle(&self, addr: SocketAddr) -> Response<Body> {
        self.hits.fetch_add(1, Ordering::SeqCst);
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let mut held = self.hold.subscribe();
        let _ = held.wait_for(|h| !*h).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let mut rsp = Response::new(Full::new(Bytes::from(addr.to_string())));
        if self.fail.load(Ordering::SeqCst) {
            *rsp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        }
        rsp
    }
}

impl Server {
    pub async fn start(delay: Duration) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let behaviour = Arc::new(Behaviour {
            delay_ms: AtomicU64::new(delay.as_millis() as u64),
            fail: AtomicBool::new(false),
            hits: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            hold: watch::Sender::new(false),
        });
        let b = behaviour.clone();
        let task = tokio::spawn(async move {
            // Connections live in this set: aborting the accept task closes them all.
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let b = b.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |_req: Request<Incoming>| {
                        let b = b.clone();
                        async move { Ok::<_, Infallible>(b.handle(addr).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Server {
            addr,
            behaviour,
            task,
        }
    }

    pub fn endpoint(&self, hint: ProtocolHint) -> Endpoint {
        Endpoint::new(self.addr).with_protocol(hint)
    }

    pub fn shutdown(&self) {
        self.task.abort();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A request the balancer can send anywhere.
pub fn request() -> Request<Body> {
    Request::builder()
        .uri("http://balance.test/")
        .body(Full::new(Bytes::new()))
        .expect("request")
}

/// Reads a response: its status and body (the server's address).
pub async fn read<B>(rsp: Response<B>) -> (StatusCode, String)
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let status = rsp.status();
    let body = rsp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Bounds an await in a test.
pub async fn within<F: Future>(limit: Duration, what: &str, f: F) -> F::Output {
    match tokio::time::timeout(limit, f).await {
        Ok(out) => out,
        Err(_) => panic!("{what}: not done within {limit:?}"),
    }
}

/// Polls `cond` until it holds, failing the test after `limit`.
pub async fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    within(limit, what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

// === the endpoint client ===

/// The endpoint factory the balancer uses in these tests: one connection per endpoint,
/// HTTP/2 when the endpoint's hint says so, HTTP/1 otherwise; connects in `poll_ready`.
pub fn new_client() -> impl Fn(Endpoint) -> Conn + Clone + Send + Unpin + 'static {
    |ep: Endpoint| Conn {
        addr: ep.addr(),
        h2: ep.protocol() == ProtocolHint::Http2,
        state: State::Idle,
    }
}

pub struct Conn {
    addr: SocketAddr,
    h2: bool,
    state: State,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

enum State {
    Idle,
    Connecting(BoxFuture<Result<Sender, BoxError>>),
    Ready(Sender),
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Body>),
    H2(hyper::client::conn::http2::SendRequest<Body>),
}

async fn connect(addr: SocketAddr, h2: bool) -> Result<Sender, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let io = TokioIo::new(stream);
    if h2 {
        let (tx, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(conn);
        Ok(Sender::H2(tx))
    } else {
        let (tx, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(conn);
        Ok(Sender::H1(tx))
    }
}

impl Service<Request<Body>> for Conn {
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Response<Incoming>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        loop {
            match &mut self.state {
                State::Idle => {
                    self.state = State::Connecting(Box::pin(connect(self.addr, self.h2)))
                }
                State::Connecting(f) => match ready!(f.as_mut().poll(cx)) {
                    Ok(tx) => self.state = State::Ready(tx),
                    Err(e) => {
                        self.state = State::Idle;
                        return Poll::Ready(Err(e));
                    }
                },
                State::Ready(Sender::H1(tx)) => return tx.poll_ready(cx).map_err(Into::into),
                State::Ready(Sender::H2(tx)) => return tx.poll_ready(cx).map_err(Into::into),
            }
        }
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        match &mut self.state {
            State::Ready(Sender::H1(tx)) => {
                let f = tx.send_request(req);
                Box::pin(async move { Ok(f.await?) })
            }
            State::Ready(Sender::H2(tx)) => {
                let f = tx.send_request(req);
                Box::pin(async move { Ok(f.await?) })
            }
            _ => Box::pin(async { Err("called before ready".into()) }),
        }
    }
}
