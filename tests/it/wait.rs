//! Waiting in tests: poll a condition with a deadline, never a bare sleep (blocking and async).

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

/// Polls `f` every 200 ms until it returns `Some`; fails the test after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
