//! Waiting in blocking tests: poll a condition with a deadline, never a bare sleep.

use std::time::Duration;

/// Polls `f` every `every` until it returns `Some`, or returns `None` after `limit`.
// Blocking test code outside any runtime: the wall clock is the right clock here.
#[allow(clippy::disallowed_types, clippy::disallowed_methods)]
pub fn try_until<T>(
    limit: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// Polls `f` until it returns `Some`; fails the test after `limit`.
pub fn until<T>(limit: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
    try_until(limit, Duration::from_millis(100), f)
        .unwrap_or_else(|| panic!("timed out after {limit:?} waiting for {what}"))
}
