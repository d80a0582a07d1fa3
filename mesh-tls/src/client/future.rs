use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Sleep;
use tokio_rustls::{Connect, TlsConnector};

use super::ClientTlsStream;
use crate::{BoxError, HandshakeError, ServiceIdentity};

pin_project! {
    /// Connects, then completes the client handshake.
    pub struct ResponseFuture<F, IO> {
        #[pin]
        state: State<F, IO>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, IO> {
        Connect {
            #[pin]
            connect: F,
            tls: Option<(TlsConnector, ServerName<'static>)>,
            expected: Option<ServiceIdentity>,
            timeout: Duration,
        },
        Handshake {
            #[pin]
            handshake: Connect<IO>,
            #[pin]
            deadline: Sleep,
            expected: Option<ServiceIdentity>,
            timeout: Duration,
        },
        Failed {
            error: Option<BoxError>,
        },
    }
}

impl<F, IO> ResponseFuture<F, IO> {
    pub(super) fn new(
        connect: F,
        connector: TlsConnector,
        name: ServerName<'static>,
        expected: ServiceIdentity,
        timeout: Duration,
    ) -> Self {
        Self {
            state: State::Connect {
                connect,
                tls: Some((connector, name)),
                expected: Some(expected),
                timeout,
            },
        }
    }

    pub(super) fn failed(error: BoxError) -> Self {
        Self {
            state: State::Failed { error: Some(error) },
        }
    }
}

impl<F, IO, E> Future for ResponseFuture<F, IO>
where
    F: Future<Output = Result<IO, E>>,
    E: Into<BoxError>,
    IO: AsyncRead + AsyncWrite + Unpin,
{
    type Output = Result<ClientTlsStream<IO>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Connect {
                    connect,
                    tls,
                    expected,
                    timeout,
                } => {
                    let io = ready!(connect.poll(cx)).map_err(Into::into)?;
                    let (connector, name) = tls.take().expect("connects only once");
                    let expected = expected.take();
                    let timeout = *timeout;
                    this.state.set(State::Handshake {
                        handshake: connector.connect(name, io),
                        deadline: tokio::time::sleep(timeout),
                        expected,
                        timeout,
                    });
                }
                StateProj::Handshake {
                    handshake,
                    deadline,
                    expected,
                    timeout,
                } => {
                    return match handshake.poll(cx) {
                        Poll::Ready(Ok(tls)) => {
                            let id = expected.take().expect("handshakes only once");
                            Poll::Ready(Ok(ClientTlsStream::new(tls, id)))
                        }
                        Poll::Ready(Err(e)) => Poll::Ready(Err(HandshakeError::from_io(e).into())),
                        Poll::Pending => {
                            ready!(deadline.poll(cx));
                            Poll::Ready(Err(HandshakeError::timed_out(*timeout).into()))
                        }
                    };
                }
                StateProj::Failed { error } => {
                    return Poll::Ready(Err(error
                        .take()
                        .unwrap_or_else(|| "polled after completion".into())));
                }
            }
        }
    }
}

impl<F, IO> fmt::Debug for ResponseFuture<F, IO> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
