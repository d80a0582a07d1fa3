//! Weighted traffic splits: each request goes to a backend chosen by weight.
//!
//! The TrafficSplit / HTTPRoute `backendRefs` idea: a logical service's traffic is divided among
//! backends (usually one [`Balancer`](crate::Balancer) each, e.g. `web-v1` and `web-v2`) in
//! proportion to their weights. Weights change live through a [`SplitHandle`]: requests already
//! sent carry on where they went, new ones follow the new weights. A weight of 0 takes a backend
//! out; when every weight is 0, requests fail with [`Reason::NoBackends`](crate::Reason).
//!
//! The backend is drawn in `poll_ready`, and that backend's readiness is what the split reports
//! (it waits for the drawn backend rather than drawing again, so a busy backend does not lose its
//! share). The set of backends is fixed when the split is built; rebuild the split to add one.
//!
//! ```
//! use mesh_balance::Split;
//! use tower::{ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), mesh_balance::BoxError> {
//! let backend = |name: &'static str| service_fn(move |_: ()| async move { Ok::<_, mesh_balance::BoxError>(name) });
//! let (split, handle) = Split::new("web", [("web-v1", 9, backend("v1")), ("web-v2", 1, backend("v2"))]);
//! handle.set_weight("web-v1", 0)?; // all traffic to v2 from now on
//! assert_eq!(split.oneshot(()).await?, "v2");
//! # Ok(()) }
//! ```

mod handle;
mod service;

pub use self::handle::{SplitHandle, UnknownBackend};
pub use self::service::{ResponseFuture, Split};
