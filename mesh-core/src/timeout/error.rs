use std::fmt;
use std::time::Duration;

use super::TimeoutScope;

/// The response head did not arrive in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseTimeout {
    after: Duration,
    scope: TimeoutScope,
}

impl ResponseTimeout {
    pub(crate) const fn new(after: Duration, scope: TimeoutScope) -> Self {
        Self { after, scope }
    }

    /// The bound that fired.
    pub const fn after(&self) -> Duration {
        self.after
    }

    /// Whether it bounded the whole request or one attempt.
    pub const fn scope(&self) -> TimeoutScope {
        self.scope
    }
}

impl fmt::Display for ResponseTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.scope {
            TimeoutScope::Request => "request",
            TimeoutScope::Attempt => "attempt",
        };
        write!(f, "{what} timed out after {:?}", self.after)
    }
}

impl std::error::Error for ResponseTimeout {}
