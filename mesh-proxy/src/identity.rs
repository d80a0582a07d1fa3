//! Where the proxy's certificate comes from.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mesh_tls::certify::{self, RefreshPolicy};
use mesh_tls::{CertificateAuthority, Credentials, PemFiles, ServiceIdentity};

/// A source of the proxy's identity.
#[derive(Clone, Debug)]
pub enum IdentitySource {
    /// Static PEM files (trust anchors, certificate chain, key), reloaded when they change.
    Files(PemFiles),
    /// A CA directory on this host (`mesh ca init`): the proxy makes its key and certifies its
    /// identity with it in-process, refreshing at 70% of the lifetime.
    LocalCa {
        /// The CA directory.
        dir: PathBuf,
        /// The identity to certify.
        identity: ServiceIdentity,
    },
    /// The control plane's identity service (`Identity.Certify`), proving the identity with a
    /// one-use bootstrap token the first time and with the current certificate after.
    Control {
        /// The control plane's address.
        addr: std::net::SocketAddr,
        /// The identity the control plane must prove.
        control_identity: ServiceIdentity,
        /// Trust anchors (PEM file).
        trust_anchors: PathBuf,
        /// The identity to certify.
        identity: ServiceIdentity,
        /// The bootstrap token, if any.
        token: Option<String>,
    },
}

/// The identity could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Static files are unusable.
    #[error(transparent)]
    Files(#[from] mesh_tls::PemFilesError),
    /// The CA directory is unusable.
    #[error("CA directory {dir}: {source}")]
    Ca {
        /// The directory.
        dir: String,
        /// The cause.
        source: mesh_tls::ca::CaError,
    },
    /// Key generation failed.
    #[error(transparent)]
    Credentials(#[from] mesh_tls::CredentialsError),
    /// The trust anchors file is unusable.
    #[error("trust anchors {path}: {source}")]
    TrustAnchors {
        /// The file.
        path: String,
        /// What is wrong.
        source: mesh_core::BoxError,
    },
}

impl IdentitySource {
    /// Builds the credentials and starts keeping them current (reload or refresh task).
    pub fn start(&self) -> Result<Credentials, IdentityError> {
        match self {
            Self::Files(files) => {
                let creds = files.load()?;
                tokio::spawn(files.clone().watch(creds.clone(), Duration::from_secs(5)));
                Ok(creds)
            }
            Self::LocalCa { dir, identity } => {
                let ca = CertificateAuthority::builder()
                    .load(dir)
                    .map_err(|source| IdentityError::Ca {
                        dir: dir.display().to_string(),
                        source,
                    })?;
                let creds = Credentials::generate(identity.clone(), ca.trust_bundle())?;
                tokio::spawn(certify::refresh(
                    creds.clone(),
                    Arc::new(ca),
                    RefreshPolicy::default(),
                ));
                Ok(creds)
            }
            Self::Control {
                addr,
                control_identity,
                trust_anchors,
                identity,
                token,
            } => {
                let bad = |source: mesh_core::BoxError| IdentityError::TrustAnchors {
                    path: trust_anchors.display().to_string(),
                    source,
                };
                let pem = std::fs::read_to_string(trust_anchors).map_err(|e| bad(e.into()))?;
                let trust = mesh_tls::TrustBundle::from_pem(&pem).map_err(|e| bad(e.into()))?;
                let creds = Credentials::generate(identity.clone(), trust)?;
                let tls = mesh_control_client::transport::Tls::new(
                    creds.clone(),
                    control_identity.clone(),
                );
                let certify = mesh_control_client::RemoteCertify::new(*addr, tls, token.clone());
                tokio::spawn(certify::refresh(
                    creds.clone(),
                    certify,
                    RefreshPolicy::default(),
                ));
                Ok(creds)
            }
        }
    }

    /// The control plane to use for discovery, if the identity comes from one.
    pub fn control(&self) -> Option<(std::net::SocketAddr, ServiceIdentity)> {
        match self {
            Self::Control {
                addr,
                control_identity,
                ..
            } => Some((*addr, control_identity.clone())),
            _ => None,
        }
    }
}
