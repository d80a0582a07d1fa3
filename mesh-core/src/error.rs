//! The mesh's error vocabulary: one type per thing that can go wrong on the request path, each
//! saying what happened, to whom, and what to check.
//!
//! Layers widen their errors to [`BoxError`], as tower's do; whoever needs to know what happened
//! asks the error chain with [`cause_ref`], never the text. The types here are the ones every
//! stack shares:
//!
//! - [`Unavailable`]: the request was never sent (no endpoint, a full queue, an unknown
//!   destination): a 503, and always safe to retry; [`Reason`] says why.
//! - [`RequestError`]: a request failed once sent, or while being sent, to a named peer (a peer
//!   proxy, the app): a 502, with the root cause in its text and its source chain.
//! - Timeouts are [`ResponseTimeout`](crate::timeout::ResponseTimeout)s: a 504.
//!
//! [`rescue`](crate::rescue) turns them into responses, [`classify`](crate::classify) into
//! metric labels, both by walking the chain.
//!
//! ```
//! use mesh_core::error::{Reason, Unavailable, cause_ref};
//! use mesh_core::BoxError;
//!
//! let err: BoxError = Box::new(Unavailable::new("web.emojivoto:8080", Reason::NoEndpoints));
//! let u = cause_ref::<Unavailable>(&*err).expect("an unavailability");
//! assert_eq!(u.reason(), Reason::NoEndpoints);
//! assert!(err.to_string().starts_with("web.emojivoto:8080: no endpoints"));
//! ```

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use crate::BoxError;
use crate::classify::{ErrorReason, HasErrorReason};

/// The first error of type `E` in `error`'s source chain (`error` itself included).
///
/// ```
/// use mesh_core::error::cause_ref;
/// use std::io;
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("connect failed")]
/// struct Connect(#[source] io::Error);
///
/// let e = Connect(io::Error::from(io::ErrorKind::ConnectionRefused));
/// let io = cause_ref::<io::Error>(&e).expect("the cause");
/// assert_eq!(io.kind(), io::ErrorKind::ConnectionRefused);
/// ```
pub fn cause_ref<'a, E: StdError + 'static>(error: &'a (dyn StdError + 'static)) -> Option<&'a E> {
    let mut cur = Some(error);
    while let Some(e) = cur {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        cur = e.source();
    }
    None
}

/// Whether an error of type `E` is in `error`'s source chain.
pub fn is_caused_by<E: StdError + 'static>(error: &(dyn StdError + 'static)) -> bool {
    cause_ref::<E>(error).is_some()
}

// === Unavailable ===

/// A request failed before reaching any endpoint: the proxy answers it with a 503.
///
/// The request was never sent, so retrying it (elsewhere, or later) is safe. Ask why with
/// [`reason`](Self::reason); the `Display` text is for people (it says what to check) and may
/// change.
///
/// ```
/// # async fn call(
/// #     svc: impl tower::Service<http::Request<String>, Error = mesh_core::BoxError>,
/// #     req: http::Request<String>,
/// # ) {
/// use mesh_core::error::{Reason, Unavailable, cause_ref};
/// use tower::ServiceExt;
///
/// match svc.oneshot(req).await {
///     Ok(_rsp) => {}
///     Err(e) => match cause_ref::<Unavailable>(&*e) {
///         Some(u) if u.reason() == Reason::QueueFull => { /* 503, shed upstream */ }
///         Some(u) => assert!(u.is_retryable()),
///         None => { /* the endpoint failed: 502/504 */ }
///     },
/// }
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Unavailable {
    target: Arc<str>,
    reason: Reason,
    endpoints: Option<(usize, usize)>,
    waited: Option<Duration>,
    capacity: Option<usize>,
}

/// Why no endpoint could take a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// Discovery reports no endpoint for the target.
    NoEndpoints,
    /// Every endpoint is ejected by failure accrual (only possible when the balancer is allowed
    /// to eject them all; by default it fails open and keeps the last one).
    AllEjected,
    /// The queue in front of the balancer is full.
    QueueFull,
    /// Endpoints exist but none became ready within the failfast timeout (connecting, saturated,
    /// or ejected).
    FailFast,
    /// Every backend of a split has weight 0.
    NoBackends,
    /// No destination of this name is known to the proxy.
    UnknownDestination,
    /// The request names no destination (no `Host` header, no absolute URI).
    NoAuthority,
    /// The destination speaks opaque TCP, and the request is HTTP.
    OpaqueDestination,
}

impl Unavailable {
    /// `target` (a destination, a balancer, a split) could not take a request, for `reason`.
    pub fn new(target: impl Into<Arc<str>>, reason: Reason) -> Self {
        Self {
            target: target.into(),
            reason,
            endpoints: None,
            waited: None,
            capacity: None,
        }
    }

    /// How many endpoints the target knew, and how many of them were ejected.
    pub fn with_counts(mut self, total: usize, ejected: usize) -> Self {
        self.endpoints = Some((total, ejected));
        self
    }

    /// How long the request waited for an endpoint.
    pub fn with_waited(mut self, waited: impl Into<Option<Duration>>) -> Self {
        self.waited = waited.into();
        self
    }

    /// How many requests a full queue held.
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// Why.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// The destination, balancer or split that could not take the request.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Always true: the request never reached an endpoint, so sending it again is safe.
    pub fn is_retryable(&self) -> bool {
        true
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.target;
        match self.reason {
            Reason::NoEndpoints => {
                write!(f, "{t}: no endpoints: discovery reports none")?;
                if let Some(w) = self.waited {
                    write!(f, " (waited {w:?})")?;
                }
                f.write_str(
                    "; check that the service exists, has ready endpoints, and that its name resolves",
                )
            }
            Reason::AllEjected => {
                let n = self.endpoints.map_or(0, |(total, _)| total);
                write!(
                    f,
                    "{t}: all {n} endpoints are ejected after consecutive failures; check their health \
                     (each is probed again after a backoff and restored when a probe succeeds)"
                )
            }
            Reason::QueueFull => {
                write!(f, "{t}: the balancer's queue is full")?;
                if let Some(c) = self.capacity {
                    write!(f, " ({c} requests waiting)")?;
                }
                f.write_str("; the endpoints cannot keep up: add endpoints or shed load upstream")
            }
            Reason::FailFast => {
                write!(f, "{t}: no endpoint became ready")?;
                if let Some(w) = self.waited {
                    write!(f, " within {w:?}")?;
                }
                if let Some((total, ejected)) = self.endpoints {
                    write!(f, " ({total} known, {ejected} ejected)")?;
                }
                f.write_str("; check connectivity to the endpoints and whether they are overloaded")
            }
            Reason::NoBackends => write!(
                f,
                "{t}: every backend of the traffic split has weight 0; give a backend a positive weight"
            ),
            Reason::UnknownDestination => write!(
                f,
                "no destination named {t} is known to this proxy; check the name the app calls, \
                 or add it to the destinations file / the control plane's catalog"
            ),
            Reason::NoAuthority => f.write_str(
                "the request names no destination (no Host header and no absolute URI); \
                 send it with the Host of the service to call",
            ),
            Reason::OpaqueDestination => write!(
                f,
                "{t} is an opaque (TCP) destination; send it TCP through a per-upstream listener"
            ),
        }
    }
}

impl StdError for Unavailable {}

impl HasErrorReason for Unavailable {
    fn error_reason(&self) -> ErrorReason {
        ErrorReason::Unavailable
    }
}

impl Reason {
    /// A stable label value: `no_endpoints`, `all_ejected`, `queue_full`, `failfast`,
    /// `no_backends`, `unknown_destination`, `no_authority`, `opaque_destination`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::NoEndpoints => "no_endpoints",
            Reason::AllEjected => "all_ejected",
            Reason::QueueFull => "queue_full",
            Reason::FailFast => "failfast",
            Reason::NoBackends => "no_backends",
            Reason::UnknownDestination => "unknown_destination",
            Reason::NoAuthority => "no_authority",
            Reason::OpaqueDestination => "opaque_destination",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

// === RequestError ===

/// A request failed once sent, or while being sent: the peer reset the stream, closed the
/// connection, refused the request. Its text says to whom and why, down to the root cause
/// (hyper's own texts stop at "http2 error"), because it becomes the `l5d-proxy-error` header;
/// the cause stays its [`source`](StdError::source), so classification still sees it.
///
/// ```
/// use mesh_core::error::RequestError;
/// use std::io;
///
/// let e = RequestError::new("the app at 127.0.0.1:8080", io::Error::from(io::ErrorKind::ConnectionReset));
/// assert!(e.to_string().starts_with("the request to the app at 127.0.0.1:8080 failed: "));
/// ```
#[derive(Debug)]
pub struct RequestError {
    to: String,
    source: BoxError,
}

impl RequestError {
    /// `source` happened on the request to `to` (`"the peer proxy at 10.0.0.1:4143"`).
    pub fn new(to: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self {
            to: to.into(),
            source: source.into(),
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the request to {} failed: {}", self.to, self.source)?;
        let mut cause = self.source.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

impl StdError for RequestError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_to_do() {
        let t: Arc<str> = Arc::from("voting.emojivoto:8080");
        let e = Unavailable::new(t.clone(), Reason::FailFast)
            .with_counts(3, 1)
            .with_waited(Duration::from_secs(3));
        assert_eq!(
            e.to_string(),
            "voting.emojivoto:8080: no endpoint became ready within 3s (3 known, 1 ejected); \
             check connectivity to the endpoints and whether they are overloaded"
        );
        let q = Unavailable::new(t.clone(), Reason::QueueFull).with_capacity(100);
        assert!(q.to_string().contains("(100 requests waiting)"), "{q}");
        for r in [
            Reason::NoEndpoints,
            Reason::AllEjected,
            Reason::QueueFull,
            Reason::FailFast,
            Reason::NoBackends,
            Reason::UnknownDestination,
            Reason::NoAuthority,
            Reason::OpaqueDestination,
        ] {
            let msg = Unavailable::new(t.clone(), r).with_counts(2, 2).to_string();
            assert!(msg.contains("; "), "{r}: {msg}");
        }
        assert_eq!(e.error_reason(), ErrorReason::Unavailable);
        assert!(e.is_retryable());
    }

    #[test]
    fn causes_are_found_anywhere_in_the_chain() {
        let inner = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let e = RequestError::new("the peer proxy at 10.0.0.1:4143", inner);
        assert!(is_caused_by::<std::io::Error>(&e));
        assert!(!is_caused_by::<Unavailable>(&e));
        assert!(e.to_string().contains("10.0.0.1:4143"), "{e}");
    }
}
