//! The load generator: cheap clients (an HTTP/1.1 connection pool; one HTTP/2 connection
//! multiplexed) and two drivers.
//!
//! - [`open_loop`]: requests start on a fixed schedule whatever the answers do, and each latency
//!   is measured from the request's *intended* start, so a stall shows as the latency every
//!   request scheduled during it would have seen (no coordinated omission). The schedule is kept
//!   by the calling thread, which sleeps between starts and spawns each request onto the client
//!   runtime; how late a request actually started is recorded too (`lag`), so a generator that
//!   falls behind is visible rather than hidden.
//! - [`closed_loop`]: a fixed number of workers, each sending its next request when the previous
//!   one is answered: the maximum throughput at that concurrency.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Buf, Bytes};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio::time::Instant;

use crate::backend::BODY;
use crate::emojivoto::BoxError;
use crate::emojivoto::proto::{FindByShortcodeRequest, FindByShortcodeResponse, path};
use crate::pair::AUTHORITY;

/// How long one request may take before it counts as an error.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// `GET /` over HTTP/1.1, a pool of keep-alive connections.
    H1,
    /// `GET /` over HTTP/2 with prior knowledge, one connection.
    H2,
    /// A unary `EmojiService/FindByShortcode` call over one HTTP/2 connection.
    Grpc,
}

impl Protocol {
    pub(crate) const ALL: [Protocol; 3] = [Protocol::H1, Protocol::H2, Protocol::Grpc];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Protocol::H1 => "h1",
            Protocol::H2 => "h2",
            Protocol::Grpc => "grpc",
        }
    }
}

// === Recorder ===

/// What one phase measured.
#[derive(Debug)]
pub(crate) struct Recorder {
    /// Latency of each successful request, ns (open loop: from its intended start).
    pub(crate) latency: Histogram<u64>,
    /// Open loop: how late each request started, ns.
    pub(crate) lag: Histogram<u64>,
    pub(crate) ok: u64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    /// From the first scheduled start to the last answer.
    pub(crate) elapsed: Duration,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 60 s at 3 significant digits.
    Histogram::new_with_bounds(1_000, 60_000_000_000, 3).expect("valid histogram bounds")
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Recorder {
    fn new() -> Self {
        Self {
            latency: histogram(),
            lag: histogram(),
            ok: 0,
            errors: 0,
            first_error: None,
            elapsed: Duration::ZERO,
        }
    }

    fn record(&mut self, result: Result<(), BoxError>, latency: Duration) {
        match result {
            Ok(()) => {
                self.ok += 1;
                self.latency.saturating_record(nanos(latency));
            }
            Err(e) => {
                self.errors += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(e.to_string());
                }
            }
        }
    }

    fn merge(&mut self, other: Recorder) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.lag.add(&other.lag);
        self.ok += other.ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// The latency at quantile `q`, in milliseconds.
    pub(crate) fn ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1e6
    }

    /// Completed requests (answered or failed) per second.
    pub(crate) fn rps(&self) -> f64 {
        (self.ok + self.errors) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

// === Client ===

/// A sender on one connection.
enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// The client of one path (direct or mesh) for one protocol.
pub(crate) struct Client {
    protocol: Protocol,
    addr: SocketAddr,
    /// HTTP/2 and gRPC: the one connection, cloned per request.
    h2: Option<http2::SendRequest<Full<Bytes>>>,
    /// HTTP/1.1: idle keep-alive connections.
    idle: Mutex<Vec<http1::SendRequest<Full<Bytes>>>>,
    /// HTTP/1.1 connections opened so far.
    pub(crate) opened: AtomicUsize,
    /// The encoded gRPC request message, framed.
    grpc_frame: Bytes,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("protocol", &self.protocol)
            .field("addr", &self.addr)
            .finish()
    }
}

async fn tcp(addr: SocketAddr) -> Result<TokioIo<TcpStream>, BoxError> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    tcp.set_nodelay(true)?;
    Ok(TokioIo::new(tcp))
}

async fn connect_h1(addr: SocketAddr) -> Result<http1::SendRequest<Full<Bytes>>, BoxError> {
    let (send, conn) = http1::handshake(tcp(addr).await?).await?;
    tokio::spawn(conn);
    Ok(send)
}

impl Client {
    /// Opens the HTTP/2 connection (HTTP/1.1 connections open on demand). Must run on the
    /// client runtime: connection tasks are spawned there.
    pub(crate) async fn connect(protocol: Protocol, addr: SocketAddr) -> Result<Self, BoxError> {
        let h2 = match protocol {
            Protocol::H1 => None,
            Protocol::H2 | Protocol::Grpc => {
                let (send, conn) = http2::handshake(TokioExecutor::new(), tcp(addr).await?).await?;
                tokio::spawn(conn);
                Some(send)
            }
        };
        let msg = FindByShortcodeRequest {
            shortcode: ":joy:".into(),
        }
        .encode_to_vec();
        let mut frame = Vec::with_capacity(5 + msg.len());
        frame.push(0); // not compressed
        frame.extend_from_slice(&u32::try_from(msg.len())?.to_be_bytes());
        frame.extend_from_slice(&msg);
        Ok(Self {
            protocol,
            addr,
            h2,
            idle: Mutex::new(Vec::new()),
            opened: AtomicUsize::new(0),
            grpc_frame: frame.into(),
        })
    }

    /// A sender from the pool (HTTP/1.1: an idle connection, else a new one).
    async fn pooled(&self) -> Result<Sender, BoxError> {
        if let Some(h2) = &self.h2 {
            return Ok(Sender::H2(h2.clone()));
        }
        loop {
            let idle = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            match idle {
                // A connection whose last answer was just read may need a moment to be idle.
                Some(mut s) => {
                    if s.ready().await.is_ok() {
                        return Ok(Sender::H1(s));
                    }
                }
                None => return self.dedicated().await,
            }
        }
    }

    /// A sender for one closed-loop worker (HTTP/1.1: its own connection).
    async fn dedicated(&self) -> Result<Sender, BoxError> {
        match &self.h2 {
            Some(h2) => Ok(Sender::H2(h2.clone())),
            None => {
                self.opened.fetch_add(1, Ordering::Relaxed);
                Ok(Sender::H1(connect_h1(self.addr).await?))
            }
        }
    }

    fn give_back(&self, sender: Sender) {
        if let Sender::H1(s) = sender
            && !s.is_closed()
        {
            self.idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(s);
        }
    }

    /// One request on a pooled connection.
    pub(crate) async fn call(&self) -> Result<(), BoxError> {
        let mut sender = self.pooled().await?;
        self.exchange(&mut sender).await?;
        self.give_back(sender);
        Ok(())
    }

    fn request(&self) -> http::Request<Full<Bytes>> {
        let builder = match self.protocol {
            Protocol::H1 => http::Request::get("/").header(http::header::HOST, AUTHORITY),
            Protocol::H2 => http::Request::get(format!("http://{AUTHORITY}/")),
            Protocol::Grpc => {
                return http::Request::post(format!(
                    "http://{AUTHORITY}{}",
                    path::FIND_BY_SHORTCODE
                ))
                .header(http::header::CONTENT_TYPE, "application/grpc")
                .header(http::header::TE, "trailers")
                .body(Full::new(self.grpc_frame.clone()))
                .expect("a valid gRPC request");
            }
        };
        builder
            .body(Full::new(Bytes::new()))
            .expect("a valid request")
    }

    /// Sends one request and checks the whole answer: status, body, gRPC status and message.
    async fn exchange(&self, sender: &mut Sender) -> Result<(), BoxError> {
        let req = self.request();
        let rsp = match sender {
            Sender::H1(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
            Sender::H2(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
        };
        let status = rsp.status();
        let grpc_in_headers = rsp.headers().get("grpc-status").cloned();
        let collected = rsp.into_body().collect().await?;
        let trailers = collected.trailers().cloned();
        let mut body = collected.to_bytes();
        if status != http::StatusCode::OK {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(format!("HTTP {status}: {}", text.trim_end()).into());
        }
        match self.protocol {
            Protocol::H1 | Protocol::H2 => {
                if body != BODY {
                    return Err(format!("unexpected body of {} bytes", body.len()).into());
                }
            }
            Protocol::Grpc => {
                let grpc_status = trailers
                    .as_ref()
                    .and_then(|t| t.get("grpc-status").cloned())
                    .or(grpc_in_headers);
                if grpc_status.as_ref().map(|v| v.as_bytes()) != Some(b"0") {
                    return Err(format!("grpc-status {grpc_status:?}").into());
                }
                if body.len() < 5 {
                    return Err(format!("a gRPC message of {} bytes", body.len()).into());
                }
                body.advance(5);
                let found = FindByShortcodeResponse::decode(body)?;
                if found.emoji.is_none() {
                    return Err("the gRPC answer names no emoji".into());
                }
            }
        }
        Ok(())
    }
}

// === drivers ===

/// Sleeps the calling thread until `t`. The drivers' schedule thread is the bench's main thread,
/// never a runtime worker, so blocking it is the point.
#[allow(clippy::disallowed_methods)]
fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// Sends `rate` requests per second for `duration` on `client`, open loop, and waits for the
/// last answer.
pub(crate) fn open_loop(
    rt: &Runtime,
    client: &Arc<Client>,
    rate: u32,
    duration: Duration,
) -> Recorder {
    let recorder = Arc::new(Mutex::new(Recorder::new()));
    // Each request task holds a clone of `done`; `recv` answers `None` once all are dropped.
    let (done, mut all_done) = tokio::sync::mpsc::channel::<()>(1);
    let total = (duration.as_secs_f64() * f64::from(rate)).round() as u64;
    let interval_ns = 1e9 / f64::from(rate);
    let start = Instant::now() + Duration::from_millis(1);
    for i in 0..total {
        let intended = start + Duration::from_nanos((i as f64 * interval_ns) as u64);
        sleep_until(intended);
        let client = client.clone();
        let recorder = recorder.clone();
        let done = done.clone();
        rt.spawn(async move {
            let began = Instant::now();
            let result = match tokio::time::timeout(REQUEST_TIMEOUT, client.call()).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer in {REQUEST_TIMEOUT:?}").into()),
            };
            let latency = intended.elapsed();
            {
                let mut r = recorder.lock().unwrap_or_else(PoisonError::into_inner);
                r.lag
                    .saturating_record(nanos(began.saturating_duration_since(intended)));
                r.record(result, latency);
            }
            // The recorder before `done`: once the last `done` is gone, the recorder is ours.
            drop(recorder);
            drop(done);
        });
    }
    drop(done);
    rt.block_on(all_done.recv());
    let elapsed = start.elapsed();
    let mut recorder = Arc::try_unwrap(recorder)
        .expect("every request task has dropped its recorder")
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    recorder.elapsed = elapsed;
    recorder
}

/// `concurrency` workers send requests back to back on `client` for `duration`.
pub(crate) fn closed_loop(
    rt: &Runtime,
    client: &Arc<Client>,
    concurrency: usize,
    duration: Duration,
) -> Result<Recorder, BoxError> {
    rt.block_on(async {
        // Connections first, so the clock starts on a warm pool.
        let mut senders = Vec::with_capacity(concurrency);
        for _ in 0..concurrency {
            senders.push(client.dedicated().await?);
        }
        let start = Instant::now();
        let deadline = start + duration;
        let workers: Vec<_> = senders
            .into_iter()
            .map(|mut sender| {
                let client = client.clone();
                tokio::spawn(async move {
                    let mut r = Recorder::new();
                    while Instant::now() < deadline {
                        let began = Instant::now();
                        let result = match tokio::time::timeout(
                            REQUEST_TIMEOUT,
                            client.exchange(&mut sender),
                        )
                        .await
                        {
                            Ok(r) => r,
                            Err(_) => Err(format!("no answer in {REQUEST_TIMEOUT:?}").into()),
                        };
                        let failed = result.is_err();
                        r.record(result, began.elapsed());
                        if failed {
                            // The connection may be gone: back off a little (no busy loop of
                            // errors), then carry on with a fresh one.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            match client.dedicated().await {
                                Ok(s) => sender = s,
                                Err(_) => break,
                            }
                        }
                    }
                    r
                })
            })
            .collect();
        let mut total = Recorder::new();
        for w in workers {
            total.merge(w.await?);
        }
        total.elapsed = start.elapsed();
        Ok(total)
    })
}
