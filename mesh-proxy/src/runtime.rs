//! What every stack of a proxy shares: its credentials, metrics, tap registry, configuration and
//! the drain signal.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mesh_core::tap::Tap;
use mesh_tls::Credentials;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::telemetry::ProxyMetrics;

/// Timeouts and limits of the stacks.
#[derive(Clone, Debug)]
pub struct StackConfig {
    /// How long protocol detection waits for the first bytes.
    pub detect_timeout: Duration,
    /// How long a connection to an endpoint or the app may take.
    pub connect_timeout: Duration,
    /// How long a request waits for a ready endpoint before a 503.
    pub failfast_timeout: Duration,
    /// Largest request head accepted (bigger ones get 431).
    pub max_header_bytes: usize,
    /// How long a client may take to send its request head (slowloris bound).
    pub header_read_timeout: Duration,
    /// Ports whose protocol speaks first from the server: never detected.
    pub opaque_ports: Vec<u16>,
    /// The app speaks only HTTP/1.1: HTTP/2 requests (other than gRPC's) are downgraded.
    pub app_http1: bool,
    /// How long a destination's stack, or a backend's balancer, is kept once nothing uses it.
    pub idle_timeout: Duration,
}

impl Default for StackConfig {
    fn default() -> Self {
        Self {
            detect_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(1),
            failfast_timeout: Duration::from_secs(3),
            max_header_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(10),
            opaque_ports: vec![25, 587, 3306, 4444, 5432, 6379, 9300, 11211],
            app_http1: false,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Shared by every stack of one proxy. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    /// The proxy's identity and certificate.
    pub creds: Credentials,
    /// Metric families.
    pub metrics: ProxyMetrics,
    /// Tap subscribers.
    pub tap: Tap,
    /// Timeouts and limits.
    pub config: Arc<StackConfig>,
    /// Drain: listeners stop accepting when cancelled; connections finish.
    pub drain: Drain,
}

/// Stops listeners and lets in-flight work finish.
#[derive(Clone, Debug, Default)]
pub struct Drain {
    token: CancellationToken,
    tasks: TaskTracker,
    draining: Arc<AtomicBool>,
}

impl Drain {
    /// Starts draining: listeners stop accepting, HTTP connections finish their requests and
    /// close.
    pub fn start(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.token.cancel();
        self.tasks.close();
    }

    /// Whether draining has started.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Resolves when draining starts.
    pub async fn signaled(&self) {
        self.token.cancelled().await
    }

    /// Tracks a connection task, so [`Drain::finished`] waits for it.
    pub fn spawn<F>(&self, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(fut);
    }

    /// Resolves when every tracked task is done (after [`Drain::start`]).
    pub async fn finished(&self) {
        self.tasks.wait().await
    }

    /// The cancellation token drain cancels.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// How many tracked tasks are running.
    pub fn in_flight(&self) -> usize {
        self.tasks.len()
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("identity", self.creds.identity())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
