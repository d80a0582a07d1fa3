//! Endpoints that proxies register at run time, each held by a lease.
//!
//! A proxy registers its inbound endpoint when it is ready to serve, renews the registration
//! (by registering again, the same request) well before the lease runs out, and deregisters when
//! it drains. If the proxy vanishes without deregistering, its lease expires and the endpoint is
//! removed, so clients stop being sent to a dead address within one lease.
//!
//! Registrations are keyed by service, port and address: registering the same triple again
//! renews the lease and replaces the metadata.
//!
//! ```
//! use std::time::Duration;
//! use mesh_control::catalog::{Registration, Registry, ServiceRef};
//!
//! let registry = Registry::new();
//! let reg = Registration::new(ServiceRef::new("web", "emojivoto"), 8080, "127.0.0.1:4143".parse()?);
//! let granted = registry.register(reg, Duration::from_secs(30));
//! assert_eq!(granted, Duration::from_secs(30));
//! assert_eq!(registry.len(), 1);
//! assert!(registry.deregister(&ServiceRef::new("web", "emojivoto"), 8080, "127.0.0.1:4143".parse()?));
//! assert_eq!(registry.len(), 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mesh_tls::ServiceIdentity;
use tokio::sync::watch;
use tokio::time::Instant;

use super::model::{
    DEFAULT_ENDPOINT_WEIGHT, DefaultPolicy, Endpoint, EndpointSource, Port, Protocol, ProtocolHint,
    Service, ServiceRef, Snapshot,
};

/// What a proxy registers: one address serving one port of a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// The service.
    pub service: ServiceRef,
    /// The service port served (also the application port on the workload).
    pub port: u16,
    /// The address clients connect to (the proxy's inbound listener).
    pub addr: SocketAddr,
    /// The identity the endpoint proves; `None` for an unmeshed endpoint.
    pub identity: Option<ServiceIdentity>,
    /// What the endpoint speaks. Default is [`ProtocolHint::Auto`].
    pub protocol_hint: ProtocolHint,
    /// The port's protocol, used when the catalog file does not declare the port. Default is
    /// [`Protocol::Detect`].
    pub protocol: Option<Protocol>,
    /// The workload (instance) name; inbound policy uses it. Default is the service name.
    pub workload: Option<String>,
    /// Metric labels.
    pub labels: BTreeMap<String, String>,
    /// The workload's default inbound policy (Linkerd's pod annotation), for its ports no
    /// service configures; a `workloads` entry of the catalog file overrides it.
    pub default_policy: Option<DefaultPolicy>,
}

impl Registration {
    /// A registration of `addr` for `service:port` with default metadata.
    pub fn new(service: ServiceRef, port: u16, addr: SocketAddr) -> Self {
        Self {
            service,
            port,
            addr,
            identity: None,
            protocol_hint: ProtocolHint::Auto,
            protocol: None,
            workload: None,
            labels: BTreeMap::new(),
            default_policy: None,
        }
    }
}

/// The registrations and their leases. Cheap to clone; clones share state.
#[derive(Clone, Debug)]
pub struct Registry {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    entries: Mutex<BTreeMap<Key, Entry>>,
    /// Bumped on every change, so the catalog knows to recompute.
    changes: watch::Sender<u64>,
    min_lease: Duration,
    max_lease: Duration,
}

type Key = (ServiceRef, u16, SocketAddr);

#[derive(Clone, Debug)]
struct Entry {
    registration: Registration,
    lease: Duration,
    expires: Instant,
}

/// The shortest lease granted.
pub const MIN_LEASE: Duration = Duration::from_millis(100);
/// The longest lease granted by default.
pub const MAX_LEASE: Duration = Duration::from_secs(600);
/// The lease granted when the registrant asks for none.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// An empty registry granting leases from [`MIN_LEASE`] to [`MAX_LEASE`].
    pub fn new() -> Self {
        Self::with_lease_bounds(MIN_LEASE, MAX_LEASE)
    }

    /// An empty registry granting leases between `min` and `max`.
    pub fn with_lease_bounds(min: Duration, max: Duration) -> Self {
        let (changes, _) = watch::channel(0);
        Self {
            shared: Arc::new(Shared {
                entries: Mutex::new(BTreeMap::new()),
                changes,
                min_lease: min,
                max_lease: max.max(min),
            }),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, Entry>> {
        // Nothing panics while holding the lock; a poisoned map is still consistent.
        self.shared
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Registers (or renews) an endpoint for `lease` (clamped to the registry's bounds; zero asks
    /// for [`DEFAULT_LEASE`]). Returns the lease granted: renew well before it runs out.
    pub fn register(&self, registration: Registration, lease: Duration) -> Duration {
        let lease = if lease.is_zero() {
            DEFAULT_LEASE
        } else {
            lease
        }
        .clamp(self.shared.min_lease, self.shared.max_lease);
        let key = (
            registration.service.clone(),
            registration.port,
            registration.addr,
        );
        let entry = Entry {
            registration,
            lease,
            expires: Instant::now() + lease,
        };
        let changed = {
            let mut entries = self.entries();
            // A renewal that changes nothing but pushes the expiry later needs nobody woken; one
            // that brings the expiry earlier must wake the sweeper.
            let changed = entries.get(&key).is_none_or(|old| {
                old.registration != entry.registration || entry.expires < old.expires
            });
            entries.insert(key, entry);
            changed
        };
        if changed {
            self.shared.changes.send_modify(|g| *g += 1);
        }
        lease
    }

    /// Removes the registration of `addr` for `service:port`. Returns whether there was one.
    pub fn deregister(&self, service: &ServiceRef, port: u16, addr: SocketAddr) -> bool {
        let removed = self
            .entries()
            .remove(&(service.clone(), port, addr))
            .is_some();
        if removed {
            self.shared.changes.send_modify(|g| *g += 1);
        }
        removed
    }

    /// The live registration of `addr` for `service:port`, if any.
    pub fn get(&self, service: &ServiceRef, port: u16, addr: SocketAddr) -> Option<Registration> {
        let now = Instant::now();
        self.entries()
            .get(&(service.clone(), port, addr))
            .filter(|e| e.expires > now)
            .map(|e| e.registration.clone())
    }

    /// The live registrations with the lease each was granted.
    pub fn leases(&self) -> Vec<(Registration, Duration)> {
        let now = Instant::now();
        self.entries()
            .values()
            .filter(|e| e.expires > now)
            .map(|e| (e.registration.clone(), e.lease))
            .collect()
    }

    /// How many registrations are live (expired ones may linger until the next sweep).
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether there are no registrations.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes expired registrations; returns the next expiry, if any registration remains.
    pub fn sweep(&self, now: Instant) -> Option<Instant> {
        let (removed, next) = {
            let mut entries = self.entries();
            let before = entries.len();
            entries.retain(|_, e| e.expires > now);
            for e in entries.values() {
                tracing::trace!(service = %e.registration.service, addr = %e.registration.addr, "lease live");
            }
            (
                before - entries.len(),
                entries.values().map(|e| e.expires).min(),
            )
        };
        if removed > 0 {
            tracing::info!(
                removed,
                "registrations expired (their proxies stopped renewing)"
            );
            self.shared.changes.send_modify(|g| *g += 1);
        }
        next
    }

    /// A receiver that changes whenever a registration is added, renewed, changed or removed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    /// Adds the live registrations to `snapshot`: services and ports they name are created if the
    /// catalog file does not have them; a registered address replaces a static one.
    pub fn apply(&self, snapshot: &mut Snapshot) {
        let now = Instant::now();
        let entries: Vec<Registration> = self
            .entries()
            .values()
            .filter(|e| e.expires > now)
            .map(|e| e.registration.clone())
            .collect();
        // One endpoint per (service, address), serving the union of its registered ports.
        let mut merged: BTreeMap<(ServiceRef, SocketAddr), (Registration, BTreeSet<u16>)> =
            BTreeMap::new();
        for reg in entries {
            let key = (reg.service.clone(), reg.addr);
            let port = reg.port;
            let slot = merged
                .entry(key)
                .or_insert_with(|| (reg.clone(), BTreeSet::new()));
            slot.1.insert(port);
            slot.0 = reg;
        }
        for ((service, addr), (reg, ports)) in merged {
            let svc = snapshot
                .services
                .entry(service.clone())
                .or_insert_with(|| Service::new(service.clone()));
            for port in &ports {
                svc.ports.entry(*port).or_insert_with(|| Port {
                    port: *port,
                    target_port: *port,
                    protocol: reg.protocol.unwrap_or_default(),
                    authorization: None,
                    routes: Vec::new(),
                });
            }
            if let Some(policy) = reg.default_policy {
                let workload = reg.workload.clone().unwrap_or_else(|| service.name.clone());
                snapshot
                    .workload_policies
                    .entry((service.namespace.clone(), workload))
                    .or_insert(policy);
            }
            let Some(svc) = snapshot.services.get_mut(&service) else {
                continue;
            };
            svc.endpoints.retain(|e| e.addr != addr);
            svc.endpoints.push(Endpoint {
                addr,
                identity: reg.identity,
                protocol_hint: reg.protocol_hint,
                labels: reg.labels,
                workload: reg.workload,
                ports: Some(ports),
                weight: DEFAULT_ENDPOINT_WEIGHT,
                source: EndpointSource::Registered,
            });
            svc.endpoints.sort_by_key(|e| e.addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(port: u16, addr: &str) -> Registration {
        Registration::new(
            ServiceRef::new("web", "emojivoto"),
            port,
            addr.parse().unwrap(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn leases_expire_unless_renewed() {
        let registry = Registry::new();
        registry.register(reg(8080, "127.0.0.1:1"), Duration::from_secs(10));
        registry.register(reg(8080, "127.0.0.1:2"), Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(9)).await;
        // Renew the first before it runs out (now until t=19); the second ends at t=10.
        registry.register(reg(8080, "127.0.0.1:1"), Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(3)).await;
        let next = registry.sweep(Instant::now());
        assert_eq!(registry.len(), 1, "the unrenewed lease expired");
        assert!(next.is_some());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(registry.sweep(Instant::now()), None);
        assert!(registry.is_empty());
    }

    #[test]
    fn leases_are_clamped() {
        let registry = Registry::with_lease_bounds(Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(
            registry.register(reg(1, "127.0.0.1:1"), Duration::from_millis(1)),
            Duration::from_secs(1)
        );
        assert_eq!(
            registry.register(reg(1, "127.0.0.1:1"), Duration::from_secs(3600)),
            Duration::from_secs(60)
        );
        assert_eq!(
            registry.register(reg(1, "127.0.0.1:1"), Duration::ZERO),
            DEFAULT_LEASE
        );
    }

    #[tokio::test]
    async fn apply_creates_services_and_merges_ports() {
        let registry = Registry::new();
        registry.register(reg(8080, "127.0.0.1:1"), Duration::from_secs(10));
        registry.register(reg(9090, "127.0.0.1:1"), Duration::from_secs(10));
        let mut snap = Snapshot::default();
        registry.apply(&mut snap);
        let svc = snap.service(&ServiceRef::new("web", "emojivoto")).unwrap();
        assert_eq!(svc.ports.keys().copied().collect::<Vec<_>>(), [8080, 9090]);
        assert_eq!(svc.endpoints.len(), 1);
        assert_eq!(svc.endpoints[0].ports, Some(BTreeSet::from([8080, 9090])));
        assert_eq!(svc.endpoints[0].source, EndpointSource::Registered);
    }

    #[tokio::test]
    async fn a_registered_default_policy_is_the_workload_s_unless_the_file_says() {
        let registry = Registry::new();
        let mut r = reg(8080, "127.0.0.1:1");
        r.default_policy = Some(DefaultPolicy::Deny);
        registry.register(r, Duration::from_secs(10));
        let mut snap = Snapshot::default();
        registry.apply(&mut snap);
        assert_eq!(
            snap.default_policy_of("emojivoto", "web"),
            DefaultPolicy::Deny
        );
        assert_eq!(
            snap.default_policy_of("emojivoto", "other"),
            DefaultPolicy::AllUnauthenticated
        );
        let mut snap = Snapshot::default();
        snap.workload_policies.insert(
            ("emojivoto".into(), "web".into()),
            DefaultPolicy::AllAuthenticated,
        );
        registry.apply(&mut snap);
        assert_eq!(
            snap.default_policy_of("emojivoto", "web"),
            DefaultPolicy::AllAuthenticated,
            "the catalog file's entry wins"
        );
    }

    #[tokio::test]
    async fn renewal_without_change_does_not_bump_the_generation() {
        let registry = Registry::new();
        let rx = registry.subscribe();
        registry.register(reg(8080, "127.0.0.1:1"), Duration::from_secs(10));
        assert_eq!(*rx.borrow(), 1);
        registry.register(reg(8080, "127.0.0.1:1"), Duration::from_secs(10));
        assert_eq!(*rx.borrow(), 1);
        assert!(!registry.deregister(
            &ServiceRef::new("x", "y"),
            1,
            "127.0.0.1:1".parse().unwrap()
        ));
        assert_eq!(*rx.borrow(), 1);
    }
}
