//! Local mode: `mesh control`, `mesh run` and `mesh demo` on one machine, no Kubernetes.
//!
//! - `mesh control` runs the control plane in the foreground, its state in a directory (trust
//!   anchor and issuer, catalog registrations, bootstrap tokens, and the addresses the CLI finds
//!   it by).
//! - `mesh run --name N --namespace NS [--port P] -- CMD ARGS` starts a workload behind its own
//!   sidecar: the proxy (in this process) certifies the workload's identity with a one-use token,
//!   registers its inbound endpoint, and only once it is ready is the app started, with
//!   `MESH_OUTBOUND_ADDR` in its environment. When the app exits the sidecar drains and `mesh run`
//!   exits with the app's status (so batch jobs finish); SIGTERM/Ctrl-C stop both cleanly.
//! - `mesh demo` = a control plane and the four emojivoto workloads, each through `mesh run`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use mesh_tls::ServiceIdentity;

/// Where local-mode state lives: `$MESH_STATE_DIR`, else `$HOME/.local/state/mesh`.
pub(crate) fn default_state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("MESH_STATE_DIR") {
        return PathBuf::from(d);
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/state/mesh"),
        None => PathBuf::from("/tmp/mesh-state"),
    }
}

/// `mesh control`.
#[derive(Parser, Debug)]
pub(crate) struct ControlArgs {
    /// The state directory.
    #[arg(long, env = "MESH_STATE_DIR", default_value_os_t = default_state_dir())]
    pub(crate) state_dir: PathBuf,
    /// Where proxies reach the control plane.
    #[arg(long, default_value = "127.0.0.1:8086")]
    pub(crate) listen: SocketAddr,
    /// The catalog file (services, routes, splits, policy), watched for edits.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// A trust anchor (PEM) to use instead of generating one (with --issuer-cert/--issuer-key).
    #[arg(long, requires_all = ["issuer_cert", "issuer_key"])]
    pub(crate) trust_anchor: Option<PathBuf>,
    /// The issuer certificate (PEM) signed by --trust-anchor.
    #[arg(long)]
    pub(crate) issuer_cert: Option<PathBuf>,
    /// The issuer's private key (PEM).
    #[arg(long)]
    pub(crate) issuer_key: Option<PathBuf>,
}

fn control_config(args: &ControlArgs) -> anyhow::Result<mesh_control::Config> {
    let mut cfg = mesh_control::Config::new(&args.state_dir)
        .listen(args.listen)
        .catalog_file(args.config.clone());
    if let (Some(a), Some(c), Some(k)) = (&args.trust_anchor, &args.issuer_cert, &args.issuer_key) {
        let read = |p: &PathBuf| {
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
        };
        cfg = cfg.own_ca(read(a)?, read(c)?, read(k)?);
    }
    Ok(cfg)
}

/// Runs the control plane until Ctrl-C or SIGTERM.
pub(crate) async fn control(args: ControlArgs) -> anyhow::Result<()> {
    let cp = mesh_control::ControlPlane::start(control_config(&args)?)
        .await
        .with_context(|| {
            format!(
                "cannot start the control plane on {} (is another `mesh control` running? \
                 try --listen 127.0.0.1:0)",
                args.listen
            )
        })?;
    let viz = mesh_viz::Viz::start(&cp, mesh_viz::Config::new())
        .await
        .context("cannot start metrics, tap and the dashboard")?;
    eprintln!(
        "mesh control: listening on {} as {} (state in {})",
        cp.addr(),
        cp.identity(),
        args.state_dir.display()
    );
    mesh_core::signal::shutdown().await;
    viz.shutdown().await;
    cp.shutdown().await;
    Ok(())
}

/// `mesh run`.
#[derive(Parser, Debug)]
pub(crate) struct RunArgs {
    /// The workload's name (also its service and service account unless given).
    #[arg(long)]
    pub(crate) name: String,
    /// The workload's namespace.
    #[arg(long, short = 'n', default_value = "default")]
    pub(crate) namespace: String,
    /// The port the app listens on (127.0.0.1); inbound traffic is forwarded there.
    #[arg(long)]
    pub(crate) port: Option<u16>,
    /// The service account (identity); default is --name.
    #[arg(long)]
    pub(crate) service_account: Option<String>,
    /// Per-upstream listeners for the app, AUTHORITY=LISTEN_ADDR (repeatable).
    #[arg(long = "upstream")]
    pub(crate) upstreams: Vec<String>,
    /// The workload's default inbound policy: all-authenticated, all-unauthenticated,
    /// cluster-authenticated, cluster-unauthenticated or deny. Registered with the control plane;
    /// a service's `authorization` in mesh.yaml, or a `workloads` entry, overrides it. Default:
    /// the namespace's or the catalog's.
    #[arg(long)]
    pub(crate) inbound_policy: Option<String>,
    /// The state directory of the control plane.
    #[arg(long, env = "MESH_STATE_DIR", default_value_os_t = default_state_dir())]
    pub(crate) state_dir: PathBuf,
    /// The control plane's address (default: what the state directory records).
    #[arg(long)]
    pub(crate) control: Option<SocketAddr>,
    /// How long the app may take to stop after SIGTERM before it is killed.
    #[arg(long, default_value = "10s")]
    pub(crate) grace: String,
    /// The app and its arguments.
    #[arg(last = true, required = true)]
    pub(crate) command: Vec<String>,
}

/// Removes a workload's record when `mesh run` ends, however it ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn progress(msg: &str) {
    eprintln!("mesh run: {msg}");
}

/// Runs a workload behind its sidecar; returns the app's exit status.
pub(crate) async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let state = &args.state_dir;
    let control = match args.control {
        Some(a) => a,
        None => mesh_control::state::read_control_addr(state).with_context(|| {
            format!(
                "no control plane recorded in {}: start one with `mesh control` (or `mesh demo`), \
                 or pass --control ADDR",
                state.display()
            )
        })?,
    };
    if tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(control),
    )
    .await
    .map(|r| r.is_err())
    .unwrap_or(true)
    {
        bail!(
            "the control plane at {control} is not reachable: start it with `mesh control` \
             (or `mesh demo`), or pass --control ADDR"
        );
    }
    let control_identity = mesh_control::state::read_control_identity(state)
        .with_context(|| format!("no control-plane identity in {}", state.display()))?;
    let sa = args
        .service_account
        .clone()
        .unwrap_or_else(|| args.name.clone());
    let domain = mesh_tls::IdentityDomain::default();
    let identity: ServiceIdentity = domain
        .workload(&sa, &args.namespace)
        .with_context(|| format!("invalid name: {sa}.{}", args.namespace))?;
    if let Some(port) = args.port {
        // The app must be able to take its port: say so now, not after the sidecar started.
        std::net::TcpListener::bind(("127.0.0.1", port)).with_context(|| {
            format!(
                "port {port} is already in use on 127.0.0.1: another process listens there; \
                 stop it or pick another --port"
            )
        })?;
    }
    let grace =
        mesh_core::duration::parse(&args.grace).map_err(|e| anyhow::anyhow!("--grace: {e}"))?;
    let token = mesh_control::state::tokens(state)
        .context("cannot open the bootstrap token store")?
        .issue(&identity, Duration::from_secs(300))
        .context("cannot issue a bootstrap token")?;

    let anchors = state.join(mesh_tls::ca::files::TRUST_ANCHORS);
    let mut flags = vec![
        "mesh-proxy".to_string(),
        "--control".into(),
        control.to_string(),
        "--control-identity".into(),
        control_identity.to_string(),
        "--trust-anchors".into(),
        anchors.display().to_string(),
        "--identity".into(),
        identity.to_string(),
        "--token".into(),
        token,
        "--outbound-listen".into(),
        "127.0.0.1:0".into(),
        "--admin-listen".into(),
        "127.0.0.1:0".into(),
        "--tap-listen".into(),
        "127.0.0.1:0".into(),
        "--tap-identity".into(),
        control_identity.to_string(),
    ];
    if let Some(policy) = &args.inbound_policy {
        flags.extend(["--inbound-policy".into(), policy.clone()]);
    }
    if let Some(port) = args.port {
        flags.extend([
            "--inbound-listen".into(),
            "127.0.0.1:0".into(),
            "--inbound-forward".into(),
            format!("127.0.0.1:{port}"),
            "--register".into(),
            format!("{}.{}:{port}", args.name, args.namespace),
        ]);
    }
    for u in &args.upstreams {
        flags.extend(["--upstream".into(), u.clone()]);
    }
    let config = mesh_proxy::Args::try_parse_from(flags)?.validate()?;
    progress(&format!(
        "starting the sidecar of {}.{}",
        args.name, args.namespace
    ));
    let proxy = mesh_proxy::Proxy::start(config).await?;
    progress(&format!("certifying {identity}"));
    tokio::select! {
        _ = proxy.runtime().creds.ready() => {}
        _ = tokio::time::sleep(Duration::from_secs(30)) => {
            bail!("the sidecar was not certified within 30 s: is the control plane at {control} healthy? (`mesh check`)");
        }
    }
    progress("certified; the sidecar is ready");

    let outbound = proxy
        .outbound_addr()
        .context("the sidecar has no outbound listener")?;
    // Recorded for the control plane's metrics scraper and tap fan-out.
    let record = mesh_viz::metrics::Workload {
        name: args.name.clone(),
        namespace: args.namespace.clone(),
        identity: identity.to_string(),
        admin: proxy.admin_addr(),
        tap: Some(
            proxy
                .tap_addr()
                .context("the sidecar has no tap listener")?,
        ),
        inbound: proxy.inbound_addr(),
        pid: std::process::id(),
    };
    let _record = RemoveOnDrop(record.write(state).context("cannot record the workload")?);

    let (program, app_args) = args
        .command
        .split_first()
        .context("no command to run after --")?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(app_args)
        .env("MESH_OUTBOUND_ADDR", outbound.to_string())
        .env("MESH_IDENTITY", identity.to_string())
        .kill_on_drop(true);
    #[cfg(unix)]
    cmd.process_group(0);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {program}: is it installed and on the PATH?"))?;
    let pid = child.id();
    progress(&format!(
        "started {program} (pid {})",
        pid.unwrap_or_default()
    ));

    let status = tokio::select! {
        status = child.wait() => status?,
        _ = mesh_core::signal::shutdown() => {
            progress("stopping: SIGTERM to the app");
            if let Some(pid) = pid {
                signal_group(pid, "TERM");
            }
            match tokio::time::timeout(grace, child.wait()).await {
                Ok(status) => status?,
                Err(_) => {
                    progress(&format!("the app ignored SIGTERM for {grace:?}; killing it"));
                    if let Some(pid) = pid {
                        signal_group(pid, "KILL");
                    }
                    child.kill().await.ok();
                    child.wait().await?
                }
            }
        }
    };
    progress(&format!("the app exited ({status}); draining the sidecar"));
    proxy.shutdown();
    tokio::time::timeout(Duration::from_secs(10), proxy.wait())
        .await
        .ok();
    Ok(exit_code(status))
}

fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return ExitCode::from(128u8.saturating_add(sig as u8));
        }
    }
    ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8)
}

/// Sends a signal to a process group with `kill(1)` (no `unsafe` here).
fn signal_group(pgid: u32, signal: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{pgid}"))
        .status();
}

/// Resolves on SIGTERM or Ctrl-C.
/// `mesh demo`.
#[derive(Parser, Debug)]
pub(crate) struct DemoArgs {
    /// The state directory (a `demo` subdirectory holds the demo's control plane).
    #[arg(long, env = "MESH_STATE_DIR", default_value_os_t = default_state_dir())]
    pub(crate) state_dir: PathBuf,
    /// Where the control plane listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub(crate) control_listen: SocketAddr,
    /// Seconds between vote-bot iterations.
    #[arg(long, default_value = "1s")]
    pub(crate) vote_interval: String,
}

/// The demo's catalog: the three emojivoto services, their ports, and a profile per service
/// whose routes (named as Linkerd names generated routes, `METHOD /path`) label the metrics that
/// `mesh routes` shows.
fn demo_catalog(ports: &DemoPorts) -> String {
    let grpc_routes = |service: &str, methods: &[&str]| -> String {
        methods
            .iter()
            .map(|m| {
                format!(
                    "        - name: 'POST /emojivoto.v1.{service}/{m}'\n          \
                     condition: {{method: POST, pathRegex: '/emojivoto\\.v1\\.{service}/{m}'}}\n"
                )
            })
            .collect()
    };
    format!(
        // Each service admits exactly its callers: web is called by vote-bot, emoji and voting
        // by web; any other workload (or a plaintext client on the host) is refused.
        "services:\n\
         \x20 - name: emoji\n    namespace: emojivoto\n    ports:\n      - port: {e}\n        protocol: grpc\n\
         \x20       authorization: {{serviceAccounts: [web]}}\n\
         \x20   profile:\n      routes:\n{emoji_routes}\
         \x20 - name: voting\n    namespace: emojivoto\n    ports:\n      - port: {v}\n        protocol: grpc\n\
         \x20       authorization: {{serviceAccounts: [web]}}\n\
         \x20   profile:\n      routes:\n{voting_routes}\
         \x20 - name: web\n    namespace: emojivoto\n    ports:\n      - port: {w}\n        protocol: http1\n\
         \x20       authorization: {{serviceAccounts: [vote-bot]}}\n\
         \x20   profile:\n      routes:\n{web_routes}",
        e = ports.emoji,
        v = ports.voting,
        w = ports.web,
        emoji_routes = grpc_routes("EmojiService", &["ListAll", "FindByShortcode"]),
        voting_routes = grpc_routes("VotingService", &["Vote", "Results"]),
        web_routes = [
            ("GET /", "/"),
            ("GET /api/list", "/api/list"),
            ("GET /api/vote", "/api/vote"),
            ("GET /api/leaderboard", "/api/leaderboard"),
            ("GET /emoji/{shortcode}", "/emoji/[^/]+"),
        ]
        .iter()
        .map(|(name, path)| {
            format!(
                "        - name: '{name}'\n          condition: {{method: GET, pathRegex: '{path}'}}\n"
            )
        })
        .collect::<String>(),
    )
}

struct DemoPorts {
    emoji: u16,
    voting: u16,
    web: u16,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Runs the control plane and the emojivoto demo until Ctrl-C.
pub(crate) async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let state = args.state_dir.clone();
    std::fs::create_dir_all(&state)
        .with_context(|| format!("cannot create the state directory {}", state.display()))?;
    let ports = DemoPorts {
        emoji: free_port()?,
        voting: free_port()?,
        web: free_port()?,
    };
    let catalog = state.join("emojivoto.yaml");
    std::fs::write(&catalog, demo_catalog(&ports))?;
    // Workloads of an earlier demo that did not stop cleanly are gone now.
    let _ = std::fs::remove_dir_all(state.join("workloads"));

    eprintln!("mesh demo: starting the control plane");
    let cp = mesh_control::ControlPlane::start(
        mesh_control::Config::new(&state)
            .listen(args.control_listen)
            .catalog_file(Some(catalog)),
    )
    .await
    .context("cannot start the control plane")?;
    let viz = mesh_viz::Viz::start(&cp, mesh_viz::Config::new())
        .await
        .context("cannot start metrics, tap and the dashboard")?;
    eprintln!(
        "mesh demo: control plane on {} as {}",
        cp.addr(),
        cp.identity()
    );

    let exe = std::env::current_exe().context("cannot find the mesh binary")?;
    let exe_s = exe.display().to_string();
    let state_s = state.display().to_string();
    let ns = "emojivoto";
    let emoji = format!("emoji.{ns}:{}", ports.emoji);
    let voting = format!("voting.{ns}:{}", ports.voting);
    let web = format!("web.{ns}:{}", ports.web);
    let workloads: Vec<(&str, Option<u16>, Vec<String>)> = vec![
        (
            "emoji",
            Some(ports.emoji),
            vec!["emoji".into(), "--port".into(), ports.emoji.to_string()],
        ),
        (
            "voting",
            Some(ports.voting),
            vec!["voting".into(), "--port".into(), ports.voting.to_string()],
        ),
        (
            "web",
            Some(ports.web),
            vec![
                "web".into(),
                "--port".into(),
                ports.web.to_string(),
                "--emoji-authority".into(),
                emoji.clone(),
                "--voting-authority".into(),
                voting.clone(),
            ],
        ),
        (
            "vote-bot",
            None,
            vec![
                "vote-bot".into(),
                "--web-authority".into(),
                web.clone(),
                "--interval".into(),
                args.vote_interval.clone(),
            ],
        ),
    ];
    let mut children = Vec::new();
    for (name, port, app) in workloads {
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.args([
            "run",
            "--name",
            name,
            "--namespace",
            ns,
            "--state-dir",
            &state_s,
        ]);
        if let Some(p) = port {
            cmd.args(["--port", &p.to_string()]);
        }
        cmd.arg("--").arg(&exe_s).arg("emojivoto").args(&app);
        cmd.kill_on_drop(true);
        #[cfg(unix)]
        cmd.process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start the {name} workload"))?;
        eprintln!("mesh demo: started {name} behind its sidecar");
        children.push((name, child));
        // Servers first, so the web and the bot find them.
        if port.is_some() {
            wait_registered(&state, ns, name).await;
        }
    }
    println!();
    println!(
        "The emojivoto demo is running: {} workloads, each behind a sidecar, all traffic mTLS.",
        children.len()
    );
    println!("Voting for :doughnut: always fails, and one emoji's page is a 404. Find them:");
    println!(
        "  http://{}/   # the dashboard: health, topology, golden metrics, live tap (`mesh dashboard`)",
        viz.api_addr()
    );
    println!("  mesh stat deploy -n emojivoto        # success rate, RPS, latency per workload");
    println!("  mesh edges -n emojivoto              # who calls whom, secured by mTLS");
    println!("  mesh tap deploy/web -n emojivoto --path /api/vote");
    println!(
        "  curl -s -H 'Host: {web}' http://127.0.0.1:{}/api/list   # the web app itself",
        ports.web
    );
    println!("Ctrl-C stops everything.");
    mesh_core::signal::shutdown().await;
    eprintln!("mesh demo: stopping");
    for (_, child) in &children {
        if let Some(pid) = child.id() {
            signal_group(pid, "TERM");
        }
    }
    for (name, mut child) in children {
        if tokio::time::timeout(Duration::from_secs(15), child.wait())
            .await
            .is_err()
        {
            eprintln!("mesh demo: {name} did not stop; killing it");
            if let Some(pid) = child.id() {
                signal_group(pid, "KILL");
            }
            let _ = child.kill().await;
        }
    }
    viz.shutdown().await;
    cp.shutdown().await;
    Ok(())
}

async fn wait_registered(state: &Path, ns: &str, name: &str) {
    let path = state.join("workloads").join(format!("{ns}.{name}.json"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !path.exists() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use mesh_control::catalog::{ServiceRef, file};
    use mesh_tls::IdentityDomain;

    #[test]
    fn demo_catalog_has_a_profile_per_service() {
        let ports = super::DemoPorts {
            emoji: 1001,
            voting: 1002,
            web: 1003,
        };
        let text = super::demo_catalog(&ports);
        let snapshot = file::parse(&text, None, &IdentityDomain::default())
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        let names = |svc: &str| -> Vec<String> {
            let s = snapshot
                .service(&ServiceRef::new(svc, "emojivoto"))
                .unwrap_or_else(|| panic!("no {svc}"));
            s.profile.routes.iter().map(|r| r.name.clone()).collect()
        };
        assert_eq!(
            names("voting"),
            [
                "POST /emojivoto.v1.VotingService/Vote",
                "POST /emojivoto.v1.VotingService/Results"
            ]
        );
        assert_eq!(names("emoji").len(), 2);
        assert!(names("web").contains(&"GET /api/vote".to_string()));
        // Each port admits exactly its callers.
        let callers = |svc: &str| {
            let s = snapshot
                .service(&ServiceRef::new(svc, "emojivoto"))
                .expect(svc);
            let port = s.ports.values().next().expect("a port");
            match &port.authorization {
                Some(mesh_control::catalog::Authorization::Clients(c)) => {
                    assert!(!c.unauthenticated, "{svc} admits unauthenticated clients");
                    c.identities
                        .iter()
                        .map(|i| i.as_str().split('.').next().unwrap_or("").to_owned())
                        .collect::<Vec<_>>()
                }
                other => panic!("{svc}: {other:?}"),
            }
        };
        assert_eq!(callers("web"), ["vote-bot"]);
        assert_eq!(callers("voting"), ["web"]);
        assert_eq!(callers("emoji"), ["web"]);
    }
}
