use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use mesh_core::BoxError;
use pin_project_lite::pin_project;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use tower_service::Service;

use super::SplitHandle;
use crate::error::{Reason, Unavailable};

/// Sends each request to a backend drawn by weight. See the [module docs](super).
///
/// Cheap to clone when the backends are (a [`Balancer`](crate::Balancer) is); each clone draws
/// with its own random generator and follows the same [`SplitHandle`].
pub struct Split<S> {
    name: Arc<str>,
    backends: Vec<S>,
    weights: watch::Receiver<Arc<[u32]>>,
    /// Cumulative weights: backend `i` is drawn for `x` in `cumulative[i-1]..cumulative[i]`.
    cumulative: Vec<u64>,
    rng: SmallRng,
    chosen: Option<usize>,
}

pin_project! {
    /// The response of a [`Split`]: the chosen backend's, or [`Unavailable`] when every weight is
    /// 0.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Backend { #[pin] inner: F },
        Failed { error: Option<BoxError> },
    }
}

// === impl Split ===

impl<S> Split<S> {
    /// A split named `name` (for errors) over `backends`, each `(name, weight, service)`.
    pub fn new<K: Into<Arc<str>>>(
        name: impl Into<Arc<str>>,
        backends: impl IntoIterator<Item = (K, u32, S)>,
    ) -> (Self, SplitHandle) {
        let mut names = Vec::new();
        let mut weights = Vec::new();
        let mut services = Vec::new();
        for (n, w, s) in backends {
            names.push(n.into());
            weights.push(w);
            services.push(s);
        }
        let (tx, rx) = watch::channel::<Arc<[u32]>>(weights.into());
        let mut split = Self {
            name: name.into(),
            backends: services,
            weights: rx,
            cumulative: Vec::new(),
            rng: SmallRng::from_rng(&mut rand::rng()),
            chosen: None,
        };
        split.refresh();
        let handle = SplitHandle {
            names: names.into(),
            tx: Arc::new(tx),
        };
        (split, handle)
    }

    /// The backends, in the order given.
    pub fn backends(&self) -> &[S] {
        &self.backends
    }

    fn refresh(&mut self) {
        let weights = self.weights.borrow_and_update().clone();
        self.cumulative.clear();
        let mut sum = 0u64;
        for w in weights.iter() {
            sum += u64::from(*w);
            self.cumulative.push(sum);
        }
    }

    fn draw(&mut self) -> Option<usize> {
        if self.weights.has_changed().unwrap_or(false) {
            self.refresh();
        }
        let total = self.cumulative.last().copied().unwrap_or(0);
        if total == 0 {
            return None;
        }
        let x = self.rng.random_range(0..total);
        Some(self.cumulative.partition_point(|&c| c <= x))
    }
}

impl<S, Req> Service<Req> for Split<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let i = match self.chosen {
            Some(i) => i,
            None => match self.draw() {
                Some(i) => {
                    self.chosen = Some(i);
                    i
                }
                None => return Poll::Ready(Ok(())),
            },
        };
        self.backends[i].poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.chosen.take() {
            Some(i) => ResponseFuture {
                state: State::Backend {
                    inner: self.backends[i].call(req),
                },
            },
            // Every weight was 0 when `poll_ready` drew.
            None => ResponseFuture {
                state: State::Failed {
                    error: Some(Box::new(Unavailable::new(
                        self.name.clone(),
                        Reason::NoBackends,
                    ))),
                },
            },
        }
    }
}

impl<S: Clone> Clone for Split<S> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            backends: self.backends.clone(),
            weights: self.weights.clone(),
            cumulative: self.cumulative.clone(),
            rng: SmallRng::from_rng(&mut rand::rng()),
            chosen: None,
        }
    }
}

impl<S> fmt::Debug for Split<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Split")
            .field("name", &self.name)
            .field("backends", &self.backends.len())
            .field("weights", &*self.weights.borrow())
            .finish()
    }
}

// === impl ResponseFuture ===

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Backend { inner } => inner.poll(cx).map_err(Into::into),
            StateProj::Failed { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| "polled after completion".into()))),
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::split::UnknownBackend;
    use tower::{ServiceExt, service_fn};

    fn backend(i: usize) -> impl Service<(), Response = usize, Error = BoxError> + Clone {
        service_fn(move |()| async move { Ok::<_, BoxError>(i) })
    }

    #[tokio::test]
    async fn draws_by_weight_and_follows_changes() {
        let (mut split, handle) = Split::new("t", [("a", 1, backend(0)), ("b", 3, backend(1))]);
        let mut counts = [0usize; 2];
        for _ in 0..4_000 {
            counts[split.ready().await.unwrap().call(()).await.unwrap()] += 1;
        }
        // 25% +- 3.75% (5.5 sigma).
        assert!((850..=1150).contains(&counts[0]), "{counts:?}");

        handle.set_weights([("a", 0), ("b", 5)]).unwrap();
        for _ in 0..200 {
            assert_eq!(split.ready().await.unwrap().call(()).await.unwrap(), 1);
        }
        assert_eq!(handle.set_weight("c", 1), Err(UnknownBackend("c".into())));
        assert_eq!(handle.weights()[1].1, 5);

        handle.set_weight("b", 0).unwrap();
        let err = split.ready().await.unwrap().call(()).await.unwrap_err();
        let u = err.downcast_ref::<Unavailable>().expect("unavailable");
        assert_eq!(u.reason(), Reason::NoBackends);

        // A clone follows the same handle.
        let mut clone = split.clone();
        handle.set_weight("a", 1).unwrap();
        assert_eq!(clone.ready().await.unwrap().call(()).await.unwrap(), 0);
    }
}
