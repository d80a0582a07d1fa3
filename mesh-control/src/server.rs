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
use mesh_tls::{BoxError, CertificateAuthority, Credentials, ServiceIdentity, TrustBundle};
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
use crate::config::Config;
use crate::state;
use crate::token::{TokenError, TokenStore};

/// The service account and namespace of the control plane's own identity.
pub const CONTROLLER: (&str, &str) = ("controller", "mesh-system");

/// The default listen address (Linkerd's destination port, on loopback).
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8086);

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
