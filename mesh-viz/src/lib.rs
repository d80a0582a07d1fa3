//! The mesh's observability, kept apart from the control plane as Linkerd keeps `viz`.
//!
//! `mesh-viz` owns:
//! - the **metrics** ([`metrics`]): an embedded store that scrapes every workload's proxy,
//!   Linkerd's `stat`/`routes`/`edges` queries over it (or the same through a real Prometheus),
//!   and the JSON API the CLI and the dashboard read;
//! - **tap** ([`tap`]): `Tap.Observe` fanned out to the proxies over mutual TLS with the control
//!   plane's identity, merged into one stream, served as newline-delimited JSON, and `top`;
//! - the **web dashboard** ([`dashboard`]): health, topology, golden metrics per namespace,
//!   workload and route, live top and tap, traffic splits.
//!
//! Metrics queries and tap queries fail with the same [`QueryError`]: malformed, naming
//! nothing, or a source of numbers that cannot answer.
//!
//! It reads the control plane (its CA, identity and catalog) and never serves the proxy API; the
//! proxies never link it. [`Viz::start`] starts all three on one loopback listener, whose address
//! it writes to `<state-dir>/api.addr` for the CLI.
//!
//! # Example
//!
//! ```
//! use mesh_control::{Config, ControlPlane};
//! use mesh_viz::Viz;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let cp = ControlPlane::start(Config::new(dir.path()).listen("127.0.0.1:0".parse()?)).await?;
//! let viz = Viz::start(&cp, mesh_viz::Config::new()).await?;
//! assert_eq!(mesh_viz::metrics::api::read_addr(dir.path())?, viz.api_addr());
//! viz.shutdown().await;
//! cp.shutdown().await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod dashboard;
mod error;
pub mod metrics;
pub mod tap;

pub use self::error::QueryError;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mesh_control::ControlPlane;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What the URLs built here percent-encode in a query value or a path segment: everything but
/// RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`).
pub(crate) const URL_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// What the observability side is configured with. Build with [`Config::new`] and the setters.
#[derive(Clone, Debug)]
pub struct Config {
    api_listen: SocketAddr,
    scrape_interval: Duration,
}

impl Config {
    /// Every setting at its default.
    pub fn new() -> Self {
        Self {
            api_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            scrape_interval: metrics::DEFAULT_INTERVAL,
        }
    }

    /// Where the API and the dashboard listen. Default is `127.0.0.1:0`, a free port on
    /// loopback (read it from [`Viz::api_addr`] or `api.addr`).
    pub fn api_listen(mut self, addr: SocketAddr) -> Self {
        self.api_listen = addr;
        self
    }

    /// How often every proxy's `/metrics` is scraped. Default is
    /// [`metrics::DEFAULT_INTERVAL`], 2 s.
    pub fn scrape_interval(mut self, interval: Duration) -> Self {
        self.scrape_interval = interval;
        self
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

/// Why observability did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}; is another process using the port?")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Tap could not get the control plane's identity.
    #[error(transparent)]
    Tap(#[from] tap::TapError),
    /// `api.addr` could not be written.
    #[error("cannot write {}: {source}", path.display())]
    State {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Metrics, tap and the dashboard of a running control plane.
///
/// [`shutdown`](Self::shutdown) stops scraping, ends open tap streams, closes the listener and
/// removes `api.addr` (if it still names this listener). Dropping it stops it abruptly.
pub struct Viz {
    api_addr: SocketAddr,
    state_dir: PathBuf,
    metrics: metrics::Store,
    tapper: tap::Tapper,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Viz {
    /// Starts scraping the proxies of the workloads recorded in `cp`'s state directory, and
    /// serves the metrics API, the tap API and the dashboard on one loopback listener.
    pub async fn start(cp: &ControlPlane, config: Config) -> Result<Self, StartError> {
        let listener = TcpListener::bind(config.api_listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: config.api_listen,
                source,
            })?;
        let api_addr = listener.local_addr().map_err(|source| StartError::Listen {
            addr: config.api_listen,
            source,
        })?;
        let shutdown = CancellationToken::new();
        let dir = cp.state_dir().to_path_buf();

        // A workload is stale once it missed three scrapes.
        let stale_after = (config.scrape_interval * 3 + metrics::DEFAULT_TIMEOUT)
            .max(metrics::DEFAULT_STALE_AFTER);
        let store = metrics::Store::new().stale_after(stale_after);
        // Tap fans Tap.Observe out to the proxies with the control plane's identity.
        let tapper = tap::Tapper::for_control_plane(cp)?.close_on(shutdown.clone());
        // The dashboard shares the API's listener: `http://<api.addr>/` is its overview.
        let dashboard = dashboard::Dashboard::new(store.clone())
            .control_plane(cp.addr(), cp.identity().clone(), cp.ca().clone())
            .catalog(cp.snapshots())
            .tapper(tapper.clone());
        let router = metrics::api::router(store.clone())
            .merge(tap::api::router(tapper.clone()))
            .merge(dashboard.router())
            .layer(axum::middleware::from_fn(dashboard::guard));
        let tasks = vec![
            metrics::Scraper::new(store.clone(), &dir)
                .interval(config.scrape_interval)
                .spawn(shutdown.clone()),
            tokio::spawn(metrics::api::serve(listener, router, shutdown.clone())),
        ];
        mesh_control::state::write_atomic(&dir, metrics::api::API_ADDR, &format!("{api_addr}\n"))
            .map_err(|source| StartError::State {
            path: dir.join(metrics::api::API_ADDR),
            source,
        })?;
        tracing::info!(%api_addr, "metrics, tap and dashboard listening");
        Ok(Self {
            api_addr,
            state_dir: dir,
            metrics: store,
            tapper,
            shutdown,
            tasks,
        })
    }

    /// Where the API and the dashboard listen.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// The embedded metrics store (what the API and the dashboard read).
    pub fn metrics(&self) -> &metrics::Store {
        &self.metrics
    }

    /// The tap service.
    pub fn tapper(&self) -> &tap::Tapper {
        &self.tapper
    }

    /// Stops gracefully; see [`Viz`].
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        for task in std::mem::take(&mut self.tasks) {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        if metrics::api::read_addr(&self.state_dir).ok() == Some(self.api_addr) {
            let _ = std::fs::remove_file(self.state_dir.join(metrics::api::API_ADDR));
        }
    }
}

impl Drop for Viz {
    fn drop(&mut self) {
        self.shutdown.cancel();
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl std::fmt::Debug for Viz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Viz")
            .field("api_addr", &self.api_addr)
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}
