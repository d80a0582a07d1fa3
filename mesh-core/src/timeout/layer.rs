use std::time::Duration;

use tower_layer::Layer;

use super::{Timeout, TimeoutScope};

/// Applies a timeout to each request. See the [module docs](super).
#[derive(Clone, Copy, Debug)]
pub struct TimeoutLayer {
    default: Option<Duration>,
    scope: TimeoutScope,
}

impl TimeoutLayer {
    /// Requests time out after `timeout` unless a [`RouteTimeout`](super::RouteTimeout) says
    /// otherwise.
    pub const fn new(timeout: Duration) -> Self {
        Self {
            default: Some(timeout),
            scope: TimeoutScope::Request,
        }
    }

    /// Only requests carrying a [`RouteTimeout`](super::RouteTimeout) time out (or, with
    /// [`per_attempt`](Self::per_attempt), an [`AttemptTimeout`](super::AttemptTimeout)).
    pub const fn per_route() -> Self {
        Self {
            default: None,
            scope: TimeoutScope::Request,
        }
    }

    /// Marks the timeout as bounding one attempt of a retried request (its error says so and
    /// retry policies may retry it). Default is a whole-request timeout.
    pub const fn per_attempt(mut self) -> Self {
        self.scope = TimeoutScope::Attempt;
        self
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout::new(inner, self.default, self.scope)
    }
}
