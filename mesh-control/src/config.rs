//! What the control plane is configured with: [`Config`], built with [`Config::new`] and the
//! setters, and the start-up steps that only read it (the CA, the catalog).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mesh_tls::{CaBuilder, CertificateAuthority, IdentityDomain};

use crate::catalog::{Catalog, LocalCatalog};
use crate::server::{DEFAULT_LISTEN, StartError};
use crate::state;
use crate::token::TokenStore;

/// What the control plane is configured with. Build with [`Config::new`] and the setters.
#[derive(Clone)]
pub struct Config {
    pub(crate) state_dir: PathBuf,
    pub(crate) listen: SocketAddr,
    pub(crate) catalog_file: Option<PathBuf>,
    pub(crate) own_ca: Option<OwnCa>,
    pub(crate) identity_domain: IdentityDomain,
    pub(crate) cluster_domain: String,
    pub(crate) plaintext: bool,
    pub(crate) poll_interval: Duration,
    pub(crate) leaf_lifetime: Option<Duration>,
    pub(crate) tokens: Option<TokenStore>,
    pub(crate) catalog: Option<Arc<dyn Catalog>>,
    pub(crate) drain_timeout: Duration,
}

#[derive(Clone, Debug)]
pub(crate) struct OwnCa {
    pub(crate) trust_anchors: PathBuf,
    pub(crate) issuer_cert: PathBuf,
    pub(crate) issuer_key: PathBuf,
}

// === impl Config ===

impl Config {
    /// A control plane keeping its state in `state_dir`, with every other setting at its default.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            listen: DEFAULT_LISTEN,
            catalog_file: None,
            own_ca: None,
            identity_domain: IdentityDomain::default(),
            cluster_domain: "cluster.local".into(),
            plaintext: false,
            poll_interval: Duration::from_secs(1),
            leaf_lifetime: None,
            tokens: None,
            catalog: None,
            drain_timeout: Duration::from_secs(5),
        }
    }

    /// Where to listen. Default is [`DEFAULT_LISTEN`], `127.0.0.1:8086`; port 0 picks a free
    /// port (read it from [`ControlPlane::addr`] or `control.addr`).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// The `mesh.yaml` to load and watch. Default is none (registrations only).
    pub fn catalog_file(mut self, path: impl Into<Option<PathBuf>>) -> Self {
        self.catalog_file = path.into();
        self
    }

    /// Uses the user's own trust anchors (PEM bundle), issuer certificate and issuer key (PKCS#8
    /// PEM) instead of the CA in the state directory. They are saved into the state directory,
    /// so later starts without them keep using them. Default is the state directory's CA,
    /// generated on first start.
    pub fn own_ca(
        mut self,
        trust_anchors: impl Into<PathBuf>,
        issuer_cert: impl Into<PathBuf>,
        issuer_key: impl Into<PathBuf>,
    ) -> Self {
        self.own_ca = Some(OwnCa {
            trust_anchors: trust_anchors.into(),
            issuer_cert: issuer_cert.into(),
            issuer_key: issuer_key.into(),
        });
        self
    }

    /// The identity domain certificates are issued in. Default is
    /// [`IdentityDomain::default`] (`*.serviceaccount.identity.mesh.cluster.local`).
    pub fn identity_domain(mut self, domain: IdentityDomain) -> Self {
        self.identity_domain = domain;
        self
    }

    /// The cluster domain of service names (`svc.ns.svc.<domain>`). Default is `cluster.local`.
    pub fn cluster_domain(mut self, domain: impl Into<String>) -> Self {
        self.cluster_domain = domain.into();
        self
    }

    /// Serves plaintext gRPC instead of TLS: for tests only (registrations are then trusted as
    /// given). Default is TLS.
    pub fn plaintext(mut self, plaintext: bool) -> Self {
        self.plaintext = plaintext;
        self
    }

    /// How often `mesh.yaml` is checked for edits. Default is 1 s.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// The lifetime of issued workload certificates. Default is 24 h.
    pub fn leaf_lifetime(mut self, lifetime: impl Into<Option<Duration>>) -> Self {
        self.leaf_lifetime = lifetime.into();
        self
    }

    /// The bootstrap token store. Default is `<state-dir>/tokens`, shared with `mesh run`.
    pub fn tokens(mut self, tokens: TokenStore) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// Another catalog backend instead of the local one (then `catalog_file` is ignored, and
    /// registration is served only if the backend has a registry).
    pub fn catalog(mut self, catalog: Arc<dyn Catalog>) -> Self {
        self.catalog = Some(catalog);
        self
    }

    /// How long shutdown waits for connections to close. Default is 5 s.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }
}

impl Config {
    /// The CA: the state directory's (generated on first start), or the user's own, saved into
    /// the state directory so later starts reuse it.
    pub(crate) fn certificate_authority(&self) -> Result<CertificateAuthority, StartError> {
        let mut builder = CaBuilder::default().domain(self.identity_domain.clone());
        if let Some(l) = self.leaf_lifetime {
            builder = builder.leaf_lifetime(l);
        }
        let Some(own) = &self.own_ca else {
            return Ok(builder.load_or_generate(&self.state_dir)?);
        };
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| mesh_tls::ca::CaError::Io {
                path: p.to_owned(),
                source,
            })
        };
        let ca = builder.from_pem(
            &read(&own.trust_anchors)?,
            &read(&own.issuer_cert)?,
            &read(&own.issuer_key)?,
        )?;
        ca.save(&self.state_dir)?;
        Ok(ca)
    }

    /// The catalog backend given, or the local one (`mesh.yaml` and registrations), started.
    pub(crate) async fn start_catalog(
        &self,
    ) -> Result<(Arc<dyn Catalog>, Option<LocalCatalog>), StartError> {
        if let Some(c) = &self.catalog {
            return Ok((c.clone(), None));
        }
        let local = LocalCatalog::builder()
            .file(self.catalog_file.clone())
            .identity_domain(self.identity_domain.clone())
            .poll_interval(self.poll_interval)
            .persist_registrations(self.state_dir.join(state::REGISTRATIONS))
            .start()
            .await?;
        Ok((Arc::new(local.clone()), Some(local)))
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("state_dir", &self.state_dir)
            .field("listen", &self.listen)
            .field("catalog_file", &self.catalog_file)
            .field("own_ca", &self.own_ca)
            .field("identity_domain", &self.identity_domain)
            .field("cluster_domain", &self.cluster_domain)
            .field("plaintext", &self.plaintext)
            .finish_non_exhaustive()
    }
}
