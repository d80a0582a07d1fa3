//! Stage 3, per connection: mutual TLS from a meshed peer, terminated with the proxy's
//! certificate. The client's identity is read from its verified certificate, and the ALPN it
//! negotiated says what the connection carries (the outbound side sets it, see
//! [`connect`](crate::connect)): `h2`, the mesh's HTTP/2; `http/1.1`, an upgrade; `mesh.opaque/1`,
//! bytes for the app. The protocol is a parameter from here on, never sniffed again.

use std::convert::Infallible;

use mesh_core::detect::Protocol;
use mesh_tls::TlsServerLayer;
use mesh_tls::server::{ClientAuth, ServerTlsStream};
use tokio::io::{AsyncRead, AsyncWrite};
use tower::{Layer, ServiceExt};

use super::Inbound;
use super::authorize::Authorize;
use super::target::{Accept, Http, Tls};
use crate::connect::{ALPN_H2, ALPN_HTTP1, ALPN_OPAQUE};
use crate::runtime::Runtime;

/// Terminates TLS, then hands the connection to authorization. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct NewTls {
    rt: Runtime,
    authorize: Authorize,
}

impl Inbound<Authorize> {
    /// TLS termination in front of authorization.
    pub(crate) fn push_tls(self) -> Inbound<NewTls> {
        let rt = self.rt.clone();
        self.map_stack(|authorize| NewTls { rt, authorize })
    }
}

impl NewTls {
    /// Authorization, for the plaintext connections that skip this stage.
    pub(crate) fn authorize(&self) -> &Authorize {
        &self.authorize
    }

    /// Terminates TLS on `io` and serves what it carries.
    pub(crate) async fn serve<IO>(&self, io: IO, accept: Accept)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // A client certificate is asked for, and verified when given. Whether a client without
        // one may call is the policy's decision (stage 4), which answers with a reason and
        // follows the policy as it changes; only a fixed policy that admits nobody
        // unauthenticated requires the certificate in the handshake already.
        let auth = if self.authorize.policy().requires_client_certificates() {
            ClientAuth::Required
        } else {
            ClientAuth::Optional
        };
        let layer = TlsServerLayer::new(&self.rt.creds)
            .client_auth(auth)
            .alpn_protocols(vec![
                ALPN_H2.to_vec(),
                ALPN_HTTP1.to_vec(),
                ALPN_OPAQUE.to_vec(),
            ])
            .handshake_timeout(self.rt.config.detect_timeout);
        let peer = accept.peer;
        let authorize = self.authorize.clone();
        let svc = layer.layer(tower::service_fn(move |tls: ServerTlsStream<IO>| {
            let authorize = authorize.clone();
            let target = Tls {
                accept: accept.clone(),
                client: tls.client_identity().cloned(),
            };
            let version = match tls.alpn_protocol() {
                Some(ALPN_OPAQUE) => None,
                Some(ALPN_H2) => Some(Some(Protocol::Http2)),
                Some(ALPN_HTTP1) => Some(Some(Protocol::Http1)),
                // No ALPN (a client outside the mesh): HTTP, its version found by the server.
                _ => Some(None),
            };
            async move {
                match version {
                    None => authorize.serve_opaque(tls, target).await,
                    Some(version) => {
                        authorize
                            .serve_http(
                                tls,
                                Http {
                                    tls: target,
                                    version,
                                },
                            )
                            .await
                    }
                }
                Ok::<_, Infallible>(())
            }
        }));
        if let Err(error) = svc.oneshot(io).await {
            tracing::info!(%error, %peer, "inbound TLS handshake failed");
            self.rt.metrics.conn_error("inbound", "tls_handshake");
        }
    }
}
