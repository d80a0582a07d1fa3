//! Prometheus metrics for balancers, registered into the caller's registry.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `balancer_endpoints` | gauge | `target`, `state` = `ready` \| `pending` \| `ejected` | endpoints by state: `ready` can take a request now, `pending` is not ready yet (connecting, saturated), `ejected` is held back by failure accrual |
//! | `balancer_ejections_total` | counter | `target` | endpoints ejected after consecutive failures |
//! | `balancer_fail_open_total` | counter | `target` | ejections *not* made because too few endpoints would be left: the balancer kept sending to a failing endpoint rather than to none |
//! | `balancer_unavailable_total` | counter | `target`, `reason` | requests failed without reaching an endpoint ([`Reason`](crate::Reason)) |
//!
//! Register under a prefix to get Linkerd-like names, e.g.
//! `registry.sub_registry_with_prefix("outbound_http")` gives `outbound_http_balancer_endpoints`.
//! Label sets are resolved once per balancer, never per request.
//!
//! Per-endpoint latency is not exported (one series per endpoint would be unbounded); read it
//! from [`TargetStats::endpoints`](crate::TargetStats::endpoints) for `top`-style views.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::error::REASONS;

/// The balancer metric families; clone it into every balancer's builder.
///
/// ```
/// use mesh_balance::BalanceMetrics;
/// use prometheus_client::registry::Registry;
///
/// let mut registry = Registry::default();
/// let metrics = BalanceMetrics::register(registry.sub_registry_with_prefix("outbound_http"));
/// # let _ = metrics;
/// ```
#[derive(Clone, Debug)]
pub struct BalanceMetrics {
    endpoints: Family<StateLabels, Gauge>,
    ejections: Family<TargetLabels, Counter>,
    fail_open: Family<TargetLabels, Counter>,
    unavailable: Family<ReasonLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    target: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    target: String,
    reason: &'static str,
}

/// One target's metric handles, resolved when its balancer is built.
#[derive(Debug)]
pub(crate) struct TargetMetrics {
    pub(crate) ready: Gauge,
    pub(crate) pending: Gauge,
    pub(crate) ejected: Gauge,
    pub(crate) ejections: Counter,
    pub(crate) fail_open: Counter,
    pub(crate) unavailable: [Counter; REASONS.len()],
}

impl BalanceMetrics {
    /// Creates the families and registers them into `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            endpoints: Family::default(),
            ejections: Family::default(),
            fail_open: Family::default(),
            unavailable: Family::default(),
        };
        registry.register(
            "balancer_endpoints",
            "Endpoints of a balancer by state (ready, pending, ejected)",
            m.endpoints.clone(),
        );
        registry.register(
            "balancer_ejections",
            "Endpoints ejected by failure accrual after consecutive failures",
            m.ejections.clone(),
        );
        registry.register(
            "balancer_fail_open",
            "Ejections skipped because too few endpoints would be left (the balancer failed open)",
            m.fail_open.clone(),
        );
        registry.register(
            "balancer_unavailable",
            "Requests failed without reaching an endpoint, by reason",
            m.unavailable.clone(),
        );
        m
    }

    pub(crate) fn target(&self, target: &str) -> TargetMetrics {
        let state = |state| {
            self.endpoints.get_or_create_owned(&StateLabels {
                target: target.to_owned(),
                state,
            })
        };
        let labels = TargetLabels {
            target: target.to_owned(),
        };
        TargetMetrics {
            ready: state("ready"),
            pending: state("pending"),
            ejected: state("ejected"),
            ejections: self.ejections.get_or_create_owned(&labels),
            fail_open: self.fail_open.get_or_create_owned(&labels),
            unavailable: REASONS.map(|r| {
                self.unavailable.get_or_create_owned(&ReasonLabels {
                    target: target.to_owned(),
                    reason: r.as_str(),
                })
            }),
        }
    }
}

impl TargetMetrics {
    /// Handles registered nowhere, for balancers built without metrics.
    pub(crate) fn detached() -> Self {
        Self {
            ready: Gauge::default(),
            pending: Gauge::default(),
            ejected: Gauge::default(),
            ejections: Counter::default(),
            fail_open: Counter::default(),
            unavailable: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn names_and_labels() {
        let mut registry = Registry::default();
        let m = BalanceMetrics::register(registry.sub_registry_with_prefix("outbound_http"));
        let t = m.target("web.emojivoto:80");
        t.ready.set(2);
        t.fail_open.inc();
        let i = crate::error::reason_index(crate::Reason::QueueFull).expect("a balancer reason");
        t.unavailable[i].inc();
        let mut out = String::new();
        encode(&mut out, &registry).unwrap();
        for want in [
            r#"outbound_http_balancer_endpoints{target="web.emojivoto:80",state="ready"} 2"#,
            r#"outbound_http_balancer_fail_open_total{target="web.emojivoto:80"} 1"#,
            r#"outbound_http_balancer_unavailable_total{target="web.emojivoto:80",reason="queue_full"} 1"#,
            r#"outbound_http_balancer_ejections_total{target="web.emojivoto:80"} 0"#,
        ] {
            assert!(out.contains(want), "missing {want} in\n{out}");
        }
    }
}
