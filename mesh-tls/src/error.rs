//! Why a TLS handshake failed, in words an operator can act on.

use std::fmt;
use std::io;
use std::time::Duration;

use rustls::{AlertDescription, CertificateError};

use crate::verify::IdentityMismatch;

/// A failed TLS handshake, on either side.
///
/// Ask what happened with the `is_*` predicates; the `Display` text is for people and may change.
///
/// ```
/// # fn check(err: mesh_core::BoxError) {
/// if let Some(e) = err.downcast_ref::<mesh_tls::HandshakeError>() {
///     if e.is_identity_mismatch() { /* discovery and the endpoint disagree */ }
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct HandshakeError {
    kind: Kind,
    source: Option<io::Error>,
}

#[derive(Debug)]
enum Kind {
    NoClientCertificate,
    Untrusted(rustls::Error),
    Expired(rustls::Error),
    IdentityMismatch(IdentityMismatch),
    NoIdentity,
    RejectedByPeer(AlertDescription),
    NotTls(rustls::Error),
    NotReady,
    TimedOut(Duration),
    Tls(rustls::Error),
    Io,
}

impl HandshakeError {
    pub(crate) fn from_io(err: io::Error) -> Self {
        let tls = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
            .cloned();
        let kind = match tls {
            None => Kind::Io,
            Some(e) => classify(e),
        };
        Self {
            kind,
            source: Some(err),
        }
    }

    pub(crate) fn timed_out(after: Duration) -> Self {
        Self {
            kind: Kind::TimedOut(after),
            source: None,
        }
    }

    pub(crate) fn no_identity() -> Self {
        Self {
            kind: Kind::NoIdentity,
            source: None,
        }
    }

    /// The client presented no certificate to a server that requires one.
    pub fn is_no_client_certificate(&self) -> bool {
        matches!(self.kind, Kind::NoClientCertificate)
    }

    /// The peer's certificate does not chain to a trusted anchor.
    pub fn is_untrusted(&self) -> bool {
        matches!(self.kind, Kind::Untrusted(_))
    }

    /// The peer's certificate has expired (or is not yet valid).
    pub fn is_expired(&self) -> bool {
        matches!(self.kind, Kind::Expired(_))
    }

    /// The server's identity is not the one the client expected.
    pub fn is_identity_mismatch(&self) -> bool {
        matches!(self.kind, Kind::IdentityMismatch(_))
    }

    /// The identity mismatch, when that is what happened.
    pub fn identity_mismatch(&self) -> Option<&IdentityMismatch> {
        match &self.kind {
            Kind::IdentityMismatch(m) => Some(m),
            _ => None,
        }
    }

    /// The peer's verified certificate names no identity.
    pub fn is_no_identity(&self) -> bool {
        matches!(self.kind, Kind::NoIdentity)
    }

    /// The peer aborted the handshake with an alert (it refused our certificate, for instance).
    pub fn is_rejected_by_peer(&self) -> bool {
        matches!(self.kind, Kind::RejectedByPeer(_))
    }

    /// The peer did not speak TLS (garbage or truncated bytes).
    pub fn is_not_tls(&self) -> bool {
        matches!(self.kind, Kind::NotTls(_))
    }

    /// Our own credentials hold no certificate yet.
    pub fn is_not_ready(&self) -> bool {
        matches!(self.kind, Kind::NotReady)
    }

    /// The handshake did not finish in time.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, Kind::TimedOut(_))
    }
}

fn classify(e: rustls::Error) -> Kind {
    use rustls::Error as E;
    match &e {
        E::NoCertificatesPresented => Kind::NoClientCertificate,
        E::InvalidCertificate(ce) => match ce {
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => Kind::Expired(e),
            CertificateError::Other(o) => match o.0.downcast_ref::<IdentityMismatch>() {
                Some(m) => Kind::IdentityMismatch(m.clone()),
                None => Kind::Untrusted(e),
            },
            _ => Kind::Untrusted(e),
        },
        E::AlertReceived(AlertDescription::CertificateRequired) => Kind::NoClientCertificate,
        E::AlertReceived(a) => Kind::RejectedByPeer(*a),
        E::InvalidMessage(_)
        | E::InappropriateMessage { .. }
        | E::InappropriateHandshakeMessage { .. } => Kind::NotTls(e),
        E::General(m) if m.contains("no server certificate chain resolved") => Kind::NotReady,
        _ => Kind::Tls(e),
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TLS handshake failed: ")?;
        match &self.kind {
            Kind::NoClientCertificate => f.write_str(
                "the client presented no certificate, but the server requires mutual TLS \
                 (is the client meshed and does it hold a certificate?)",
            ),
            Kind::Untrusted(e) => write!(
                f,
                "the peer's certificate is not trusted ({e}); it may come from another mesh's \
                 trust anchor: check that both sides share the trust bundle"
            ),
            Kind::Expired(e) => write!(
                f,
                "the peer's certificate is expired or not yet valid ({e}); check the peer's \
                 certificate refresh and both clocks"
            ),
            Kind::IdentityMismatch(m) => write!(
                f,
                "{m}; discovery and the endpoint disagree about who serves this address"
            ),
            Kind::NoIdentity => f.write_str(
                "the peer's certificate names no identity (no DNS or SPIFFE URI subject \
                 alternative name)",
            ),
            Kind::RejectedByPeer(a) => write!(
                f,
                "the peer rejected the handshake with alert {a:?} (does it trust our \
                 certificate's anchor?)"
            ),
            Kind::NotTls(e) => write!(f, "the peer did not speak TLS ({e})"),
            Kind::NotReady => {
                f.write_str("this proxy holds no certificate yet; wait for it to be certified")
            }
            Kind::TimedOut(d) => write!(f, "the handshake did not complete within {d:?}"),
            Kind::Tls(e) => write!(f, "{e}"),
            Kind::Io => match &self.source {
                Some(e) => write!(f, "{e}"),
                None => f.write_str("I/O error"),
            },
        }
    }
}

impl std::error::Error for HandshakeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
