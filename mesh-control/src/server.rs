//! Starting and stopping the control plane: [`ControlPlane::start`] with a [`Config`].
//!
//! What happens at start-up and shutdown is documented on [`ControlPlane`].

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use mesh_tls::certify::RefreshPolicy;
use mesh_tls::server::{ClientAuth, ClientIdentityLayer, ServerTlsStream, TlsServerLayer};
use mesh_tls::{
    BoxError, CaBuilder, CertificateAuthority, Credentials, IdentityDomain, ServiceIdentity,
    TrustBundle,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tower::{Layer, ServiceExt, service_fn};

use crate::api::destination::DestinationService;
use crate::api::identity::IdentityService;
use crate::api::inbound::InboundPolicyService;
use crate::api::outbound::OutboundPolicyService;
use crate::api::registration::RegistrationService;
use crate::catalog::{Catalog, CatalogError, LocalCatalog, Snapshot};
use crate::state;
use crate::token::{TokenError, TokenStore};

/// The service account and namespace of the control plane's own identity.
pub const CONTROLLER: (&str, &str) = ("controller", "mesh-system");

/// The default listen address (Linkerd's destination port, on loopback).
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8086);

/// What the control plane is configured with. Build with [`Config::new`] and the setters.
#[derive(Clone)]
pub struct Config {
    state_dir: PathBuf,
    listen: SocketAddr,
    catalog_file: Option<PathBuf>,
    own_ca: Option<OwnCa>,
    identity_domain: IdentityDomain,
    cluster_domain: String,
    plaintext: bool,
    poll_interval: Duration,
    leaf_lifetime: Option<Duration>,
    tokens: Option<TokenStore>,
    catalog: Option<Arc<dyn Catalog>>,
    drain_timeout: Duration,
}

#[derive(Clone, Debug)]
struct OwnCa {
    trust_anchors: PathBuf,
    issuer_cert: PathBuf,
    issuer_key: PathBuf,
}

/// Why the control plane did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The state directory could not be created or written.
    #[error("state directory {}: {source}", path.display())]
    State {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The CA could not be loaded, generated or saved.
    #[error("certificate authority: {0}")]
    Ca(#[from] mesh_tls::ca::CaError),
    /// The control plane could not certify itself.
    #[error("the control plane cannot certify its own identity: {0}")]
    SelfCertify(#[source] BoxError),
    /// The catalog file is missing or broken.
    #[error("{0}")]
    Catalog(#[from] CatalogError),
    /// The token store could not be opened.
    #[error("{0}")]
    Tokens(#[from] TokenError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
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
    fn certificate_authority(&self) -> Result<CertificateAuthority, StartError> {
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
    async fn start_catalog(&self) -> Result<(Arc<dyn Catalog>, Option<LocalCatalog>), StartError> {
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

/// The control plane's own identity, certified by its own CA and kept fresh (renewed at 70% of
/// its lifetime by the returned task).
fn certify_self(
    ca: &Arc<CertificateAuthority>,
) -> Result<(ServiceIdentity, Credentials, JoinHandle<()>), StartError> {
    let identity = ca
        .domain()
        .workload(CONTROLLER.0, CONTROLLER.1)
        .map_err(StartError::certify_self)?;
    let creds = Credentials::generate(identity.clone(), ca.trust_bundle())
        .map_err(StartError::certify_self)?;
    let csr = creds.csr().map_err(StartError::certify_self)?;
    let issued = ca.sign(csr, &identity).map_err(StartError::certify_self)?;
    creds
        .set_certificate(issued)
        .map_err(StartError::certify_self)?;
    let refresh = tokio::spawn(mesh_tls::certify::refresh(
        creds.clone(),
        ca.clone(),
        RefreshPolicy::default(),
    ));
    Ok((identity, creds, refresh))
}

/// Linkerd's proxy API (and the mesh's registration, when the catalog takes registrations),
/// served from the catalog's snapshots; watches end when `shutdown` is cancelled.
fn proxy_api(
    config: &Config,
    ca: &Arc<CertificateAuthority>,
    tokens: &TokenStore,
    catalog: &dyn Catalog,
    shutdown: &CancellationToken,
) -> Routes {
    let snapshots = catalog.snapshots();
    let domain = &config.cluster_domain;
    let mut routes = Routes::builder();
    routes
        .add_service(
            DestinationService::new(snapshots.clone(), domain, shutdown.clone()).into_server(),
        )
        .add_service(IdentityService::new(ca.clone(), tokens.clone()).into_server())
        .add_service(InboundPolicyService::new(snapshots.clone(), shutdown.clone()).into_server())
        .add_service(OutboundPolicyService::new(snapshots, domain, shutdown.clone()).into_server());
    if let Some(registry) = catalog.registry() {
        routes.add_service(
            RegistrationService::new(registry.clone(), !config.plaintext).into_server(),
        );
    }
    routes.routes().prepare()
}

impl StartError {
    fn state(path: &Path, source: std::io::Error) -> Self {
        Self::State {
            path: path.to_owned(),
            source,
        }
    }

    fn listen(addr: SocketAddr, source: std::io::Error) -> Self {
        Self::Listen { addr, source }
    }

    fn certify_self(error: impl Into<BoxError>) -> Self {
        Self::SelfCertify(error.into())
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

// === impl ControlPlane ===

/// A running control plane. Dropping it stops it abruptly; [`shutdown`](Self::shutdown) stops it
/// gracefully.
///
/// Start-up, in order:
/// 1. the state directory is created (0700);
/// 2. the CA is loaded from it, or generated and saved there on first start; or the user's own
///    trust anchors and issuer are loaded and saved there (so later starts reuse them);
/// 3. the catalog starts (the local one loads `mesh.yaml` and fails here if it is broken);
/// 4. the control plane certifies its own identity,
///    `controller.mesh-system.serviceaccount.identity.<suffix>`, with its own CA (renewed at 70%
///    of the lifetime);
/// 5. the listener binds, and its address and identity are written to `control.addr` and
///    `control.identity`;
/// 6. one port serves every API: each connection gets TLS (client certificates optional, since a
///    proxy's first `Certify` has none; a client that presents one is verified against the trust
///    anchors and its identity reaches the handlers), then HTTP/2 with the gRPC router.
///
/// Observability (the metrics store, tap and the dashboard) is `mesh-viz`'s, started beside it.
///
/// [`shutdown`](Self::shutdown) stops accepting, ends every watch stream with `UNAVAILABLE` (so
/// proxies reconnect, and keep serving from what they last received meanwhile), drains
/// connections for up to the drain timeout, and removes `control.addr`.
pub struct ControlPlane {
    addr: SocketAddr,
    identity: ServiceIdentity,
    state_dir: PathBuf,
    cluster_domain: String,
    ca: Arc<CertificateAuthority>,
    tokens: TokenStore,
    catalog: Arc<dyn Catalog>,
    local: Option<LocalCatalog>,
    shutdown: CancellationToken,
    server: Option<JoinHandle<()>>,
    refresh: JoinHandle<()>,
}

impl ControlPlane {
    /// Starts a control plane; see [`ControlPlane`] for what happens.
    ///
    /// ```
    /// use mesh_control::{Config, ControlPlane};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let cp = ControlPlane::start(Config::new(dir.path()).listen("127.0.0.1:0".parse()?)).await?;
    /// assert_eq!(mesh_control::state::read_control_addr(dir.path())?, cp.addr());
    /// cp.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn start(config: Config) -> Result<Self, StartError> {
        let dir = config.state_dir.clone();
        state::create_dir(&dir).map_err(|source| StartError::state(&dir, source))?;
        let ca = Arc::new(config.certificate_authority()?);
        let tokens = match &config.tokens {
            Some(t) => t.clone(),
            None => state::tokens(&dir)?,
        };
        let (catalog, local) = config.start_catalog().await?;
        let (identity, creds, refresh) = certify_self(&ca)?;

        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::listen(config.listen, source))?;
        let addr = listener
            .local_addr()
            .map_err(|source| StartError::listen(config.listen, source))?;
        let shutdown = CancellationToken::new();
        let routes = proxy_api(&config, &ca, &tokens, &*catalog, &shutdown);
        // Client certificates are optional: a proxy's first `Certify` has none. A client that
        // presents one is verified against the trust anchors, and its identity reaches the
        // handlers.
        let tls = (!config.plaintext).then(|| {
            TlsServerLayer::new(&creds)
                .client_auth(ClientAuth::Optional)
                .alpn_protocols(vec![b"h2".to_vec()])
        });
        let server = tokio::spawn(serve(
            listener,
            routes,
            tls,
            shutdown.clone(),
            config.drain_timeout,
        ));

        let write = |name: &str, text: String| {
            state::write_atomic(&dir, name, &text).map_err(|source| StartError::state(&dir, source))
        };
        write(state::CONTROL_ADDR, format!("{addr}\n"))?;
        write(state::CONTROL_IDENTITY, format!("{identity}\n"))?;
        tracing::info!(%addr, %identity, tls = !config.plaintext, state_dir = %dir.display(), "control plane listening");

        Ok(Self {
            addr,
            identity,
            state_dir: dir,
            cluster_domain: config.cluster_domain,
            ca,
            tokens,
            catalog,
            local,
            shutdown,
            server: Some(server),
            refresh,
        })
    }

    /// Where the control plane listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The identity the control plane's TLS certificate proves; proxies expect it.
    pub fn identity(&self) -> &ServiceIdentity {
        &self.identity
    }

    /// The trust bundle proxies verify the mesh against.
    pub fn trust_bundle(&self) -> TrustBundle {
        self.ca.trust_bundle()
    }

    /// The CA.
    pub fn ca(&self) -> &Arc<CertificateAuthority> {
        &self.ca
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The cluster domain of service names.
    pub fn cluster_domain(&self) -> &str {
        &self.cluster_domain
    }

    /// The bootstrap token store.
    pub fn tokens(&self) -> &TokenStore {
        &self.tokens
    }

    /// Issues a one-use bootstrap token for `identity`, valid for `ttl` (what `mesh run` hands
    /// to the proxy it starts).
    pub fn issue_token(
        &self,
        identity: &ServiceIdentity,
        ttl: Duration,
    ) -> Result<String, TokenError> {
        self.tokens.issue(identity, ttl)
    }

    /// The catalog.
    pub fn catalog(&self) -> &Arc<dyn Catalog> {
        &self.catalog
    }

    /// The local catalog, when that is the backend (for its registry and reload status).
    pub fn local_catalog(&self) -> Option<&LocalCatalog> {
        self.local.as_ref()
    }

    /// The catalog's snapshots.
    pub fn snapshots(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.catalog.snapshots()
    }

    /// Stops gracefully: no new connections, watch streams end with `UNAVAILABLE`, connections
    /// drain (up to the drain timeout), `control.addr` is removed.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take()
            && let Err(e) = server.await
            && e.is_panic()
        {
            tracing::error!("the control plane's server task panicked");
        }
        self.refresh.abort();
        let addr_file = self.state_dir.join(state::CONTROL_ADDR);
        if state::read_control_addr(&self.state_dir).ok() == Some(self.addr) {
            let _ = std::fs::remove_file(addr_file);
        }
        tracing::info!(addr = %self.addr, "control plane stopped");
    }

    /// Runs until `signal` completes, then shuts down gracefully. What `mesh control` calls.
    pub async fn run_until(self, signal: impl Future) {
        signal.await;
        self.shutdown().await;
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = &self.server {
            server.abort();
        }
        self.refresh.abort();
    }
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("addr", &self.addr)
            .field("identity", &self.identity)
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

// === Serving ===

async fn serve(
    listener: TcpListener,
    routes: Routes,
    tls: Option<TlsServerLayer>,
    shutdown: CancellationToken,
    drain_timeout: Duration,
) {
    let graceful = GracefulShutdown::new();
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(error) => {
                        // Out of file descriptors and the like: back off a little.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let watcher = graceful.watcher();
                let routes = routes.clone();
                let tls = tls.clone();
                conns.spawn(async move {
                    let res = match tls {
                        Some(layer) => {
                            // The layer runs the handshake and hands back the TLS stream with the
                            // client's verified identity, if it presented a certificate.
                            let handshake = layer.layer(service_fn(
                                |stream: ServerTlsStream<TcpStream>| async move {
                                    Ok::<_, std::convert::Infallible>(stream)
                                },
                            ));
                            match handshake.oneshot(tcp).await {
                                Ok(stream) => {
                                    let client = stream.client_identity().cloned();
                                    serve_connection(stream, client, routes, watcher).await
                                }
                                Err(e) => Err(e),
                            }
                        }
                        None => serve_connection(tcp, None, routes, watcher).await,
                    };
                    if let Err(error) = res {
                        tracing::debug!(%peer, %error, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!("connections still open after the drain timeout; closing them");
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

async fn serve_connection<IO>(
    io: IO,
    client: Option<ServiceIdentity>,
    routes: Routes,
    watcher: Watcher,
) -> Result<(), BoxError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = ClientIdentityLayer::new(client).layer(routes);
    let svc = hyper_util::service::TowerToHyperService::new(svc);
    let conn = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), svc)
        .into_owned();
    watcher.watch(conn).await
}
