use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use crate::ServiceIdentity;

/// The verified identity of the client that sent a request, as an HTTP request extension.
///
/// Absent when the client presented no certificate.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientIdentity(pub ServiceIdentity);

/// Adds a connection's [`ClientIdentity`] to every request served on it.
///
/// Build one per accepted connection from
/// [`ServerTlsStream::client_identity`](super::ServerTlsStream::client_identity).
///
/// ```
/// use mesh_tls::server::{ClientIdentity, ClientIdentityLayer};
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let id = "web.emojivoto.serviceaccount.identity.mesh.cluster.local".parse()?;
/// let svc = ServiceBuilder::new()
///     .layer(ClientIdentityLayer::new(Some(id)))
///     .service_fn(|req: http::Request<()>| async move {
///         let who = req.extensions().get::<ClientIdentity>().map(|c| c.0.to_string());
///         Ok::<_, std::convert::Infallible>(who)
///     });
/// let who = svc.oneshot(http::Request::new(())).await?;
/// assert_eq!(who.as_deref(), Some("web.emojivoto.serviceaccount.identity.mesh.cluster.local"));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ClientIdentityLayer {
    identity: Option<ServiceIdentity>,
}

impl ClientIdentityLayer {
    /// Tags requests with `identity` (nothing when `None`).
    pub const fn new(identity: Option<ServiceIdentity>) -> Self {
        Self { identity }
    }
}

impl<S> Layer<S> for ClientIdentityLayer {
    type Service = SetClientIdentity<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SetClientIdentity {
            inner,
            identity: self.identity.clone(),
        }
    }
}

/// Inserts a [`ClientIdentity`] extension into each request. See [`ClientIdentityLayer`].
#[derive(Clone, Debug)]
pub struct SetClientIdentity<S> {
    inner: S,
    identity: Option<ServiceIdentity>,
}

impl<S, B> Service<http::Request<B>> for SetClientIdentity<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        match &self.identity {
            Some(id) => {
                req.extensions_mut().insert(ClientIdentity(id.clone()));
            }
            None => {
                // A client must not smuggle an identity in from an earlier hop.
                req.extensions_mut().remove::<ClientIdentity>();
            }
        }
        self.inner.call(req)
    }
}
