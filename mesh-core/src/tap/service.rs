use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body::Body;
use tower_service::Service;

use super::{ResponseFuture, Tap, TapBody, TapMeta};
use crate::BoxError;
use crate::classify::Classifier;

/// Reports the requests it carries to a [`Tap`]'s subscribers. See the
/// [module docs](super).
///
/// Built by [`TapLayer`](super::TapLayer).
#[derive(Clone)]
pub struct TapService<S> {
    inner: S,
    tap: Tap,
    meta: Arc<TapMeta>,
    classifier: Classifier,
}

impl<S> TapService<S> {
    pub(super) const fn new(
        inner: S,
        tap: Tap,
        meta: Arc<TapMeta>,
        classifier: Classifier,
    ) -> Self {
        Self {
            inner,
            tap,
            meta,
            classifier,
        }
    }

    /// The target's metadata.
    pub fn meta(&self) -> &TapMeta {
        &self.meta
    }

    /// The inner service.
    pub const fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, RB> Service<http::Request<B>> for TapService<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Error: Into<BoxError>,
    RB: Body,
{
    type Response = http::Response<TapBody<RB>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // When nobody subscribes this is one relaxed load and `None`.
        let tap = self.tap.start(&req, &self.meta, &self.classifier);
        ResponseFuture::new(self.inner.call(req), tap)
    }
}

impl<S: fmt::Debug> fmt::Debug for TapService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TapService")
            .field("inner", &self.inner)
            .field("tap", &self.tap)
            .field("meta", &self.meta)
            .finish()
    }
}
