//! The fan-out: `Tap.Observe` on every matching proxy, merged into one stream.

use std::collections::HashSet;
use std::error::Error as StdError;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use futures_util::Stream;
use linkerd2_proxy_api::tap::ObserveRequest;
use linkerd2_proxy_api::tap::tap_client::TapClient;
use mesh_tls::ca::SignError;
use mesh_tls::{CertificateAuthority, Credentials, CredentialsError, ServiceIdentity};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::event::{Event, HttpEvent, ProxyState, ProxyStatus, StreamId, TapLine};
use super::query::TapQuery;
use super::workload::{self, Workload};
use crate::QueryError;
use mesh_control::ControlPlane;
use mesh_control::catalog::Snapshot;
use mesh_control_client::transport::{self as client, Tls};

/// Lines buffered between the proxies' streams and the merged stream's reader. When the reader
/// is slower, the proxies' own queues fill and they drop events (and count them), so a slow
/// `tap` never slows traffic down.
const MERGE_CAPACITY: usize = 1024;

/// The control plane's tap service: it taps proxies with the control plane's own identity,
/// the only caller proxies accept (`mesh-proxy --tap-identity`).
///
/// Cheap to clone. Each [`observe`](Self::observe) reads the running workloads afresh from
/// `<state-dir>/workloads/`, so workloads started later are tapped by the next query.
#[derive(Clone)]
pub struct Tapper {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    ca: Arc<CertificateAuthority>,
    creds: Credentials,
    state_dir: PathBuf,
    snapshots: Option<watch::Receiver<Arc<Snapshot>>>,
    connect_timeout: Duration,
    closed: CancellationToken,
}

/// Why a tap could not start.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The query is malformed, or names nothing that runs.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The workloads directory could not be read.
    #[error("cannot read the running workloads in {}: {source}", path.display())]
    Workloads {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The control plane's tap credentials could not be made or renewed.
    #[error("the control plane cannot certify its tap identity: {0}")]
    Credentials(#[from] CredentialsError),
    /// The control plane's CA refused to certify its tap identity.
    #[error("the control plane cannot certify its tap identity: {0}")]
    Certify(#[from] SignError),
}

/// Why tapping one proxy failed, as its [`ProxyStatus`] line says.
#[derive(Debug, thiserror::Error)]
enum ProxyError {
    /// The workload was started without a tap listener.
    #[error("the workload's proxy has no tap listener (start it with --tap-listen)")]
    NoTapListener,
    /// Connecting and starting the tap took too long.
    #[error("no answer within {0:?} (is the proxy running?)")]
    Timeout(Duration),
    /// The proxy could not be reached over mutual TLS (unreachable, or another identity).
    #[error(transparent)]
    Connect(#[from] tonic::transport::Error),
    /// The proxy refused the tap.
    #[error(
        "{status} (a proxy accepts tap only from the identity given to its --tap-identity, \
         here {identity})"
    )]
    Refused {
        /// What the proxy answered.
        #[source]
        status: GrpcStatus,
        /// Who asked.
        identity: ServiceIdentity,
    },
    /// The tap stream broke.
    #[error(transparent)]
    Stream(GrpcStatus),
}

/// A gRPC status as a tap line says it, `Code: message` (tonic's own `Display` adds details
/// and metadata); its cause, if any, is its source.
#[derive(Debug)]
struct GrpcStatus(tonic::Status);

impl fmt::Display for GrpcStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0.code())?;
        if !self.0.message().is_empty() {
            write!(f, ": {}", self.0.message())?;
        }
        Ok(())
    }
}

impl StdError for GrpcStatus {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.source()
    }
}

/// The merged stream of one tap: every matching proxy's events, each tagged with its
/// workload, and a [`ProxyStatus`] line for each proxy when its tap starts, ends or fails.
///
/// It ends once the query's request limit is reached and those requests have ended, or once
/// every proxy's stream has ended, or when the [`Tapper`] is [closed](Tapper::close). Dropping
/// it ends the proxies' streams (they unsubscribe at once).
pub struct MergedTap {
    rx: mpsc::Receiver<(usize, TapLine)>,
    tasks: JoinSet<()>,
    limit: Option<u64>,
    admitted: u64,
    in_flight: HashSet<(usize, StreamId)>,
    skipped: HashSet<(usize, StreamId)>,
    rate: Option<TokenBucket>,
    done: bool,
}

/// A token bucket holding up to one second's worth of requests.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

// === impl Tapper ===

impl Tapper {
    /// Taps as `identity`, certified by `ca`, the workloads recorded in `state_dir`.
    pub fn new(
        ca: Arc<CertificateAuthority>,
        identity: ServiceIdentity,
        state_dir: &Path,
    ) -> Result<Self, TapError> {
        let creds = Credentials::generate(identity, ca.trust_bundle())?;
        let tapper = Self {
            inner: Arc::new(Inner {
                ca,
                creds,
                state_dir: state_dir.to_path_buf(),
                snapshots: None,
                connect_timeout: Duration::from_secs(3),
                closed: CancellationToken::new(),
            }),
        };
        tapper.credentials()?;
        Ok(tapper)
    }

    /// The tap service of a running control plane: its CA, its identity, its state directory
    /// and its catalog (which tells `to` which services a workload serves).
    pub fn for_control_plane(cp: &ControlPlane) -> Result<Self, TapError> {
        Ok(
            Self::new(cp.ca().clone(), cp.identity().clone(), cp.state_dir())?
                .catalog(cp.snapshots()),
        )
    }

    /// Resolves `to` against this catalog. Default is none: a `to` workload's services are
    /// then assumed to be named as the workload.
    pub fn catalog(self, snapshots: watch::Receiver<Arc<Snapshot>>) -> Self {
        self.map_inner(|i| i.snapshots = Some(snapshots))
    }

    /// How long connecting to a proxy and starting its tap may take before the proxy is
    /// reported as failed. Default is 3 s.
    pub fn connect_timeout(self, timeout: Duration) -> Self {
        self.map_inner(|i| i.connect_timeout = timeout)
    }

    /// Ends every tap stream when `token` is cancelled (the control plane's shutdown token),
    /// as [`close`](Self::close) does, so that an API server draining on the same token is
    /// not held open by taps. Default is a token of its own.
    pub fn close_on(self, token: CancellationToken) -> Self {
        self.map_inner(|i| i.closed = token)
    }

    fn map_inner(self, f: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        f(&mut inner);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The identity proxies see when tapped.
    pub fn identity(&self) -> &ServiceIdentity {
        self.inner.creds.identity()
    }

    /// Starts tapping what `query` asks for: one task per matching proxy, each connecting over
    /// mutual TLS (expecting the workload's identity), calling `Tap.Observe` with the query's
    /// filters, and forwarding events into the merged stream. A proxy that cannot be reached,
    /// presents another identity or refuses is reported in the stream; the others carry on.
    ///
    /// Fails at once if the query is malformed or matches no running workload.
    pub fn observe(&self, query: &TapQuery) -> Result<MergedTap, TapError> {
        let all =
            workload::read_all(&self.inner.state_dir).map_err(|source| TapError::Workloads {
                path: workload::dir(&self.inner.state_dir),
                source,
            })?;
        let selected = query.select(&all)?;
        let snapshot = self.inner.snapshots.as_ref().map(|s| s.borrow().clone());
        let request = query.observe_request(snapshot.as_deref(), &all)?;
        let creds = self.credentials()?;

        let (tx, rx) = mpsc::channel(MERGE_CAPACITY);
        let mut tasks = JoinSet::new();
        for (i, w) in selected.into_iter().enumerate() {
            let proxy = Proxy {
                index: i,
                workload: w.clone(),
                creds: creds.clone(),
                tx: tx.clone(),
                connect_timeout: self.inner.connect_timeout,
            };
            let request = request.clone();
            let closed = self.inner.closed.clone();
            tasks.spawn(async move {
                tokio::select! {
                    _ = closed.cancelled() => {}
                    _ = proxy.tap(request) => {}
                }
            });
        }
        tracing::debug!(?query, proxies = tasks.len(), "tap started");
        Ok(MergedTap {
            rx,
            tasks,
            limit: query.limit,
            admitted: 0,
            in_flight: HashSet::new(),
            skipped: HashSet::new(),
            rate: query.rate_limit().map(TokenBucket::new),
            done: false,
        })
    }

    /// Ends every tap stream (for shutdown): their HTTP responses finish, and proxies
    /// unsubscribe.
    pub fn close(&self) {
        self.inner.closed.cancel();
    }

    /// The tap credentials, re-certified by the CA when less than 30% of their lifetime (or
    /// none) is left.
    fn credentials(&self) -> Result<Credentials, TapError> {
        let creds = &self.inner.creds;
        let lifetime = self.inner.ca.leaf_lifetime();
        let fresh = creds.certified_until().is_some_and(|until| {
            until
                .duration_since(SystemTime::now())
                .is_ok_and(|left| left > lifetime.mul_f64(0.3))
        });
        if !fresh {
            let issued = self.inner.ca.sign(creds.csr()?, creds.identity())?;
            creds.set_certificate(issued)?;
        }
        Ok(creds.clone())
    }
}

impl fmt::Debug for Tapper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tapper")
            .field("identity", self.identity())
            .field("state_dir", &self.inner.state_dir)
            .field("connect_timeout", &self.inner.connect_timeout)
            .finish_non_exhaustive()
    }
}

// === One proxy ===

struct Proxy {
    index: usize,
    workload: Workload,
    creds: Credentials,
    tx: mpsc::Sender<(usize, TapLine)>,
    connect_timeout: Duration,
}

impl Proxy {
    async fn tap(self, request: ObserveRequest) {
        let result = self.stream(request).await;
        let (state, error) = match result {
            Ok(true) => (ProxyState::Ended, None),
            // The merged stream is gone: nobody to tell.
            Ok(false) => return,
            Err(error) => (ProxyState::Failed, Some(error_chain(&error))),
        };
        if let Some(error) = &error {
            tracing::info!(workload = %self.workload.name, namespace = %self.workload.namespace, %error, "tap failed");
        }
        self.send(TapLine::Proxy(self.status(state, error))).await;
    }

    /// Streams the proxy's events into the merged stream: `Ok(true)` when the proxy ended the
    /// stream, `Ok(false)` when the merged stream was dropped, `Err` when the tap failed.
    async fn stream(&self, request: ObserveRequest) -> Result<bool, ProxyError> {
        let w = &self.workload;
        let addr = w.tap.ok_or(ProxyError::NoTapListener)?;
        let mut events = tokio::time::timeout(self.connect_timeout, self.start(addr, request))
            .await
            .map_err(|_| ProxyError::Timeout(self.connect_timeout))??;
        if !self
            .send(TapLine::Proxy(self.status(ProxyState::Tapping, None)))
            .await
        {
            return Ok(false);
        }
        loop {
            match events.message().await {
                Ok(Some(ev)) => {
                    let Some(ev) = Event::from_proxy(ev, &w.name, &w.namespace) else {
                        continue;
                    };
                    if !self.send(TapLine::Event(ev)).await {
                        return Ok(false);
                    }
                }
                Ok(None) => return Ok(true),
                Err(status) => return Err(ProxyError::Stream(GrpcStatus(status))),
            }
        }
    }

    /// Connects over mutual TLS (expecting the workload's identity) and calls `Tap.Observe`.
    async fn start(
        &self,
        addr: SocketAddr,
        request: ObserveRequest,
    ) -> Result<tonic::Streaming<linkerd2_proxy_api::tap::TapEvent>, ProxyError> {
        let tls = Tls::new(self.creds.clone(), self.workload.identity.clone());
        let channel = client::connect(addr, tls).await?;
        let rsp = TapClient::new(channel)
            .observe(request)
            .await
            .map_err(|status| ProxyError::Refused {
                status: GrpcStatus(status),
                identity: self.creds.identity().clone(),
            })?;
        Ok(rsp.into_inner())
    }

    fn status(&self, state: ProxyState, error: Option<String>) -> ProxyStatus {
        ProxyStatus {
            workload: self.workload.name.clone(),
            namespace: self.workload.namespace.clone(),
            addr: self.workload.tap,
            state,
            error,
        }
    }

    /// Sends a line to the merged stream; `false` if it is gone.
    async fn send(&self, line: TapLine) -> bool {
        self.tx.send((self.index, line)).await.is_ok()
    }
}

/// An error and its causes, `a: b: c`: what a failed proxy's status line says.
fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut out = String::new();
    append_causes(&mut out, error);
    out
}

/// Appends `error` and its causes, skipping any that repeat what was said. A TLS handshake
/// error says all there is (its causes are rustls' details).
fn append_causes(out: &mut String, error: &(dyn StdError + 'static)) {
    let mut current = Some(error);
    while let Some(e) = current {
        let msg = e.to_string();
        if !out.contains(&msg) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&msg);
        }
        if e.is::<mesh_tls::HandshakeError>() {
            break;
        }
        current = e.source();
    }
}

// === impl MergedTap ===

impl MergedTap {
    /// The next line; `None` once the tap has ended.
    pub async fn next(&mut self) -> Option<TapLine> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Applies the request limit and the rate limit to an event of proxy `i`: a request is
    /// admitted or skipped at its `RequestInit`, and its later events follow that decision.
    fn admit(&mut self, i: usize, event: Event) -> Option<Event> {
        let key = (i, event.id());
        match event.http {
            HttpEvent::RequestInit { .. } => {
                let full = self.limit.is_some_and(|l| self.admitted >= l);
                let allowed = !full
                    && self
                        .rate
                        .as_mut()
                        .is_none_or(|b| b.try_take(Instant::now()));
                if !allowed {
                    self.skipped.insert(key);
                    return None;
                }
                self.admitted += 1;
                self.in_flight.insert(key);
                Some(event)
            }
            HttpEvent::ResponseInit { .. } => self.in_flight.contains(&key).then_some(event),
            HttpEvent::ResponseEnd { .. } => {
                self.skipped.remove(&key);
                if !self.in_flight.remove(&key) {
                    return None;
                }
                self.check_done();
                Some(event)
            }
        }
    }

    /// Proxy `i`'s stream is over: its requests in flight will not end.
    fn forget(&mut self, i: usize) {
        self.in_flight.retain(|(p, _)| *p != i);
        self.skipped.retain(|(p, _)| *p != i);
        self.check_done();
    }

    fn check_done(&mut self) {
        if self.limit.is_some_and(|l| self.admitted >= l) && self.in_flight.is_empty() {
            self.done = true;
            // Unsubscribe from every proxy now, not when the stream is dropped.
            self.tasks.abort_all();
        }
    }
}

impl Stream for MergedTap {
    type Item = TapLine;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<TapLine>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let Some((i, line)) = std::task::ready!(this.rx.poll_recv(cx)) else {
                this.done = true;
                return Poll::Ready(None);
            };
            match line {
                TapLine::Event(event) => {
                    if let Some(event) = this.admit(i, event) {
                        return Poll::Ready(Some(TapLine::Event(event)));
                    }
                }
                TapLine::Proxy(status) => {
                    if status.state != ProxyState::Tapping {
                        this.forget(i);
                    }
                    return Poll::Ready(Some(TapLine::Proxy(status)));
                }
            }
        }
    }
}

impl fmt::Debug for MergedTap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MergedTap")
            .field("proxies", &self.tasks.len())
            .field("limit", &self.limit)
            .field("admitted", &self.admitted)
            .field("in_flight", &self.in_flight.len())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

// === impl TokenBucket ===

impl TokenBucket {
    /// `rate` requests per second, with a burst of one second's worth (at least one).
    pub(crate) fn new(rate: f64) -> Self {
        Self {
            rate,
            tokens: rate.max(1.0),
            last: Instant::now(),
        }
    }

    /// Takes a token if one is left at `now`.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate.max(1.0));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_rate_limit_allows_a_seconds_burst_then_the_rate() {
        let mut bucket = TokenBucket::new(2.0);
        let now = Instant::now();
        assert!(bucket.try_take(now));
        assert!(bucket.try_take(now));
        assert!(!bucket.try_take(now), "the burst is one second's worth");
        assert!(!bucket.try_take(now + Duration::from_millis(400)));
        assert!(bucket.try_take(now + Duration::from_millis(600)));
        // Idle for a minute: still only one second's worth.
        let later = now + Duration::from_secs(60);
        assert!(bucket.try_take(later));
        assert!(bucket.try_take(later));
        assert!(!bucket.try_take(later));
    }

    #[tokio::test(start_paused = true)]
    async fn slow_rates_still_admit_one_request() {
        let mut bucket = TokenBucket::new(0.5);
        let now = Instant::now();
        assert!(bucket.try_take(now));
        assert!(!bucket.try_take(now + Duration::from_secs(1)));
        assert!(bucket.try_take(now + Duration::from_secs(3)));
    }
}
