//! The catalog: what the control plane knows about services, and how it learns it.
//!
//! A backend implements [`Catalog`]: it publishes [`Snapshot`]s on a `tokio::sync::watch`
//! channel, a new one on every change. The API servers only read snapshots, so a backend is all
//! it takes to serve the mesh from another source: the local backend ([`LocalCatalog`]: a
//! `mesh.yaml` file, watched, plus proxies' [registrations](Registry)) ships here; a Kubernetes
//! backend (Services, EndpointSlices, CRDs via kube-rs) plugs in beside it by building the same
//! snapshots.
//!
//! Snapshots are immutable and compared before publishing, so watchers wake only for real
//! changes; each stream then recomputes its answer and sends it only if it differs from what it
//! last sent.

pub mod file;
mod local;
mod model;
mod persist;
mod registry;

use std::sync::Arc;

use tokio::sync::watch;

pub use self::file::CatalogError;
pub use self::local::{LocalCatalog, LocalCatalogBuilder, ReloadStatus};
pub use self::model::{
    Authorization, Backoff, Clients, DEFAULT_ENDPOINT_WEIGHT, DefaultPolicy, Endpoint,
    EndpointSource, FailureAccrual, InboundCondition, InboundRoute, Network, PathMatch, Port,
    Profile, Protocol, ProtocolHint, ResponseClass, RetryBudget, Route, Service, ServiceRef,
    Snapshot, SplitBackend, default_cluster_networks,
};
pub use self::registry::{DEFAULT_LEASE, MAX_LEASE, MIN_LEASE, Registration, Registry};

/// A source of catalog snapshots.
///
/// ```
/// use std::sync::Arc;
/// use mesh_control::catalog::{Catalog, Snapshot};
/// use tokio::sync::watch;
///
/// /// A catalog that never changes, e.g. for tests.
/// #[derive(Debug)]
/// struct Fixed(watch::Sender<Arc<Snapshot>>);
///
/// impl Catalog for Fixed {
///     fn snapshots(&self) -> watch::Receiver<Arc<Snapshot>> {
///         self.0.subscribe()
///     }
/// }
///
/// let fixed = Fixed(watch::channel(Arc::new(Snapshot::default())).0);
/// assert!(fixed.snapshots().borrow().services.is_empty());
/// assert!(fixed.registry().is_none());
/// ```
pub trait Catalog: Send + Sync + std::fmt::Debug + 'static {
    /// The current snapshot, and every later one.
    fn snapshots(&self) -> watch::Receiver<Arc<Snapshot>>;

    /// Where proxies register their endpoints, if this backend takes registrations (the local
    /// one does; a Kubernetes one discovers endpoints instead).
    fn registry(&self) -> Option<&Registry> {
        None
    }
}
