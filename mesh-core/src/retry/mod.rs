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

/// Marks a request as safe to retry whatever its method, and says what a retry is for: set by
/// a router for routes a service profile marks `isRetryable`, or an HTTPRoute's retry policy
/// (Linkerd 2.16+).
///
/// With no conditions (`RetryableRoute::new()`), a response the classifier calls a failure is
/// retried. With conditions, a response is retried when its status is in one of the ranges, or
/// its gRPC status (a trailers-only response's) is one of the codes. Errors are retried either
/// way when retrying is safe: a refused or reset connection, and a timed-out attempt
/// ([`AttemptTimeout`](crate::timeout::AttemptTimeout)). `limit` caps the retries of one
/// request, over the layer's own cap.
///
/// ```
/// use mesh_core::retry::RetryableRoute;
///
/// let route = RetryableRoute::new().limit(2).on_statuses([500..=504]).on_grpc([14]);
/// assert_eq!(route.max_retries(), Some(2));
/// assert!(route.retries_status(http::StatusCode::BAD_GATEWAY, None));
/// assert!(route.retries_status(http::StatusCode::OK, Some(14)));
/// assert!(!route.retries_status(http::StatusCode::NOT_FOUND, None));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetryableRoute(std::sync::Arc<RetryConditions>);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct RetryConditions {
    limit: Option<u32>,
    statuses: Vec<std::ops::RangeInclusive<u16>>,
    grpc: Vec<i32>,
}

impl RetryableRoute {
    /// Retry whatever the classifier calls a failure.
    pub fn new() -> Self {
        Self::default()
    }

    /// At most `limit` retries per request.
    pub fn limit(mut self, limit: u32) -> Self {
        std::sync::Arc::make_mut(&mut self.0).limit = Some(limit);
        self
    }

    /// Retry responses with these statuses.
    pub fn on_statuses(
        mut self,
        ranges: impl IntoIterator<Item = std::ops::RangeInclusive<u16>>,
    ) -> Self {
        std::sync::Arc::make_mut(&mut self.0)
            .statuses
            .extend(ranges);
        self
    }

    /// Retry gRPC responses with these status codes.
    pub fn on_grpc(mut self, codes: impl IntoIterator<Item = i32>) -> Self {
        std::sync::Arc::make_mut(&mut self.0).grpc.extend(codes);
        self
    }

    /// The cap on retries of one request, if the route sets one.
    pub fn max_retries(&self) -> Option<u32> {
        self.0.limit
    }

    /// Whether the route names conditions (else the classifier decides).
    pub fn has_conditions(&self) -> bool {
        !self.0.statuses.is_empty() || !self.0.grpc.is_empty()
    }

    /// Whether a response with `status` (and gRPC status `grpc`, if its head carries one)
    /// meets the route's conditions.
    pub fn retries_status(&self, status: http::StatusCode, grpc: Option<i32>) -> bool {
        let s = status.as_u16();
        self.0.statuses.iter().any(|r| r.contains(&s))
            || grpc.is_some_and(|code| self.0.grpc.contains(&code))
    }
}

/// A retry condition that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid retry condition {0:?}: {1}")]
pub struct InvalidCondition(String, &'static str);

/// An HTTP status condition as Linkerd's `retry.linkerd.io/http` writes it: `5xx`, `429`, or a
/// range `500-504`.
///
/// ```
/// use mesh_core::retry::status_range;
/// assert_eq!(status_range("5xx"), Ok(500..=599));
/// assert_eq!(status_range("500-504"), Ok(500..=504));
/// assert_eq!(status_range("429"), Ok(429..=429));
/// assert!(status_range("6xx").is_err());
/// ```
pub fn status_range(s: &str) -> Result<std::ops::RangeInclusive<u16>, InvalidCondition> {
    let bad = |why| InvalidCondition(s.to_owned(), why);
    let t = s.trim().to_ascii_lowercase();
    let status = |n: &str| {
        n.trim()
            .parse::<u16>()
            .ok()
            .filter(|n| (100..=599).contains(n))
            .ok_or_else(|| bad("a status is a number from 100 to 599"))
    };
    if let Some(class) = t.strip_suffix("xx") {
        let c = status(&format!("{class}00"))?;
        return Ok(c..=c + 99);
    }
    match t.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (status(a)?, status(b)?);
            if a > b {
                return Err(bad("a range goes from the lower status to the higher"));
            }
            Ok(a..=b)
        }
        None => status(&t).map(|n| n..=n),
    }
}

/// A gRPC status code by its name, as Linkerd's `retry.linkerd.io/grpc` writes it
/// (`cancelled`, `deadline-exceeded`, `internal`, `resource-exhausted`, `unavailable`, ...), or
/// its number.
///
/// ```
/// use mesh_core::retry::grpc_code;
/// assert_eq!(grpc_code("unavailable"), Ok(14));
/// assert_eq!(grpc_code("deadline-exceeded"), Ok(4));
/// assert_eq!(grpc_code("8"), Ok(8));
/// assert!(grpc_code("nope").is_err());
/// ```
pub fn grpc_code(s: &str) -> Result<i32, InvalidCondition> {
    let names = [
        "ok",
        "cancelled",
        "unknown",
        "invalid-argument",
        "deadline-exceeded",
        "not-found",
        "already-exists",
        "permission-denied",
        "resource-exhausted",
        "failed-precondition",
        "aborted",
        "out-of-range",
        "unimplemented",
        "internal",
        "unavailable",
        "data-loss",
        "unauthenticated",
    ];
    let t = s.trim().to_ascii_lowercase().replace('_', "-");
    if let Ok(n) = t.parse::<i32>() {
        return if (0..=16).contains(&n) {
            Ok(n)
        } else {
            Err(InvalidCondition(s.to_owned(), "gRPC codes go from 0 to 16"))
        };
    }
    names
        .iter()
        .position(|n| *n == t)
        .and_then(|i| i32::try_from(i).ok())
        .ok_or_else(|| InvalidCondition(s.to_owned(), "not a gRPC status name (e.g. unavailable)"))
}

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
