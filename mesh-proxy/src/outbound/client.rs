//! The endpoint client: one multiplexed HTTP/2 connection to a peer proxy over mutual TLS.
//!
//! Every request to an endpoint, whatever its version from the app, shares one HTTP/2
//! connection, so an HTTP/1 client does not cost a TLS handshake per connection. The
//! connection is made on first use and again after it fails. The server must prove the identity
//! discovery gave for the endpoint ([`Connector`]); an endpoint without an identity is unmeshed
//! and gets plaintext HTTP/2.
//!
//! Upgrades (WebSocket) and `CONNECT` cannot ride HTTP/2 streams: they get a connection of their
//! own, mTLS with ALPN `http/1.1` ([`EndpointClient::upgrade`]).

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_core::BoxError;
use mesh_core::backoff::Backoff;
use mesh_core::error::RequestError;
use mesh_core::retry::ReplayBody;
use mesh_tls::ServiceIdentity;
use tokio::time::Instant;
use tower_service::Service;

use crate::connect::{ALPN_H2, ALPN_HTTP1, ConnectError, Connector};

/// The request body the outbound stack sends to endpoints.
pub(crate) type ReqBody = ReplayBody<Incoming>;

/// Sends requests to one endpoint over a shared HTTP/2 connection. Cheap to clone.
///
/// After a failed connection attempt the endpoint is not ready (`poll_ready` pends) until a
/// jittered exponential backoff (Linkerd's defaults: 100 ms doubling up to 500 ms) has passed,
/// so a balancer sends requests to the endpoints that answer instead of failing every other
/// request on one that does not; when none is ready, the balancer's failfast answers 503.
pub(crate) struct EndpointClient {
    shared: Arc<Shared>,
    /// Wakes `poll_ready` when the backoff ends (per clone: each is polled on its own).
    backoff_timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Clone for EndpointClient {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            backoff_timer: None,
        }
    }
}

struct Shared {
    addr: SocketAddr,
    identity: Option<ServiceIdentity>,
    connector: Connector,
    backoff: Backoff,
    conn: std::sync::Mutex<ConnState>,
    /// Whether `conn` is in `Backoff`: written under its lock, read without it, so `poll_ready`
    /// takes no lock on the request path while the endpoint is healthy.
    backing_off: AtomicBool,
}

struct ConnState {
    conn: Conn,
    /// Connection attempts that failed in a row.
    failures: u32,
}

/// The endpoint's connection, or the one attempt at making it that every request needing it
/// meanwhile awaits: requests arriving while the endpoint does not answer share that attempt's
/// outcome (and its timeout) instead of queueing up for a connection attempt each.
enum Conn {
    Idle,
    Connecting(Attempt),
    Ready(SendRequest<ReqBody>),
    /// The last attempt failed: no new one before `retry_at`.
    Backoff {
        retry_at: Instant,
        error: Arc<ConnectError>,
    },
}

type Attempt = futures_util::future::Shared<
    BoxFuture<'static, Result<SendRequest<ReqBody>, Arc<ConnectError>>>,
>;

/// Linkerd's outbound connect backoff.
const CONNECT_BACKOFF_MIN: Duration = Duration::from_millis(100);
const CONNECT_BACKOFF_MAX: Duration = Duration::from_millis(500);

impl EndpointClient {
    /// A client for the endpoint at `addr` that must prove `identity` (plaintext if `None`).
    pub(crate) fn new(
        addr: SocketAddr,
        identity: Option<ServiceIdentity>,
        connector: Connector,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                addr,
                identity,
                connector,
                backoff: Backoff::new(CONNECT_BACKOFF_MIN, CONNECT_BACKOFF_MAX).with_jitter(0.1),
                conn: std::sync::Mutex::new(ConnState {
                    conn: Conn::Idle,
                    failures: 0,
                }),
                backing_off: AtomicBool::new(false),
            }),
            backoff_timer: None,
        }
    }

    async fn sender(shared: &Arc<Shared>) -> Result<SendRequest<ReqBody>, BoxError> {
        let attempt = {
            let mut state = shared.conn.lock().unwrap_or_else(|p| p.into_inner());
            match &state.conn {
                Conn::Ready(s) if !s.is_closed() => return Ok(s.clone()),
                Conn::Connecting(attempt) => attempt.clone(),
                // Called while backing off (a caller that skipped `poll_ready`): the last
                // attempt's error, without hammering the endpoint.
                Conn::Backoff { retry_at, error } if *retry_at > Instant::now() => {
                    return Err(Box::new(error.clone()));
                }
                Conn::Ready(_) | Conn::Idle | Conn::Backoff { .. } => {
                    let attempt = Self::connect(shared.clone()).boxed().shared();
                    state.conn = Conn::Connecting(attempt.clone());
                    shared.backing_off.store(false, Ordering::Release);
                    attempt
                }
            }
        };
        let result = attempt.clone().await;
        let mut state = shared.conn.lock().unwrap_or_else(|p| p.into_inner());
        // The first waiter to finish settles the slot, unless a newer attempt replaced it.
        if let Conn::Connecting(current) = &state.conn
            && current.ptr_eq(&attempt)
        {
            match &result {
                Ok(s) => {
                    state.conn = Conn::Ready(s.clone());
                    state.failures = 0;
                }
                Err(error) => {
                    let delay = shared.backoff.delay(state.failures);
                    tracing::debug!(addr = %shared.addr, %error, ?delay, "connect failed; backing off");
                    state.conn = Conn::Backoff {
                        retry_at: Instant::now() + delay,
                        error: error.clone(),
                    };
                    shared.backing_off.store(true, Ordering::Release);
                    state.failures = state.failures.saturating_add(1);
                }
            }
        }
        result.map_err(|e| Box::new(e) as BoxError)
    }

    async fn connect(shared: Arc<Shared>) -> Result<SendRequest<ReqBody>, Arc<ConnectError>> {
        let io = shared
            .connector
            .connect(shared.addr, shared.identity.as_ref(), ALPN_H2)
            .await?;
        let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(3))
            .adaptive_window(true);
        let (sender, conn) =
            builder
                .handshake(TokioIo::new(io))
                .await
                .map_err(|e| ConnectError {
                    addr: shared.addr,
                    source: Box::new(e),
                })?;
        let addr = shared.addr;
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%addr, %error, "connection to endpoint closed");
            }
        });
        Ok(sender)
    }

    /// Sends an upgrade (WebSocket) or `CONNECT` request over a dedicated HTTP/1.1 connection;
    /// the caller takes over the upgraded stream with `hyper::upgrade::on`.
    pub(crate) async fn upgrade(
        &self,
        req: http::Request<Incoming>,
    ) -> Result<http::Response<Incoming>, BoxError> {
        let s = &self.shared;
        let io = s
            .connector
            .connect(s.addr, s.identity.as_ref(), ALPN_HTTP1)
            .await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        tokio::spawn(async move {
            if let Err(error) = conn.with_upgrades().await {
                tracing::debug!(%error, "upgraded connection to endpoint closed");
            }
        });
        Ok(sender.send_request(req).await?)
    }
}

impl Service<http::Request<ReqBody>> for EndpointClient {
    type Response = http::Response<Incoming>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Connections are made on demand; HTTP/2 flow control is the backpressure. Only a
        // failed connection makes the endpoint unready, until its backoff ends.
        if !self.shared.backing_off.load(Ordering::Acquire) {
            self.backoff_timer = None;
            return Poll::Ready(Ok(()));
        }
        let retry_at = {
            let state = self.shared.conn.lock().unwrap_or_else(|p| p.into_inner());
            match &state.conn {
                Conn::Backoff { retry_at, .. } if *retry_at > Instant::now() => Some(*retry_at),
                _ => None,
            }
        };
        let Some(retry_at) = retry_at else {
            self.backoff_timer = None;
            return Poll::Ready(Ok(()));
        };
        let timer = self
            .backoff_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(retry_at)));
        if timer.deadline() != retry_at {
            timer.as_mut().reset(retry_at);
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.backoff_timer = None;
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(async move {
            let mut sender = Self::sender(&shared).await?;
            let peer = || format!("the peer proxy at {}", shared.addr);
            sender
                .ready()
                .await
                .map_err(|e| RequestError::new(peer(), e))?;
            match sender.send_request(req).await {
                Ok(rsp) => Ok(rsp),
                Err(e) => {
                    if sender.is_closed() {
                        // The next request reconnects.
                        let mut state = shared.conn.lock().unwrap_or_else(|p| p.into_inner());
                        if matches!(&state.conn, Conn::Ready(s) if s.is_closed()) {
                            state.conn = Conn::Idle;
                        }
                    }
                    Err(Box::new(RequestError::new(peer(), e)) as BoxError)
                }
            }
        })
    }
}

impl fmt::Debug for EndpointClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointClient")
            .field("addr", &self.shared.addr)
            .field("identity", &self.shared.identity)
            .finish()
    }
}
