use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Sleep;
use tokio_rustls::Accept;
use tower_service::Service;

use super::ServerTlsStream;
use crate::cert::CertInfo;
use crate::{BoxError, HandshakeError};

pin_project! {
    /// Completes the server handshake, then the inner service's future.
    pub struct ResponseFuture<IO, S>
    where
        S: Service<ServerTlsStream<IO>>,
    {
        #[pin]
        state: State<IO, S>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<IO, S>
    where
        S: Service<ServerTlsStream<IO>>,
    {
        Handshake {
            #[pin]
            accept: Accept<IO>,
            #[pin]
            deadline: Sleep,
            timeout: Duration,
            inner: Option<S>,
        },
        Inner {
            #[pin]
            future: S::Future,
        },
    }
}

impl<IO, S> ResponseFuture<IO, S>
where
    S: Service<ServerTlsStream<IO>>,
{
    pub(super) fn new(accept: Accept<IO>, timeout: Duration, inner: S) -> Self {
        Self {
            state: State::Handshake {
                accept,
                deadline: tokio::time::sleep(timeout),
                timeout,
                inner: Some(inner),
            },
        }
    }
}

impl<IO, S> Future for ResponseFuture<IO, S>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    S: Service<ServerTlsStream<IO>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Handshake {
                    accept,
                    deadline,
                    timeout,
                    inner,
                } => {
                    let tls = match accept.poll(cx) {
                        Poll::Ready(Ok(tls)) => tls,
                        Poll::Ready(Err(e)) => {
                            return Poll::Ready(Err(HandshakeError::from_io(e).into()));
                        }
                        Poll::Pending => {
                            ready!(deadline.poll(cx));
                            return Poll::Ready(Err(HandshakeError::timed_out(*timeout).into()));
                        }
                    };
                    let client_identity = match tls.get_ref().1.peer_certificates() {
                        None | Some([]) => None,
                        // The client's chain was verified in the handshake.
                        Some([leaf, ..]) => match CertInfo::parse(leaf)
                            .ok()
                            .and_then(|i| i.identity().cloned())
                        {
                            Some(id) => Some(id),
                            None => return Poll::Ready(Err(HandshakeError::no_identity().into())),
                        },
                    };
                    let stream = ServerTlsStream::new(tls, client_identity);
                    let mut svc = inner.take().expect("the handshake completes only once");
                    let future = svc.call(stream);
                    this.state.set(State::Inner { future });
                }
                StateProj::Inner { future } => {
                    return future.poll(cx).map_err(Into::into);
                }
            }
        }
    }
}

impl<IO, S> fmt::Debug for ResponseFuture<IO, S>
where
    S: Service<ServerTlsStream<IO>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
