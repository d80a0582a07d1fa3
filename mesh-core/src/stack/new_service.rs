//! Building a service for a target.

/// Builds a service for a target: synchronous and infallible, like Linkerd's `NewService`.
///
/// A balancer asks it for one service per endpoint discovery reports (and again when that
/// service fails to become ready); the [cache](super::cache) asks it for one stack per target.
/// Connecting, if any, happens later in the service's `poll_ready` or `call`, never here. Any
/// `Fn(T) -> S` is a `NewService<T>`.
///
/// ```
/// use mesh_core::stack::NewService;
/// use std::net::SocketAddr;
///
/// let new_addr = |addr: SocketAddr| addr.to_string();
/// assert_eq!(new_addr.new_service(([127, 0, 0, 1], 8080).into()), "127.0.0.1:8080");
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
