//! The one error the balancing layers make themselves: no endpoint could take the request. It is
//! the mesh's [`Unavailable`], with the balancer's [`Reason`]s; this module only counts them.

pub use mesh_core::error::{Reason, Unavailable};

/// The reasons a balancer or a split fails a request with, in the order of their counters.
pub(crate) const REASONS: [Reason; 5] = [
    Reason::NoEndpoints,
    Reason::AllEjected,
    Reason::QueueFull,
    Reason::FailFast,
    Reason::NoBackends,
];

/// The counter of `reason`, if a balancer can fail with it.
pub(crate) fn reason_index(reason: Reason) -> Option<usize> {
    REASONS.iter().position(|r| *r == reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_core::classify::ErrorReason;

    #[test]
    fn classifies_and_rescues_as_a_fail_fast_503() {
        let e = Unavailable::new("web.emojivoto:8080", Reason::NoEndpoints);
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
        for (i, r) in REASONS.into_iter().enumerate() {
            assert_eq!(reason_index(r), Some(i));
        }
        assert_eq!(reason_index(Reason::UnknownDestination), None);
    }
}
