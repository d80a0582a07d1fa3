use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower::retry::budget::{Budget, TpsBudget};

/// How many retries may be added to the original requests. Cheap to clone; clones share the
/// balance (one budget per route or per target, not per request).
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<TpsBudget>,
    ratio: f32,
    min_per_second: u32,
    ttl: Duration,
}

/// Budget parameters out of range.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("invalid retry budget: {0}")]
pub struct InvalidBudget(&'static str);

impl Default for RetryBudget {
    /// Linkerd's default: retries up to 20% of requests, at least 10 per second, over 10 s.
    fn default() -> Self {
        match Self::new(0.2, 10, Duration::from_secs(10)) {
            Ok(b) => b,
            Err(e) => unreachable_budget(e),
        }
    }
}

#[cold]
fn unreachable_budget(e: InvalidBudget) -> RetryBudget {
    panic!("the default retry budget is valid: {e}")
}

impl RetryBudget {
    /// Retries may add `ratio` (0 to 10) of the requests, plus `min_per_second`, counted over
    /// `ttl` (1 s to 60 s).
    pub fn new(ratio: f32, min_per_second: u32, ttl: Duration) -> Result<Self, InvalidBudget> {
        if !(0.0..=10.0).contains(&ratio) {
            return Err(InvalidBudget("the retry ratio must be between 0 and 10"));
        }
        if ttl < Duration::from_secs(1) || ttl > Duration::from_secs(60) {
            return Err(InvalidBudget(
                "the budget window must be between 1 s and 60 s",
            ));
        }
        if min_per_second > 1_000_000 {
            return Err(InvalidBudget("at most 1,000,000 retries per second"));
        }
        Ok(Self {
            inner: Arc::new(TpsBudget::new(ttl, min_per_second, ratio)),
            ratio,
            min_per_second,
            ttl,
        })
    }

    pub(crate) fn deposit(&self) {
        self.inner.deposit();
    }

    pub(crate) fn withdraw(&self) -> bool {
        self.inner.withdraw()
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("ratio", &self.ratio)
            .field("min_per_second", &self.min_per_second)
            .field("ttl", &self.ttl)
            .finish()
    }
}
