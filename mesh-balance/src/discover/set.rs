use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;
use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;

use super::Update;
use crate::Endpoint;

type Snapshot = Arc<BTreeMap<SocketAddr, Endpoint>>;

/// A live set of endpoints: a handle edits it, subscribers stream the changes.
///
/// What the control plane's `Get` stream feeds: `add` for its `Add` updates, `remove` for its
/// `Remove`, `reset` after a reconnect (the stream starts over) and `clear` for `NoEndpoints`.
/// Every [`Subscription`] first reports the whole set, then what changed; edits made between two
/// polls are coalesced (an endpoint added then removed in between is never reported). Cheap to
/// clone; clones edit the same set.
///
/// ```
/// use mesh_balance::discover::EndpointSet;
/// use mesh_balance::Endpoint;
///
/// let set = EndpointSet::new();
/// let a = Endpoint::new(([10, 0, 0, 1], 80).into());
/// let b = Endpoint::new(([10, 0, 0, 2], 80).into());
/// set.add([a.clone(), b.clone()]);
/// set.remove([a.addr()]);
/// assert_eq!(set.endpoints(), vec![b.clone()]);
/// set.reset([a.clone()]);
/// assert_eq!(set.endpoints(), vec![a]);
/// ```
#[derive(Clone)]
pub struct EndpointSet {
    tx: Arc<watch::Sender<Snapshot>>,
}

/// The changes of an [`EndpointSet`], as a `Discover` stream. Made by
/// [`EndpointSet::subscribe`].
///
/// When every handle of the set is dropped, the subscription keeps its last endpoints and
/// reports nothing more.
pub struct Subscription {
    updates: Option<WatchStream<Snapshot>>,
    seen: Snapshot,
    queue: VecDeque<Update>,
}

// === impl EndpointSet ===

impl EndpointSet {
    /// An empty set.
    pub fn new() -> Self {
        Self {
            tx: Arc::new(watch::Sender::new(Snapshot::default())),
        }
    }

    /// Adds endpoints, replacing any at the same address.
    pub fn add(&self, endpoints: impl IntoIterator<Item = Endpoint>) {
        let mut endpoints = endpoints.into_iter().peekable();
        if endpoints.peek().is_none() {
            return;
        }
        self.tx.send_modify(|set| {
            let set = Arc::make_mut(set);
            for ep in endpoints {
                set.insert(ep.addr(), ep);
            }
        });
    }

    /// Removes the endpoints at these addresses (unknown ones are ignored).
    pub fn remove(&self, addrs: impl IntoIterator<Item = SocketAddr>) {
        self.tx.send_if_modified(|set| {
            let mut changed = false;
            for addr in addrs {
                if set.contains_key(&addr) {
                    changed |= Arc::make_mut(set).remove(&addr).is_some();
                }
            }
            changed
        });
    }

    /// Replaces the whole set.
    pub fn reset(&self, endpoints: impl IntoIterator<Item = Endpoint>) {
        let next: BTreeMap<_, _> = endpoints.into_iter().map(|ep| (ep.addr(), ep)).collect();
        self.tx.send_if_modified(|set| {
            if **set == next {
                return false;
            }
            *set = Arc::new(next);
            true
        });
    }

    /// Removes every endpoint.
    pub fn clear(&self) {
        self.reset([]);
    }

    /// The endpoints now, sorted by address.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.tx.borrow().values().cloned().collect()
    }

    /// How many endpoints there are.
    pub fn len(&self) -> usize {
        self.tx.borrow().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.tx.borrow().is_empty()
    }

    /// A stream of the set's changes, starting with an `Insert` for every endpoint in it now.
    pub fn subscribe(&self) -> Subscription {
        Subscription {
            updates: Some(WatchStream::new(self.tx.subscribe())),
            seen: Snapshot::default(),
            queue: VecDeque::new(),
        }
    }
}

impl Default for EndpointSet {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for EndpointSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.tx.borrow().keys()).finish()
    }
}

// === impl Subscription ===

impl Subscription {
    fn diff(&mut self, next: Snapshot) {
        for (addr, ep) in next.iter() {
            if self.seen.get(addr) != Some(ep) {
                self.queue.push_back(Update::Insert(*addr, ep.clone()));
            }
        }
        for addr in self.seen.keys() {
            if !next.contains_key(addr) {
                self.queue.push_back(Update::Remove(*addr));
            }
        }
        self.seen = next;
    }
}

impl Stream for Subscription {
    type Item = Result<Update, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(update) = self.queue.pop_front() {
                return Poll::Ready(Some(Ok(update)));
            }
            let Some(updates) = self.updates.as_mut() else {
                return Poll::Pending;
            };
            match Pin::new(updates).poll_next(cx) {
                Poll::Ready(Some(next)) => self.diff(next),
                Poll::Ready(None) => {
                    // Every handle is gone: keep what we have.
                    self.updates = None;
                    return Poll::Pending;
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("seen", &self.seen.len())
            .field("queued", &self.queue.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn ep(last: u8) -> Endpoint {
        Endpoint::new(([10, 0, 0, last], 80).into())
    }

    fn key(u: &Update) -> (char, SocketAddr) {
        match u {
            Update::Insert(a, _) => ('+', *a),
            Update::Remove(a) => ('-', *a),
        }
    }

    async fn drain(s: &mut Subscription) -> Vec<(char, SocketAddr)> {
        let mut out = Vec::new();
        while let Ok(Some(Ok(u))) =
            tokio::time::timeout(std::time::Duration::from_millis(10), s.next()).await
        {
            out.push(key(&u));
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn reports_set_then_changes() {
        let set = EndpointSet::new();
        set.add([ep(1), ep(2)]);
        let mut sub = set.subscribe();
        assert_eq!(
            drain(&mut sub).await,
            [('+', ep(1).addr()), ('+', ep(2).addr())]
        );

        set.remove([ep(1).addr(), ep(9).addr()]);
        set.add([ep(3)]);
        assert_eq!(
            drain(&mut sub).await,
            [('+', ep(3).addr()), ('-', ep(1).addr())]
        );

        // Same endpoint again: nothing to report. Changed metadata: replaced.
        set.add([ep(3)]);
        set.add([ep(2).with_label("zone", "b")]);
        assert_eq!(drain(&mut sub).await, [('+', ep(2).addr())]);

        // Added and removed between two polls: coalesced away.
        set.add([ep(4)]);
        set.remove([ep(4).addr()]);
        set.reset([ep(3)]);
        assert_eq!(drain(&mut sub).await, [('-', ep(2).addr())]);

        // A late subscriber sees the set as it is.
        let mut late = set.subscribe();
        assert_eq!(drain(&mut late).await, [('+', ep(3).addr())]);

        // Handles gone: the subscription keeps quiet, it does not end.
        drop(set);
        assert_eq!(drain(&mut sub).await, []);
    }
}
