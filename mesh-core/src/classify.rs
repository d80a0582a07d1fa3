//! The one place that decides whether a response succeeded.
//!
//! Metrics (`classification` label), retries and failure accrual (`mesh-balance`) all read the
//! [`Outcome`] a [`Classifier`] gives, so a response is judged the same way everywhere:
//!
//! - an HTTP response fails when its status is in the classifier's failure ranges (5xx by
//!   default; a service profile's `responseClasses` can say otherwise);
//! - a gRPC response fails when its `grpc-status` is not 0, whether the status comes in the
//!   headers (a trailers-only response) or in the trailers; a gRPC stream that ends without any
//!   `grpc-status` fails too (the server broke the protocol); gRPC status wins over HTTP status;
//! - an error (timeout, refused connection, reset stream, fail-fast) fails, with a reason.
//!
//! A response is judged once per hop: the first layer to see it (failure accrual at the
//! endpoint, in a proxy's outbound stack) calls [`Classifier::classify_response`], which records
//! the [`Decision`] in the response's extensions as a [`Classification`]; every layer above
//! (per-attempt metrics, the retry policy, per-request metrics) reads that decision instead of
//! judging again, so one classifier (a route's response classes) decides for all of them. A
//! gRPC decision that waits for the trailers ([`Pending`]) is completed at the end of the stream
//! by whoever watches it, from the same trailers, with [`Pending::eos`].
//!
//! ```
//! use mesh_core::classify::{Class, Classifier, Decision};
//! use http::{HeaderMap, StatusCode};
//!
//! let c = Classifier::default();
//! let ok = c.classify_headers(StatusCode::OK, &HeaderMap::new());
//! assert!(matches!(ok, Decision::Final(o) if o.class() == Class::Success));
//!
//! let mut grpc = HeaderMap::new();
//! grpc.insert("content-type", "application/grpc".parse().unwrap());
//! let Decision::Pending(pending) = c.classify_headers(StatusCode::OK, &grpc) else { panic!() };
//! let mut trailers = HeaderMap::new();
//! trailers.insert("grpc-status", "14".parse().unwrap());
//! let outcome = pending.eos(Some(&trailers));
//! assert_eq!(outcome.class(), Class::Failure);
//! assert_eq!(outcome.grpc_status(), Some(14));
//! ```

use std::error::Error as StdError;
use std::fmt;
use std::ops::RangeInclusive;
use std::sync::Arc;

use http::{HeaderMap, StatusCode};

/// Success or failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// The request did what it was asked to.
    Success,
    /// It did not: a failure status, a non-zero gRPC status, or an error.
    Failure,
}

impl Class {
    /// The label value Linkerd uses: `success` or `failure`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Class::Success => "success",
            Class::Failure => "failure",
        }
    }
}

/// Why a request failed without a response from the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorReason {
    /// A timeout fired (request, per-try, connect or response).
    Timeout,
    /// The connection was refused.
    ConnectRefused,
    /// The connection or stream was reset or closed mid-exchange.
    Reset,
    /// The proxy failed fast: no endpoint was ready, a queue was full, the service was down.
    Unavailable,
    /// Any other error.
    Other,
}

impl ErrorReason {
    /// A short, stable label value: `timeout`, `connect_refused`, `reset`, `unavailable`,
    /// `other`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorReason::Timeout => "timeout",
            ErrorReason::ConnectRefused => "connect_refused",
            ErrorReason::Reset => "reset",
            ErrorReason::Unavailable => "unavailable",
            ErrorReason::Other => "other",
        }
    }
}

impl fmt::Display for ErrorReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// An error that knows its own [`ErrorReason`] (timeouts, fail-fast errors of the mesh).
///
/// [`Classifier::classify_error`] finds these anywhere in an error's source chain.
pub trait HasErrorReason {
    /// The reason this error stands for.
    fn error_reason(&self) -> ErrorReason;
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Outcome {
    class: Class,
    status: Option<StatusCode>,
    grpc_status: Option<i32>,
    error: Option<ErrorReason>,
}

impl Outcome {
    /// Success or failure.
    pub const fn class(&self) -> Class {
        self.class
    }

    /// Whether it failed.
    pub const fn is_failure(&self) -> bool {
        matches!(self.class, Class::Failure)
    }

    /// The HTTP status, if a response arrived.
    pub const fn status(&self) -> Option<StatusCode> {
        self.status
    }

    /// The gRPC status, for gRPC responses.
    pub const fn grpc_status(&self) -> Option<i32> {
        self.grpc_status
    }

    /// The error, if the request failed without (or in the middle of) a response.
    pub const fn error(&self) -> Option<ErrorReason> {
        self.error
    }

    /// An outcome for an error with no response.
    pub const fn from_error(reason: ErrorReason) -> Self {
        Self {
            class: Class::Failure,
            status: None,
            grpc_status: None,
            error: Some(reason),
        }
    }
}

/// A gRPC response whose status has not been seen yet: it comes in the trailers.
#[derive(Clone, Debug)]
pub struct Pending {
    status: StatusCode,
}

impl Pending {
    /// Classifies at the end of the stream, from the trailers (if any).
    pub fn eos(&self, trailers: Option<&HeaderMap>) -> Outcome {
        match trailers.and_then(grpc_status) {
            Some(code) => grpc_outcome(self.status, code),
            // A gRPC stream must end with a status; without one the call failed.
            None => Outcome {
                class: Class::Failure,
                status: Some(self.status),
                grpc_status: None,
                error: None,
            },
        }
    }

    /// Classifies a stream that failed before its end.
    pub fn error(&self, reason: ErrorReason) -> Outcome {
        Outcome {
            status: Some(self.status),
            ..Outcome::from_error(reason)
        }
    }
}

/// What response headers tell.
#[derive(Clone, Debug)]
pub enum Decision {
    /// The outcome is known from the headers.
    Final(Outcome),
    /// A gRPC response: the outcome comes with the trailers.
    Pending(Pending),
}

/// Decides success or failure. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Classifier {
    failure_statuses: Arc<[RangeInclusive<u16>]>,
}

impl Default for Classifier {
    /// 5xx responses fail.
    fn default() -> Self {
        Self {
            failure_statuses: Arc::from(vec![500..=599]),
        }
    }
}

/// The [`Decision`] on a response, in its extensions: what the layer that classified it
/// decided, for the layers above to read. See the [module docs](self).
///
/// ```
/// use mesh_core::classify::{Classification, Classifier, Decision};
///
/// let strict = Classifier::with_failure_statuses(vec![400..=599]);
/// let mut rsp = http::Response::builder().status(404).body(()).unwrap();
/// assert!(matches!(strict.classify_response(&mut rsp), Decision::Final(o) if o.is_failure()));
/// // A layer above with the default classifier (5xx only) reads the decision already made.
/// let d = Classifier::default().classify_response(&mut rsp);
/// assert!(matches!(d, Decision::Final(o) if o.is_failure()));
/// assert!(rsp.extensions().get::<Classification>().is_some());
/// ```
#[derive(Clone, Debug)]
pub struct Classification(pub Decision);

impl Classifier {
    /// The decision on `rsp`: the one a layer below already made (its [`Classification`]), or
    /// this classifier's, recorded as the response's [`Classification`] for the layers above.
    pub fn classify_response<B>(&self, rsp: &mut http::Response<B>) -> Decision {
        if let Some(Classification(decision)) = rsp.extensions().get::<Classification>() {
            return decision.clone();
        }
        let decision = self.classify_headers(rsp.status(), rsp.headers());
        rsp.extensions_mut()
            .insert(Classification(decision.clone()));
        decision
    }

    /// The decision on a response head without recording it: the [`Classification`] a layer
    /// below made, or this classifier's.
    pub fn decision_on(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        extensions: &http::Extensions,
    ) -> Decision {
        match extensions.get::<Classification>() {
            Some(Classification(decision)) => decision.clone(),
            None => self.classify_headers(status, headers),
        }
    }

    /// A classifier for which responses with a status in `ranges` fail (for instance from a
    /// service profile's `responseClasses`).
    pub fn with_failure_statuses(ranges: Vec<RangeInclusive<u16>>) -> Self {
        Self {
            failure_statuses: ranges.into(),
        }
    }

    fn is_failure_status(&self, status: StatusCode) -> bool {
        let s = status.as_u16();
        self.failure_statuses.iter().any(|r| r.contains(&s))
    }

    /// Classifies response headers: final for HTTP and for trailers-only gRPC responses,
    /// pending for gRPC responses whose status comes in the trailers.
    pub fn classify_headers(&self, status: StatusCode, headers: &HeaderMap) -> Decision {
        if is_grpc(headers) {
            if let Some(code) = grpc_status(headers) {
                return Decision::Final(grpc_outcome(status, code));
            }
            if status.is_success() {
                return Decision::Pending(Pending { status });
            }
        }
        let class = if self.is_failure_status(status) {
            Class::Failure
        } else {
            Class::Success
        };
        Decision::Final(Outcome {
            class,
            status: Some(status),
            grpc_status: None,
            error: None,
        })
    }

    /// Classifies a request that failed with an error instead of a response.
    pub fn classify_error(&self, error: &(dyn StdError + 'static)) -> Outcome {
        Outcome::from_error(error_reason(error))
    }
}

/// The reason for an error, found in its source chain.
pub fn error_reason(error: &(dyn StdError + 'static)) -> ErrorReason {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = cur {
        if e.is::<tower::timeout::error::Elapsed>() || e.is::<tokio::time::error::Elapsed>() {
            return ErrorReason::Timeout;
        }
        if let Some(r) = reason_of_known(e) {
            return r;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            match io.kind() {
                K::ConnectionRefused => return ErrorReason::ConnectRefused,
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
                    return ErrorReason::Reset;
                }
                K::TimedOut => return ErrorReason::Timeout,
                _ => {}
            }
        }
        cur = e.source();
    }
    ErrorReason::Other
}

/// Errors of this crate that carry their reason.
fn reason_of_known(e: &(dyn StdError + 'static)) -> Option<ErrorReason> {
    if let Some(t) = e.downcast_ref::<crate::timeout::ResponseTimeout>() {
        return Some(t.error_reason());
    }
    if let Some(u) = e.downcast_ref::<crate::error::Unavailable>() {
        return Some(u.error_reason());
    }
    None
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse().ok())
}

fn grpc_outcome(status: StatusCode, code: i32) -> Outcome {
    Outcome {
        class: if code == 0 {
            Class::Success
        } else {
            Class::Failure
        },
        status: Some(status),
        grpc_status: Some(code),
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn fin(d: Decision) -> Outcome {
        match d {
            Decision::Final(o) => o,
            Decision::Pending(_) => panic!("expected a final outcome"),
        }
    }

    #[test]
    fn http_statuses() {
        let c = Classifier::default();
        for (code, class) in [
            (200, Class::Success),
            (404, Class::Success),
            (499, Class::Success),
            (500, Class::Failure),
            (503, Class::Failure),
        ] {
            let o = fin(c.classify_headers(StatusCode::from_u16(code).unwrap(), &HeaderMap::new()));
            assert_eq!(o.class(), class, "{code}");
            assert_eq!(o.status().map(|s| s.as_u16()), Some(code));
        }
        let custom = Classifier::with_failure_statuses(vec![404..=404, 500..=599]);
        assert!(
            fin(custom.classify_headers(StatusCode::NOT_FOUND, &HeaderMap::new())).is_failure()
        );
    }

    #[test]
    fn grpc_in_headers_and_trailers() {
        let c = Classifier::default();
        let g = headers(&[("content-type", "application/grpc+proto")]);
        // Trailers-only response carries its status in the headers.
        let mut only = g.clone();
        only.insert("grpc-status", "5".parse().unwrap());
        let o = fin(c.classify_headers(StatusCode::OK, &only));
        assert_eq!((o.class(), o.grpc_status()), (Class::Failure, Some(5)));
        // gRPC status wins over a failing HTTP status.
        only.insert("grpc-status", "0".parse().unwrap());
        assert_eq!(
            fin(c.classify_headers(StatusCode::INTERNAL_SERVER_ERROR, &only)).class(),
            Class::Success
        );

        let Decision::Pending(p) = c.classify_headers(StatusCode::OK, &g) else {
            panic!("pending")
        };
        assert_eq!(
            p.eos(Some(&headers(&[("grpc-status", "0")]))).class(),
            Class::Success
        );
        assert_eq!(
            p.eos(Some(&headers(&[("grpc-status", "13")])))
                .grpc_status(),
            Some(13)
        );
        assert_eq!(p.eos(None).class(), Class::Failure);
        assert_eq!(
            p.error(ErrorReason::Reset).error(),
            Some(ErrorReason::Reset)
        );
    }

    #[test]
    fn errors_by_source_chain() {
        #[derive(Debug)]
        struct Wrap(Box<dyn StdError + Send + Sync>);
        impl fmt::Display for Wrap {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("wrapped")
            }
        }
        impl StdError for Wrap {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&*self.0)
            }
        }
        let refused = Wrap(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert_eq!(error_reason(&refused), ErrorReason::ConnectRefused);
        let elapsed = Wrap(Box::new(tower::timeout::error::Elapsed::new()));
        assert_eq!(error_reason(&elapsed), ErrorReason::Timeout);
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(error_reason(&reset), ErrorReason::Reset);
        assert_eq!(error_reason(&std::fmt::Error), ErrorReason::Other);
    }
}
