//! Watching a body stream to its end without buffering it.
//!
//! Metrics and tap need to know when a response ends, how many bytes it carried and what its
//! trailers said (gRPC puts its status there). [`ObservedBody`] wraps any `http_body::Body`,
//! passes every frame through untouched, and tells an [`Observer`] about data and, exactly once,
//! about the end: trailers, an error, or the body dropped early.
//!
//! The body's error must be an `Error` type (hyper's, axum's, tonic's `Status`, `Infallible`
//! all are); a body boxed with a `BoxError` error can be observed after
//! `BodyExt::map_err` to an error type.
//!
//! ```
//! use mesh_core::body::{End, ObservedBody, Observer};
//! use http_body_util::{BodyExt, Full};
//! use std::sync::{Arc, Mutex};
//!
//! #[derive(Default)]
//! struct Count { bytes: usize, done: Arc<Mutex<Option<usize>>> }
//! impl Observer for Count {
//!     fn on_data(&mut self, n: usize) { self.bytes += n }
//!     fn on_end(self, _end: End<'_>) { *self.done.lock().unwrap() = Some(self.bytes) }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let done = Arc::new(Mutex::new(None));
//! let body = ObservedBody::new(Full::new(bytes::Bytes::from("hello")), Count { bytes: 0, done: done.clone() });
//! body.collect().await.unwrap();
//! assert_eq!(*done.lock().unwrap(), Some(5));
//! # }
//! ```

use std::error::Error as StdError;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Buf;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

/// How a body stream ended.
#[derive(Debug)]
pub enum End<'a> {
    /// It completed, with these trailers (if any).
    Complete(Option<&'a HeaderMap>),
    /// It failed.
    Error(&'a (dyn StdError + 'static)),
    /// It was dropped before its end (the peer went away, or nobody read it).
    Dropped,
}

/// Told about a body's data and, once, its end.
pub trait Observer {
    /// A data frame of `bytes` bytes passed.
    fn on_data(&mut self, bytes: usize) {
        let _ = bytes;
    }

    /// The body ended. Called exactly once.
    fn on_end(self, end: End<'_>);
}

pin_project! {
    /// A body that reports to an [`Observer`]. See the [module docs](self).
    pub struct ObservedBody<B: Body, O: Observer> {
        #[pin]
        inner: B,
        observer: Option<O>,
    }

    impl<B: Body, O: Observer> PinnedDrop for ObservedBody<B, O> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(o) = this.observer.take() {
                // A body already at its end may never be polled (hyper skips empty bodies).
                if this.inner.is_end_stream() {
                    o.on_end(End::Complete(None));
                } else {
                    o.on_end(End::Dropped);
                }
            }
        }
    }
}

impl<B: Body, O: Observer> ObservedBody<B, O> {
    /// Wraps `inner`, reporting to `observer`.
    pub fn new(inner: B, observer: O) -> Self {
        Self {
            inner,
            observer: Some(observer),
        }
    }
}

impl<B, O> Body for ObservedBody<B, O>
where
    B: Body,
    B::Error: StdError + 'static,
    O: Observer,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(data) = f.data_ref() {
                    if let Some(o) = this.observer.as_mut() {
                        o.on_data(data.remaining());
                    }
                } else if let Some(trailers) = f.trailers_ref()
                    && let Some(o) = this.observer.take()
                {
                    o.on_end(End::Complete(Some(trailers)));
                }
            }
            Some(Err(e)) => {
                if let Some(o) = this.observer.take() {
                    o.on_end(End::Error(e));
                }
            }
            None => {
                if let Some(o) = this.observer.take() {
                    o.on_end(End::Complete(None));
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body + std::fmt::Debug, O: Observer> std::fmt::Debug for ObservedBody<B, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservedBody")
            .field("inner", &self.inner)
            .field("ended", &self.observer.is_none())
            .finish()
    }
}
