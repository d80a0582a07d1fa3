//! The proxy's configuration: flags and `MESH_PROXY_*` environment variables, validated at start
//! with errors that name the bad field.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mesh_core::BoxError;
use mesh_tls::{PemFiles, ServiceIdentity};

use crate::identity::IdentitySource;
use crate::inbound::DefaultPolicy;
use crate::runtime::StackConfig;

/// `mesh-proxy` flags (each also readable from a `MESH_PROXY_*` variable).
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "mesh-proxy", version, about = "The mesh sidecar proxy")]
pub struct Args {
    /// This workload's identity (a DNS-like name), certified with --ca-dir.
    #[arg(long, env = "MESH_PROXY_IDENTITY")]
    pub identity: Option<String>,
    /// A CA directory (`mesh ca init`) to certify --identity with, in-process.
    #[arg(long, env = "MESH_PROXY_CA_DIR")]
    pub ca_dir: Option<PathBuf>,
    /// The control plane (`mesh control`): certificates, destinations and registration come from
    /// it. Needs --identity, --control-identity and --trust-anchors.
    #[arg(long, env = "MESH_PROXY_CONTROL")]
    pub control: Option<SocketAddr>,
    /// The identity the control plane must prove.
    #[arg(long, env = "MESH_PROXY_CONTROL_IDENTITY")]
    pub control_identity: Option<String>,
    /// A one-use bootstrap token proving --identity to the control plane (`mesh run` issues it).
    #[arg(long, env = "MESH_PROXY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Register the inbound endpoint with the control plane as SERVICE.NAMESPACE:PORT.
    #[arg(long, env = "MESH_PROXY_REGISTER")]
    pub register: Option<String>,
    /// This workload, NAMESPACE:NAME, whose inbound policy the control plane serves (Linkerd's
    /// pod). Default with --register: the registered service's namespace and name.
    #[arg(long, env = "MESH_PROXY_WORKLOAD")]
    pub workload: Option<String>,
    /// Trust anchors (PEM) for static credentials.
    #[arg(long, env = "MESH_PROXY_TRUST_ANCHORS")]
    pub trust_anchors: Option<PathBuf>,
    /// Certificate chain (PEM) for static credentials; reloaded when it changes.
    #[arg(long, env = "MESH_PROXY_CERT")]
    pub cert: Option<PathBuf>,
    /// Private key (PEM) for static credentials; reloaded when it changes.
    #[arg(long, env = "MESH_PROXY_KEY")]
    pub key: Option<PathBuf>,

    /// Where meshed peers (and unmeshed clients, if policy allows) connect.
    #[arg(long, env = "MESH_PROXY_INBOUND_LISTEN")]
    pub inbound_listen: Option<SocketAddr>,
    /// The app's address, where inbound traffic goes.
    #[arg(long, env = "MESH_PROXY_INBOUND_FORWARD")]
    pub inbound_forward: Option<SocketAddr>,
    /// What the app speaks: auto (the client's protocol) or http1 (HTTP/2 from clients is
    /// downgraded to HTTP/1.1 for the app).
    #[arg(long, env = "MESH_PROXY_APP_PROTOCOL", default_value = "auto")]
    pub app_protocol: String,
    /// Who may call the app: all-authenticated, all-unauthenticated (the default),
    /// cluster-authenticated, cluster-unauthenticated or deny. Without --control it is the
    /// app port's policy; with --control it is registered as this workload's default, and the
    /// control plane's policy for the port applies (a service's `authorization` overrides it).
    #[arg(long, env = "MESH_PROXY_INBOUND_POLICY")]
    pub inbound_policy: Option<String>,

    /// The authority-routed outbound listener: the app sends requests here with the target's
    /// Host / :authority.
    #[arg(long, env = "MESH_PROXY_OUTBOUND_LISTEN")]
    pub outbound_listen: Option<SocketAddr>,
    /// The original-destination listener (connections redirected here by iptables REDIRECT;
    /// Linux only).
    #[arg(long, env = "MESH_PROXY_ORIG_DST_LISTEN")]
    pub orig_dst_listen: Option<SocketAddr>,
    /// A per-upstream listener, AUTHORITY=LISTEN_ADDR (repeatable; comma-separated in the
    /// environment): everything sent to LISTEN_ADDR goes to AUTHORITY.
    #[arg(long = "upstream", env = "MESH_PROXY_UPSTREAMS", value_delimiter = ',')]
    pub upstreams: Vec<String>,
    /// Static destinations (a JSON file): endpoints, identities, routes and splits; the format
    /// is in the docs of `mesh_proxy::discovery::file`.
    #[arg(long, env = "MESH_PROXY_DESTINATIONS")]
    pub destinations: Option<PathBuf>,

    /// The tap server (Linkerd's Tap/Observe over mTLS); needs --tap-identity.
    #[arg(long, env = "MESH_PROXY_TAP_LISTEN")]
    pub tap_listen: Option<SocketAddr>,
    /// The only identity the tap server accepts (the control plane's tap service).
    #[arg(long, env = "MESH_PROXY_TAP_IDENTITY")]
    pub tap_identity: Option<String>,

    /// The admin server (/metrics, /ready, /live, /shutdown).
    #[arg(
        long,
        env = "MESH_PROXY_ADMIN_LISTEN",
        default_value = "127.0.0.1:4191"
    )]
    pub admin_listen: SocketAddr,
    /// Ports that speak first from the server: never protocol-detected.
    #[arg(
        long,
        env = "MESH_PROXY_OPAQUE_PORTS",
        value_delimiter = ',',
        default_value = "25,587,3306,4444,5432,6379,9300,11211"
    )]
    pub opaque_ports: Vec<u16>,
    /// How long to wait for a client's first bytes before treating a connection as opaque TCP.
    #[arg(long, env = "MESH_PROXY_DETECT_TIMEOUT", default_value = "10s")]
    pub detect_timeout: String,
    /// Connection timeout to endpoints and to the app.
    #[arg(long, env = "MESH_PROXY_CONNECT_TIMEOUT", default_value = "1s")]
    pub connect_timeout: String,
    /// How long a request waits for a ready endpoint before a 503.
    #[arg(long, env = "MESH_PROXY_FAILFAST_TIMEOUT", default_value = "3s")]
    pub failfast_timeout: String,
    /// How long a client may take to send a request head (HTTP/1) or its first bytes before the
    /// connection is closed: the bound on slowloris clients.
    #[arg(long, env = "MESH_PROXY_HEADER_READ_TIMEOUT", default_value = "10s")]
    pub header_read_timeout: String,
    /// How long in-flight requests may take to finish after a shutdown.
    #[arg(long, env = "MESH_PROXY_SHUTDOWN_GRACE", default_value = "30s")]
    pub shutdown_grace: String,
    /// Runtime worker threads.
    #[arg(long, env = "MESH_PROXY_CORES", default_value_t = 1)]
    pub cores: usize,
    /// Log format: plain or json. Levels come from RUST_LOG.
    #[arg(long, env = "MESH_PROXY_LOG_FORMAT", default_value = "plain")]
    pub log_format: String,
}

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the certificate comes from.
    pub identity: IdentitySource,
    /// Inbound listener and app address.
    pub inbound: Option<(SocketAddr, SocketAddr)>,
    /// The inbound default policy, and whether it was given (then it is registered as the
    /// workload's default with the control plane).
    pub inbound_policy: DefaultPolicy,
    /// Whether `inbound_policy` was given rather than defaulted.
    pub inbound_policy_given: bool,
    /// Authority-routed outbound listener.
    pub outbound: Option<SocketAddr>,
    /// Original-destination listener.
    pub orig_dst: Option<SocketAddr>,
    /// Per-upstream listeners: (authority, listen address).
    pub upstreams: Vec<(String, SocketAddr)>,
    /// Static destinations file.
    pub destinations: Option<PathBuf>,
    /// Inbound endpoint registration: (service, namespace, port).
    pub register: Option<(String, String, u16)>,
    /// The workload whose inbound policy the control plane serves, `namespace:name`.
    pub workload: Option<String>,
    /// Tap listener and the one identity it accepts.
    pub tap: Option<(SocketAddr, ServiceIdentity)>,
    /// Admin listener.
    pub admin: SocketAddr,
    /// Timeouts and limits.
    pub stack: StackConfig,
    /// Drain deadline.
    pub shutdown_grace: Duration,
    /// Worker threads.
    pub cores: usize,
    /// JSON logs.
    pub json_logs: bool,
}

/// A configuration field is wrong.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {field}: {reason}")]
pub struct InvalidConfig {
    field: &'static str,
    #[source]
    reason: BoxError,
}

fn bad(field: &'static str, reason: impl Into<BoxError>) -> InvalidConfig {
    InvalidConfig {
        field,
        reason: reason.into(),
    }
}

impl Args {
    /// Checks every field.
    pub fn validate(self) -> Result<Config, InvalidConfig> {
        let duration =
            |field: &'static str, v: &str| mesh_core::duration::parse(v).map_err(|e| bad(field, e));
        let identity = match (&self.ca_dir, &self.trust_anchors, &self.cert, &self.key) {
            (None, Some(t), None, None) if self.control.is_some() => {
                let name = self.identity.as_deref().ok_or_else(|| {
                    bad("--identity", "--control needs --identity NAME to certify")
                })?;
                let control_name = self.control_identity.as_deref().ok_or_else(|| {
                    bad(
                        "--control-identity",
                        "--control needs the control plane's identity",
                    )
                })?;
                IdentitySource::Control {
                    addr: self
                        .control
                        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8086))),
                    control_identity: ServiceIdentity::parse(control_name)
                        .map_err(|e| bad("--control-identity", e))?,
                    trust_anchors: t.clone(),
                    identity: ServiceIdentity::parse(name).map_err(|e| bad("--identity", e))?,
                    token: self.token.clone(),
                }
            }
            (Some(dir), None, None, None) => {
                let name = self.identity.as_deref().ok_or_else(|| {
                    bad("--identity", "--ca-dir needs --identity NAME to certify")
                })?;
                let identity = ServiceIdentity::parse(name).map_err(|e| bad("--identity", e))?;
                IdentitySource::LocalCa {
                    dir: dir.clone(),
                    identity,
                }
            }
            (None, Some(t), Some(c), Some(k)) => IdentitySource::Files(PemFiles {
                trust_anchors: t.clone(),
                certificate: c.clone(),
                private_key: k.clone(),
            }),
            (None, None, None, None) => {
                return Err(bad(
                    "identity",
                    "give either --ca-dir DIR --identity NAME, or --trust-anchors, --cert and --key",
                ));
            }
            _ => {
                return Err(bad(
                    "identity",
                    "--ca-dir and static files (--trust-anchors/--cert/--key) are exclusive, and \
                     static credentials need all three files",
                ));
            }
        };
        let inbound = match (self.inbound_listen, self.inbound_forward) {
            (Some(l), Some(f)) => Some((l, f)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(bad(
                    "--inbound-forward",
                    "--inbound-listen needs the app's address",
                ));
            }
            (None, Some(_)) => {
                return Err(bad(
                    "--inbound-listen",
                    "--inbound-forward needs a listen address",
                ));
            }
        };
        let inbound_policy = match &self.inbound_policy {
            Some(p) => p.parse().map_err(|e| bad("--inbound-policy", e))?,
            None => DefaultPolicy::default(),
        };
        let mut upstreams = Vec::new();
        for u in &self.upstreams {
            let (authority, listen) = u.rsplit_once('=').ok_or_else(|| {
                bad("--upstream", format!("{u:?}: use AUTHORITY=LISTEN_ADDR, e.g. voting.emojivoto:8080=127.0.0.1:9191"))
            })?;
            let listen: SocketAddr = listen
                .parse()
                .map_err(|e| bad("--upstream", format!("{u:?}: listen address: {e}")))?;
            if authority.trim().is_empty() {
                return Err(bad("--upstream", format!("{u:?}: empty authority")));
            }
            upstreams.push((authority.trim().to_string(), listen));
        }
        if inbound.is_none()
            && self.outbound_listen.is_none()
            && self.orig_dst_listen.is_none()
            && upstreams.is_empty()
        {
            return Err(bad(
                "listeners",
                "nothing to proxy: give --inbound-listen/--inbound-forward, --outbound-listen or --upstream",
            ));
        }
        let register = match &self.register {
            None => None,
            Some(r) => {
                let err = || {
                    bad(
                        "--register",
                        format!("{r:?}: use SERVICE.NAMESPACE:PORT, e.g. web.emojivoto:8080"),
                    )
                };
                let (name, port) = r.rsplit_once(':').ok_or_else(err)?;
                let (svc, ns) = name.split_once('.').ok_or_else(err)?;
                let port: u16 = port.parse().map_err(|_| err())?;
                if svc.is_empty() || ns.is_empty() || ns.contains('.') {
                    return Err(err());
                }
                if self.control.is_none() {
                    return Err(bad("--register", "registration needs --control"));
                }
                Some((svc.to_string(), ns.to_string(), port))
            }
        };
        let workload = match (&self.workload, &register) {
            (Some(w), _) => {
                let ok = w.split_once(':').is_some_and(|(ns, name)| {
                    !ns.is_empty() && !name.is_empty() && !name.contains(':')
                });
                if !ok {
                    return Err(bad(
                        "--workload",
                        format!("{w:?}: use NAMESPACE:NAME, e.g. emojivoto:web"),
                    ));
                }
                if self.control.is_none() {
                    return Err(bad(
                        "--workload",
                        "the workload's policy comes from --control",
                    ));
                }
                Some(w.clone())
            }
            (None, Some((service, namespace, _))) => Some(format!("{namespace}:{service}")),
            (None, None) => None,
        };
        let tap = match (self.tap_listen, &self.tap_identity) {
            (Some(l), Some(id)) => Some((
                l,
                ServiceIdentity::parse(id).map_err(|e| bad("--tap-identity", e))?,
            )),
            (None, None) => None,
            (Some(_), None) => {
                return Err(bad(
                    "--tap-identity",
                    "--tap-listen needs the identity allowed to tap (the control plane's)",
                ));
            }
            (None, Some(_)) => {
                return Err(bad("--tap-listen", "--tap-identity needs --tap-listen"));
            }
        };
        if self.cores == 0 || self.cores > 64 {
            return Err(bad("--cores", "between 1 and 64"));
        }
        let json_logs = match self.log_format.as_str() {
            "plain" => false,
            "json" => true,
            other => return Err(bad("--log-format", format!("{other:?}: use plain or json"))),
        };
        Ok(Config {
            identity,
            inbound,
            inbound_policy,
            inbound_policy_given: self.inbound_policy.is_some(),
            outbound: self.outbound_listen,
            orig_dst: self.orig_dst_listen,
            upstreams,
            destinations: self.destinations,
            register,
            workload,
            tap,
            admin: self.admin_listen,
            stack: StackConfig {
                detect_timeout: duration("--detect-timeout", &self.detect_timeout)?,
                connect_timeout: duration("--connect-timeout", &self.connect_timeout)?,
                failfast_timeout: duration("--failfast-timeout", &self.failfast_timeout)?,
                header_read_timeout: duration("--header-read-timeout", &self.header_read_timeout)?,
                opaque_ports: self.opaque_ports,
                app_http1: match self.app_protocol.as_str() {
                    "auto" => false,
                    "http1" => true,
                    other => {
                        return Err(bad(
                            "--app-protocol",
                            format!("{other:?}: use auto or http1"),
                        ));
                    }
                },
                ..StackConfig::default()
            },
            shutdown_grace: duration("--shutdown-grace", &self.shutdown_grace)?,
            cores: self.cores,
            json_logs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Config, InvalidConfig> {
        let mut v = vec!["mesh-proxy"];
        v.extend_from_slice(args);
        Args::try_parse_from(v).unwrap().validate()
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse(&["--outbound-listen", "127.0.0.1:1"]).unwrap_err();
        assert!(e.to_string().contains("identity"), "{e}");
        let e = parse(&["--ca-dir", "/x", "--outbound-listen", "127.0.0.1:1"]).unwrap_err();
        assert!(e.to_string().contains("--identity"), "{e}");
        let e = parse(&["--ca-dir", "/x", "--identity", "a.b", "--upstream", "nope"]).unwrap_err();
        assert!(e.to_string().contains("--upstream"), "{e}");
        let e = parse(&["--ca-dir", "/x", "--identity", "a.b"]).unwrap_err();
        assert!(e.to_string().contains("nothing to proxy"), "{e}");
        let e = parse(&[
            "--ca-dir",
            "/x",
            "--identity",
            "a.b",
            "--outbound-listen",
            "127.0.0.1:1",
            "--detect-timeout",
            "soon",
        ])
        .unwrap_err();
        assert!(e.to_string().contains("--detect-timeout"), "{e}");
        let ok = parse(&[
            "--ca-dir",
            "/x",
            "--identity",
            "a.b",
            "--upstream",
            "voting.emojivoto:8080=127.0.0.1:9191",
            "--inbound-policy",
            "deny",
        ])
        .unwrap();
        assert_eq!(ok.upstreams[0].0, "voting.emojivoto:8080");
        assert_eq!(ok.inbound_policy, DefaultPolicy::Deny);
    }
}
