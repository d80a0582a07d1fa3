//! The mesh sidecar: inbound and outbound stacks composed from `mesh-core`, `mesh-tls` and
//! `mesh-balance`, an admin server, and the `mesh-proxy` binary.
//!
//! - [`outbound`]: the app's requests to other services — authority-routed and per-upstream
//!   listeners, profiles (routes with timeouts and retries), traffic splits, P2C balancing, and
//!   mutual TLS to the peer proxy expecting the endpoint's identity, HTTP/1 carried over
//!   HTTP/2; opaque TCP byte for byte.
//! - [`inbound`]: peers' requests to the app — detection, mTLS termination, authorization by
//!   policy, pooled connections to the app.
//! - [`admin`](crate::Proxy::admin_addr): `/metrics`, `/ready`, `/live`, `/shutdown`.
//! - Sources are traits: [`discovery::Discover`] (a static file, or the control plane's
//!   `Destination` API) and [`identity::IdentitySource`] (static PEM files, a local
//!   CA, or the control plane's `Identity.Certify`). The control-plane clients come from
//!   `mesh-control-client`: the sidecar never links the control plane itself.
//!
//! The binary is thin: it parses [`Args`], then calls [`run`].
//!
//! ```no_run
//! # async fn example() -> Result<(), mesh_proxy::ProxyError> {
//! use clap::Parser;
//! let config = mesh_proxy::Args::parse_from([
//!     "mesh-proxy", "--ca-dir", "/tmp/ca", "--identity",
//!     "web.emojivoto.serviceaccount.identity.mesh.cluster.local",
//!     "--inbound-listen", "127.0.0.1:4143", "--inbound-forward", "127.0.0.1:8080",
//! ])
//! .validate()?;
//! let proxy = mesh_proxy::Proxy::start(config).await?;
//! println!("admin on {}", proxy.admin_addr());
//! proxy.wait().await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod admin;
pub mod config;
mod connect;
pub mod discovery;
pub mod headers;
pub mod identity;
pub mod inbound;
mod orig_dst;
mod outbound;
pub mod runtime;
mod serve;
mod tap_server;
pub mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use self::config::{Args, Config, InvalidConfig};
use self::discovery::{Discover, StaticDiscovery};
use self::runtime::{Drain, Runtime};
use tokio::net::TcpListener;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A flag is wrong.
    #[error(transparent)]
    Config(#[from] InvalidConfig),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}; is another process using the port?")]
    Bind {
        /// Which listener.
        what: String,
        /// Its address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The identity could not be set up.
    #[error("identity: {0}")]
    Identity(#[from] identity::IdentityError),
    /// The destinations file is unusable.
    #[error("destinations file {0}")]
    Destinations(#[from] discovery::file::DestinationsError),
}

/// A running proxy.
pub struct Proxy {
    rt: Runtime,
    admin: SocketAddr,
    inbound: Option<SocketAddr>,
    outbound: Option<SocketAddr>,
    upstreams: Vec<SocketAddr>,
    tap: Option<SocketAddr>,
    grace: Duration,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("identity", self.rt.creds.identity())
            .field("admin", &self.admin)
            .field("inbound", &self.inbound)
            .field("outbound", &self.outbound)
            .field("upstreams", &self.upstreams)
            .finish()
    }
}

async fn bind(what: impl Into<String>, addr: SocketAddr) -> Result<TcpListener, ProxyError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ProxyError::Bind {
            what: what.into(),
            addr,
            source,
        })
}

impl Proxy {
    /// Binds every listener, sets up the identity, and starts serving once the proxy holds a
    /// certificate (connections made before wait in the listen backlog).
    pub async fn start(config: Config) -> Result<Self, ProxyError> {
        Self::start_with(config, None).await
    }

    /// Like [`Proxy::start`], with a discovery source instead of the destinations file.
    pub async fn start_with(
        config: Config,
        discovery: Option<Arc<dyn Discover>>,
    ) -> Result<Self, ProxyError> {
        let admin_l = bind("admin", config.admin).await?;
        let inbound_l = match config.inbound {
            Some((listen, _)) => Some(bind("inbound", listen).await?),
            None => None,
        };
        let outbound_l = match config.outbound {
            Some(listen) => Some(bind("outbound", listen).await?),
            None => None,
        };
        let orig_dst_l = match config.orig_dst {
            Some(listen) => Some(bind("original-destination", listen).await?),
            None => None,
        };
        let mut upstream_l = Vec::new();
        for (authority, listen) in &config.upstreams {
            upstream_l.push((
                authority.clone(),
                bind(format!("upstream {authority}"), *listen).await?,
            ));
        }
        let tap_l = match &config.tap {
            Some((listen, id)) => Some((bind("tap", *listen).await?, id.clone())),
            None => None,
        };
        let creds = config.identity.start()?;
        let control = config.identity.control().map(|(addr, id)| {
            let tls = mesh_control_client::transport::Tls::new(creds.clone(), id);
            mesh_control_client::transport::channel(addr, tls)
        });
        let discovery: Arc<dyn Discover> = match (discovery, &config.destinations, &control) {
            (Some(d), _, _) => d,
            (None, Some(path), _) => Arc::new(StaticDiscovery::load(path)?),
            (None, None, Some(channel)) => {
                Arc::new(discovery::ControlDiscovery::new(channel.clone()))
            }
            (None, None, None) => Arc::new(StaticDiscovery::default()),
        };
        let rt = Runtime {
            creds,
            metrics: telemetry::ProxyMetrics::new(),
            tap: mesh_core::tap::Tap::new(),
            config: Arc::new(config.stack.clone()),
            drain: Drain::default(),
        };
        let local = |l: &TcpListener| l.local_addr().ok();
        let proxy = Self {
            admin: local(&admin_l).unwrap_or(config.admin),
            inbound: inbound_l.as_ref().and_then(local),
            outbound: outbound_l.as_ref().and_then(local),
            upstreams: upstream_l.iter().filter_map(|(_, l)| local(l)).collect(),
            tap: tap_l.as_ref().and_then(|(l, _)| local(l)),
            grace: config.shutdown_grace,
            rt: rt.clone(),
        };
        tokio::spawn(admin::serve(admin_l, rt.clone(), discovery.clone()));
        if let Some((l, id)) = tap_l {
            tokio::spawn(tap_server::serve(l, rt.clone(), id));
        }

        let (inbound_app, inbound_policy) =
            (config.inbound.map(|(_, app)| app), config.inbound_policy);
        let outbound = outbound::Outbound::server(rt.clone(), discovery.clone());
        let register = config.register.clone();
        let workload = config.workload.clone();
        let registered_policy = if config.inbound_policy_given {
            config.inbound_policy.as_str().to_owned()
        } else {
            String::new()
        };
        tokio::spawn(async move {
            // The proxy accepts traffic only once it holds a certificate.
            loop {
                tokio::select! {
                    _ = rt.creds.ready() => break,
                    _ = tokio::time::sleep(Duration::from_secs(15)) => {
                        tracing::info!(identity = %rt.creds.identity(), "waiting for a certificate");
                    }
                }
            }
            tracing::info!(identity = %rt.creds.identity(), "certified; serving");
            // The inbound side labels requests by the routes of its own service's profile. It is
            // asked for only now: the control plane's connection must carry our certificate.
            let profile = register.as_ref().and_then(|(service, namespace, port)| {
                discovery.resolve(&format!("{service}.{namespace}.svc.cluster.local:{port}"))
            });
            // The port's policy: the control plane's answer for this workload's app port, or,
            // without a control plane, the proxy's own default.
            let live = control.is_some() && workload.is_some();
            let policy = if live {
                inbound::policy::PolicyHandle::new(inbound_policy.to_policy())
            } else {
                inbound::policy::PolicyHandle::fixed(inbound_policy.to_policy())
            };
            let mut policy_ready = None;
            if let (Some(channel), Some(workload), Some(app)) = (&control, &workload, inbound_app) {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let updates = mesh_control_client::inbound::watch_port(
                    channel.clone(),
                    workload.clone(),
                    app.port(),
                );
                tokio::spawn(inbound::policy::follow(updates, policy.clone(), tx));
                policy_ready = Some(rx);
            }
            let inbound =
                inbound_app.map(|app| inbound::Inbound::server(rt.clone(), app, policy, profile));
            if let (Some(i), Some(l)) = (inbound, inbound_l) {
                let bound = l.local_addr().ok();
                tokio::spawn(async move {
                    // No connection is served before the port's policy is known.
                    if let Some(mut ready) = policy_ready {
                        loop {
                            tokio::select! {
                                _ = &mut ready => break,
                                _ = tokio::time::sleep(Duration::from_secs(15)) => {
                                    tracing::info!("waiting for the inbound policy from the control plane");
                                }
                            }
                        }
                    }
                    i.serve(l).await
                });
                if let (Some(channel), Some((service, namespace, port)), Some(addr)) =
                    (control.clone(), register.clone(), bound)
                {
                    let req = mesh_control_client::registration::RegisterRequest {
                        service,
                        namespace,
                        port: u32::from(port),
                        address: addr.to_string(),
                        identity: rt.creds.identity().as_str().to_string(),
                        default_policy: registered_policy,
                        ..Default::default()
                    };
                    let client =
                        mesh_control_client::registration::RegistrationClient::new(channel);
                    let token = rt.drain.token();
                    tokio::spawn(async move {
                        if let Err(status) =
                            mesh_control_client::registration::keep_registered(client, req, token)
                                .await
                        {
                            tracing::warn!(%status, "deregistration failed");
                        }
                    });
                }
            }
            if let Some(l) = outbound_l {
                tokio::spawn(outbound.clone().serve_routed(l));
            }
            if let Some(l) = orig_dst_l {
                tokio::spawn(outbound.clone().serve_orig_dst(l));
            }
            for (authority, l) in upstream_l {
                tokio::spawn(outbound.clone().serve_upstream(l, authority));
            }
        });
        Ok(proxy)
    }

    /// The admin server's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// The inbound listener's address.
    pub fn inbound_addr(&self) -> Option<SocketAddr> {
        self.inbound
    }

    /// The authority-routed outbound listener's address.
    pub fn outbound_addr(&self) -> Option<SocketAddr> {
        self.outbound
    }

    /// The tap server's address.
    pub fn tap_addr(&self) -> Option<SocketAddr> {
        self.tap
    }

    /// The per-upstream listeners' addresses, in configuration order.
    pub fn upstream_addrs(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// The proxy's shared runtime (credentials, metrics, tap, drain).
    pub fn runtime(&self) -> &Runtime {
        &self.rt
    }

    /// Starts draining, as `POST /shutdown` does.
    pub fn shutdown(&self) {
        self.rt.drain.start();
    }

    /// Waits until draining starts (a signal, `/shutdown`, or [`Proxy::shutdown`]), then for
    /// in-flight work to finish, at most the grace period.
    pub async fn wait(self) {
        self.rt.drain.signaled().await;
        self.drained().await
    }

    async fn drained(self) {
        let in_flight = self.rt.drain.in_flight();
        tracing::info!(in_flight, grace = ?self.grace, "draining");
        if tokio::time::timeout(self.grace, self.rt.drain.finished())
            .await
            .is_err()
        {
            tracing::warn!(
                in_flight = self.rt.drain.in_flight(),
                "grace period over; closing the remaining connections"
            );
        }
    }
}

/// Runs a proxy until SIGTERM, Ctrl-C or `POST /shutdown`, then drains and returns.
pub async fn run(config: Config) -> Result<(), ProxyError> {
    let proxy = Proxy::start(config).await?;
    let drain = proxy.rt.drain.clone();
    tokio::spawn(async move {
        mesh_core::signal::shutdown().await;
        tracing::info!("signal received; draining");
        drain.start();
    });
    proxy.wait().await;
    Ok(())
}

/// Installs the log subscriber for the binary: `RUST_LOG` levels, plain or JSON lines.
pub fn init_logging(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}

/// The binary's entry point (also `mesh proxy`): parses flags, runs until shut down.
pub fn main_with(args: Args) -> std::process::ExitCode {
    let config = match args.validate() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mesh-proxy: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    init_logging(config.json_logs);
    let rt = if config.cores == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.cores)
            .enable_all()
            .build()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mesh-proxy: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mesh-proxy: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
