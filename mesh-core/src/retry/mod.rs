//! Retries with a budget, built on `tower::retry`.
//!
//! A retry is worth it only when it cannot make things worse. This layer retries:
//! - only requests that are safe to repeat: idempotent methods (`GET`, `HEAD`, `OPTIONS`,
//!   `TRACE`, `PUT`, `DELETE`, RFC 9110 §9.2.2) or requests a router marked with
//!   [`RetryableRoute`] (a service profile's `isRetryable`). Any other request is sent once, so a
//!   non-idempotent request that reached the server is never duplicated;
//! - only failures: responses the [`Classifier`](crate::classify::Classifier) calls failures at
//!   the response head (5xx, trailers-only gRPC errors) and errors (refused, reset, a per-try
//!   timeout). A gRPC status that only arrives in the trailers is not retried;
//! - only within a [`RetryBudget`]: retries may add at most a ratio of the original requests
//!   (20% by default) plus a floor of retries per second (10), over a window (10 s) — Linkerd's
//!   `retryBudget`. A budget, unlike a retry count, cannot multiply load during an outage;
//! - only requests whose body fits the replay buffer (64 KiB by default): a larger body streams
//!   through once and is never retried.
//!
//! Put a [`TimeoutLayer`](crate::timeout::TimeoutLayer)`::per_attempt()` *under* this layer for a
//! per-try timeout (a timed-out attempt is then retried) and a whole-request `TimeoutLayer`
//! *above* it to bound the exchange. Metrics above this layer count effective outcomes (one per
//! request), metrics under it actual ones (one per attempt), as `routes -o wide` shows.
//!
//! ```
//! use mesh_core::retry::{RetryBudget, RetryLayer};
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let calls = Arc::new(AtomicUsize::new(0));
//! let flaky = {
//!     let calls = calls.clone();
//!     service_fn(move |_req: http::Request<_>| {
//!         let n = calls.fetch_add(1, Ordering::SeqCst);
//!         async move {
//!             let mut rsp = http::Response::new(());
//!             if n == 0 { *rsp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE; }
//!             Ok::<_, std::convert::Infallible>(rsp)
//!         }
//!     })
//! };
//! let svc = RetryLayer::new(RetryBudget::default()).layer(flaky);
//! let req = http::Request::get("/").body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
//! let rsp = svc.oneshot(req).await.unwrap();
//! assert_eq!(rsp.status(), 200);
//! assert_eq!(calls.load(Ordering::SeqCst), 2);
//! # }
//! ```

mod budget;
mod layer;
mod policy;
mod replay;
mod service;

pub use self::budget::{InvalidBudget, RetryBudget};
pub use self::layer::RetryLayer;
pub use self::policy::RetryPolicy;
pub use self::replay::ReplayBody;
pub use self::service::{BoxErrors, ResponseFuture, Retry, RetryCounters, RetryMetrics};

/// Marks a request as safe to retry whatever its method (set by a router for routes a service
/// profile marks `isRetryable`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryableRoute;

/// Whether `req` may be sent more than once.
pub fn is_retryable<B>(req: &http::Request<B>) -> bool {
    use http::Method;
    matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    ) || req.extensions().get::<RetryableRoute>().is_some()
}

#[cfg(test)]
mod tests;
