use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;

use super::Update;
use crate::Endpoint;

/// A static set of endpoints: one `Insert` for each, then nothing, ever.
///
/// ```
/// use mesh_balance::{discover, Endpoint};
///
/// let d = discover::fixed([
///     Endpoint::new(([127, 0, 0, 1], 8081).into()),
///     Endpoint::new(([127, 0, 0, 1], 8082).into()),
/// ]);
/// assert_eq!(d.len(), 2);
/// ```
pub fn fixed(endpoints: impl IntoIterator<Item = Endpoint>) -> Fixed {
    Fixed {
        left: endpoints.into_iter().collect(),
    }
}

/// A static set of endpoints, made by [`fixed`].
pub struct Fixed {
    left: VecDeque<Endpoint>,
}

impl Fixed {
    /// Endpoints not yet reported.
    pub fn len(&self) -> usize {
        self.left.len()
    }

    /// Whether all were reported.
    pub fn is_empty(&self) -> bool {
        self.left.is_empty()
    }
}

impl Stream for Fixed {
    type Item = Result<Update, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.left.pop_front() {
            Some(ep) => Poll::Ready(Some(Ok(Update::Insert(ep.addr(), ep)))),
            // The set never changes, so there is nothing to wake us for. Ending the stream would
            // say the same, but some consumers stop polling (or complain) after the end.
            None => Poll::Pending,
        }
    }
}

impl fmt::Debug for Fixed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fixed")
            .field("left", &self.left.len())
            .finish()
    }
}
