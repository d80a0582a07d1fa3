use std::error::Error as StdError;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::inflight::ResponseTap;
use crate::body::ObservedBody;

pin_project! {
    /// A response body from a [`TapService`](super::TapService): the inner body untouched
    /// when nobody tapped the request, else the inner body watched to its end (bytes,
    /// trailers, errors) by an [`ObservedBody`].
    pub struct TapBody<B: Body> {
        #[pin]
        state: State<B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<B: Body> {
        Passthrough {
            #[pin]
            inner: B,
        },
        Tapped {
            #[pin]
            inner: ObservedBody<B, ResponseTap>,
        },
    }
}

// === impl TapBody ===

impl<B: Body> TapBody<B> {
    /// A body nobody taps.
    pub const fn passthrough(inner: B) -> Self {
        Self {
            state: State::Passthrough { inner },
        }
    }

    pub(super) fn tapped(inner: B, tap: ResponseTap) -> Self {
        Self {
            state: State::Tapped {
                inner: ObservedBody::new(inner, tap),
            },
        }
    }

    /// Whether a subscriber watches this body.
    pub const fn is_tapped(&self) -> bool {
        matches!(self.state, State::Tapped { .. })
    }

    /// The inner body, when nobody taps it; a tapped body is given back.
    pub fn into_untapped(self) -> Result<B, Self> {
        match self.state {
            State::Passthrough { inner } => Ok(inner),
            state @ State::Tapped { .. } => Err(Self { state }),
        }
    }
}

impl<B> Body for TapBody<B>
where
    B: Body,
    B::Error: StdError + 'static,
{
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().state.project() {
            StateProj::Passthrough { inner } => inner.poll_frame(cx),
            StateProj::Tapped { inner } => inner.poll_frame(cx),
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match &self.state {
            State::Passthrough { inner } => inner.is_end_stream(),
            State::Tapped { inner } => inner.is_end_stream(),
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match &self.state {
            State::Passthrough { inner } => inner.size_hint(),
            State::Tapped { inner } => inner.size_hint(),
        }
    }
}

impl<B: Body + Default> Default for TapBody<B> {
    /// An untapped default body.
    fn default() -> Self {
        Self::passthrough(B::default())
    }
}

impl<B: Body + fmt::Debug> fmt::Debug for TapBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            State::Passthrough { inner } => {
                f.debug_tuple("TapBody::Passthrough").field(inner).finish()
            }
            State::Tapped { inner } => f.debug_tuple("TapBody::Tapped").field(inner).finish(),
        }
    }
}
