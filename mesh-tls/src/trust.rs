//! Trust bundles: the anchors a peer's certificate must chain to.
//!
//! A bundle may hold several anchors, which is how an anchor is rotated without downtime: ship
//! a bundle with the old and the new anchor everywhere, move issuers to the new anchor, then drop
//! the old one.

use std::fmt;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::cert;

/// A set of trust anchors (self-signed CA certificates).
///
/// ```
/// use mesh_tls::{CertificateAuthority, TrustBundle};
///
/// let old = CertificateAuthority::builder().generate()?;
/// let new = CertificateAuthority::builder().generate()?;
/// let bundle = TrustBundle::from_pem(&format!("{}{}", old.trust_anchor_pem(), new.trust_anchor_pem()))?;
/// assert_eq!(bundle.len(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct TrustBundle {
    anchors: Arc<[CertificateDer<'static>]>,
    roots: Arc<RootCertStore>,
}

/// A trust bundle that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InvalidTrustBundle {
    /// The PEM text holds no certificate.
    #[error("the trust bundle holds no CERTIFICATE block; give one or more PEM trust anchors")]
    Empty,
    /// A PEM block could not be decoded.
    #[error("the trust bundle is not valid PEM: {0}")]
    Pem(String),
    /// A certificate is not usable as a trust anchor.
    #[error("trust anchor #{index} is not usable: {reason}")]
    Anchor {
        /// Position of the certificate in the bundle, from 1.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
}

// === impl TrustBundle ===

impl TrustBundle {
    /// A bundle of the given DER certificates.
    pub fn new(
        anchors: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> Result<Self, InvalidTrustBundle> {
        let anchors: Vec<_> = anchors.into_iter().collect();
        if anchors.is_empty() {
            return Err(InvalidTrustBundle::Empty);
        }
        let mut roots = RootCertStore::empty();
        for (i, der) in anchors.iter().enumerate() {
            let anchor = |reason: String| InvalidTrustBundle::Anchor {
                index: i + 1,
                reason,
            };
            let info = cert::CertInfo::parse(der).map_err(|e| anchor(e.to_string()))?;
            if !info.is_ca {
                return Err(anchor(
                    "it is not a CA certificate (basicConstraints CA:TRUE missing)".into(),
                ));
            }
            roots.add(der.clone()).map_err(|e| anchor(e.to_string()))?;
        }
        Ok(Self {
            anchors: anchors.into(),
            roots: Arc::new(roots),
        })
    }

    /// Reads every `CERTIFICATE` block of a PEM text.
    pub fn from_pem(pem: &str) -> Result<Self, InvalidTrustBundle> {
        let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| InvalidTrustBundle::Pem(e.to_string()))?;
        Self::new(certs)
    }

    /// The anchors as PEM text, one block each.
    pub fn to_pem(&self) -> String {
        self.anchors
            .iter()
            .map(|c| cert::pem("CERTIFICATE", c))
            .collect()
    }

    /// The anchors, in bundle order.
    pub fn anchors(&self) -> &[CertificateDer<'static>] {
        &self.anchors
    }

    /// How many anchors the bundle holds.
    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    /// Whether the bundle is empty (never true for a bundle built by this crate).
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// The anchors as a rustls root store.
    pub fn roots(&self) -> &Arc<RootCertStore> {
        &self.roots
    }

    /// A bundle with the anchors of both.
    pub fn merge(&self, other: &TrustBundle) -> TrustBundle {
        let mut all: Vec<_> = self.anchors.to_vec();
        for a in other.anchors.iter() {
            if !all.contains(a) {
                all.push(a.clone());
            }
        }
        // Both inputs were valid, so the union is.
        match Self::new(all) {
            Ok(b) => b,
            Err(_) => self.clone(),
        }
    }
}

impl fmt::Debug for TrustBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustBundle")
            .field("anchors", &self.anchors.len())
            .finish()
    }
}
