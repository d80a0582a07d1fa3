use std::fmt;
use std::sync::Arc;

use tokio::sync::watch;

/// Changes a [`Split`](super::Split)'s weights live. Cheap to clone.
#[derive(Clone)]
pub struct SplitHandle {
    pub(super) names: Arc<[Arc<str>]>,
    pub(super) tx: Arc<watch::Sender<Arc<[u32]>>>,
}

/// A weight was set for a backend the split does not have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownBackend(pub String);

impl SplitHandle {
    /// Sets one backend's weight.
    pub fn set_weight(&self, backend: &str, weight: u32) -> Result<(), UnknownBackend> {
        self.set_weights([(backend, weight)])
    }

    /// Sets several weights at once (requests see all of them change together); backends not
    /// named keep theirs. Nothing changes if a name is unknown.
    pub fn set_weights<'a>(
        &self,
        weights: impl IntoIterator<Item = (&'a str, u32)>,
    ) -> Result<(), UnknownBackend> {
        let mut next = self.tx.borrow().to_vec();
        for (name, weight) in weights {
            let i = self
                .names
                .iter()
                .position(|n| **n == *name)
                .ok_or_else(|| UnknownBackend(name.to_owned()))?;
            next[i] = weight;
        }
        self.tx.send_if_modified(|w| {
            if **w == *next {
                return false;
            }
            *w = next.into();
            true
        });
        Ok(())
    }

    /// Every backend with its weight now, in the order given to the split.
    pub fn weights(&self) -> Vec<(Arc<str>, u32)> {
        let w = self.tx.borrow();
        self.names.iter().cloned().zip(w.iter().copied()).collect()
    }
}

impl fmt::Debug for SplitHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.weights()).finish()
    }
}

impl fmt::Display for UnknownBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the split has no backend named {:?}", self.0)
    }
}

impl std::error::Error for UnknownBackend {}
