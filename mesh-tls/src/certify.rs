//! Getting a proxy's certificate signed, and keeping it fresh.
//!
//! Whoever signs is behind the [`Certify`] trait: the in-process [`CertificateAuthority`]
//! implements it, and the control plane's gRPC `Identity.Certify` client does in `mesh-proxy`.
//! [`refresh`] is the control loop: certify, install the certificate in the [`Credentials`] (new
//! handshakes use it at once; established connections are not touched), sleep until 70% of the
//! certificate's remaining lifetime (clamped between [`RefreshPolicy::min_refresh`] and
//! [`RefreshPolicy::max_refresh`]), repeat. A failure is retried after an exponential backoff
//! with jitter, while the current certificate keeps serving until it expires.
//!
//! ```
//! use std::sync::Arc;
//! use mesh_tls::{CertificateAuthority, Credentials, certify::{self, RefreshPolicy}};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ca = Arc::new(CertificateAuthority::builder().generate()?);
//! let id = ca.domain().workload("web", "emojivoto")?;
//! let creds = Credentials::generate(id, ca.trust_bundle())?;
//! tokio::spawn(certify::refresh(creds.clone(), ca.clone(), RefreshPolicy::default()));
//! creds.ready().await;
//! assert!(creds.is_ready());
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer};

use crate::ca::UtcTime;
use crate::{BoxError, CertificateAuthority, Credentials, ServiceIdentity, cert};

/// A leaf certificate with the intermediates that chain it to a trust anchor.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    /// The workload's certificate (DER).
    pub leaf: CertificateDer<'static>,
    /// The issuer chain, leaf-side first, anchor excluded.
    pub intermediates: Vec<CertificateDer<'static>>,
    /// When the leaf expires.
    pub valid_until: SystemTime,
}

impl IssuedCertificate {
    /// The leaf and intermediates as PEM.
    pub fn chain_pem(&self) -> String {
        std::iter::once(&self.leaf)
            .chain(&self.intermediates)
            .map(|c| cert::pem("CERTIFICATE", c))
            .collect()
    }
}

impl fmt::Debug for IssuedCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCertificate")
            .field("intermediates", &self.intermediates.len())
            .field("valid_until", &UtcTime(self.valid_until))
            .finish()
    }
}

/// What a proxy sends to be certified: the identity it claims and its CSR.
///
/// The signer checks that the caller proved that identity (a token, the process itself) and that
/// the CSR asks for nothing else.
#[derive(Clone, Debug)]
pub struct CertifyRequest {
    /// The identity the proxy claims.
    pub identity: ServiceIdentity,
    /// The CSR for the proxy's locally generated key.
    pub csr: CertificateSigningRequestDer<'static>,
}

/// The future [`Certify::certify`] returns.
pub type CertifyFuture<'a> =
    Pin<Box<dyn Future<Output = Result<IssuedCertificate, BoxError>> + Send + 'a>>;

/// Signs a proxy's CSR: the in-process CA, or a client of the control plane's identity service.
pub trait Certify: Send + Sync {
    /// Asks for a certificate.
    fn certify(&self, request: CertifyRequest) -> CertifyFuture<'_>;
}

/// The in-process CA trusts its own process: it signs for the identity the request claims, as
/// long as the CSR asks for nothing else.
impl Certify for CertificateAuthority {
    fn certify(&self, request: CertifyRequest) -> CertifyFuture<'_> {
        let res = self
            .sign(&request.csr, &request.identity)
            .map_err(BoxError::from);
        Box::pin(std::future::ready(res))
    }
}

impl<C: Certify + ?Sized> Certify for Arc<C> {
    fn certify(&self, request: CertifyRequest) -> CertifyFuture<'_> {
        (**self).certify(request)
    }
}

/// When [`refresh`] renews the certificate and how it backs off on failure.
#[derive(Clone, Debug)]
pub struct RefreshPolicy {
    /// Fraction of the remaining lifetime after which to renew. Default is 0.7.
    pub refresh_ratio: f64,
    /// Never renew sooner than this after a success. Default is 10 s.
    pub min_refresh: Duration,
    /// Never wait longer than this to renew. Default is 24 h.
    pub max_refresh: Duration,
    /// First retry delay after a failure. Default is 1 s.
    pub backoff_min: Duration,
    /// Largest retry delay. Default is 60 s.
    pub backoff_max: Duration,
    /// Random extra fraction of each backoff delay, 0 to 1. Default is 0.5.
    pub jitter: f64,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            refresh_ratio: 0.7,
            min_refresh: Duration::from_secs(10),
            max_refresh: Duration::from_secs(24 * 3600),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            jitter: 0.5,
        }
    }
}

impl RefreshPolicy {
    /// How long to wait before renewing a certificate that has `remaining` lifetime.
    pub fn refresh_in(&self, remaining: Duration) -> Duration {
        remaining
            .mul_f64(self.refresh_ratio.clamp(0.0, 1.0))
            .clamp(self.min_refresh, self.max_refresh.max(self.min_refresh))
    }

    /// The delay before retry number `attempt` (from 0) after failures, jitter included.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let base = self
            .backoff_min
            .saturating_mul(2u32.saturating_pow(attempt.min(16)))
            .min(self.backoff_max);
        let jitter = base.mul_f64(self.jitter.clamp(0.0, 1.0) * rand::random::<f64>());
        base + jitter
    }
}

/// Keeps `creds` certified by `certify` forever: certifies now, then again at 70% of each
/// certificate's lifetime; retries failures with jittered exponential backoff.
///
/// Spawn it; drop the task to stop. Progress is logged with `tracing` and readable from
/// [`Credentials::certified_until`].
pub async fn refresh<C: Certify>(creds: Credentials, certify: C, policy: RefreshPolicy) {
    let mut failures = 0u32;
    loop {
        let Some(csr) = creds.csr_opt().cloned() else {
            tracing::error!("credentials have no local key to certify; nothing to refresh");
            return;
        };
        let request = CertifyRequest {
            identity: creds.identity().clone(),
            csr,
        };
        let outcome = match certify.certify(request).await {
            Ok(issued) => creds.set_certificate(issued).map_err(BoxError::from),
            Err(e) => Err(e),
        };
        let wait = match outcome {
            Ok(()) => {
                failures = 0;
                let remaining = creds
                    .certified_until()
                    .and_then(|t| t.duration_since(SystemTime::now()).ok())
                    .unwrap_or_default();
                let wait = policy.refresh_in(remaining);
                tracing::info!(
                    identity = %creds.identity(),
                    valid_for = ?remaining,
                    refresh_in = ?wait,
                    "certified"
                );
                wait
            }
            Err(error) => {
                let wait = policy.backoff(failures);
                failures = failures.saturating_add(1);
                tracing::warn!(
                    identity = %creds.identity(),
                    %error,
                    retry_in = ?wait,
                    "failed to certify; the current certificate (if any) keeps serving"
                );
                wait
            }
        };
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_at_seventy_percent_clamped() {
        let p = RefreshPolicy::default();
        assert_eq!(
            p.refresh_in(Duration::from_secs(24 * 3600)),
            Duration::from_secs(60480)
        );
        assert_eq!(p.refresh_in(Duration::from_secs(1)), p.min_refresh);
        assert_eq!(p.refresh_in(Duration::from_secs(1_000_000)), p.max_refresh);
    }

    #[test]
    fn backoff_grows_with_bounded_jitter() {
        let p = RefreshPolicy::default();
        for attempt in 0..20 {
            let base = (p.backoff_min * 2u32.pow(attempt.min(16))).min(p.backoff_max);
            let d = p.backoff(attempt);
            assert!(d >= base && d <= base.mul_f64(1.5), "{attempt}: {d:?}");
        }
    }
}
