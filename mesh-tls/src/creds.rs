//! A proxy's credentials: its identity, its key, its current certificate and the trust bundle.
//!
//! [`Credentials`] is the one place the TLS layers read from. Its certificate and trust bundle
//! can be replaced at any time ([`Credentials::set_certificate`], [`Credentials::set_trust_bundle`]);
//! the layers read the current values at each handshake, so a rotation applies to the next
//! connection and never touches an established one.
//!
//! Two ways to get credentials:
//! - [`Credentials::generate`] makes a P-256 key in this process (it never leaves it) and a CSR
//!   for the identity; a [`Certify`](crate::certify::Certify) signer turns the CSR into a
//!   certificate (see [`certify::refresh`](crate::certify::refresh)).
//! - [`Credentials::from_certified_key`] takes a certificate chain and key that the user brings
//!   (see [`PemFiles`](crate::PemFiles) to load and reload them from files).

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use rcgen::{CertificateParams, DistinguishedName, KeyPair, PublicKeyData, SanType};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::{CertifiedKey, SigningKey};
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer, PrivateKeyDer, UnixTime};
use tokio::sync::watch;

use crate::cert::CertInfo;
use crate::certify::IssuedCertificate;
use crate::{ServiceIdentity, TrustBundle, verify};

/// A workload's identity, key, current certificate and trust bundle. Cheap to clone; clones share
/// state.
#[derive(Clone)]
pub struct Credentials {
    shared: Arc<Shared>,
}

struct Shared {
    identity: ServiceIdentity,
    local: Option<LocalKey>,
    cert: watch::Sender<Option<Current>>,
    trust: watch::Sender<TrustState>,
}

/// The key generated in this process and its CSR.
struct LocalKey {
    csr: CertificateSigningRequestDer<'static>,
    signing: Arc<dyn SigningKey>,
    spki: Vec<u8>,
}

/// The certificate in use.
#[derive(Clone)]
pub(crate) struct Current {
    pub(crate) key: Arc<CertifiedKey>,
    pub(crate) valid_until: SystemTime,
}

/// The trust bundle and the client verifiers built from it.
#[derive(Clone)]
pub(crate) struct TrustState {
    pub(crate) bundle: TrustBundle,
    pub(crate) client_required: Arc<dyn ClientCertVerifier>,
    pub(crate) client_optional: Arc<dyn ClientCertVerifier>,
}

/// Why credentials could not be made or a certificate was not installed.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The certificate chain is empty or not X.509.
    #[error("the certificate is malformed: {0}")]
    Malformed(String),
    /// The certificate names another identity.
    #[error("the certificate is for {found}, but these credentials are for {expected}")]
    IdentityMismatch {
        /// Our identity.
        expected: ServiceIdentity,
        /// What the certificate names (or "no identity").
        found: String,
    },
    /// The certificate is not for our key.
    #[error("the certificate's public key does not match the private key")]
    KeyMismatch,
    /// The chain does not verify against the trust bundle (unknown issuer, expired, ...).
    #[error("the certificate does not verify against the trust bundle: {0}")]
    Untrusted(rustls::Error),
    /// The private key is unusable.
    #[error("the private key is not usable: {0}")]
    BadKey(String),
    /// These credentials were loaded from files and have no local key to certify.
    #[error(
        "these credentials carry a user-provided key; they have no CSR and are not certified by a CA"
    )]
    NoLocalKey,
    /// Key or CSR generation failed.
    #[error("key generation failed: {0}")]
    Generate(#[from] rcgen::Error),
}

// === impl Credentials ===

impl Credentials {
    /// Generates a P-256 key and a CSR for `identity`. The credentials are not ready until a
    /// certificate is installed with [`Credentials::set_certificate`].
    pub fn generate(
        identity: ServiceIdentity,
        trust: TrustBundle,
    ) -> Result<Self, CredentialsError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        let name = identity.as_str().to_owned().try_into()?;
        params.subject_alt_names = vec![if identity.is_spiffe() {
            SanType::URI(name)
        } else {
            SanType::DnsName(name)
        }];
        let csr = params.serialize_request(&key)?;
        let der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let signing = rustls::crypto::ring::sign::any_supported_type(&der)
            .map_err(|e| CredentialsError::BadKey(e.to_string()))?;
        let local = LocalKey {
            csr: csr.der().clone(),
            signing,
            spki: key.subject_public_key_info(),
        };
        Ok(Self::with(identity, Some(local), trust))
    }

    /// Credentials from a certificate chain (leaf first) and private key the user brings. The
    /// identity is the leaf's; the chain must verify against `trust`.
    pub fn from_certified_key(
        trust: TrustBundle,
        chain: Vec<CertificateDer<'static>>,
        key: &PrivateKeyDer<'_>,
    ) -> Result<Self, CredentialsError> {
        let leaf = chain
            .first()
            .ok_or_else(|| CredentialsError::Malformed("the certificate chain is empty".into()))?;
        let info = CertInfo::parse(leaf).map_err(|e| CredentialsError::Malformed(e.to_string()))?;
        let identity = info.identity().cloned().ok_or_else(|| {
            CredentialsError::Malformed(
                "the leaf names no identity (no DNS or SPIFFE URI subject alternative name)".into(),
            )
        })?;
        let creds = Self::with(identity, None, trust);
        creds.set_certified_key(chain, key)?;
        Ok(creds)
    }

    fn with(identity: ServiceIdentity, local: Option<LocalKey>, trust: TrustBundle) -> Self {
        let (cert, _) = watch::channel(None);
        let (trust, _) = watch::channel(TrustState::new(trust));
        Self {
            shared: Arc::new(Shared {
                identity,
                local,
                cert,
                trust,
            }),
        }
    }

    /// The identity these credentials prove.
    pub fn identity(&self) -> &ServiceIdentity {
        &self.shared.identity
    }

    /// The CSR for the local key, to be signed by a CA.
    pub fn csr(&self) -> Result<&CertificateSigningRequestDer<'static>, CredentialsError> {
        self.csr_opt().ok_or(CredentialsError::NoLocalKey)
    }

    pub(crate) fn csr_opt(&self) -> Option<&CertificateSigningRequestDer<'static>> {
        self.shared.local.as_ref().map(|l| &l.csr)
    }

    /// Installs a certificate issued for the local key. New handshakes present it at once.
    ///
    /// Refused, and the current certificate kept, when the leaf names another identity, is not
    /// for the local key, or does not verify (chain, validity) against the trust bundle.
    pub fn set_certificate(&self, issued: IssuedCertificate) -> Result<(), CredentialsError> {
        let local = self
            .shared
            .local
            .as_ref()
            .ok_or(CredentialsError::NoLocalKey)?;
        let mut chain = Vec::with_capacity(1 + issued.intermediates.len());
        chain.push(issued.leaf);
        chain.extend(issued.intermediates);
        self.install(chain, local.signing.clone(), &local.spki)
    }

    /// Installs a user-provided certificate chain (leaf first) and key for the same identity.
    pub fn set_certified_key(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: &PrivateKeyDer<'_>,
    ) -> Result<(), CredentialsError> {
        let signing = rustls::crypto::ring::sign::any_supported_type(key)
            .map_err(|e| CredentialsError::BadKey(e.to_string()))?;
        let spki = signing
            .public_key()
            .map(|k| k.as_ref().to_vec())
            .ok_or_else(|| CredentialsError::BadKey("cannot derive its public key".into()))?;
        self.install(chain, signing, &spki)
    }

    fn install(
        &self,
        chain: Vec<CertificateDer<'static>>,
        signing: Arc<dyn SigningKey>,
        spki: &[u8],
    ) -> Result<(), CredentialsError> {
        let leaf = chain
            .first()
            .ok_or_else(|| CredentialsError::Malformed("the certificate chain is empty".into()))?;
        let info = CertInfo::parse(leaf).map_err(|e| CredentialsError::Malformed(e.to_string()))?;
        if !info.identities.contains(self.identity()) {
            return Err(CredentialsError::IdentityMismatch {
                expected: self.identity().clone(),
                found: info
                    .identity()
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| "no identity".into()),
            });
        }
        if info.spki != spki {
            return Err(CredentialsError::KeyMismatch);
        }
        let roots = self.shared.trust.borrow().bundle.roots().clone();
        verify::verify_chain(leaf, &chain[1..], &roots, UnixTime::now())
            .map_err(CredentialsError::Untrusted)?;
        let current = Current {
            key: Arc::new(CertifiedKey::new(chain, signing)),
            valid_until: info.not_after,
        };
        self.shared.cert.send_replace(Some(current));
        Ok(())
    }

    /// Replaces the trust bundle. Handshakes after this verify peers against the new bundle.
    pub fn set_trust_bundle(&self, bundle: TrustBundle) {
        self.shared.trust.send_replace(TrustState::new(bundle));
    }

    /// The current trust bundle.
    pub fn trust_bundle(&self) -> TrustBundle {
        self.shared.trust.borrow().bundle.clone()
    }

    /// Whether a certificate is installed: until then servers refuse handshakes and clients
    /// present no certificate. Proxies report not-ready until this is true.
    pub fn is_ready(&self) -> bool {
        self.shared.cert.borrow().is_some()
    }

    /// Waits until a certificate is installed.
    pub async fn ready(&self) {
        let mut rx = self.shared.cert.subscribe();
        // The sender lives as long as `self`, so this cannot fail while we wait.
        let _ = rx.wait_for(Option::is_some).await;
    }

    /// When the current certificate expires, if there is one.
    pub fn certified_until(&self) -> Option<SystemTime> {
        self.shared.cert.borrow().as_ref().map(|c| c.valid_until)
    }

    /// The current leaf certificate, if there is one.
    pub fn leaf_certificate(&self) -> Option<CertificateDer<'static>> {
        self.shared
            .cert
            .borrow()
            .as_ref()
            .and_then(|c| c.key.cert.first().cloned())
    }

    /// A receiver that sees every certificate change (for metrics and readiness).
    pub fn watch_certificate(&self) -> watch::Receiver<Option<SystemTime>> {
        let mut rx = self.shared.cert.subscribe();
        let (tx, out) = watch::channel(self.certified_until());
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let v = rx.borrow_and_update().as_ref().map(|c| c.valid_until);
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        out
    }

    pub(crate) fn cert_rx(&self) -> watch::Receiver<Option<Current>> {
        self.shared.cert.subscribe()
    }

    pub(crate) fn trust_rx(&self) -> watch::Receiver<TrustState> {
        self.shared.trust.subscribe()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("identity", self.identity())
            .field("local_key", &self.shared.local.is_some())
            .field("ready", &self.is_ready())
            .field("trust", &self.shared.trust.borrow().bundle)
            .finish()
    }
}

// === impl TrustState ===

impl TrustState {
    fn new(bundle: TrustBundle) -> Self {
        let provider = verify::provider();
        let build = |optional: bool| -> Arc<dyn ClientCertVerifier> {
            let b = WebPkiClientVerifier::builder_with_provider(
                bundle.roots().clone(),
                provider.clone(),
            );
            let b = if optional {
                b.allow_unauthenticated()
            } else {
                b
            };
            match b.build() {
                Ok(v) => v,
                // Only fails for an empty root store, which a TrustBundle never is.
                Err(e) => Arc::new(verify::RefuseAll(e.to_string())),
            }
        };
        Self {
            client_required: build(false),
            client_optional: build(true),
            bundle,
        }
    }
}
