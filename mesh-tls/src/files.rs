//! Static credentials from PEM files, reloaded when the files change.
//!
//! For a proxy or an embedding service that gets its certificate from elsewhere (cert-manager,
//! a secret store) rather than from the mesh's CA: a trust bundle, a certificate chain and a
//! private key, each a PEM file. [`PemFiles::watch`] polls the files and installs a new
//! certificate or bundle when they change; a broken or half-written file is reported and the
//! previous credentials keep serving.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::{Credentials, CredentialsError, TrustBundle};

/// Where a workload's credentials live on disk.
///
/// ```no_run
/// use mesh_tls::PemFiles;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let files = PemFiles {
///     trust_anchors: "/var/run/mesh/ca.pem".into(),
///     certificate: "/var/run/mesh/tls.crt".into(),
///     private_key: "/var/run/mesh/tls.key".into(),
/// };
/// let creds = files.load()?;
/// tokio::spawn(files.watch(creds.clone(), Duration::from_secs(5)));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PemFiles {
    /// One or more trust anchors.
    pub trust_anchors: PathBuf,
    /// The certificate chain, leaf first.
    pub certificate: PathBuf,
    /// The private key (PKCS#8, SEC1 or PKCS#1 PEM).
    pub private_key: PathBuf,
}

/// A credential file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PemFilesError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file does not hold what it should.
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The files are readable but do not make valid credentials.
    #[error("{}: {source}", path.display())]
    Credentials {
        /// The certificate file.
        path: PathBuf,
        /// What is wrong.
        source: CredentialsError,
    },
}

struct Contents {
    trust: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl PemFiles {
    fn read(&self) -> Result<Contents, PemFilesError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| PemFilesError::Io {
                path: p.to_owned(),
                source,
            })
        };
        Ok(Contents {
            trust: read(&self.trust_anchors)?,
            cert: read(&self.certificate)?,
            key: read(&self.private_key)?,
        })
    }

    fn parse(
        &self,
        c: &Contents,
    ) -> Result<
        (
            TrustBundle,
            Vec<CertificateDer<'static>>,
            PrivateKeyDer<'static>,
        ),
        PemFilesError,
    > {
        let invalid = |path: &Path, reason: String| PemFilesError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let trust = std::str::from_utf8(&c.trust)
            .map_err(|e| e.to_string())
            .and_then(|s| TrustBundle::from_pem(s).map_err(|e| e.to_string()))
            .map_err(|r| invalid(&self.trust_anchors, r))?;
        let chain = CertificateDer::pem_slice_iter(&c.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(&self.certificate, format!("not valid PEM: {e}")))?;
        if chain.is_empty() {
            return Err(invalid(
                &self.certificate,
                "holds no CERTIFICATE block; give the certificate chain, leaf first".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(&c.key).map_err(|e| {
            invalid(
                &self.private_key,
                format!("holds no usable PEM private key ({e})"),
            )
        })?;
        Ok((trust, chain, key))
    }

    /// Reads the files and builds credentials from them.
    pub fn load(&self) -> Result<Credentials, PemFilesError> {
        let contents = self.read()?;
        let (trust, chain, key) = self.parse(&contents)?;
        Credentials::from_certified_key(trust, chain, &key).map_err(|source| {
            PemFilesError::Credentials {
                path: self.certificate.clone(),
                source,
            }
        })
    }

    /// Applies the files to `creds` once: the trust bundle first, then the certificate (which is
    /// verified against it). Nothing changes if anything is wrong.
    pub fn reload(&self, creds: &Credentials) -> Result<(), PemFilesError> {
        let contents = self.read()?;
        self.apply(creds, &contents)
    }

    fn apply(&self, creds: &Credentials, c: &Contents) -> Result<(), PemFilesError> {
        let (trust, chain, key) = self.parse(c)?;
        let previous = creds.trust_bundle();
        creds.set_trust_bundle(trust);
        if let Err(source) = creds.set_certified_key(chain, &key) {
            creds.set_trust_bundle(previous);
            return Err(PemFilesError::Credentials {
                path: self.certificate.clone(),
                source,
            });
        }
        Ok(())
    }

    /// Polls the files every `interval` and applies them to `creds` when their contents change.
    /// Runs until dropped; errors are logged and the previous credentials kept.
    pub async fn watch(self, creds: Credentials, interval: Duration) {
        // Start from nothing rather than from what is on disk now: the files may already differ
        // from what `creds` holds, and re-applying identical files is harmless.
        let mut last: Option<(Vec<u8>, Vec<u8>, Vec<u8>)> = None;
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let contents = match self.read() {
                Ok(c) => c,
                Err(error) => {
                    tracing::warn!(%error, "credential files unreadable; keeping the current ones");
                    continue;
                }
            };
            let key = (
                contents.trust.clone(),
                contents.cert.clone(),
                contents.key.clone(),
            );
            if last.as_ref() == Some(&key) {
                continue;
            }
            match self.apply(&creds, &contents) {
                Ok(()) => {
                    tracing::info!(identity = %creds.identity(), "reloaded credentials from files");
                    last = Some(key);
                }
                Err(error) => {
                    tracing::warn!(%error, "credential files invalid; keeping the current ones");
                }
            }
        }
    }
}
