//! Per-request timeouts whose expiry the mesh can explain.
//!
//! [`TimeoutLayer`] bounds the time from the request to the response head. The bound is the
//! layer's default, or a [`RouteTimeout`] the router put in the request's extensions (per-route
//! values from service profiles), or none. When it fires the request fails with
//! [`ResponseTimeout`], which the classifier counts as [`ErrorReason::Timeout`] and
//! [`RescueLayer`](crate::rescue::RescueLayer) turns into a `504 Gateway Timeout` with an
//! `l5d-proxy-error` header naming the cause.
//!
//! The same layer serves as the per-try timeout under a retry layer: a timed-out attempt is
//! then an error the retry policy may retry, while an outer timeout bounds the whole exchange.
//!
//! ```
//! use mesh_core::timeout::{ResponseTimeout, TimeoutLayer};
//! use std::time::Duration;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let slow = service_fn(|_req: http::Request<()>| async {
//!     tokio::time::sleep(Duration::from_secs(5)).await;
//!     Ok::<_, std::convert::Infallible>(http::Response::new(()))
//! });
//! let svc = TimeoutLayer::new(Duration::from_secs(1)).layer(slow);
//! let err = svc.oneshot(http::Request::new(())).await.unwrap_err();
//! assert!(err.is::<ResponseTimeout>());
//! assert_eq!(err.to_string(), "request timed out after 1s");
//! # }
//! ```

mod error;
mod future;
mod layer;
mod service;

pub use self::error::ResponseTimeout;
pub use self::future::ResponseFuture;
pub use self::layer::TimeoutLayer;
pub use self::service::Timeout;

use std::time::Duration;

use crate::classify::ErrorReason;

/// A timeout for one request, set by a router in the request's extensions; it overrides the
/// layer's default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteTimeout(pub Duration);

/// A timeout for each attempt of one request, set by a router in the request's extensions (a
/// route's per-try timeout); a [`TimeoutLayer::per_attempt`] under a retry layer applies it,
/// so a timed-out attempt is retried while the whole request's [`RouteTimeout`] has room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttemptTimeout(pub Duration);

/// Which bound fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutScope {
    /// The whole request, retries included.
    Request,
    /// One attempt of a retried request.
    Attempt,
}

impl crate::classify::HasErrorReason for ResponseTimeout {
    fn error_reason(&self) -> ErrorReason {
        ErrorReason::Timeout
    }
}
