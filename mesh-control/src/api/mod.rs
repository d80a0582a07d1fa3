//! Linkerd's proxy API served from the catalog, and the mesh's own registration API.
//!
//! | service | methods | module |
//! |---|---|---|
//! | `io.linkerd.proxy.destination.Destination` | `Get`, `GetProfile` | [`destination`] |
//! | `io.linkerd.proxy.identity.Identity` | `Certify` | [`identity`] |
//! | `io.linkerd.proxy.inbound.InboundServerPolicies` | `GetPort`, `WatchPort` | [`inbound`] |
//! | `io.linkerd.proxy.outbound.OutboundPolicies` | `Get`, `Watch` | [`outbound`] |
//! | `mesh.control.v1.Registration` | `Register`, `Deregister` | [`registration`] |
//!
//! Every streaming method follows the same pattern: it parses its target, then turns the
//! catalog's snapshot watch into a stream that recomputes the answer on each snapshot and sends it
//! only when it differs from what it last sent (for `Get`, the difference itself: adds and
//! removes). Streams end with `UNAVAILABLE` when the control plane shuts down, so proxies
//! reconnect to the next one.

pub mod destination;
pub mod identity;
pub mod inbound;
pub mod outbound;
pub mod registration;

mod convert;

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::catalog::Snapshot;

/// A boxed response stream, as the generated servers take.
pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The status streams end with when the control plane stops.
pub(crate) fn shutting_down() -> Status {
    Status::unavailable("the control plane is shutting down; reconnect")
}

/// Turns snapshot changes into a response stream.
///
/// `step` is called with the first snapshot and then with each new one; it returns the messages
/// to send (usually none or one). An error item ends the stream after it is sent.
pub(crate) fn watch_stream<T, F>(
    snapshots: watch::Receiver<Arc<Snapshot>>,
    shutdown: CancellationToken,
    step: F,
) -> BoxStream<T>
where
    T: Send + 'static,
    F: FnMut(&Snapshot) -> Vec<Result<T, Status>> + Send + 'static,
{
    struct State<T, F> {
        snapshots: watch::Receiver<Arc<Snapshot>>,
        shutdown: CancellationToken,
        step: F,
        queue: VecDeque<Result<T, Status>>,
        started: bool,
        done: bool,
    }

    let state = State {
        snapshots,
        shutdown,
        step,
        queue: VecDeque::new(),
        started: false,
        done: false,
    };
    Box::pin(futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if st.done {
                return None;
            }
            if let Some(item) = st.queue.pop_front() {
                st.done = item.is_err();
                return Some((item, st));
            }
            if st.started {
                tokio::select! {
                    biased;
                    _ = st.shutdown.cancelled() => {
                        st.done = true;
                        return Some((Err(shutting_down()), st));
                    }
                    res = st.snapshots.changed() => if res.is_err() {
                        st.done = true;
                        return Some((Err(shutting_down()), st));
                    },
                }
            }
            st.started = true;
            let snapshot = st.snapshots.borrow_and_update().clone();
            let items = (st.step)(&snapshot);
            st.queue.extend(items);
        }
    }))
}
