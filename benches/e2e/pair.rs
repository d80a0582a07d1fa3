//! The mesh pair under test: an outbound and an inbound `mesh proxy`, each a child process so its
//! CPU time and resident memory can be read from `/proc`, with static certificates made here by a
//! throwaway mesh-tls CA.
//!
//! ```text
//! client --h1/h2c/gRPC--> outbound (--upstream backend.e2e:80=LISTEN)
//!        --HTTP/2 over mutual TLS--> inbound (--inbound-policy all-authenticated)
//!        --the client's protocol (--app-protocol auto)--> backend
//! ```
//!
//! [`Children`] kills every process it started when it is dropped (normal exit and panics), and
//! [`Children::kill_all`] is what the Ctrl-C handler calls before it exits.

use std::fs::{self, File};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mesh_tls::CertificateAuthority;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::emojivoto::BoxError;

/// The authority the client calls on both paths; the outbound's per-upstream listener routes it.
pub(crate) const AUTHORITY: &str = "backend.e2e:80";

/// How long a proxy may take to answer 200 on `/ready`.
const READY_DEADLINE: Duration = Duration::from_secs(30);

/// One proxy of the pair.
#[derive(Debug, Clone)]
pub(crate) struct Proxy {
    /// `outbound` or `inbound`.
    pub(crate) name: &'static str,
    /// The child's process id (the `mesh` binary itself, no shell in between).
    pub(crate) pid: u32,
    /// Its admin server.
    pub(crate) admin: SocketAddr,
    /// Its stdout and stderr.
    pub(crate) log: PathBuf,
}

/// The running pair.
#[derive(Debug)]
pub(crate) struct MeshPair {
    /// Where the client sends mesh-path traffic (the outbound's per-upstream listener).
    pub(crate) listen: SocketAddr,
    pub(crate) outbound: Proxy,
    pub(crate) inbound: Proxy,
}

impl MeshPair {
    pub(crate) fn proxies(&self) -> [&Proxy; 2] {
        [&self.outbound, &self.inbound]
    }
}

/// Writes a CA's trust anchor and two leaf certificates into `dir`, writes the destinations file,
/// and starts the pair in front of `backend`. Returns once both proxies answer `/ready`.
pub(crate) async fn start(
    children: &Children,
    dir: &Path,
    logs: &Path,
    backend: SocketAddr,
) -> Result<MeshPair, BoxError> {
    let ca = CertificateAuthority::builder().generate()?;
    let out_id = ca.domain().workload("outbound", "e2e")?;
    let in_id = ca.domain().workload("inbound", "e2e")?;
    let ca_pem = dir.join("ca.pem");
    fs::write(&ca_pem, ca.trust_anchor_pem())?;
    let mut files = Vec::new();
    for (name, id) in [("outbound", &out_id), ("inbound", &in_id)] {
        let leaf = ca.issue(id)?;
        let (cert, key) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        fs::write(&cert, leaf.chain_pem())?;
        fs::write(&key, leaf.key_pem())?;
        files.push((cert, key));
    }

    // Four free ports, all held until all are known so none is picked twice.
    let held = (0..4)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<io::Result<Vec<_>>>()?;
    let ports = held
        .iter()
        .map(std::net::TcpListener::local_addr)
        .collect::<io::Result<Vec<_>>>()?;
    drop(held);
    let [listen, out_admin, in_listen, in_admin] = [ports[0], ports[1], ports[2], ports[3]];

    let destinations = dir.join("destinations.json");
    let file = serde_json::json!({ "destinations": [{
        "authority": AUTHORITY,
        "endpoints": [{ "addr": in_listen.to_string(), "identity": in_id.to_string() }],
    }]});
    fs::write(&destinations, file.to_string())?;

    let common = |cert: &Path, key: &Path, admin: SocketAddr| -> Vec<String> {
        [
            "proxy",
            "--trust-anchors",
            &ca_pem.display().to_string(),
            "--cert",
            &cert.display().to_string(),
            "--key",
            &key.display().to_string(),
            "--admin-listen",
            &admin.to_string(),
            "--cores",
            "1",
            "--shutdown-grace",
            "1s",
        ]
        .map(String::from)
        .to_vec()
    };
    let mut out_args = common(&files[0].0, &files[0].1, out_admin);
    out_args.extend([
        "--upstream".into(),
        format!("{AUTHORITY}={listen}"),
        "--destinations".into(),
        destinations.display().to_string(),
    ]);
    let mut in_args = common(&files[1].0, &files[1].1, in_admin);
    in_args.extend([
        "--inbound-listen".into(),
        in_listen.to_string(),
        "--inbound-forward".into(),
        backend.to_string(),
        "--inbound-policy".into(),
        "all-authenticated".into(),
        "--app-protocol".into(),
        "auto".into(),
    ]);

    let inbound = children.spawn("inbound", &in_args, in_admin, &logs.join("mesh-in.log"))?;
    let outbound = children.spawn("outbound", &out_args, out_admin, &logs.join("mesh-out.log"))?;
    for proxy in [&inbound, &outbound] {
        wait_ready(children, proxy).await?;
    }
    Ok(MeshPair {
        listen,
        outbound,
        inbound,
    })
}

/// Polls `GET /ready` on the proxy's admin server until it answers 200, the process exits, or
/// [`READY_DEADLINE`] passes.
async fn wait_ready(children: &Children, proxy: &Proxy) -> Result<(), BoxError> {
    let deadline = Instant::now() + READY_DEADLINE;
    loop {
        if let Some(status) = children.exited(proxy.pid) {
            return Err(startup_failure(proxy, &format!("exited ({status})")).into());
        }
        let last = match admin_get(proxy.admin, "/ready").await {
            Ok(rsp) if rsp.starts_with("HTTP/1.1 200") => return Ok(()),
            Ok(rsp) => rsp.lines().next().unwrap_or_default().to_string(),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(startup_failure(
                proxy,
                &format!("not ready after {READY_DEADLINE:?} (last answer: {last})"),
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One request to an admin server, the whole answer as text.
pub(crate) async fn admin_get(admin: SocketAddr, path: &str) -> io::Result<String> {
    let mut tcp = TcpStream::connect(admin).await?;
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut rsp = Vec::new();
    tcp.read_to_end(&mut rsp).await?;
    Ok(String::from_utf8_lossy(&rsp).into_owned())
}

/// "the outbound proxy exited ...; its log: PATH, last lines: ...".
pub(crate) fn startup_failure(proxy: &Proxy, what: &str) -> String {
    format!(
        "the {} proxy {what}; its log is {}, last lines:\n{}",
        proxy.name,
        proxy.log.display(),
        log_tail(&proxy.log, 20)
    )
}

/// The last `n` lines of a log, indented.
pub(crate) fn log_tail(path: &Path, n: usize) -> String {
    match fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(n);
            if lines.is_empty() {
                "    (empty)".into()
            } else {
                lines[from..]
                    .iter()
                    .map(|l| format!("    {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        }
        Err(e) => format!("    (cannot read it: {e})"),
    }
}

// === impl Children ===

/// Every child process the bench started; all are killed when the last clone is dropped or
/// [`Children::kill_all`] runs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Children {
    inner: Arc<Mutex<Vec<(&'static str, Child)>>>,
}

impl Children {
    /// Starts `mesh ARGS` with its stdout and stderr in `log`.
    fn spawn(
        &self,
        name: &'static str,
        args: &[String],
        admin: SocketAddr,
        log: &Path,
    ) -> Result<Proxy, BoxError> {
        let out = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new(env!("CARGO_BIN_EXE_mesh"))
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", env!("CARGO_BIN_EXE_mesh")))?;
        let pid = child.id();
        self.lock().push((name, child));
        Ok(Proxy {
            name,
            pid,
            admin,
            log: log.to_path_buf(),
        })
    }

    /// The exit status of child `pid`, if it has exited.
    pub(crate) fn exited(&self, pid: u32) -> Option<std::process::ExitStatus> {
        let mut children = self.lock();
        let (_, child) = children.iter_mut().find(|(_, c)| c.id() == pid)?;
        child.try_wait().ok().flatten()
    }

    /// Kills and reaps every child (idempotent).
    pub(crate) fn kill_all(&self) {
        for (_, mut child) in self.lock().drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(&'static str, Child)>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Kills the children when the bench ends, normally or by a panic.
#[derive(Debug)]
pub(crate) struct KillOnDrop(pub(crate) Children);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.0.kill_all();
    }
}

// === /proc ===

/// Clock ticks per second for `/proc/PID/stat`'s times, from `getconf CLK_TCK` (100 when it
/// cannot be asked; Linux has used 100 on every common architecture for decades).
pub(crate) fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t: &u64| t > 0)
        .unwrap_or(100)
}

/// User plus system CPU time of `pid` (all its threads), in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> io::Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    // Then field 3 (state) is index 0, utime (14) index 11, stime (15) index 12.
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/proc/{pid}/stat: {stat}"),
        )
    };
    let rest = stat.rsplit_once(')').ok_or_else(bad)?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> io::Result<u64> {
        fields.get(i).and_then(|f| f.parse().ok()).ok_or_else(bad)
    };
    Ok(field(11)? + field(12)?)
}

/// A `/proc/PID/status` memory field (`VmHWM`, `VmRSS`), in kB.
pub(crate) fn status_kb(pid: u32, field: &str) -> io::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("/proc/{pid}/status has no {field}"),
            )
        })
}

/// Resets `VmHWM` to the current RSS (`echo 5 > /proc/PID/clear_refs`), so the next read is the
/// peak of what follows.
pub(crate) fn reset_peak_rss(pid: u32) -> io::Result<()> {
    fs::write(format!("/proc/{pid}/clear_refs"), "5")
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` says them.
pub(crate) fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
