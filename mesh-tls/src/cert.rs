//! What the mesh reads out of a certificate, with x509-parser.
//!
//! Only ever called on certificates that were verified (or that we issued ourselves): the peer
//! identity comes from the verified leaf, never from unverified bytes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::ServiceIdentity;

/// The facts of a certificate the mesh cares about.
#[derive(Clone, Debug)]
pub(crate) struct CertInfo {
    /// Identities named in the subject alternative names, DNS names first.
    pub(crate) identities: Vec<ServiceIdentity>,
    pub(crate) not_after: SystemTime,
    pub(crate) is_ca: bool,
    /// The DER SubjectPublicKeyInfo.
    pub(crate) spki: Vec<u8>,
}

/// A certificate x509-parser could not read.
#[derive(Debug, thiserror::Error)]
#[error("not a valid X.509 certificate: {0}")]
pub(crate) struct BadCertificate(String);

impl CertInfo {
    pub(crate) fn parse(der: &CertificateDer<'_>) -> Result<Self, BadCertificate> {
        let (rest, cert) =
            X509Certificate::from_der(der).map_err(|e| BadCertificate(e.to_string()))?;
        if !rest.is_empty() {
            return Err(BadCertificate(
                "trailing bytes after the certificate".into(),
            ));
        }
        let mut dns = Vec::new();
        let mut uris = Vec::new();
        let san = cert
            .subject_alternative_name()
            .map_err(|e| BadCertificate(e.to_string()))?;
        if let Some(san) = san {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(n) => {
                        if let Ok(id) = ServiceIdentity::parse(n) {
                            dns.push(id)
                        }
                    }
                    GeneralName::URI(u) => {
                        if let Ok(id) = ServiceIdentity::parse(u)
                            && id.is_spiffe()
                        {
                            uris.push(id)
                        }
                    }
                    _ => {}
                }
            }
        }
        dns.extend(uris);
        let v = cert.validity();
        Ok(Self {
            identities: dns,
            not_after: to_system_time(v.not_after.timestamp()),
            is_ca: cert.is_ca(),
            spki: cert.public_key().raw.to_vec(),
        })
    }

    /// The identity a peer presenting this certificate proves: its first DNS-like name, else its
    /// SPIFFE ID.
    pub(crate) fn identity(&self) -> Option<&ServiceIdentity> {
        self.identities.first()
    }
}

fn to_system_time(ts: i64) -> SystemTime {
    if ts >= 0 {
        UNIX_EPOCH + Duration::from_secs(ts as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(ts.unsigned_abs())
    }
}

/// PEM text of one DER block.
pub(crate) fn pem(tag: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(tag, der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}
