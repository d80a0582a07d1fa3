//! `mesh check`: is the mesh healthy? Linkerd's format: a category, a line per check (`√`, `‼`
//! warning, `×` failure) with a hint on failure, and a non-zero exit when anything fails.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::Parser;

/// `mesh check`.
#[derive(Parser, Debug)]
pub(crate) struct CheckArgs {
    /// Only check that the machine can run the mesh (before `mesh control`).
    #[arg(long)]
    pre: bool,
    /// The state directory of the control plane.
    #[arg(long, env = "MESH_STATE_DIR", default_value_os_t = crate::local::default_state_dir())]
    state_dir: PathBuf,
}

#[derive(Default)]
struct Report {
    failed: bool,
}

impl Report {
    fn category(&self, name: &str) {
        println!("\n{name}\n{}", "-".repeat(name.chars().count()));
    }

    fn ok(&self, what: &str) {
        println!("√ {what}");
    }

    fn warn(&self, what: &str, hint: &str) {
        println!("‼ {what}\n    {hint}");
    }

    fn fail(&mut self, what: &str, hint: &str) {
        self.failed = true;
        println!("× {what}\n    {hint}");
    }
}

/// Runs the checks; `Ok(false)` when one failed.
pub(crate) async fn check(args: CheckArgs) -> anyhow::Result<bool> {
    let mut r = Report::default();
    let state = &args.state_dir;
    if args.pre {
        r.category("pre-mesh");
        match std::fs::create_dir_all(state).and_then(|_| {
            let probe = state.join(".write-probe");
            std::fs::write(&probe, b"")?;
            std::fs::remove_file(probe)
        }) {
            Ok(()) => r.ok(&format!(
                "the state directory {} is writable",
                state.display()
            )),
            Err(e) => r.fail(
                &format!(
                    "the state directory {} is not writable: {e}",
                    state.display()
                ),
                "pass --state-dir DIR or set MESH_STATE_DIR to a writable directory",
            ),
        }
        match std::net::TcpListener::bind("127.0.0.1:0") {
            Ok(_) => r.ok("can listen on 127.0.0.1"),
            Err(e) => r.fail(
                &format!("cannot listen on 127.0.0.1: {e}"),
                "check the loopback interface",
            ),
        }
        return Ok(summary(&r));
    }

    r.category("control-plane");
    let addr = match mesh_control::state::read_control_addr(state) {
        Ok(a) => a,
        Err(e) => {
            r.fail(
                &format!("no control plane recorded in {}: {e}", state.display()),
                "start one with `mesh control` or `mesh demo` (or pass --state-dir)",
            );
            return Ok(summary(&r));
        }
    };
    match tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => r.ok(&format!("control plane is reachable at {addr}")),
        _ => r.fail(
            &format!("control plane at {addr} is not reachable"),
            "start it with `mesh control` (or `mesh demo`)",
        ),
    }
    check_certificates(&mut r, state);

    r.category("data-plane");
    let dir = state.join("workloads");
    let mut workloads: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    workloads.sort();
    if workloads.is_empty() {
        r.warn(
            "no workloads are running",
            "start one with `mesh run` (or `mesh demo`)",
        );
    }
    for path in workloads {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(w) = serde_json::from_str::<serde_json::Value>(&text) else {
            r.fail(
                &format!("{} is not readable", path.display()),
                "remove the file; `mesh run` rewrites it",
            );
            continue;
        };
        let name = format!(
            "{}/{}",
            w["namespace"].as_str().unwrap_or("?"),
            w["name"].as_str().unwrap_or("?")
        );
        let admin = w["admin"].as_str().and_then(|a| a.parse().ok());
        match admin {
            Some(admin) => match ready(admin).await {
                Ok(true) => r.ok(&format!("{name} is meshed and its proxy is ready")),
                Ok(false) => r.fail(
                    &format!("{name}'s proxy is not ready"),
                    &format!("see http://{admin}/ready for why"),
                ),
                Err(e) => r.fail(
                    &format!("{name}'s proxy does not answer: {e}"),
                    "is its `mesh run` still running? a stale record is removed when it exits",
                ),
            },
            None => r.fail(
                &format!("{name} has no admin address"),
                "restart it with `mesh run`",
            ),
        }
    }
    Ok(summary(&r))
}

fn check_certificates(r: &mut Report, state: &Path) {
    match mesh_tls::CertificateAuthority::builder().load(state) {
        Ok(ca) => {
            r.ok("trust anchors and issuer are valid and chain together");
            // The same rule as the dashboard's health panel.
            use mesh_viz::dashboard::health::{Status, certificate_status};
            let (status, days) = certificate_status(ca.issuer_not_after(), SystemTime::now());
            match status {
                Status::Ok => r.ok(&format!(
                    "issuer certificate is valid for at least 60 days ({days} left)"
                )),
                Status::Warn => r.warn(
                    &format!("issuer certificate expires in {days} days"),
                    "rotate the issuer: give `mesh control` a new one with --issuer-cert/--issuer-key",
                ),
                _ => r.fail(
                    &format!("issuer certificate expired {} days ago", -days),
                    "rotate the issuer: give `mesh control` a new one with --issuer-cert/--issuer-key",
                ),
            }
        }
        Err(e) => r.fail(
            &format!("the CA in {} is not usable: {e}", state.display()),
            "restore the state directory, or start over with a new one",
        ),
    }
}

async fn ready(admin: std::net::SocketAddr) -> anyhow::Result<bool> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let io = async {
        let mut s = tokio::net::TcpStream::connect(admin).await?;
        s.write_all(b"GET /ready HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n")
            .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(2), io).await??;
    Ok(buf.starts_with(b"HTTP/1.1 200"))
}

fn summary(r: &Report) -> bool {
    println!(
        "\nStatus check results are {}",
        if r.failed { "×" } else { "√" }
    );
    !r.failed
}
