//! The metrics HTTP API: JSON for the CLI and the dashboard, served by the control plane on
//! loopback (its address is in `<state-dir>/api.addr`).
//!
//! | request | answer |
//! |---|---|
//! | `GET /api/stat?resource=deploy[/NAME]&namespace=NS&window=1m&from=deploy/web&to=...` | `[StatRow]` |
//! | `GET /api/edges?namespace=NS&window=1m` | `[EdgeRow]` |
//! | `GET /api/routes?service=NAME&namespace=NS&to=svc/NAME&window=1m` | `[RouteRow]` |
//! | `GET /api/workloads` | `[WorkloadStatus]` |
//!
//! `stat` also takes `name`, `from_namespace`, `to_namespace` and `unmeshed=true`; a missing
//! `namespace` means all namespaces. Errors are `{"error": "..."}` with 400 (a malformed
//! query), 404 (no such service) or 503 (the source is unavailable).
//!
//! The handlers are plain functions ([`stat`], [`edges`], [`routes`], [`workloads`]) over any
//! [`MetricsSource`], so the dashboard can call them directly; [`router`] wires them into an
//! axum `Router`, and [`ApiClient`] is the other end, itself a [`MetricsSource`].

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::utf8_percent_encode;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::query::{
    EdgesQuery, Resource, RoutesQuery, StatQuery, Target, format_window, parse_window,
};
use super::rows::{EdgeRow, RouteRow, StatRow, WorkloadStatus};
use super::source::MetricsSource;
use crate::QueryError;
use mesh_core::BoxError;

/// The file in the state directory holding the API's address.
pub const API_ADDR: &str = "api.addr";

/// Where the metrics API of the control plane using `state_dir` listens.
pub fn read_addr(state_dir: &Path) -> io::Result<SocketAddr> {
    let path = state_dir.join(API_ADDR);
    let text = std::fs::read_to_string(&path)?;
    text.trim().parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: not an ip:port address", path.display()),
        )
    })
}

// === Parameters ===

/// The query string of `GET /api/stat`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatParams {
    /// `deploy`, `deploy/NAME`, `ns`, `ns/NAME` (also `svc`, `po`). Default is `deploy`.
    pub resource: Option<String>,
    /// A name, when `resource` has none.
    pub name: Option<String>,
    /// The namespace; none for all.
    pub namespace: Option<String>,
    /// `30s`, `1m`, ... Default is `1m`.
    pub window: Option<String>,
    /// `deploy/NAME` or `ns/NAME`.
    pub from: Option<String>,
    /// The namespace of `from`.
    pub from_namespace: Option<String>,
    /// `deploy/NAME`, `svc/NAME` or `ns/NAME`.
    pub to: Option<String>,
    /// The namespace of `to`.
    pub to_namespace: Option<String>,
    /// List workloads whose proxy is not ready too.
    pub unmeshed: Option<bool>,
}

fn target(resource: Option<&str>, namespace: Option<&str>) -> Result<Option<Target>, QueryError> {
    let Some(r) = resource.filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    Ok(Some(
        Target::new(r.parse()?).in_namespace(namespace.map(str::to_string)),
    ))
}

fn window(w: Option<&str>) -> Result<Duration, QueryError> {
    match w.filter(|w| !w.is_empty()) {
        Some(w) => parse_window(w),
        None => Ok(super::DEFAULT_WINDOW),
    }
}

fn non_empty(s: &Option<String>) -> Option<String> {
    s.clone().filter(|s| !s.is_empty())
}

impl StatParams {
    /// The query these parameters ask.
    pub fn to_query(&self) -> Result<StatQuery, QueryError> {
        let mut resource: Resource = self.resource.as_deref().unwrap_or("deploy").parse()?;
        if resource.name.is_none() {
            resource.name = non_empty(&self.name);
        }
        Ok(StatQuery::new(resource)
            .namespace(non_empty(&self.namespace))
            .window(window(self.window.as_deref())?)
            .from(target(
                self.from.as_deref(),
                self.from_namespace.as_deref(),
            )?)
            .to(target(self.to.as_deref(), self.to_namespace.as_deref())?)
            .include_unmeshed(self.unmeshed.unwrap_or(false)))
    }

    /// The parameters that ask `q`.
    pub fn from_query(q: &StatQuery) -> Self {
        Self {
            resource: Some(q.resource.to_string()),
            name: None,
            namespace: q.namespace.clone(),
            window: Some(format_window(q.window)),
            from: q.from.as_ref().map(|t| t.resource.to_string()),
            from_namespace: q.from.as_ref().and_then(|t| t.namespace.clone()),
            to: q.to.as_ref().map(|t| t.resource.to_string()),
            to_namespace: q.to.as_ref().and_then(|t| t.namespace.clone()),
            unmeshed: q.include_unmeshed.then_some(true),
        }
    }
}

/// The query string of `GET /api/edges`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgesParams {
    /// The namespace; none for all.
    pub namespace: Option<String>,
    /// Default is `1m`.
    pub window: Option<String>,
}

impl EdgesParams {
    /// The query these parameters ask.
    pub fn to_query(&self) -> Result<EdgesQuery, QueryError> {
        Ok(EdgesQuery::new(non_empty(&self.namespace)).window(window(self.window.as_deref())?))
    }

    /// The parameters that ask `q`.
    pub fn from_query(q: &EdgesQuery) -> Self {
        Self {
            namespace: q.namespace.clone(),
            window: Some(format_window(q.window)),
        }
    }
}

/// The query string of `GET /api/routes`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutesParams {
    /// The service (workload) name; `deploy/NAME` and `svc/NAME` are accepted too.
    pub service: Option<String>,
    /// Its namespace. Default is `default`.
    pub namespace: Option<String>,
    /// `svc/NAME`: the routes of the calls to it instead.
    pub to: Option<String>,
    /// The namespace of `to`.
    pub to_namespace: Option<String>,
    /// Default is `1m`.
    pub window: Option<String>,
}

impl RoutesParams {
    /// The query these parameters ask.
    pub fn to_query(&self) -> Result<RoutesQuery, QueryError> {
        let Some(service) = non_empty(&self.service) else {
            return Err(QueryError::invalid("routes needs a service: ?service=NAME"));
        };
        let service = match service.split_once('/') {
            Some(_) => {
                let r: Resource = service.parse()?;
                r.name
                    .ok_or_else(|| QueryError::invalid("routes needs a named service"))?
            }
            None => service,
        };
        let ns = non_empty(&self.namespace).unwrap_or_else(|| "default".into());
        Ok(RoutesQuery::new(service, ns)
            .to(target(self.to.as_deref(), self.to_namespace.as_deref())?)
            .window(window(self.window.as_deref())?))
    }

    /// The parameters that ask `q`.
    pub fn from_query(q: &RoutesQuery) -> Self {
        Self {
            service: Some(q.service.clone()),
            namespace: Some(q.namespace.clone()),
            to: q.to.as_ref().map(|t| t.resource.to_string()),
            to_namespace: q.to.as_ref().and_then(|t| t.namespace.clone()),
            window: Some(format_window(q.window)),
        }
    }
}

// === Handlers ===

/// `GET /api/stat`.
pub async fn stat(
    source: &dyn MetricsSource,
    params: &StatParams,
) -> Result<Vec<StatRow>, QueryError> {
    source.stat(&params.to_query()?).await
}

/// `GET /api/edges`.
pub async fn edges(
    source: &dyn MetricsSource,
    params: &EdgesParams,
) -> Result<Vec<EdgeRow>, QueryError> {
    source.edges(&params.to_query()?).await
}

/// `GET /api/routes`.
pub async fn routes(
    source: &dyn MetricsSource,
    params: &RoutesParams,
) -> Result<Vec<RouteRow>, QueryError> {
    source.routes(&params.to_query()?).await
}

/// `GET /api/workloads`.
pub async fn workloads(source: &dyn MetricsSource) -> Result<Vec<WorkloadStatus>, QueryError> {
    source.workloads().await
}

/// The status an error is answered with ([`QueryError::status`]).
pub fn status_of(e: &QueryError) -> StatusCode {
    e.status()
}

fn respond<T: Serialize>(result: Result<T, QueryError>) -> Response {
    let (status, body) = match result {
        Ok(v) => (StatusCode::OK, serde_json::to_vec(&v)),
        Err(e) => (
            e.status(),
            serde_json::to_vec(&serde_json::json!({ "error": e.to_string() })),
        ),
    };
    let body = body.unwrap_or_else(|_| b"{\"error\": \"cannot encode the answer\"}".to_vec());
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

type Shared = Arc<dyn MetricsSource>;

/// The API's routes over `source`, for the control plane (and the dashboard) to serve.
pub fn router<S: MetricsSource>(source: S) -> Router {
    let source: Shared = Arc::new(source);
    Router::new()
        .route(
            "/api/stat",
            get(
                |State(s): State<Shared>, Query(p): Query<StatParams>| async move {
                    respond(stat(&*s, &p).await)
                },
            ),
        )
        .route(
            "/api/edges",
            get(
                |State(s): State<Shared>, Query(p): Query<EdgesParams>| async move {
                    respond(edges(&*s, &p).await)
                },
            ),
        )
        .route(
            "/api/routes",
            get(
                |State(s): State<Shared>, Query(p): Query<RoutesParams>| async move {
                    respond(routes(&*s, &p).await)
                },
            ),
        )
        .route(
            "/api/workloads",
            get(|State(s): State<Shared>| async move { respond(workloads(&*s).await) }),
        )
        .with_state(source)
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then lets open requests finish.
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) {
    let res = axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(error) = res {
        tracing::warn!(%error, "the metrics API stopped");
    }
}

// === impl ApiClient ===

/// The other end of the API: asks a control plane's metrics API over HTTP. What the CLI uses
/// (find the address with [`read_addr`]).
#[derive(Clone, Debug)]
pub struct ApiClient {
    addr: SocketAddr,
    timeout: Duration,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl ApiClient {
    /// A client of the API at `addr`, with a 10 s timeout per request.
    pub fn new(addr: SocketAddr) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self {
            addr,
            timeout: Duration::from_secs(10),
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// How long a request may take. Default is 10 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn get<T, P>(&self, path: &str, params: &P) -> Result<T, QueryError>
    where
        T: serde::de::DeserializeOwned,
        P: Serialize,
    {
        let query = encode_query(params);
        let uri = format!("http://{}{path}?{query}", self.addr);
        let unreachable = |source: BoxError| {
            QueryError::unreachable(
                format!(
                    "the control plane's metrics API at {} did not answer (is `mesh control` \
                     running?)",
                    self.addr
                ),
                source,
            )
        };
        let req = http::Request::get(&uri)
            .body(Empty::new())
            .map_err(|source| QueryError::Url {
                url: uri.clone(),
                source,
            })?;
        let fetch = async {
            let rsp = self
                .client
                .request(req)
                .await
                .map_err(|e| unreachable(e.into()))?;
            let status = rsp.status();
            let body = Limited::new(rsp.into_body(), 64 * 1024 * 1024)
                .collect()
                .await
                .map_err(unreachable)?
                .to_bytes();
            if status.is_success() {
                return serde_json::from_slice(&body).map_err(|e| {
                    QueryError::unreachable(
                        format!(
                            "a malformed answer from the control plane's metrics API at {}",
                            self.addr
                        ),
                        e,
                    )
                });
            }
            let msg = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error")?.as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            Err(match status {
                StatusCode::BAD_REQUEST => QueryError::Invalid(msg),
                StatusCode::NOT_FOUND => QueryError::NotFound(msg),
                _ => QueryError::Unavailable(msg),
            })
        };
        match tokio::time::timeout(self.timeout, fetch).await {
            Ok(r) => r,
            Err(_) => Err(QueryError::unavailable(format!(
                "the control plane's metrics API at {} did not answer within {:?} (is `mesh \
                 control` running?)",
                self.addr, self.timeout
            ))),
        }
    }
}

impl MetricsSource for ApiClient {
    fn stat<'a>(&'a self, q: &'a StatQuery) -> BoxFuture<'a, Result<Vec<StatRow>, QueryError>> {
        Box::pin(async move { self.get("/api/stat", &StatParams::from_query(q)).await })
    }

    fn edges<'a>(&'a self, q: &'a EdgesQuery) -> BoxFuture<'a, Result<Vec<EdgeRow>, QueryError>> {
        Box::pin(async move { self.get("/api/edges", &EdgesParams::from_query(q)).await })
    }

    fn routes<'a>(
        &'a self,
        q: &'a RoutesQuery,
    ) -> BoxFuture<'a, Result<Vec<RouteRow>, QueryError>> {
        Box::pin(async move { self.get("/api/routes", &RoutesParams::from_query(q)).await })
    }

    fn workloads(&self) -> BoxFuture<'_, Result<Vec<WorkloadStatus>, QueryError>> {
        Box::pin(async move { self.get("/api/workloads", &()).await })
    }
}

/// `k=v&...` of the non-null fields of `params`, percent-encoded.
pub(crate) fn encode_query<P: Serialize>(params: &P) -> String {
    let Ok(serde_json::Value::Object(map)) = serde_json::to_value(params) else {
        return String::new();
    };
    let mut out = String::new();
    for (k, v) in map {
        let v = match v {
            serde_json::Value::Null => continue,
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        if !out.is_empty() {
            out.push('&');
        }
        out.extend(utf8_percent_encode(&k, crate::URL_COMPONENT));
        out.push('=');
        out.extend(utf8_percent_encode(&v, crate::URL_COMPONENT));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_round_trip_queries() {
        let q = StatQuery::new("deploy/web".parse().expect("resource"))
            .namespace(Some("emojivoto".to_string()))
            .window(Duration::from_secs(90))
            .to(Target::new("svc/voting".parse().expect("resource"))
                .in_namespace(Some("other".to_string())))
            .include_unmeshed(true);
        assert_eq!(StatParams::from_query(&q).to_query().ok(), Some(q));

        let q = RoutesQuery::new("web", "emojivoto").window(Duration::from_secs(30));
        assert_eq!(RoutesParams::from_query(&q).to_query().ok(), Some(q));

        let q = EdgesQuery::new(None);
        assert_eq!(EdgesParams::from_query(&q).to_query().ok(), Some(q));
    }

    #[test]
    fn bad_params_are_invalid_queries() {
        let p = StatParams {
            resource: Some("cronjob".into()),
            ..Default::default()
        };
        assert!(matches!(p.to_query(), Err(QueryError::Invalid(_))));
        let p = StatParams {
            window: Some("forever".into()),
            ..Default::default()
        };
        assert!(matches!(p.to_query(), Err(QueryError::Window(_))));
        assert!(matches!(
            RoutesParams::default().to_query(),
            Err(QueryError::Invalid(_))
        ));
    }

    #[test]
    fn encodes_queries() {
        let p = StatParams {
            resource: Some("deploy/web".into()),
            namespace: Some("a b&c".into()),
            unmeshed: Some(true),
            ..Default::default()
        };
        let encoded = encode_query(&p);
        let mut pairs: Vec<&str> = encoded.split('&').collect();
        pairs.sort_unstable();
        assert_eq!(
            pairs,
            [
                "namespace=a%20b%26c",
                "resource=deploy%2Fweb",
                "unmeshed=true"
            ]
        );
    }
}
