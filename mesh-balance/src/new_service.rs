//! Building a service for a target.

/// Builds a service for a target: synchronous and infallible, like Linkerd's `NewService`.
///
/// The balancer asks it for one service per [`Endpoint`](crate::Endpoint) discovery reports
/// (and again when that service fails to become ready); the [cache](crate::cache) asks it for one
/// balancer per target. Connecting, if any, happens later in the service's `poll_ready` or
/// `call`, never here. Any `Fn(T) -> S` is a `NewService<T>`.
///
/// ```
/// use mesh_balance::{Endpoint, NewService};
///
/// let new_addr = |ep: Endpoint| ep.addr().to_string();
/// let ep = Endpoint::new(([127, 0, 0, 1], 8080).into());
/// assert_eq!(new_addr.new_service(ep), "127.0.0.1:8080");
/// ```
pub trait NewService<T> {
    /// The service built.
    type Service;

    /// Builds the service for `target`.
    fn new_service(&self, target: T) -> Self::Service;
}

impl<T, S, F> NewService<T> for F
where
    F: Fn(T) -> S,
{
    type Service = S;

    fn new_service(&self, target: T) -> S {
        self(target)
    }
}
