//! The mesh's certificate authority: a trust anchor, an issuer, and the signing of CSRs.
//!
//! The trust anchor is long-lived and self-signed; the issuer is an intermediate CA signed by it,
//! and signs the short-lived workload certificates (24 h by default, as Linkerd's). Keys are
//! ECDSA P-256. Both can be generated, saved to PEM files and loaded back, so a user can bring
//! their own anchor and issuer (for instance from cert-manager or an offline root).
//!
//! [`CertificateAuthority::sign`] issues a leaf only for the identity the caller *proved* (a
//! bootstrap token, a Kubernetes ServiceAccount token, or the process itself for an in-process
//! CA): a CSR asking for any other name is refused with [`SignError::IdentityMismatch`].
//!
//! (One file over 600 lines on purpose: the CA's whole life cycle — build or load, sign, save —
//! shares its key handling and validity rules, and reads best in one place.)
//!
//! ```
//! use mesh_tls::{CertificateAuthority, Credentials, ServiceIdentity};
//!
//! let ca = CertificateAuthority::builder().generate()?;
//! let web = ca.domain().workload("web", "emojivoto")?;
//! let creds = Credentials::generate(web.clone(), ca.trust_bundle())?;
//! let issued = ca.sign(creds.csr()?, &web)?;
//! creds.set_certificate(issued)?;
//! assert!(creds.is_ready());
//!
//! // A CSR for `web` is not signed for a caller who proved `voting`.
//! let voting = ca.domain().workload("voting", "emojivoto")?;
//! assert!(ca.sign(creds.csr()?, &voting).unwrap_err().is_identity_mismatch());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer, PrivateKeyDer, UnixTime};

use crate::cert::{self, CertInfo};
use crate::certify::IssuedCertificate;
use crate::{IdentityDomain, ServiceIdentity, TrustBundle};

/// Clock skew allowed for in a new certificate's `notBefore` (Linkerd allows 20 s).
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// A trust anchor and an issuer that signs workload certificates.
pub struct CertificateAuthority {
    domain: IdentityDomain,
    bundle: TrustBundle,
    anchor: CertificateDer<'static>,
    anchor_key: Option<KeyPair>,
    issuer_cert: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    issuer_not_after: SystemTime,
    leaf_lifetime: Duration,
}

/// Configures and creates a [`CertificateAuthority`].
#[derive(Clone, Debug)]
pub struct CaBuilder {
    domain: IdentityDomain,
    anchor_lifetime: Duration,
    issuer_lifetime: Duration,
    leaf_lifetime: Duration,
}

/// When a certificate is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity (clamped to the issuer's).
    pub not_after: SystemTime,
}

/// A private key and the certificate issued for it, for workloads that do not make their own
/// CSR (for instance a `curl` client in a test, or a user bringing static files).
pub struct LeafCredentials {
    /// The leaf and its chain.
    pub certificate: IssuedCertificate,
    key: KeyPair,
}

/// Why the CA could not be created, loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A PEM file does not hold what it should.
    #[error("{what}: {reason}")]
    Pem {
        /// Which input.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The issuer certificate does not chain to any anchor of the bundle, or its key does not
    /// match it.
    #[error(
        "the issuer certificate does not chain to the trust anchors or its key does not match it ({0}); give the issuer that the anchor signed, with its own key"
    )]
    IssuerNotTrusted(String),
    /// The issuer has expired.
    #[error("the issuer certificate expired at {0}; issue a new issuer from the trust anchor")]
    IssuerExpired(UtcTime),
    /// rcgen failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Why a CSR was not signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The CSR could not be parsed, or its signature is wrong.
    #[error("malformed certificate signing request: {0}")]
    MalformedCsr(String),
    /// The CSR names no identity.
    #[error(
        "the certificate signing request names no identity (no DNS or SPIFFE URI subject alternative name)"
    )]
    NoIdentity,
    /// The CSR asks for an identity the caller did not prove.
    #[error(
        "the certificate signing request asks for {requested}, but the caller proved {authenticated}; a workload may only certify its own identity"
    )]
    IdentityMismatch {
        /// What the CSR asked for.
        requested: String,
        /// What the caller proved.
        authenticated: ServiceIdentity,
    },
    /// The issuer has expired.
    #[error("the issuer expired at {0}; the CA cannot sign until it has a valid issuer")]
    IssuerExpired(UtcTime),
    /// rcgen failed.
    #[error("signing failed: {0}")]
    Sign(#[from] rcgen::Error),
}

impl SignError {
    /// Whether the CSR asked for an identity other than the proven one.
    pub fn is_identity_mismatch(&self) -> bool {
        matches!(self, Self::IdentityMismatch { .. })
    }
}

// === impl CaBuilder ===

impl Default for CaBuilder {
    fn default() -> Self {
        Self {
            domain: IdentityDomain::default(),
            anchor_lifetime: Duration::from_secs(10 * 365 * 24 * 3600),
            issuer_lifetime: Duration::from_secs(365 * 24 * 3600),
            leaf_lifetime: Duration::from_secs(24 * 3600),
        }
    }
}

impl CaBuilder {
    /// The identity domain names are issued in. Default is [`IdentityDomain::default`].
    pub fn domain(mut self, domain: IdentityDomain) -> Self {
        self.domain = domain;
        self
    }

    /// Lifetime of a generated trust anchor. Default is 10 years.
    pub fn anchor_lifetime(mut self, d: Duration) -> Self {
        self.anchor_lifetime = d;
        self
    }

    /// Lifetime of a generated issuer. Default is 1 year.
    pub fn issuer_lifetime(mut self, d: Duration) -> Self {
        self.issuer_lifetime = d;
        self
    }

    /// Lifetime of workload certificates. Default is 24 hours.
    pub fn leaf_lifetime(mut self, d: Duration) -> Self {
        self.leaf_lifetime = d;
        self
    }

    /// Generates a new trust anchor and issuer.
    pub fn generate(self) -> Result<CertificateAuthority, CaError> {
        let now = SystemTime::now();
        let anchor_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut anchor_params = ca_params(
            &format!("root.{}", self.domain.suffix()),
            BasicConstraints::Unconstrained,
        );
        anchor_params.not_before = (now - CLOCK_SKEW).into();
        anchor_params.not_after = (now + self.anchor_lifetime).into();
        let anchor = anchor_params.self_signed(&anchor_key)?;
        let anchor_issuer = Issuer::new(anchor_params, &anchor_key);

        let issuer_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut issuer_params = ca_params(
            &format!("identity.{}", self.domain.suffix()),
            BasicConstraints::Constrained(0),
        );
        let issuer_not_after = now + self.issuer_lifetime.min(self.anchor_lifetime);
        issuer_params.not_before = (now - CLOCK_SKEW).into();
        issuer_params.not_after = issuer_not_after.into();
        issuer_params.use_authority_key_identifier_extension = true;
        let issuer_cert = issuer_params.signed_by(&issuer_key, &anchor_issuer)?;
        let issuer_cert = issuer_cert.der().clone();
        let issuer = Issuer::new(issuer_params, issuer_key);
        let anchor = anchor.der().clone();
        let bundle = TrustBundle::new([anchor.clone()]).map_err(|e| CaError::Pem {
            what: "generated trust anchor",
            reason: e.to_string(),
        })?;
        Ok(CertificateAuthority {
            domain: self.domain,
            bundle,
            anchor,
            anchor_key: Some(anchor_key),
            issuer_cert,
            issuer,
            issuer_not_after,
            leaf_lifetime: self.leaf_lifetime,
        })
    }

    /// Uses an existing trust bundle (one or more anchors, PEM), issuer certificate (PEM) and
    /// issuer key (PKCS#8 PEM). Fails if the issuer does not chain to the bundle, its key does not
    /// match, or it has expired.
    pub fn from_pem(
        self,
        trust_anchors_pem: &str,
        issuer_cert_pem: &str,
        issuer_key_pem: &str,
    ) -> Result<CertificateAuthority, CaError> {
        let bundle = TrustBundle::from_pem(trust_anchors_pem).map_err(|e| CaError::Pem {
            what: "trust anchors",
            reason: e.to_string(),
        })?;
        let issuer_cert =
            CertificateDer::from_pem_slice(issuer_cert_pem.as_bytes()).map_err(|e| {
                CaError::Pem {
                    what: "issuer certificate",
                    reason: format!("{e}; expected a PEM CERTIFICATE block"),
                }
            })?;
        let issuer_key = KeyPair::from_pem(issuer_key_pem).map_err(|e| CaError::Pem {
            what: "issuer key",
            reason: format!("{e}; expected a PKCS#8 PEM PRIVATE KEY block"),
        })?;
        let info = CertInfo::parse(&issuer_cert).map_err(|e| CaError::Pem {
            what: "issuer certificate",
            reason: e.to_string(),
        })?;
        if !info.is_ca {
            return Err(CaError::IssuerNotTrusted(
                "the issuer certificate is not a CA certificate".into(),
            ));
        }
        if info.not_after <= SystemTime::now() {
            return Err(CaError::IssuerExpired(info.not_after.into()));
        }
        let issuer = Issuer::from_ca_cert_der(&issuer_cert, issuer_key)?;
        let anchor = bundle.anchors()[0].clone();
        let ca = CertificateAuthority {
            domain: self.domain,
            bundle,
            anchor,
            anchor_key: None,
            issuer_cert,
            issuer,
            issuer_not_after: info.not_after,
            leaf_lifetime: self.leaf_lifetime,
        };
        ca.check_chain()?;
        Ok(ca)
    }

    /// Loads a CA saved with [`CertificateAuthority::save`] from `dir`.
    pub fn load(self, dir: &Path) -> Result<CertificateAuthority, CaError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| CaError::Io { path, source })
        };
        let mut ca = self.from_pem(
            &read(files::TRUST_ANCHORS)?,
            &read(files::ISSUER_CERT)?,
            &read(files::ISSUER_KEY)?,
        )?;
        let anchor_key_path = dir.join(files::ANCHOR_KEY);
        if anchor_key_path.exists() {
            let pem = read(files::ANCHOR_KEY)?;
            ca.anchor_key = Some(KeyPair::from_pem(&pem).map_err(|e| CaError::Pem {
                what: "trust anchor key",
                reason: e.to_string(),
            })?);
        }
        Ok(ca)
    }

    /// Loads the CA in `dir` if there is one, or generates one and saves it there.
    pub fn load_or_generate(self, dir: &Path) -> Result<CertificateAuthority, CaError> {
        if dir.join(files::ISSUER_KEY).exists() {
            return self.load(dir);
        }
        let ca = self.generate()?;
        ca.save(dir)?;
        Ok(ca)
    }
}

fn ca_params(cn: &str, constraints: BasicConstraints) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(constraints);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial());
    params
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // and without a leading zero byte
    SerialNumber::from_slice(&bytes)
}

/// File names used by [`CertificateAuthority::save`] and [`CaBuilder::load`].
pub mod files {
    /// The trust bundle (PEM).
    pub const TRUST_ANCHORS: &str = "trust-anchors.pem";
    /// The trust anchor's key, when the CA generated it (PEM, mode 0600).
    pub const ANCHOR_KEY: &str = "trust-anchor.key";
    /// The issuer certificate (PEM).
    pub const ISSUER_CERT: &str = "issuer.pem";
    /// The issuer key (PEM, mode 0600).
    pub const ISSUER_KEY: &str = "issuer.key";
}

// === impl CertificateAuthority ===

impl CertificateAuthority {
    /// Starts configuring a CA.
    pub fn builder() -> CaBuilder {
        CaBuilder::default()
    }

    /// The identity domain the CA issues names in.
    pub fn domain(&self) -> &IdentityDomain {
        &self.domain
    }

    /// The trust bundle proxies need to verify certificates this CA issues.
    pub fn trust_bundle(&self) -> TrustBundle {
        self.bundle.clone()
    }

    /// The (first) trust anchor as PEM.
    pub fn trust_anchor_pem(&self) -> String {
        cert::pem("CERTIFICATE", &self.anchor)
    }

    /// The issuer certificate as PEM.
    pub fn issuer_pem(&self) -> String {
        cert::pem("CERTIFICATE", &self.issuer_cert)
    }

    /// When the issuer expires: no leaf outlives it.
    pub fn issuer_not_after(&self) -> SystemTime {
        self.issuer_not_after
    }

    /// The lifetime of issued leaves.
    pub fn leaf_lifetime(&self) -> Duration {
        self.leaf_lifetime
    }

    /// Writes the trust bundle, the issuer and the keys (mode 0600) to `dir`, creating it.
    pub fn save(&self, dir: &Path) -> Result<(), CaError> {
        std::fs::create_dir_all(dir).map_err(|source| CaError::Io {
            path: dir.to_owned(),
            source,
        })?;
        write_file(
            &dir.join(files::TRUST_ANCHORS),
            &self.bundle.to_pem(),
            false,
        )?;
        write_file(&dir.join(files::ISSUER_CERT), &self.issuer_pem(), false)?;
        write_file(
            &dir.join(files::ISSUER_KEY),
            &self.issuer.key().serialize_pem(),
            true,
        )?;
        if let Some(k) = &self.anchor_key {
            write_file(&dir.join(files::ANCHOR_KEY), &k.serialize_pem(), true)?;
        }
        Ok(())
    }

    /// Signs `csr` for a caller that proved `authenticated`.
    ///
    /// The CSR's subject alternative names must all be that identity (the SPIFFE ID of a workload
    /// identity is accepted beside it). The leaf carries the identity, and for a workload identity
    /// of this CA's domain its SPIFFE ID too; it is valid for the configured leaf lifetime but
    /// never past the issuer's expiry.
    pub fn sign(
        &self,
        csr: &CertificateSigningRequestDer<'_>,
        authenticated: &ServiceIdentity,
    ) -> Result<IssuedCertificate, SignError> {
        let csr = CertificateSigningRequestParams::from_der(csr)
            .map_err(|e| SignError::MalformedCsr(e.to_string()))?;
        let spiffe = self.domain.spiffe_id_of(authenticated);
        let mut requested = Vec::new();
        for san in &csr.params.subject_alt_names {
            match san {
                SanType::DnsName(n) => requested.push(n.as_str().to_owned()),
                SanType::URI(u) => requested.push(u.as_str().to_owned()),
                other => requested.push(format!("{other:?}")),
            }
        }
        if requested.is_empty() {
            return Err(SignError::NoIdentity);
        }
        let proven = |name: &str| match ServiceIdentity::parse(name) {
            Ok(id) => id == *authenticated || Some(&id) == spiffe.as_ref(),
            Err(_) => false,
        };
        if !requested.iter().all(|n| proven(n)) {
            return Err(SignError::IdentityMismatch {
                requested: requested.join(", "),
                authenticated: authenticated.clone(),
            });
        }
        let now = SystemTime::now();
        if self.issuer_not_after <= now {
            return Err(SignError::IssuerExpired(self.issuer_not_after.into()));
        }
        let validity = Validity {
            not_before: now - CLOCK_SKEW,
            not_after: now + self.leaf_lifetime,
        };
        self.issue_for_key(authenticated, &csr.public_key, validity)
    }

    /// Issues a key and a certificate for `identity`, valid for the leaf lifetime. For clients
    /// that cannot make a CSR (curl, openssl) and for static credential files.
    pub fn issue(&self, identity: &ServiceIdentity) -> Result<LeafCredentials, SignError> {
        let now = SystemTime::now();
        self.issue_with_validity(
            identity,
            Validity {
                not_before: now - CLOCK_SKEW,
                not_after: now + self.leaf_lifetime,
            },
        )
    }

    /// Issues a key and a certificate with an explicit validity (still clamped to the issuer's).
    pub fn issue_with_validity(
        &self,
        identity: &ServiceIdentity,
        validity: Validity,
    ) -> Result<LeafCredentials, SignError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let certificate = self.issue_for_key(identity, &key, validity)?;
        Ok(LeafCredentials { certificate, key })
    }

    fn issue_for_key(
        &self,
        identity: &ServiceIdentity,
        public_key: &impl rcgen::PublicKeyData,
        validity: Validity,
    ) -> Result<IssuedCertificate, SignError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        let mut sans = vec![san_of(identity)?];
        if let Some(spiffe) = self.domain.spiffe_id_of(identity) {
            sans.push(san_of(&spiffe)?);
        }
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        let not_after = validity.not_after.min(self.issuer_not_after);
        params.not_before = validity.not_before.into();
        params.not_after = not_after.into();
        let leaf = params.signed_by(public_key, &self.issuer)?;
        Ok(IssuedCertificate {
            leaf: leaf.der().clone(),
            intermediates: vec![self.issuer_cert.clone()],
            valid_until: not_after,
        })
    }

    /// Issues a throwaway leaf and verifies it against the bundle: proves that the issuer chains
    /// to an anchor and that the issuer key matches the issuer certificate.
    fn check_chain(&self) -> Result<(), CaError> {
        let probe = ServiceIdentity::parse("probe.invalid")
            .map_err(|e| CaError::IssuerNotTrusted(format!("internal: {e}")))?;
        let leaf = self
            .issue(&probe)
            .map_err(|e| CaError::IssuerNotTrusted(e.to_string()))?;
        crate::verify::verify_chain(
            &leaf.certificate.leaf,
            &leaf.certificate.intermediates,
            self.bundle.roots(),
            UnixTime::now(),
        )
        .map_err(|e| CaError::IssuerNotTrusted(e.to_string()))
    }
}

fn san_of(id: &ServiceIdentity) -> Result<SanType, SignError> {
    let ia5 = id
        .as_str()
        .to_owned()
        .try_into()
        .map_err(|e: rcgen::Error| SignError::Sign(e))?;
    Ok(if id.is_spiffe() {
        SanType::URI(ia5)
    } else {
        SanType::DnsName(ia5)
    })
}

fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), CaError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| CaError::Io {
        path: path.to_owned(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    if secret {
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io)?;
    if secret {
        // The mode above applies only to new files; tighten an existing one too.
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
    }
    f.write_all(contents.as_bytes()).map_err(io)
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("domain", &self.domain)
            .field("anchors", &self.bundle.len())
            .field("issuer_not_after", &UtcTime(self.issuer_not_after))
            .field("leaf_lifetime", &self.leaf_lifetime)
            .field("keys", &"<redacted>")
            .finish()
    }
}

// === impl LeafCredentials ===

impl LeafCredentials {
    /// The leaf followed by its intermediates, as PEM (what `curl --cert` takes).
    pub fn chain_pem(&self) -> String {
        self.certificate.chain_pem()
    }

    /// The private key as PKCS#8 PEM (what `curl --key` takes). Handle with care.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// The private key as DER.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.serialize_der().into())
    }
}

impl fmt::Debug for LeafCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeafCredentials")
            .field("certificate", &self.certificate)
            .field("key", &"<redacted>")
            .finish()
    }
}

// === impl Validity ===

impl Validity {
    /// Valid from a minute ago for `lifetime`.
    pub fn from_now(lifetime: Duration) -> Self {
        let now = SystemTime::now();
        Self {
            not_before: now - CLOCK_SKEW,
            not_after: now + lifetime,
        }
    }
}

pub use utc_time::UtcTime;

mod utc_time {
    use std::fmt;
    use std::time::{SystemTime, UNIX_EPOCH};

    /// A wall-clock time printed as RFC 3339 UTC, as errors show it.
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub struct UtcTime(pub SystemTime);

    impl From<SystemTime> for UtcTime {
        fn from(t: SystemTime) -> Self {
            Self(t)
        }
    }

    impl fmt::Display for UtcTime {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let secs = match self.0.duration_since(UNIX_EPOCH) {
                Ok(d) => d.as_secs() as i64,
                Err(e) => -(e.duration().as_secs() as i64),
            };
            match time::OffsetDateTime::from_unix_timestamp(secs) {
                Ok(t) => write!(
                    f,
                    "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                    t.year(),
                    t.month() as u8,
                    t.day(),
                    t.hour(),
                    t.minute(),
                    t.second()
                ),
                Err(_) => write!(f, "{secs}s since the epoch"),
            }
        }
    }

    impl fmt::Debug for UtcTime {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            fmt::Display::fmt(self, f)
        }
    }
}
