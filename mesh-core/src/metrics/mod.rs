//! Golden metrics with Linkerd's names and labels, recorded by tower layers.
//!
//! Register [`HttpMetrics`] (and [`TcpMetrics`] for connections) in a prometheus-client
//! `Registry`, then build one [`HttpMetricsLayer`] per *target* with that target's
//! [`Labels`]: the label set is resolved once, when the layer is built, and the request path gets
//! ready handles — one atomic increment per request, one per response (looked up lock-free by
//! status in a small per-target table), and a lock-free [`LatencyHistogram`] observation.
//!
//! Names follow Linkerd's proxy so its PromQL and dashboards apply: `request_total`,
//! `response_total{status_code, classification, grpc_status, error}`, `response_latency_ms`
//! (Linkerd's buckets), `timeout_total`, and `tcp_open_total`, `tcp_close_total`,
//! `tcp_open_connections`, `tcp_read_bytes_total`, `tcp_write_bytes_total`. A response is
//! counted at the end of its stream, so a gRPC status in the trailers classifies it; latency is
//! measured to the response head.
//!
//! A request carrying a [`RouteLabel`] extension (set by a stack that matched it against a
//! service profile's routes) is recorded under the target's labels plus `route="NAME"`, so one
//! layer serves every route of a target; requests without one carry no `route` label (Linkerd's
//! `[DEFAULT]` route).
//!
//! # Example: golden metrics for a service
//!
//! ```
//! use mesh_core::metrics::{self, HttpMetrics, Labels};
//! use prometheus_client::registry::Registry;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let mut registry = Registry::default();
//! let http = HttpMetrics::register(&mut registry);
//! let layer = http.layer(Labels::new().with("direction", "inbound").with("authority", "web:80"));
//!
//! let svc = layer.layer(service_fn(|_req: http::Request<()>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
//! }));
//! let rsp = svc.oneshot(http::Request::new(())).await.unwrap();
//! drop(rsp); // an empty body ends at once
//!
//! let text = metrics::encode(&registry);
//! assert!(text.contains(r#"request_total{direction="inbound",authority="web:80"} 1"#));
//! assert!(text.contains(r#"response_total{direction="inbound",authority="web:80",status_code="200",classification="success"} 1"#));
//! # }
//! ```

mod cache;
mod histogram;
mod labels;
mod requests;
mod route;
mod tcp;

pub use self::histogram::{LATENCY_BUCKETS_MS, LatencyHistogram};
pub use self::labels::Labels;
pub use self::requests::{HttpMetrics, HttpMetricsLayer, RecordHttp, ResponseEnd, ResponseFuture};
pub use self::route::RouteLabel;
pub use self::tcp::{SensorIo, TcpMetrics, TcpSensor};

use prometheus_client::registry::Registry;

/// The registry in the OpenMetrics text format (what `/metrics` serves).
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

/// The `Content-Type` of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests;
