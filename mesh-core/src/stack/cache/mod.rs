//! A per-target cache of services (stacks, balancers) that evicts the idle ones.
//!
//! A proxy builds one balancer per target it talks to. [`Cache::get`] builds it on first use
//! (with a [`NewService`]) and hands out [`Cached`] clones; while any clone is alive the entry is
//! in use. When the last one is dropped the entry turns idle, and an entry idle for longer than
//! the idle timeout is evicted (dropping a balancer stops its worker, its
//! discovery and its endpoints), so a proxy that talked to 10,000 targets yesterday does not hold
//! them today. Requests already sent finish: their futures do not hold the entry.
//!
//! A background task sweeps every quarter of the idle timeout (at most every 30 s), so an entry
//! goes at most that much after its timeout. `get` takes a lock: call it when a target's stack is
//! built (per connection or per route), not per request, and keep the `Cached` service.
//!
//! ```
//! use mesh_core::stack::cache::Cache;
//! use std::time::Duration;
//! use tower::service_fn;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let cache = Cache::new(
//!     |target: String| service_fn(move |()| { let t = target.clone(); async move { Ok::<_, std::convert::Infallible>(t) } }),
//!     Duration::from_secs(5),
//! );
//! let svc = cache.get("web.emojivoto:80".to_string());
//! assert_eq!(cache.len(), 1);
//! drop(svc);
//! tokio::time::sleep(Duration::from_secs(7)).await;
//! assert_eq!(cache.len(), 0);
//! # }
//! ```

mod service;

pub use self::service::Cached;

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::NewService;

/// Services per target, built on first use, evicted when idle. See the [module docs](self).
pub struct Cache<T, N: NewService<T>> {
    inner: Arc<Inner<T, N>>,
}

struct Inner<T, N: NewService<T>> {
    new: N,
    idle: Duration,
    epoch: Instant,
    entries: Mutex<HashMap<T, Entry<N::Service>>>,
}

struct Entry<S> {
    svc: S,
    token: Weak<Token>,
    idle_since: Arc<AtomicU64>,
}

/// `idle_since` while a token is alive (or its drop has not yet recorded the time).
const IN_USE: u64 = u64::MAX;

/// Held by every [`Cached`] clone; its drop marks the entry idle.
pub(crate) struct Token {
    idle_since: Arc<AtomicU64>,
    epoch: Instant,
}

// === impl Cache ===

impl<T, N> Cache<T, N>
where
    T: Clone + Eq + Hash + Send + 'static,
    N: NewService<T> + Send + Sync + 'static,
    N::Service: Clone + Send + 'static,
{
    /// A cache that builds services with `new` and evicts them after `idle` without a user.
    /// Spawns the sweeping task, so it must be called within a Tokio runtime; the task ends
    /// when the last clone of the cache is dropped.
    pub fn new(new: N, idle: Duration) -> Self {
        let inner = Arc::new(Inner {
            new,
            idle,
            epoch: Instant::now(),
            entries: Mutex::default(),
        });
        let every = (idle / 4).clamp(Duration::from_millis(1), Duration::from_secs(30));
        tokio::spawn(sweep(Arc::downgrade(&inner), every));
        Self { inner }
    }

    /// The service for `target`, built now if the cache has none.
    pub fn get(&self, target: T) -> Cached<N::Service> {
        if let Some(hit) = self.inner.hit(&target) {
            return hit;
        }
        // Build outside the lock: building may be slow, or use the cache itself.
        let svc = self.inner.new.new_service(target.clone());
        let mut entries = self.inner.lock();
        if let Some(entry) = entries.get_mut(&target) {
            return self.inner.reuse(entry);
        }
        let idle_since = Arc::new(AtomicU64::new(IN_USE));
        let token = Arc::new(Token {
            idle_since: idle_since.clone(),
            epoch: self.inner.epoch,
        });
        entries.insert(
            target,
            Entry {
                svc: svc.clone(),
                token: Arc::downgrade(&token),
                idle_since,
            },
        );
        Cached::new(svc, token)
    }
}

impl<T, N: NewService<T>> Cache<T, N> {
    /// Entries now (in use or idle, not yet evicted).
    pub fn len(&self) -> usize {
        self.inner.lock().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        self.inner.idle
    }
}

impl<T, N: NewService<T>> Clone for Cache<T, N> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<T, N: NewService<T>> fmt::Debug for Cache<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("entries", &self.len())
            .field("idle_timeout", &self.inner.idle)
            .finish()
    }
}

// === impl Inner ===

impl<T, N: NewService<T>> Inner<T, N> {
    fn lock(&self) -> MutexGuard<'_, HashMap<T, Entry<N::Service>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn hit(&self, target: &T) -> Option<Cached<N::Service>>
    where
        T: Eq + Hash,
        N::Service: Clone,
    {
        let mut entries = self.lock();
        let entry = entries.get_mut(target)?;
        Some(self.reuse(entry))
    }

    fn reuse(&self, entry: &mut Entry<N::Service>) -> Cached<N::Service>
    where
        N::Service: Clone,
    {
        let token = match entry.token.upgrade() {
            Some(token) => token,
            None => {
                entry.idle_since.store(IN_USE, Ordering::Release);
                let token = Arc::new(Token {
                    idle_since: entry.idle_since.clone(),
                    epoch: self.epoch,
                });
                entry.token = Arc::downgrade(&token);
                token
            }
        };
        Cached::new(entry.svc.clone(), token)
    }

    /// Takes out the entries idle for longer than the timeout; the caller drops them outside
    /// the lock.
    fn sweep(&self) -> Vec<N::Service> {
        let now = nanos_since(self.epoch, Instant::now());
        let idle = u64::try_from(self.idle.as_nanos()).unwrap_or(u64::MAX);
        let mut entries = self.lock();
        let evicted: Vec<_> = entries
            .extract_if(|_, e| {
                let since = e.idle_since.load(Ordering::Acquire);
                e.token.strong_count() == 0 && since != IN_USE && now.saturating_sub(since) >= idle
            })
            .map(|(_, e)| e.svc)
            .collect();
        drop(entries);
        if !evicted.is_empty() {
            tracing::debug!(evicted = evicted.len(), "evicted idle targets");
        }
        evicted
    }
}

async fn sweep<T, N: NewService<T>>(inner: Weak<Inner<T, N>>, every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let evicted = inner.sweep();
        drop(inner);
        drop(evicted);
    }
}

fn nanos_since(epoch: Instant, t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
}

// === impl Token ===

impl Drop for Token {
    fn drop(&mut self) {
        self.idle_since
            .store(nanos_since(self.epoch, Instant::now()), Ordering::Release);
    }
}

#[cfg(test)]
mod tests;
