//! The scraper: every few seconds, list the workloads `mesh run` recorded and fetch each
//! proxy's `/metrics` into the store.
//!
//! Refresh policy: one round every [interval](Scraper::interval) (default 2 s; a slow round
//! delays the next instead of piling up), all proxies of a round fetched concurrently, each
//! bounded by the [timeout](Scraper::timeout) (default 1 s). A proxy that fails a scrape is not
//! ready (and so not meshed) until it answers again; its earlier snapshots stay, so rates
//! recover as soon as it does.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::store::Store;
use super::workload::Workload;
use mesh_core::BoxError;

/// How often proxies are scraped by default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
/// How long one scrape may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// The largest `/metrics` body read; a larger one fails the scrape.
pub(crate) const MAX_BODY: usize = 16 * 1024 * 1024;

/// What one round of scraping did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScrapeReport {
    /// Workloads listed.
    pub workloads: usize,
    /// Scrapes that succeeded.
    pub ok: usize,
    /// Scrapes that failed.
    pub failed: usize,
}

/// Why one proxy's `/metrics` could not be read.
#[derive(Debug, thiserror::Error)]
enum ScrapeError {
    /// The request could not be built (an admin address that makes no URI).
    #[error("bad scrape request {uri}: {source}")]
    Request { uri: String, source: http::Error },
    /// The proxy could not be reached.
    #[error("GET {uri}: {source}")]
    Get {
        uri: String,
        source: hyper_util::client::legacy::Error,
    },
    /// The proxy answered with an error.
    #[error("GET {uri}: HTTP {status}")]
    Status { uri: String, status: StatusCode },
    /// The answer broke off, or was larger than [`MAX_BODY`].
    #[error("GET {uri}: reading the body: {source}")]
    Body { uri: String, source: BoxError },
    /// The proxy did not answer within the scrape timeout.
    #[error("GET {uri}: no answer within {timeout:?}")]
    Timeout { uri: String, timeout: Duration },
}

/// Scrapes the proxies of the workloads recorded in a state directory into a [`Store`].
///
/// ```no_run
/// use std::time::Duration;
/// use mesh_viz::metrics::{Scraper, Store};
///
/// # async fn f(state_dir: std::path::PathBuf) {
/// let store = Store::new();
/// let shutdown = tokio_util::sync::CancellationToken::new();
/// let task = Scraper::new(store.clone(), state_dir)
///     .interval(Duration::from_millis(500))
///     .spawn(shutdown.clone());
/// // ... query `store` ...
/// shutdown.cancel();
/// task.await.unwrap();
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Scraper {
    store: Store,
    state_dir: PathBuf,
    interval: Duration,
    timeout: Duration,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Scraper {
    /// A scraper of the workloads under `state_dir` into `store`.
    pub fn new(store: Store, state_dir: impl Into<PathBuf>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(DEFAULT_TIMEOUT));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1)
            .build(connector);
        Self {
            store,
            state_dir: state_dir.into(),
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            client,
        }
    }

    /// How often to scrape. Default is [`DEFAULT_INTERVAL`], 2 s.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(10));
        self
    }

    /// How long one proxy's scrape may take. Default is [`DEFAULT_TIMEOUT`], 1 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Lists the workloads and scrapes each once.
    pub async fn scrape_once(&self) -> ScrapeReport {
        let workloads = match Workload::load_all(&self.state_dir) {
            Ok(w) => w,
            Err(error) => {
                tracing::warn!(dir = %Workload::dir(&self.state_dir).display(), %error, "cannot list workloads");
                return ScrapeReport::default();
            }
        };
        self.store.set_workloads(&workloads);
        let results = futures_util::future::join_all(workloads.iter().map(|w| self.fetch(w))).await;
        let mut report = ScrapeReport {
            workloads: workloads.len(),
            ..ScrapeReport::default()
        };
        for (w, result) in workloads.iter().zip(results) {
            match result {
                Ok(text) => {
                    let skipped = self.store.ingest(w, &text);
                    if skipped > 0 {
                        tracing::debug!(workload = %w.name, namespace = %w.namespace, skipped, "unparsable metric lines");
                    }
                    report.ok += 1;
                }
                Err(error) => {
                    tracing::debug!(workload = %w.name, namespace = %w.namespace, admin = %w.admin, %error, "scrape failed");
                    // What `/api/workloads` and `mesh check` show for this proxy.
                    self.store.record_failure(w, error.to_string());
                    report.failed += 1;
                }
            }
        }
        report
    }

    async fn fetch(&self, w: &Workload) -> Result<String, ScrapeError> {
        let uri = format!("http://{}/metrics", w.admin);
        let req = http::Request::get(&uri)
            .header(
                http::header::ACCEPT,
                "application/openmetrics-text; version=1.0.0, text/plain; q=0.5",
            )
            .body(Empty::new())
            .map_err(|source| ScrapeError::Request {
                uri: uri.clone(),
                source,
            })?;
        let fetch = async {
            let rsp = self
                .client
                .request(req)
                .await
                .map_err(|source| ScrapeError::Get {
                    uri: uri.clone(),
                    source,
                })?;
            if !rsp.status().is_success() {
                return Err(ScrapeError::Status {
                    uri: uri.clone(),
                    status: rsp.status(),
                });
            }
            let body = Limited::new(rsp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|source| ScrapeError::Body {
                    uri: uri.clone(),
                    source,
                })?
                .to_bytes();
            Ok(String::from_utf8_lossy(&body).into_owned())
        };
        match tokio::time::timeout(self.timeout, fetch).await {
            Ok(r) => r,
            Err(_) => Err(ScrapeError::Timeout {
                uri,
                timeout: self.timeout,
            }),
        }
    }

    /// Scrapes every interval until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.scrape_once() => {}
            }
        }
    }

    /// Runs the scraper on a task of its own.
    pub fn spawn(self, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(self.run(shutdown))
    }
}
