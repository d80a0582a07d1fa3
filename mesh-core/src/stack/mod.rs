//! The stack vocabulary: targets, their parameters, services built per target, and a cache of
//! them.
//!
//! Stacks in the mesh are built over small *target* types that say what a connection or a
//! request is for (an accepted connection, a logical service, an endpoint). A layer never names a
//! concrete target; it asks for a parameter through a `T: Param<P>` bound, so the same layer
//! serves the inbound and the outbound stacks and a user's own types.
//!
//! - [`Param`]: a target gives a layer the one value it needs.
//! - [`NewService`]: builds the service for a target (synchronously; connecting happens later).
//! - [`cache::Cache`]: one service per target, built on first use, evicted when idle; what a
//!   proxy keeps its per-destination stacks in.

pub mod cache;
mod new_service;

pub use self::new_service::NewService;

/// A target that can produce a parameter of type `P`.
///
/// Implement it for your target types; layers bound on it. `P` is usually a small newtype that
/// says what the value means in the mesh (an expected server identity, a port, a timeout).
///
/// ```
/// use mesh_core::stack::Param;
/// use std::time::Duration;
///
/// struct RequestTimeout(Duration);
/// struct Route { timeout: Duration }
///
/// impl Param<RequestTimeout> for Route {
///     fn param(&self) -> RequestTimeout { RequestTimeout(self.timeout) }
/// }
///
/// let route = Route { timeout: Duration::from_secs(1) };
/// let RequestTimeout(t) = route.param();
/// assert_eq!(t, Duration::from_secs(1));
/// ```
pub trait Param<P> {
    /// Produces the parameter.
    fn param(&self) -> P;
}

impl<P: Clone> Param<P> for P {
    fn param(&self) -> P {
        self.clone()
    }
}
