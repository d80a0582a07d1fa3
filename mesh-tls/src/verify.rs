//! The rustls plumbing: certificate resolvers and verifiers that read the current
//! [`Credentials`](crate::Credentials) at every handshake.

use std::fmt;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, verify_server_cert_signed_by_trust_anchor};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError, RootCertStore,
    SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::sync::watch;

use crate::ServiceIdentity;
use crate::cert::CertInfo;
use crate::creds::{Current, TrustState};

/// The one crypto provider of the workspace: ring.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

fn algs() -> WebPkiSupportedAlgorithms {
    provider().signature_verification_algorithms
}

/// Verifies that `leaf` chains to `roots` and is valid at `now`.
pub(crate) fn verify_chain(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    roots: &RootCertStore,
    now: UnixTime,
) -> Result<(), Error> {
    let parsed = ParsedCertificate::try_from(leaf)?;
    verify_server_cert_signed_by_trust_anchor(&parsed, roots, intermediates, now, algs().all)
}

/// The server presented a valid certificate for another identity than the one discovery said
/// the endpoint has.
#[derive(Clone, Debug, thiserror::Error)]
#[error("server identity mismatch: expected {expected}, but the server presented {}", presented_list(.presented))]
pub struct IdentityMismatch {
    /// The identity the client expected.
    pub expected: ServiceIdentity,
    /// The identities in the server's certificate.
    pub presented: Vec<ServiceIdentity>,
}

fn presented_list(p: &[ServiceIdentity]) -> String {
    if p.is_empty() {
        return "a certificate with no identity".into();
    }
    p.iter().map(|i| i.as_str()).collect::<Vec<_>>().join(", ")
}

// === ServerIdentityVerifier ===

/// Client side: the server's chain must verify against the current trust bundle and its leaf
/// must carry exactly the expected identity.
pub(crate) struct ServerIdentityVerifier {
    expected: ServiceIdentity,
    trust: watch::Receiver<TrustState>,
}

impl ServerIdentityVerifier {
    pub(crate) fn new(expected: ServiceIdentity, trust: watch::Receiver<TrustState>) -> Self {
        Self { expected, trust }
    }
}

impl ServerCertVerifier for ServerIdentityVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let roots = self.trust.borrow().bundle.roots().clone();
        verify_chain(end_entity, intermediates, &roots, now)?;
        // The chain is verified: now the identity may be read from the leaf.
        let info = CertInfo::parse(end_entity)
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if info.identities.contains(&self.expected) {
            return Ok(ServerCertVerified::assertion());
        }
        Err(Error::InvalidCertificate(CertificateError::Other(
            OtherError(Arc::new(IdentityMismatch {
                expected: self.expected.clone(),
                presented: info.identities,
            })),
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &algs())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &algs())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algs().supported_schemes()
    }
}

impl fmt::Debug for ServerIdentityVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerIdentityVerifier")
            .field("expected", &self.expected)
            .finish()
    }
}

// === ClientVerifier ===

/// Server side: delegates to a webpki verifier built from the current trust bundle.
pub(crate) struct ClientVerifier {
    trust: watch::Receiver<TrustState>,
    mandatory: bool,
}

impl ClientVerifier {
    pub(crate) fn new(trust: watch::Receiver<TrustState>, mandatory: bool) -> Self {
        Self { trust, mandatory }
    }

    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        let t = self.trust.borrow();
        if self.mandatory {
            t.client_required.clone()
        } else {
            t.client_optional.clone()
        }
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints are optional; a mesh client has exactly one certificate to offer.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.current()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &algs())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &algs())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algs().supported_schemes()
    }
}

impl fmt::Debug for ClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientVerifier")
            .field("mandatory", &self.mandatory)
            .finish()
    }
}

/// A verifier that refuses every client; stands in if a verifier cannot be built.
pub(crate) struct RefuseAll(pub(crate) String);

impl ClientCertVerifier for RefuseAll {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        Err(Error::General(self.0.clone()))
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::General(self.0.clone()))
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::General(self.0.clone()))
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algs().supported_schemes()
    }
}

impl fmt::Debug for RefuseAll {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RefuseAll").field(&self.0).finish()
    }
}

// === CertResolver ===

/// Hands rustls the current certificate at each handshake, on both sides.
pub(crate) struct CertResolver {
    cert: watch::Receiver<Option<Current>>,
}

impl CertResolver {
    pub(crate) fn new(cert: watch::Receiver<Option<Current>>) -> Self {
        Self { cert }
    }

    fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.cert.borrow().as_ref().map(|c| c.key.clone())
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // None aborts the handshake: a proxy without a certificate accepts no TLS.
        self.current()
    }
}

impl ResolvesClientCert for CertResolver {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.current()
    }

    fn has_certs(&self) -> bool {
        self.cert.borrow().is_some()
    }
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertResolver")
            .field("ready", &self.cert.borrow().is_some())
            .finish()
    }
}
