use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use tower_layer::Layer;

use super::TlsServer;
use crate::Credentials;
use crate::verify::{CertResolver, ClientVerifier, provider};

/// Whether a server asks clients for a certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// Every client must present a certificate that chains to the trust bundle. The default.
    #[default]
    Required,
    /// Clients may present one; those that do must chain to the trust bundle. Unauthenticated
    /// clients get `None` as their identity.
    Optional,
}

/// Wraps a connection service in a TLS server that terminates mutual TLS.
///
/// ```
/// use mesh_tls::{CertificateAuthority, Credentials, server::{ClientAuth, TlsServerLayer}};
/// use std::time::Duration;
///
/// let ca = CertificateAuthority::builder().generate()?;
/// let creds = Credentials::generate(ca.domain().workload("web", "emojivoto")?, ca.trust_bundle())?;
/// let layer = TlsServerLayer::new(&creds)
///     .client_auth(ClientAuth::Required)
///     .handshake_timeout(Duration::from_secs(10));
/// # let _ = layer;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct TlsServerLayer {
    creds: Credentials,
    client_auth: ClientAuth,
    alpn: Vec<Vec<u8>>,
    handshake_timeout: Duration,
}

impl TlsServerLayer {
    /// A server for `creds`: client certificates required, ALPN `h2` and `http/1.1`, a 10 s
    /// handshake timeout.
    pub fn new(creds: &Credentials) -> Self {
        Self {
            creds: creds.clone(),
            client_auth: ClientAuth::Required,
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            handshake_timeout: Duration::from_secs(10),
        }
    }

    /// Whether client certificates are required. Default is [`ClientAuth::Required`].
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.client_auth = auth;
        self
    }

    /// ALPN protocols offered, most preferred first. Default is `h2`, `http/1.1`.
    pub fn alpn_protocols(mut self, protocols: Vec<Vec<u8>>) -> Self {
        self.alpn = protocols;
        self
    }

    /// How long a client may take to complete the handshake; a slow or silent client is
    /// dropped after it. Default is 10 s.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    pub(super) fn acceptor(&self) -> TlsAcceptor {
        let verifier = ClientVerifier::new(
            self.creds.trust_rx(),
            self.client_auth == ClientAuth::Required,
        );
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("the ring provider supports TLS 1.3")
            .with_client_cert_verifier(Arc::new(verifier))
            .with_cert_resolver(Arc::new(CertResolver::new(self.creds.cert_rx())));
        config.alpn_protocols = self.alpn.clone();
        TlsAcceptor::from(Arc::new(config))
    }
}

impl<S> Layer<S> for TlsServerLayer {
    type Service = TlsServer<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TlsServer::new(inner, self.acceptor(), self.handshake_timeout)
    }
}
