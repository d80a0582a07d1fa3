use std::sync::Arc;

use arc_swap::ArcSwap;

/// A small copy-on-write map for per-target metric handles: lock-free reads on the request path,
/// a copy on the rare first use of a key (a new status code, say).
pub(crate) struct HandleCache<K, V> {
    entries: ArcSwap<Vec<(K, V)>>,
}

impl<K: PartialEq + Clone, V: Clone> HandleCache<K, V> {
    pub(crate) fn new() -> Self {
        Self {
            entries: ArcSwap::from_pointee(Vec::new()),
        }
    }

    pub(crate) fn get_or_insert_with(&self, key: &K, make: impl FnOnce() -> V) -> V {
        if let Some((_, v)) = self.entries.load().iter().find(|(k, _)| k == key) {
            return v.clone();
        }
        let v = make();
        self.entries.rcu(|cur| {
            if cur.iter().any(|(k, _)| k == key) {
                return Arc::clone(cur);
            }
            let mut next = Vec::with_capacity(cur.len() + 1);
            next.extend(cur.iter().cloned());
            next.push((key.clone(), v.clone()));
            Arc::new(next)
        });
        v
    }
}

impl<K, V> std::fmt::Debug for HandleCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandleCache")
            .field("len", &self.entries.load().len())
            .finish()
    }
}
