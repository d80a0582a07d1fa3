use std::fmt;
use std::sync::Arc;

/// The name of the service-profile route a request matched, as a request extension.
///
/// A stack that matches requests against a profile's routes inserts one; the
/// [`HttpMetricsLayer`](super::HttpMetricsLayer) then records the request under its target's
/// labels plus `route="NAME"` (and retries keep it on every attempt). Route names come from
/// configuration, never from raw paths, so the label stays bounded.
///
/// ```
/// use mesh_core::metrics::{self, HttpMetrics, Labels, RouteLabel};
/// use prometheus_client::registry::Registry;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut registry = Registry::default();
/// let http = HttpMetrics::register(&mut registry);
/// let svc = http
///     .layer(Labels::new().with("direction", "outbound"))
///     .layer(service_fn(|_req: http::Request<()>| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
///     }));
///
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(RouteLabel::new("vote"));
/// drop(svc.clone().oneshot(req).await.unwrap());
/// drop(svc.oneshot(http::Request::new(())).await.unwrap());
///
/// let text = metrics::encode(&registry);
/// assert!(text.contains(r#"request_total{direction="outbound",route="vote"} 1"#));
/// assert!(text.contains(r#"request_total{direction="outbound"} 1"#));
/// # }
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RouteLabel(Arc<str>);

impl RouteLabel {
    /// A route named `name`.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self(name.into())
    }

    /// The route's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RouteLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}
