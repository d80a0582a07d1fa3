//! Exponential backoff with jitter.

use std::time::Duration;

use rand::Rng;

/// An exponential backoff: attempt `n` waits `min * 2^n`, capped at `max`, plus a random jitter
/// of up to `jitter` times that (so peers that failed together do not retry together).
///
/// ```
/// use mesh_core::backoff::Backoff;
/// use std::time::Duration;
///
/// let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60)).with_jitter(0.0);
/// assert_eq!(b.delay(0), Duration::from_secs(1));
/// assert_eq!(b.delay(3), Duration::from_secs(8));
/// assert_eq!(b.delay(30), Duration::from_secs(60));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    jitter: f64,
}

impl Backoff {
    /// From `min` to `max` (`max` is raised to `min` if lower), with a jitter ratio of 0.5.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            jitter: 0.5,
        }
    }

    /// Sets the jitter ratio, clamped to `0.0..=1.0`. Default is 0.5.
    pub fn with_jitter(mut self, ratio: f64) -> Self {
        self.jitter = if ratio.is_finite() {
            ratio.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// The shortest wait.
    pub fn min(&self) -> Duration {
        self.min
    }

    /// The longest wait before jitter.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The jitter ratio.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// How long to wait before attempt `attempt` (0-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self
            .min
            .checked_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(self.max)
            .min(self.max);
        if self.jitter == 0.0 || base.is_zero() {
            return base;
        }
        let extra = base.mul_f64(self.jitter * rand::rng().random::<f64>());
        base.saturating_add(extra)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_jitters() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        for n in 0..40 {
            let base = Duration::from_millis(100)
                .saturating_mul(2u32.saturating_pow(n))
                .min(Duration::from_secs(1));
            let d = b.delay(n);
            assert!(
                d >= base && d <= base.mul_f64(1.5),
                "{n}: {d:?} vs {base:?}"
            );
        }
        let flat =
            Backoff::new(Duration::from_secs(2), Duration::from_secs(1)).with_jitter(f64::NAN);
        assert_eq!(flat.max(), Duration::from_secs(2));
        assert_eq!(flat.delay(5), Duration::from_secs(2));
    }
}
