//! Following a server-streaming call across reconnections.
//!
//! Every watch a proxy keeps on its control plane (endpoints, profiles, policies) has the same
//! shape: call, read messages until the stream ends or fails, wait a backoff, call again. What the
//! caller must know is where one stream ends and the next begins: the first message of a new
//! stream replaces everything the previous stream said (Linkerd's servers send the full state
//! first), later messages are changes to it. [`Follow`] says which with [`Update`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::stream::{BoxStream, Stream, StreamExt};
use mesh_core::backoff::Backoff;
use tonic::{Status, Streaming};

/// One item of a followed stream.
#[derive(Debug)]
pub enum Update<T> {
    /// The first message of a new stream (the first call, or one after a reconnection): it
    /// replaces what earlier streams said.
    Reset(T),
    /// A later message of the same stream.
    Next(T),
    /// The call failed, or the stream ended: the follower calls again after a backoff. What was
    /// last received is still the best knowledge there is.
    Lost(Status),
}

/// A server-streaming call, called again with a backoff whenever it fails or ends. Never ends on
/// its own; drop it to stop.
///
/// ```no_run
/// use futures_util::StreamExt;
/// use linkerd2_proxy_api::destination::{GetDestination, destination_client::DestinationClient};
/// use mesh_control_client::{Follow, Update};
/// # async fn f(channel: tonic::transport::Channel) {
/// let mut updates = Follow::new(move || {
///     let mut client = DestinationClient::new(channel.clone());
///     let req = GetDestination { path: "web.emojivoto.svc.cluster.local:8080".into(), ..Default::default() };
///     async move { client.get(req).await.map(|rsp| rsp.into_inner()) }
/// });
/// while let Some(update) = updates.next().await {
///     match update {
///         Update::Reset(u) => println!("everything is now {u:?}"),
///         Update::Next(u) => println!("change: {u:?}"),
///         Update::Lost(status) => println!("reconnecting: {status}"),
///     }
/// }
/// # }
/// ```
pub struct Follow<T> {
    inner: BoxStream<'static, Update<T>>,
}

enum State<T, F> {
    Call {
        call: F,
        failures: u32,
    },
    Read {
        call: F,
        stream: Box<Streaming<T>>,
        first: bool,
        failures: u32,
    },
    Wait {
        call: F,
        failures: u32,
    },
}

impl<T: Send + 'static> Follow<T> {
    /// Follows the streams `call` returns, with the control-plane reconnection backoff (100 ms
    /// doubling to 5 s, with jitter).
    pub fn new<F, Fut>(call: F) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Streaming<T>, Status>> + Send + 'static,
    {
        Self::with_backoff(call, crate::reconnect_backoff())
    }

    /// Like [`Follow::new`], with another backoff between calls.
    pub fn with_backoff<F, Fut>(call: F, backoff: Backoff) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Streaming<T>, Status>> + Send + 'static,
    {
        let start = State::Call { call, failures: 0 };
        let inner = futures_util::stream::unfold(start, move |state| async move {
            match state {
                State::Call { mut call, failures } => match call().await {
                    Ok(stream) => {
                        let next = State::Read {
                            call,
                            stream: Box::new(stream),
                            first: true,
                            failures,
                        };
                        Some((None, next))
                    }
                    Err(status) => {
                        Some((Some(Update::Lost(status)), State::Wait { call, failures }))
                    }
                },
                State::Read {
                    call,
                    mut stream,
                    first,
                    failures,
                } => match stream.message().await {
                    Ok(Some(msg)) => {
                        let update = if first {
                            Update::Reset(msg)
                        } else {
                            Update::Next(msg)
                        };
                        // A stream that delivers is healthy: the backoff starts over.
                        let next = State::Read {
                            call,
                            stream,
                            first: false,
                            failures: 0,
                        };
                        Some((Some(update), next))
                    }
                    Ok(None) => {
                        let status = Status::unavailable("the control plane ended the stream");
                        Some((Some(Update::Lost(status)), State::Wait { call, failures }))
                    }
                    Err(status) => {
                        Some((Some(Update::Lost(status)), State::Wait { call, failures }))
                    }
                },
                State::Wait { call, failures } => {
                    tokio::time::sleep(backoff.delay(failures)).await;
                    let failures = failures.saturating_add(1);
                    Some((None, State::Call { call, failures }))
                }
            }
        })
        .filter_map(std::future::ready)
        .boxed();
        Self { inner }
    }
}

impl<T> Stream for Follow<T> {
    type Item = Update<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Update<T>>> {
        self.inner.poll_next_unpin(cx)
    }
}

impl<T> std::fmt::Debug for Follow<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follow").finish_non_exhaustive()
    }
}
