use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use futures_util::Stream;
use tokio::sync::mpsc;

use super::event::TapRequest;
use super::filter::RequestView;
use super::inflight::RequestTap;
use super::{Filter, TapEvent, TapId, TapMeta};
use crate::classify::Classifier;

/// The tap registry: where subscribers register and tap layers look for them. Cheap to clone;
/// clones share the subscribers.
///
/// One per proxy (or per embedding service): every [`TapLayer`](super::TapLayer) built from
/// its clones reports to the same subscribers and numbers requests in one sequence.
#[derive(Clone)]
pub struct Tap {
    registry: Arc<Registry>,
}

/// A subscriber's stream of [`TapEvent`]s. Dropping it unsubscribes.
///
/// It ends (`next` returns `None`) once its limit of requests has been reached and those
/// requests have ended, or once every clone of its [`Tap`] is gone and the requests in flight
/// have ended.
pub struct Subscription {
    rx: mpsc::Receiver<TapEvent>,
    counters: Arc<Counters>,
    registry: Weak<Registry>,
    key: u64,
    limit: Option<usize>,
}

struct Registry {
    /// How many subscribers are registered: the one load the request path makes.
    active: AtomicUsize,
    /// Replaced whole when a subscriber comes or goes; the request path reads it lock-free.
    subscribers: ArcSwap<Vec<Arc<Subscriber>>>,
    /// Serializes the writers of `subscribers` and `active`.
    writer: Mutex<()>,
    base: u32,
    next_stream: AtomicU64,
    next_key: AtomicU64,
    dropped: Arc<AtomicU64>,
}

/// A registered subscription, as tapped requests see it.
pub(super) struct Subscriber {
    key: u64,
    filter: Filter,
    limit: Option<usize>,
    tx: mpsc::Sender<TapEvent>,
    counters: Arc<Counters>,
    total_dropped: Arc<AtomicU64>,
}

#[derive(Debug, Default)]
struct Counters {
    matched: AtomicUsize,
    dropped: AtomicU64,
}

enum Claim {
    No,
    Yes,
    Last,
}

// === impl Tap ===

impl Tap {
    /// A registry with no subscribers and a random id base (as Linkerd randomizes it, so ids
    /// from different proxies seldom collide).
    pub fn new() -> Self {
        Self::with_base(rand::random())
    }

    /// A registry whose request ids are `base:0`, `base:1`, ...
    pub fn with_base(base: u32) -> Self {
        Self {
            registry: Arc::new(Registry {
                active: AtomicUsize::new(0),
                subscribers: ArcSwap::default(),
                writer: Mutex::new(()),
                base,
                next_stream: AtomicU64::new(0),
                next_key: AtomicU64::new(0),
                dropped: Arc::default(),
            }),
        }
    }

    /// Subscribes to the requests that match `filter`: the first `limit` of them (all of them
    /// when `None`, as long as the subscription lives).
    ///
    /// Up to `capacity` events (at least 1, at most tokio's `Semaphore::MAX_PERMITS`; the queue
    /// grows in blocks as it fills) wait for the subscriber; when the subscriber does
    /// not keep up, further events are dropped and counted
    /// ([`Subscription::dropped`], [`Tap::dropped_total`]) rather than slowing requests down.
    /// A request takes three events (request, response head, response end).
    ///
    /// A limit of 0 gives a subscription that has already ended.
    pub fn subscribe(
        &self,
        filter: Filter,
        limit: impl Into<Option<usize>>,
        capacity: usize,
    ) -> Subscription {
        let limit = limit.into();
        let capacity = capacity.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        let (tx, rx) = mpsc::channel(capacity);
        let counters = Arc::new(Counters::default());
        let key = self.registry.next_key.fetch_add(1, Ordering::Relaxed);
        if limit != Some(0) {
            self.registry.add(Arc::new(Subscriber {
                key,
                filter,
                limit,
                tx,
                counters: counters.clone(),
                total_dropped: self.registry.dropped.clone(),
            }));
        }
        Subscription {
            rx,
            counters,
            registry: Arc::downgrade(&self.registry),
            key,
            limit,
        }
    }

    /// How many subscriptions currently match new requests (ended and dropped ones do not).
    pub fn subscribers(&self) -> usize {
        self.registry.active.load(Ordering::Relaxed)
    }

    /// How many events were dropped, over all subscriptions, because their subscriber was
    /// slow.
    pub fn dropped_total(&self) -> u64 {
        self.registry.dropped.load(Ordering::Relaxed)
    }

    /// The base of this registry's request ids.
    pub fn base(&self) -> u32 {
        self.registry.base
    }

    /// Starts tapping `req` if a subscriber wants it. When nobody subscribes this is one
    /// relaxed load.
    #[inline]
    pub(super) fn start<B>(
        &self,
        req: &http::Request<B>,
        meta: &Arc<TapMeta>,
        classifier: &Classifier,
    ) -> Option<RequestTap> {
        if self.registry.active.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.start_matching(req, meta, classifier)
    }

    #[inline(never)]
    fn start_matching<B>(
        &self,
        req: &http::Request<B>,
        meta: &Arc<TapMeta>,
        classifier: &Classifier,
    ) -> Option<RequestTap> {
        let view = RequestView::new(req, meta);
        let subscribers = self.registry.subscribers.load();
        let mut matched = Vec::new();
        for sub in subscribers.iter() {
            if !sub.filter.matches_view(&view) {
                continue;
            }
            match sub.claim() {
                Claim::No => continue,
                Claim::Yes => {}
                // Its last request: stop matching new ones now.
                Claim::Last => self.registry.remove(sub.key),
            }
            matched.push(sub.clone());
        }
        if matched.is_empty() {
            return None;
        }
        let stream = self.registry.next_stream.fetch_add(1, Ordering::Relaxed);
        let id = TapId::new(self.registry.base, stream);
        let request = Arc::new(TapRequest::new(id, &view, meta.clone()));
        Some(RequestTap::start(request, matched, classifier.clone()))
    }
}

impl Default for Tap {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Tap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tap")
            .field("base", &self.registry.base)
            .field("subscribers", &self.subscribers())
            .field("dropped_total", &self.dropped_total())
            .finish()
    }
}

// === impl Registry ===

impl Registry {
    fn add(&self, sub: Arc<Subscriber>) {
        self.update(|subs| Some(subs.iter().cloned().chain(Some(sub)).collect()));
    }

    fn remove(&self, key: u64) {
        self.update(|subs| {
            subs.iter()
                .any(|s| s.key == key)
                .then(|| subs.iter().filter(|s| s.key != key).cloned().collect())
        });
    }

    /// Replaces the subscribers with what `f` makes of them (if anything). Subscribing and
    /// unsubscribing take the writer lock; the request path takes it only when a subscription
    /// reaches its limit.
    fn update(&self, f: impl FnOnce(&[Arc<Subscriber>]) -> Option<Vec<Arc<Subscriber>>>) {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(next) = f(&self.subscribers.load()) {
            self.active.store(next.len(), Ordering::Relaxed);
            self.subscribers.store(Arc::new(next));
        }
    }
}

// === impl Subscriber ===

impl Subscriber {
    /// Counts a matching request against the limit.
    fn claim(&self) -> Claim {
        let matched = &self.counters.matched;
        let Some(limit) = self.limit else {
            matched.fetch_add(1, Ordering::Relaxed);
            return Claim::Yes;
        };
        match matched.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < limit).then_some(n + 1)
        }) {
            Ok(n) if n + 1 == limit => Claim::Last,
            Ok(_) => Claim::Yes,
            Err(_) => Claim::No,
        }
    }

    /// Sends without waiting: a full queue drops the event (and counts it); a closed one (the
    /// subscriber is gone) drops it silently.
    pub(super) fn send(&self, event: TapEvent) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(event) {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            self.total_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber")
            .field("key", &self.key)
            .field("filter", &self.filter)
            .field("limit", &self.limit)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

// === impl Subscription ===

impl Subscription {
    /// The next event; `None` once the subscription has ended.
    pub async fn next(&mut self) -> Option<TapEvent> {
        self.rx.recv().await
    }

    /// The next event if one is waiting, without waiting.
    pub fn try_next(&mut self) -> Option<TapEvent> {
        self.rx.try_recv().ok()
    }

    /// How many events were dropped because this subscriber did not keep up.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// How many requests have matched so far (at most the limit).
    pub fn matched(&self) -> usize {
        self.counters.matched.load(Ordering::Relaxed)
    }

    /// The limit of requests, if any.
    pub const fn limit(&self) -> Option<usize> {
        self.limit
    }
}

impl Stream for Subscription {
    type Item = TapEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<TapEvent>> {
        self.get_mut().rx.poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            registry.remove(self.key);
        }
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("limit", &self.limit)
            .field("matched", &self.matched())
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}
