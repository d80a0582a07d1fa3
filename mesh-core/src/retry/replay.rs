use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// A request body as a retry layer forwards it: fully buffered (replayable), a buffered
    /// prefix followed by the rest of a body too large to replay (sent once), or untouched (a
    /// request that is never retried).
    #[derive(Debug)]
    pub struct ReplayBody<B> {
        #[pin]
        inner: Inner<B>,
    }
}

pin_project! {
    #[project = InnerProj]
    #[derive(Debug)]
    enum Inner<B> {
        Buffered {
            chunks: VecDeque<Bytes>,
            trailers: Option<HeaderMap>,
            replayable: bool,
        },
        Prefixed {
            prefix: VecDeque<Bytes>,
            #[pin]
            rest: B,
        },
        Passthrough {
            #[pin]
            body: B,
        },
    }
}

impl<B> ReplayBody<B> {
    pub(crate) fn buffered(chunks: Vec<Bytes>, trailers: Option<HeaderMap>) -> Self {
        Self {
            inner: Inner::Buffered {
                chunks: chunks.into(),
                trailers,
                replayable: true,
            },
        }
    }

    /// An empty body for a request that had already ended and must not be sent twice.
    pub(crate) fn ended() -> Self {
        Self {
            inner: Inner::Buffered {
                chunks: VecDeque::new(),
                trailers: None,
                replayable: false,
            },
        }
    }

    pub(crate) fn prefixed(prefix: Vec<Bytes>, rest: B) -> Self {
        Self {
            inner: Inner::Prefixed {
                prefix: prefix.into(),
                rest,
            },
        }
    }

    pub(crate) fn passthrough(body: B) -> Self {
        Self {
            inner: Inner::Passthrough { body },
        }
    }

    /// Whether another attempt can send this body again.
    pub fn is_replayable(&self) -> bool {
        matches!(
            self.inner,
            Inner::Buffered {
                replayable: true,
                ..
            }
        )
    }

    /// A copy for another attempt, if this body can be replayed.
    pub(crate) fn try_clone(&self) -> Option<Self> {
        match &self.inner {
            Inner::Buffered {
                chunks,
                trailers,
                replayable: true,
            } => Some(Self {
                inner: Inner::Buffered {
                    chunks: chunks.clone(),
                    trailers: trailers.clone(),
                    replayable: true,
                },
            }),
            _ => None,
        }
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().inner.project() {
            InnerProj::Buffered {
                chunks, trailers, ..
            } => Poll::Ready(match chunks.pop_front() {
                Some(c) => Some(Ok(Frame::data(c))),
                None => trailers.take().map(|t| Ok(Frame::trailers(t))),
            }),
            InnerProj::Prefixed { prefix, rest } => match prefix.pop_front() {
                Some(c) => Poll::Ready(Some(Ok(Frame::data(c)))),
                None => rest.poll_frame(cx),
            },
            InnerProj::Passthrough { body } => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Buffered {
                chunks, trailers, ..
            } => chunks.is_empty() && trailers.is_none(),
            Inner::Prefixed { prefix, rest } => prefix.is_empty() && rest.is_end_stream(),
            Inner::Passthrough { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        let buffered = |c: &VecDeque<Bytes>| c.iter().map(|b| b.len() as u64).sum::<u64>();
        match &self.inner {
            Inner::Buffered { chunks, .. } => SizeHint::with_exact(buffered(chunks)),
            Inner::Prefixed { prefix, rest } => {
                let r = rest.size_hint();
                let p = buffered(prefix);
                let mut h = SizeHint::new();
                h.set_lower(r.lower() + p);
                if let Some(u) = r.upper() {
                    h.set_upper(u + p);
                }
                h
            }
            Inner::Passthrough { body } => body.size_hint(),
        }
    }
}
