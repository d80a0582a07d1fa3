use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::ClientConfig;
use rustls::client::Resumption;
use tower_layer::Layer;

use super::TlsClient;
use crate::verify::{CertResolver, ServerIdentityVerifier, provider};
use crate::{Credentials, ServiceIdentity};

/// Wraps a connector in a TLS client that proves our identity and checks the server's.
///
/// ```
/// use mesh_tls::{CertificateAuthority, Credentials, client::TlsClientLayer};
///
/// let ca = CertificateAuthority::builder().generate()?;
/// let creds = Credentials::generate(ca.domain().workload("web", "emojivoto")?, ca.trust_bundle())?;
/// let layer = TlsClientLayer::new(&creds).alpn_protocols(vec![b"h2".to_vec()]);
/// # let _ = layer;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct TlsClientLayer {
    configs: ConfigCache,
    handshake_timeout: Duration,
}

/// Client configurations per expected server identity, built once each. A handful of entries in
/// practice (one per peer identity); cleared if it ever grows past `MAX`.
#[derive(Clone)]
pub(super) struct ConfigCache {
    creds: Credentials,
    alpn: Arc<[Vec<u8>]>,
    resumption: Resumption,
    map: Arc<Mutex<HashMap<ServiceIdentity, Arc<ClientConfig>>>>,
}

impl TlsClientLayer {
    /// A client for `creds`: no ALPN, a 10 s handshake timeout.
    pub fn new(creds: &Credentials) -> Self {
        Self {
            configs: ConfigCache {
                creds: creds.clone(),
                alpn: Arc::from(Vec::new()),
                resumption: Resumption::in_memory_sessions(256),
                map: Default::default(),
            },
            handshake_timeout: Duration::from_secs(10),
        }
    }

    /// ALPN protocols to offer, most preferred first. Default is none.
    pub fn alpn_protocols(mut self, protocols: Vec<Vec<u8>>) -> Self {
        self.configs.alpn = protocols.into();
        self.configs.map = Default::default();
        self
    }

    /// How long the handshake may take. Default is 10 s.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }
}

impl<C> Layer<C> for TlsClientLayer {
    type Service = TlsClient<C>;

    fn layer(&self, inner: C) -> Self::Service {
        TlsClient::new(inner, self.configs.clone(), self.handshake_timeout)
    }
}

impl fmt::Debug for TlsClientLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClientLayer")
            .field("identity", self.configs.creds.identity())
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

impl ConfigCache {
    const MAX: usize = 1024;

    pub(super) fn get(&self, expected: &ServiceIdentity) -> Arc<ClientConfig> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(expected) {
            return c.clone();
        }
        if map.len() >= Self::MAX {
            map.clear();
        }
        let verifier = ServerIdentityVerifier::new(expected.clone(), self.creds.trust_rx());
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("the ring provider supports TLS 1.3")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(Arc::new(CertResolver::new(self.creds.cert_rx())));
        config.alpn_protocols = self.alpn.to_vec();
        config.resumption = self.resumption.clone();
        let config = Arc::new(config);
        map.insert(expected.clone(), config.clone());
        config
    }
}
