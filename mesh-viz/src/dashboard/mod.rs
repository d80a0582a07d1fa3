//! The web dashboard: mesh health, golden metrics, topology and live tap in a browser, served
//! by the control plane on the same loopback listener as the JSON API (`http://<api.addr>/`).
//!
//! | page | shows |
//! |---|---|
//! | `/` | the control plane's health (each component, certificate expiry) and every namespace with its meshed/total workloads and golden metrics; how to mesh a first workload when none is |
//! | `/namespaces/{ns}` | the topology graph (who calls whom, RPS and success per edge, a lock when mTLS) and the sortable table of workloads |
//! | `/namespaces/{ns}/workloads/{name}` | inbound and outbound golden metrics, the latency chart of the last minutes, the routes, a live `top` of paths and a live tap with filters |
//! | `/splits` | each traffic split with its weights and each backend's numbers |
//!
//! Beside the metrics and tap API (`/api/stat`, `/api/edges`, `/api/routes`, `/api/workloads`,
//! `/api/tap`), the dashboard adds only what its pages need and the API lacks:
//! `GET /api/health` ([`Health`]), `GET /api/splits` ([`Split`]s),
//! `GET /api/series?namespace=NS&name=NAME[&window=5m&step=10s&direction=inbound]`
//! ([`TimeSeries`](crate::metrics::TimeSeries)) and `GET /api/top?<tap query>` (newline-delimited
//! JSON: a snapshot of `top`'s rows every second, aggregated by the same [`Top`](crate::tap::Top)
//! as `mesh top`).
//!
//! # Why server-rendered HTML with a little JavaScript
//!
//! - **One code path.** Every table, the topology graph and the latency chart are rendered in
//!   Rust, with [`maud`] templates checked at compile time, from the same query functions the
//!   JSON API serves the CLI
//!   ([`metrics::api::stat`](crate::metrics::api::stat), [`edges`](crate::metrics::api::edges),
//!   [`routes`](crate::metrics::api::routes)), formatted with the CLI's own formatters
//!   (`96.83%`, `2.9rps`, `8ms`). A browser and `mesh stat` cannot disagree.
//! - **Readable without JavaScript.** Pages are complete HTML, the graph and chart inline SVG:
//!   they render with scripts off, in a text browser, or in a screenshot taken on load.
//! - **Small, with no build step.** One hand-written `app.js` (refreshing the live sections,
//!   sorting, and reading the `top` and tap streams with `fetch` and a `ReadableStream`) and
//!   one `style.css`, embedded with `include_str!`: no npm, no bundler, no CDN, nothing fetched
//!   at run time, a few tens of kilobytes in all. A live refresh fetches the section's HTML
//!   again (`?fragment=ID`) and swaps it in, so the script renders no metrics itself.
//! - **Read-only and local by default.** Only `GET` is routed, so no page can change the mesh;
//!   every response carries a strict `Content-Security-Policy` (scripts and styles only from
//!   the dashboard itself); requests whose `Host` is neither an IP address nor `localhost` are
//!   refused (DNS rebinding). Every name shown comes from registrations or the catalog and is
//!   escaped by the templates, which escape whatever they splice ([`html`]). Tap shows request
//!   and response heads (method, authority, path, status, timing) and the proxies' labels only
//!   when a row is expanded: the tap stream carries no headers and never bodies.
//!
//! # Example
//!
//! The control plane mounts it for you; any [`MetricsSource`] can be shown:
//!
//! ```
//! use mesh_viz::dashboard::Dashboard;
//! use mesh_viz::metrics::Store;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let app = Dashboard::new(Store::new()).router();
//! let rsp = app
//!     .oneshot(http::Request::get("/").header("host", "127.0.0.1").body(axum::body::Body::empty()).unwrap())
//!     .await
//!     .unwrap();
//! assert_eq!(rsp.status(), 200);
//! # }
//! ```

mod chart;
mod graph;
pub mod health;
pub mod html;
mod live;
mod pages;
mod splits;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mesh_tls::{CertificateAuthority, ServiceIdentity};
use serde::Serialize;
use tokio::sync::watch;

pub use self::health::{Certificate, Component, Health, Status};
pub use self::live::{SeriesParams, TOP_INTERVAL, TOP_ROWS, TopRowJson, TopSnapshot};
pub use self::splits::{Split, SplitBackend};
use crate::metrics::{MetricsSource, QueryError, StatRow, api};
use crate::tap::Tapper;
use mesh_control::catalog::Snapshot;

/// Where the script is served.
pub const SCRIPT_PATH: &str = "/assets/app.js";
/// Where the style sheet is served.
pub const STYLE_PATH: &str = "/assets/style.css";

/// The script, embedded.
pub const APP_JS: &str = include_str!("assets/app.js");
/// The style sheet, embedded.
pub const STYLE_CSS: &str = include_str!("assets/style.css");

/// How often (ms) the pages' live sections are fetched again.
pub const REFRESH_MS: u64 = 2000;

/// The `Content-Security-Policy` of every dashboard response.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'self'";

/// The dashboard over a metrics source, and what else the control plane gives it. Build with
/// [`Dashboard::new`] and the setters, then serve [`Dashboard::router`].
#[derive(Clone)]
pub struct Dashboard {
    source: Arc<dyn MetricsSource>,
    control: Option<health::ControlInfo>,
    catalog: Option<watch::Receiver<Arc<Snapshot>>>,
    tapper: Option<Tapper>,
}

type Shared = Arc<Dashboard>;

// === impl Dashboard ===

impl Dashboard {
    /// A dashboard showing `source`'s numbers, with no control plane behind it (health then
    /// shows only the metrics; splits and tap are empty).
    pub fn new(source: impl MetricsSource) -> Self {
        Self {
            source: Arc::new(source),
            control: None,
            catalog: None,
            tapper: None,
        }
    }

    /// The control plane it runs in: its gRPC address (probed for health), identity and CA
    /// (whose certificates' expiry the overview shows).
    pub fn control_plane(
        mut self,
        addr: SocketAddr,
        identity: ServiceIdentity,
        ca: Arc<CertificateAuthority>,
    ) -> Self {
        self.control = Some(health::ControlInfo { addr, identity, ca });
        self
    }

    /// The catalog, for traffic splits and service counts.
    pub fn catalog(mut self, snapshots: watch::Receiver<Arc<Snapshot>>) -> Self {
        self.catalog = Some(snapshots);
        self
    }

    /// The tapper, for the live `top` of a workload.
    pub fn tapper(mut self, tapper: Tapper) -> Self {
        self.tapper = Some(tapper);
        self
    }

    /// The dashboard's routes (pages, assets and its JSON endpoints), to merge into the
    /// control plane's API router. Every route is `GET`.
    pub fn router(self) -> Router {
        let shared: Shared = Arc::new(self);
        Router::new()
            .route("/", get(pages::overview))
            .route("/namespaces/{ns}", get(pages::namespace))
            .route("/namespaces/{ns}/workloads/{name}", get(pages::workload))
            .route("/splits", get(pages::splits))
            .route(SCRIPT_PATH, get(script))
            .route(STYLE_PATH, get(style))
            .route("/api/health", get(health_json))
            .route("/api/splits", get(splits_json))
            .route("/api/series", get(live::series))
            .route("/api/top", get(live::top))
            .with_state(shared)
            .layer(middleware::from_fn(guard))
    }

    fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.catalog.as_ref().map(|c| c.borrow().clone())
    }

    async fn health(&self) -> Health {
        let snapshot = self.snapshot();
        health::check(
            self.control.as_ref(),
            snapshot.as_deref(),
            self.tapper.as_ref(),
            &*self.source,
        )
        .await
    }

    /// `stat deploy` over every namespace, unmeshed workloads included.
    async fn all_workloads(&self) -> Result<Vec<StatRow>, QueryError> {
        let params = api::StatParams {
            resource: Some("deploy".into()),
            unmeshed: Some(true),
            ..Default::default()
        };
        api::stat(&*self.source, &params).await
    }

    async fn splits(&self) -> Result<Vec<Split>, QueryError> {
        let Some(snapshot) = self.snapshot() else {
            return Ok(Vec::new());
        };
        if snapshot.services.values().all(|s| s.split.is_empty()) {
            return Ok(Vec::new());
        }
        Ok(splits::splits(&snapshot, &self.all_workloads().await?))
    }
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("control", &self.control.as_ref().map(|c| c.addr))
            .field("catalog", &self.catalog.is_some())
            .field("tapper", &self.tapper.is_some())
            .finish_non_exhaustive()
    }
}

// === Handlers ===

async fn health_json(State(d): State<Shared>) -> Response {
    json(StatusCode::OK, &d.health().await)
}

async fn splits_json(State(d): State<Shared>) -> Response {
    match d.splits().await {
        Ok(s) => json(StatusCode::OK, &s),
        Err(e) => json_error(e.status(), &e.to_string()),
    }
}

/// The query string every page takes: which fragment to render alone, and the sort order.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub(crate) struct PageParams {
    pub(crate) fragment: Option<String>,
    pub(crate) sort: Option<String>,
    pub(crate) dir: Option<String>,
    pub(crate) path: Option<String>,
    pub(crate) method: Option<String>,
    pub(crate) authority: Option<String>,
}

pub(crate) type PageQuery = Query<PageParams>;

/// The entity tags of the script and the style sheet.
fn etags() -> &'static (String, String) {
    static TAGS: OnceLock<(String, String)> = OnceLock::new();
    TAGS.get_or_init(|| {
        // FNV-1a: enough to tell versions of a file apart.
        let hash = |s: &str| {
            s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            })
        };
        (
            format!("\"{:016x}\"", hash(APP_JS)),
            format!("\"{:016x}\"", hash(STYLE_CSS)),
        )
    })
}

fn asset(
    headers: &HeaderMap,
    body: &'static str,
    content_type: &'static str,
    tag: &'static str,
) -> Response {
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == tag.as_bytes())
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response();
    }
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::ETAG, tag),
        ],
        body,
    )
        .into_response()
}

async fn script(headers: HeaderMap) -> Response {
    asset(
        &headers,
        APP_JS,
        "text/javascript; charset=utf-8",
        &etags().0,
    )
}

async fn style(headers: HeaderMap) -> Response {
    asset(&headers, STYLE_CSS, "text/css; charset=utf-8", &etags().1)
}

pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

pub(crate) fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Whether a `Host` header names this machine without a DNS name an attacker could rebind: an
/// IP address, `localhost`, or a name under `.localhost`.
pub fn host_allowed(host: &str) -> bool {
    if host.parse::<IpAddr>().is_ok() {
        return true;
    }
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        },
    };
    let lower = name.to_ascii_lowercase();
    name.parse::<IpAddr>().is_ok() || lower == "localhost" || lower.ends_with(".localhost")
}

/// Refuses rebinding `Host`s and adds the security headers to every answer. The control plane
/// puts it in front of its whole loopback API, so the JSON and tap endpoints are guarded as the
/// pages are.
pub async fn guard(req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    let mut rsp = match host {
        Some(h) if !host_allowed(h) => (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!(
                "the mesh API and dashboard answer requests to localhost or an IP address only, \
                 not {h:?}: open it as http://127.0.0.1:PORT/ (`mesh dashboard` prints the URL)\n"
            ),
        )
            .into_response(),
        _ => next.run(req).await,
    };
    let h = rsp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    rsp
}
