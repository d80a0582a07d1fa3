//! The one error the balancing layers make themselves: no endpoint could take the request.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use mesh_core::classify::{ErrorReason, HasErrorReason};

/// A request failed before reaching any endpoint: the proxy answers it with a 503.
///
/// The request was never sent, so retrying it (elsewhere, or later) is safe. Ask why with
/// [`reason`](Self::reason); the `Display` text is for people (it says what to check) and may
/// change.
///
/// ```
/// # async fn call(
/// #     svc: impl tower::Service<http::Request<String>, Error = mesh_balance::BoxError>,
/// #     req: http::Request<String>,
/// # ) {
/// use mesh_balance::{Reason, Unavailable};
/// use tower::ServiceExt;
///
/// match svc.oneshot(req).await {
///     Ok(_rsp) => {}
///     Err(e) => match e.downcast_ref::<Unavailable>() {
///         Some(u) if u.reason() == Reason::QueueFull => { /* 503, shed upstream */ }
///         Some(u) => assert_eq!(u.http_status(), http::StatusCode::SERVICE_UNAVAILABLE),
///         None => { /* the endpoint failed: 502/504 */ }
///     },
/// }
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Unavailable {
    target: Arc<str>,
    /// The mesh-wide form of this error, as its `source()`: it lets `mesh_core::classify` and
    /// `mesh_core::rescue` see a fail-fast 503 without knowing this crate.
    core: mesh_core::rescue::Unavailable,
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
}

// === impl Unavailable ===

impl Unavailable {
    pub(crate) fn new(target: Arc<str>, reason: Reason) -> Self {
        Self {
            core: mesh_core::rescue::Unavailable::new(format!("{target}: {reason:?}")),
            target,
            reason,
            endpoints: None,
            waited: None,
            capacity: None,
        }
    }

    pub(crate) fn with_counts(mut self, total: usize, ejected: usize) -> Self {
        self.endpoints = Some((total, ejected));
        self
    }

    pub(crate) fn with_waited(mut self, waited: Option<Duration>) -> Self {
        self.waited = waited;
        self
    }

    pub(crate) fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// Why.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// The balancer's (or split's) target.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The status a proxy answers with: 503 Service Unavailable.
    pub fn http_status(&self) -> http::StatusCode {
        http::StatusCode::SERVICE_UNAVAILABLE
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
                f.write_str("; check that the service exists, has ready endpoints, and that its name resolves")
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
                f.write_str(t)?;
                f.write_str(": no endpoint became ready")?;
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
        }
    }
}

impl std::error::Error for Unavailable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.core)
    }
}

impl HasErrorReason for Unavailable {
    fn error_reason(&self) -> ErrorReason {
        ErrorReason::Unavailable
    }
}

// === impl Reason ===

impl Reason {
    pub(crate) const COUNT: usize = 5;
    pub(crate) const ALL: [Reason; Self::COUNT] = [
        Reason::NoEndpoints,
        Reason::AllEjected,
        Reason::QueueFull,
        Reason::FailFast,
        Reason::NoBackends,
    ];

    pub(crate) const fn index(self) -> usize {
        match self {
            Reason::NoEndpoints => 0,
            Reason::AllEjected => 1,
            Reason::QueueFull => 2,
            Reason::FailFast => 3,
            Reason::NoBackends => 4,
        }
    }

    /// A stable label value: `no_endpoints`, `all_ejected`, `queue_full`, `failfast`,
    /// `no_backends`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::NoEndpoints => "no_endpoints",
            Reason::AllEjected => "all_ejected",
            Reason::QueueFull => "queue_full",
            Reason::FailFast => "failfast",
            Reason::NoBackends => "no_backends",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
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
            .with_waited(Some(Duration::from_secs(3)));
        assert_eq!(
            e.to_string(),
            "voting.emojivoto:8080: no endpoint became ready within 3s (3 known, 1 ejected); \
             check connectivity to the endpoints and whether they are overloaded"
        );
        let q = Unavailable::new(t.clone(), Reason::QueueFull).with_capacity(100);
        assert!(q.to_string().contains("(100 requests waiting)"), "{q}");
        for (i, r) in Reason::ALL.into_iter().enumerate() {
            assert_eq!(r.index(), i);
            let msg = Unavailable::new(t.clone(), r).with_counts(2, 2).to_string();
            assert!(
                msg.starts_with("voting.emojivoto:8080: ") && msg.contains("; "),
                "{msg}"
            );
        }
        assert_eq!(e.error_reason(), ErrorReason::Unavailable);
        assert!(e.is_retryable());
    }
}

#[cfg(test)]
mod rescue_tests {
    use super::*;

    #[test]
    fn classifies_and_rescues_as_a_fail_fast_503() {
        let e = Unavailable::new("web.emojivoto:8080".into(), Reason::NoEndpoints);
        assert_eq!(
            mesh_core::classify::error_reason(&e),
            ErrorReason::Unavailable
        );
        let rsp =
            mesh_core::rescue::error_response::<http_body_util::Empty<bytes::Bytes>>(&e, false);
        assert_eq!(rsp.status(), 503);
        let header = rsp.headers()[mesh_core::rescue::L5D_PROXY_ERROR]
            .to_str()
            .unwrap();
        assert!(header.contains("no endpoints"), "{header}");
    }
}
