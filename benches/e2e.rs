//! End-to-end latency suite: the mesh pair against the direct path, in one run, on loopback.
//!
//! ```text
//! direct: client ──────────────────────────────────────────────────────────▶ backend
//! mesh:   client ─▶ outbound ══ HTTP/2 over mutual TLS ══▶ inbound ─▶ backend
//! ```
//!
//! The backend (in this process, its own one-thread runtime) answers HTTP/1.1 and HTTP/2 (h2c,
//! prior knowledge) with a small fixed body, and gRPC unary `EmojiService/FindByShortcode` with
//! emojivoto's tonic service. The proxies are `mesh proxy` child processes (one worker thread
//! each, `--cores 1`) with certificates from a throwaway mesh-tls CA; the inbound requires a
//! client certificate (`--inbound-policy all-authenticated`). The load generator runs on its own
//! one-thread runtime: HTTP/1.1 over a pool of keep-alive connections, HTTP/2 and gRPC as streams
//! on one connection.
//!
//! For each protocol (`h1`, `h2`, `grpc`) and each path (direct, mesh) it measures:
//! - **latency at a constant rate** (open loop, default 1,000 rps): p50/p90/p99/p99.9, each
//!   request timed from its *intended* start, so a stall is charged to every request scheduled
//!   during it (coordinated omission corrected), in an HDR histogram;
//! - **maximum throughput**: requests per second with a fixed number of requests in flight
//!   (closed loop, default 32: HTTP/1.1 on 32 connections, HTTP/2 and gRPC as 32 streams on one);
//! - per proxy, **CPU µs per request** (user + system time from `/proc/PID/stat` over the phase,
//!   divided by the requests) at the constant rate and at maximum throughput, with the same figure
//!   for this process (client and backend together: plain hyper on both ends of the same
//!   requests) as the machine's yardstick; and **peak RSS** (`VmHWM`, reset before each protocol);
//!   the pair's RSS and CPU at rest are measured once before any load;
//!
//! and reports a table with the mesh's cost over direct: added p50/p90/p99/p99.9 and the throughput
//! ratio. Each phase is preceded by a short unrecorded warm-up with the same client. The JSON
//! goes to `TARGET/e2e/e2e.json` (`TARGET` is `CARGO_TARGET_DIR` or the bench's own target
//! directory), the proxies' logs beside it (`mesh-out.log`, `mesh-in.log`).
//!
//! ```text
//! cargo bench --bench e2e                                   # ≈ 2 min: 12 phases of 8 s
//! MESH_E2E_SECONDS=20 MESH_E2E_RATE=2000 cargo bench --bench e2e
//! MESH_E2E_PROTOCOLS=h1,grpc MESH_E2E_CONCURRENCY=64 cargo bench --bench e2e
//! cargo bench --bench e2e -- h2                             # a filter picks protocols too
//! ```
//!
//! `MESH_E2E_SECONDS` is the length of each measured phase. Without `--bench` (`cargo test
//! --benches`) it makes a short smoke run and writes no JSON. The proxies inherit the
//! environment, so `MESH_PROXY_*` variables tune them (the run names any it passes on) and
//! `RUST_LOG` sets their log level (default `warn`). Every child process is killed on exit, on a
//! panic and on Ctrl-C. Nothing is downloaded at run time.
//!
//! (One file over 600 lines on purpose: the phases, their settings and the report are one
//! sequence read top to bottom; the backend, the load generator and the proxy pair are the
//! modules beside it.)

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tokio::time::Instant;

use self::emojivoto::BoxError;
use self::load::{Client, Protocol, Recorder};
use self::pair::{Children, KillOnDrop, MeshPair};

/// The backend's gRPC service, built from the same files as `mesh demo`.
#[path = "../examples/emojivoto/mod.rs"]
mod emojivoto;

#[path = "e2e/backend.rs"]
mod backend;
#[path = "e2e/load.rs"]
mod load;
#[path = "e2e/pair.rs"]
mod pair;

fn main() -> ExitCode {
    let settings = match Settings::parse() {
        Ok(Some(s)) => s,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("e2e: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("e2e: {e}");
            ExitCode::FAILURE
        }
    }
}

// === Settings ===

#[derive(Debug)]
struct Settings {
    /// Each measured phase.
    seconds: Duration,
    /// The unrecorded warm-up before each constant-rate phase (half of it before each
    /// max-throughput phase).
    warmup: Duration,
    /// Open-loop requests per second.
    rate: u32,
    /// Closed-loop requests in flight.
    concurrency: usize,
    protocols: Vec<Protocol>,
    /// `cargo test --benches`: a smoke run, no JSON.
    test_mode: bool,
}

/// Harness flags that take a value (criterion's and libtest's), so the value is not taken for a
/// filter.
const FLAGS_WITH_VALUE: &[&str] = &[
    "--save-baseline",
    "--baseline",
    "--load-baseline",
    "--sample-size",
    "--warm-up-time",
    "--measurement-time",
    "--nresamples",
    "--noise-threshold",
    "--confidence-level",
    "--significance-level",
    "--profile-time",
    "--plotting-backend",
    "--output-format",
    "--color",
    "--format",
    "--logfile",
    "--skip",
];

fn env_number<T: std::str::FromStr>(name: &str, example: &str) -> Result<Option<T>, String> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("{name}={v:?}: give a positive number, e.g. {name}={example}")),
        Err(_) => Ok(None),
    }
}

impl Settings {
    /// `None`: nothing to run (`--list`, or filters that match no protocol).
    fn parse() -> Result<Option<Self>, String> {
        let (mut bench, mut list, mut filters) = (false, false, Vec::new());
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--bench" => bench = true,
                "--list" => list = true,
                flag if FLAGS_WITH_VALUE.contains(&flag) => {
                    args.next();
                }
                flag if flag.starts_with('-') => {} // --exact, --nocapture, --quiet, ...
                filter => filters.push(filter.to_string()),
            }
        }

        let mut protocols = match std::env::var("MESH_E2E_PROTOCOLS") {
            Err(_) => Protocol::ALL.to_vec(),
            Ok(v) => {
                let mut out = Vec::new();
                for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    let p = Protocol::ALL
                        .into_iter()
                        .find(|p| p.name() == name)
                        .ok_or_else(|| {
                            format!("MESH_E2E_PROTOCOLS: {name:?} is not one of h1, h2, grpc")
                        })?;
                    if !out.contains(&p) {
                        out.push(p);
                    }
                }
                if out.is_empty() {
                    return Err("MESH_E2E_PROTOCOLS is empty: give some of h1,h2,grpc".into());
                }
                out
            }
        };
        let id = |p: &Protocol| format!("e2e/{}", p.name());
        if list {
            for p in &protocols {
                println!("{}: benchmark", id(p));
            }
            return Ok(None);
        }
        if !filters.is_empty() {
            protocols.retain(|p| filters.iter().any(|f| id(p).contains(f.as_str())));
            if protocols.is_empty() {
                println!(
                    "e2e: skipped: no benchmark matches {filters:?} (they are e2e/h1, e2e/h2 and \
                     e2e/grpc; MESH_E2E_PROTOCOLS picks them too)"
                );
                return Ok(None);
            }
        }

        let test_mode = !bench;
        let seconds: Option<f64> = env_number("MESH_E2E_SECONDS", "8")?;
        let seconds = match seconds {
            Some(s) if s.is_finite() && s > 0.0 && s <= 3600.0 => s,
            Some(s) => return Err(format!("MESH_E2E_SECONDS={s}: between 0 and 3600")),
            None if test_mode => 0.5,
            None => 8.0,
        };
        let rate = match env_number::<u32>("MESH_E2E_RATE", "1000")? {
            Some(0) => return Err("MESH_E2E_RATE=0: give a positive rate".into()),
            Some(r) => r,
            None if test_mode => 200,
            None => 1_000,
        };
        let concurrency = match env_number::<usize>("MESH_E2E_CONCURRENCY", "32")? {
            Some(c) if (1..=1024).contains(&c) => c,
            Some(c) => return Err(format!("MESH_E2E_CONCURRENCY={c}: between 1 and 1024")),
            None if test_mode => 4,
            None => 32,
        };
        Ok(Some(Self {
            seconds: Duration::from_secs_f64(seconds),
            warmup: Duration::from_secs_f64((seconds / 4.0).min(1.0)),
            rate,
            concurrency,
            protocols,
            test_mode,
        }))
    }
}

// === the run ===

/// What one path measured for one protocol.
#[derive(Debug)]
struct PathResult {
    at_rate: Recorder,
    at_max: Recorder,
    cpu_at_rate: Option<CpuPerRequest>,
    cpu_at_max: Option<CpuPerRequest>,
    /// HTTP/1.1: connections the client opened on this path.
    connections: usize,
}

/// CPU µs per request over a phase.
#[derive(Debug, Clone, Copy)]
struct CpuPerRequest {
    /// [outbound, inbound] (idle on the direct path, so not reported there).
    proxies: [f64; 2],
    /// This process: the load generator and the backend together.
    client_backend: f64,
}

impl CpuPerRequest {
    /// `(outbound+inbound)` on the mesh path, then `(client+backend)`.
    fn cell(c: Option<Self>, mesh: bool) -> String {
        match c {
            None => "?".into(),
            Some(c) if mesh => format!(
                "{:.1}+{:.1} ({:.1})",
                c.proxies[0], c.proxies[1], c.client_backend
            ),
            Some(c) => format!("- ({:.1})", c.client_backend),
        }
    }
}

#[derive(Debug)]
struct ProtocolResult {
    protocol: Protocol,
    direct: PathResult,
    mesh: PathResult,
    /// Peak RSS of [outbound, inbound] while this protocol ran, kB.
    peak_rss_kb: [Option<u64>; 2],
}

fn runtime(name: &str) -> Result<Runtime, BoxError> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()?)
}

/// Completes on Ctrl-C or SIGTERM; never if neither can be watched.
async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    let int = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = term => {}
        () = int => {}
    }
}

/// `CARGO_TARGET_DIR`, else the target directory the bench executable sits in
/// (`TARGET/release/deps/e2e-HASH`), else `target`.
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return dir.into();
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            let deps = exe.parent()?;
            (deps.file_name()? == "deps").then(|| Some(deps.parent()?.parent()?.to_path_buf()))?
        })
        .unwrap_or_else(|| PathBuf::from("target"))
}

fn run(s: &Settings) -> Result<(), BoxError> {
    let began = Instant::now();
    let out_dir = target_dir().join("e2e");
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let certs = tempfile::tempdir()?;
    let backend_rt = runtime("e2e-backend")?;
    let client_rt = runtime("e2e-client")?;
    let backend = backend_rt.block_on(backend::start())?;

    let children = Children::default();
    let _kill_on_drop = KillOnDrop(children.clone());
    {
        let children = children.clone();
        client_rt.spawn(async move {
            interrupted().await;
            children.kill_all();
            eprintln!("\ne2e: interrupted; the proxies are stopped");
            std::process::exit(130);
        });
    }
    let pair = client_rt.block_on(pair::start(&children, certs.path(), &out_dir, backend))?;
    let clock = pair::clock_ticks();
    let idle_rss = pair.proxies().map(|p| pair::status_kb(p.pid, "VmRSS").ok());
    let startup_peak = pair.proxies().map(|p| pair::status_kb(p.pid, "VmHWM").ok());
    // The pair at rest: what it costs with no traffic at all.
    let idle_window = s.warmup * 2;
    let before = cpu_ticks(&pair);
    client_rt.block_on(async { tokio::time::sleep(idle_window).await });
    let idle_cpu = before.zip(cpu_ticks(&pair)).map(|(b, a)| {
        [0, 1].map(|i| {
            a[i].saturating_sub(b[i]) as f64 / clock as f64 / idle_window.as_secs_f64() * 100.0
        })
    });
    let load_before = pair::load_average();
    let passed: Vec<String> = std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("MESH_PROXY_"))
        .collect();
    if !passed.is_empty() {
        println!(
            "e2e: the proxies see {} from this environment",
            passed.join(", ")
        );
    }
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    if s.test_mode {
        println!(
            "e2e: test mode (no --bench): a short smoke run; `cargo bench --bench e2e` measures"
        );
    }
    println!(
        "e2e: backend {backend}, outbound listener {} (proxy pids {} and {}, admin {} and {}), \
         {cpus} CPUs, load average {load_before}; {} rps open loop, {} in flight closed loop, \
         {:.1} s phases",
        pair.listen,
        pair.outbound.pid,
        pair.inbound.pid,
        pair.outbound.admin,
        pair.inbound.admin,
        s.rate,
        s.concurrency,
        s.seconds.as_secs_f64()
    );

    let mut results = Vec::new();
    for &protocol in &s.protocols {
        let r = measure(s, protocol, &client_rt, &pair, &children, backend, clock)?;
        results.push(r);
    }
    let load_after = pair::load_average();
    let total = began.elapsed();
    let inbound_metrics = client_rt
        .block_on(pair::admin_get(pair.inbound.admin, "/metrics"))
        .unwrap_or_default();
    let outbound_metrics = client_rt
        .block_on(pair::admin_get(pair.outbound.admin, "/metrics"))
        .unwrap_or_default();

    let logs = pair.proxies().map(|p| (p, log_findings(&p.log)));
    print_report(s, &results, &load_before, &load_after, cpus);
    let mb =
        |kb: Option<u64>| kb.map_or_else(|| "?".into(), |k| format!("{:.1}", k as f64 / 1024.0));
    println!(
        "\nThe pair at rest (after start, before any load): RSS {}+{} MB, CPU {} % of a core \
         over {:.1} s; peak RSS of start-up {}+{} MB.",
        mb(idle_rss[0]),
        mb(idle_rss[1]),
        pair_of(idle_cpu, 2),
        idle_window.as_secs_f64(),
        mb(startup_peak[0]),
        mb(startup_peak[1]),
    );
    for (proxy, (count, sample)) in &logs {
        if *count > 0 {
            println!(
                "\n{} proxy: {count} warning/error lines in {}; first ones:",
                proxy.name,
                proxy.log.display()
            );
            for line in sample {
                println!("    {line}");
            }
        }
    }
    let mtls = MetricsCheck::read(&inbound_metrics, &outbound_metrics);
    mtls.print();
    println!("\ne2e: total {:.1} s", total.as_secs_f64());

    if !s.test_mode {
        let doc = json!({
            "suite": "e2e",
            "unix_time": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            "settings": {
                "seconds": s.seconds.as_secs_f64(),
                "warmup_seconds": s.warmup.as_secs_f64(),
                "rate": s.rate,
                "concurrency": s.concurrency,
                "proxy_cores": 1,
            },
            "machine": {
                "cpus": cpus,
                "load_average_before": load_before,
                "load_average_after": load_after,
                "clock_ticks_per_second": clock,
            },
            "proxies": {
                "idle_rss_kb": {"outbound": idle_rss[0], "inbound": idle_rss[1]},
                "idle_cpu_percent_of_a_core":
                    idle_cpu.map(|[o, i]| json!({"outbound": o, "inbound": i})),
                "idle_seconds": idle_window.as_secs_f64(),
                "startup_peak_rss_kb": {"outbound": startup_peak[0], "inbound": startup_peak[1]},
                "log_warnings": {"outbound": logs[0].1.0, "inbound": logs[1].1.0},
            },
            "proxy_metrics": {
                "inbound_requests_over_mtls": mtls.inbound_mtls_requests,
                "inbound_client_ids": mtls.client_ids,
                "inbound_connections_from_outbound": mtls.inbound_connections,
                "nonzero_error_series": mtls.errors,
            },
            "results": results.iter().map(protocol_json).collect::<Vec<_>>(),
            "total_seconds": total.as_secs_f64(),
        });
        let path = out_dir.join("e2e.json");
        std::fs::write(&path, serde_json::to_string_pretty(&doc)? + "\n")
            .map_err(|e| format!("{}: {e}", path.display()))?;
        println!("e2e: JSON in {}", path.display());
    }
    Ok(())
}

/// Warm-up then measured phases of one protocol, direct and mesh interleaved so drift in the
/// machine's load hits both alike.
fn measure(
    s: &Settings,
    protocol: Protocol,
    rt: &Runtime,
    pair: &MeshPair,
    children: &Children,
    backend: std::net::SocketAddr,
    clock: u64,
) -> Result<ProtocolResult, BoxError> {
    for proxy in pair.proxies() {
        // Peak RSS per protocol; if the kernel refuses, VmHWM is the peak since start.
        let _ = pair::reset_peak_rss(proxy.pid);
    }
    let clients = [
        (
            "direct",
            Arc::new(rt.block_on(Client::connect(protocol, backend))?),
        ),
        (
            "mesh",
            Arc::new(
                rt.block_on(Client::connect(protocol, pair.listen))
                    .map_err(|e| {
                        format!("{}: connect to the outbound proxy: {e}", protocol.name())
                    })?,
            ),
        ),
    ];
    // One request on each path before anything is measured, for a clear error if a path is broken.
    for (path, client) in &clients {
        if let Err(e) = rt.block_on(client.call()) {
            let mut msg = format!("{} {path}: the first request failed: {e}", protocol.name());
            if *path == "mesh" {
                for proxy in pair.proxies() {
                    msg.push_str(&format!(
                        "\n{} log ({}):\n{}",
                        proxy.name,
                        proxy.log.display(),
                        pair::log_tail(&proxy.log, 10)
                    ));
                }
            }
            return Err(msg.into());
        }
    }
    let cpu = || -> Option<[u64; 3]> {
        let [o, i] = cpu_ticks(pair)?;
        Some([o, i, pair::cpu_ticks(std::process::id()).ok()?])
    };
    let per_request = |before: Option<[u64; 3]>, after: Option<[u64; 3]>, r: &Recorder| {
        let (b, a) = (before?, after?);
        let n = (r.ok + r.errors).max(1) as f64;
        let us = |i: usize| a[i].saturating_sub(b[i]) as f64 * 1e6 / clock as f64 / n;
        Some(CpuPerRequest {
            proxies: [us(0), us(1)],
            client_backend: us(2),
        })
    };
    let show = |c: Option<CpuPerRequest>, mesh: bool| {
        format!(", CPU µs/req {}", CpuPerRequest::cell(c, mesh))
    };

    let mut at_rate = Vec::new();
    let mut cpu_at_rate = Vec::new();
    for (path, client) in &clients {
        load::open_loop(rt, client, s.rate, s.warmup);
        let before = cpu();
        let r = load::open_loop(rt, client, s.rate, s.seconds);
        let used = per_request(before, cpu(), &r);
        eprintln!(
            "e2e: {:<4} {path:<6} @{} rps: p50 {:.3} p99 {:.3} p99.9 {:.3} ms, {} ok, {} errors{}",
            protocol.name(),
            s.rate,
            r.ms(0.5),
            r.ms(0.99),
            r.ms(0.999),
            r.ok,
            r.errors,
            show(used, *path == "mesh"),
        );
        at_rate.push(r);
        cpu_at_rate.push(used);
    }
    let mut at_max = Vec::new();
    let mut cpu_at_max = Vec::new();
    for (path, client) in &clients {
        load::closed_loop(rt, client, s.concurrency, s.warmup / 2)?;
        let before = cpu();
        let r = load::closed_loop(rt, client, s.concurrency, s.seconds)?;
        let used = per_request(before, cpu(), &r);
        eprintln!(
            "e2e: {:<4} {path:<6} max: {:.0} rps at {} in flight, p50 {:.3} p99 {:.3} ms, {} errors{}",
            protocol.name(),
            r.rps(),
            s.concurrency,
            r.ms(0.5),
            r.ms(0.99),
            r.errors,
            show(used, *path == "mesh"),
        );
        at_max.push(r);
        cpu_at_max.push(used);
    }
    for proxy in pair.proxies() {
        if let Some(status) = children.exited(proxy.pid) {
            return Err(
                pair::startup_failure(proxy, &format!("exited during the run ({status})")).into(),
            );
        }
    }
    let peak_rss_kb = pair.proxies().map(|p| pair::status_kb(p.pid, "VmHWM").ok());

    let mut at_rate = at_rate.into_iter();
    let mut at_max = at_max.into_iter();
    let mut path_result = |i: usize| -> Result<PathResult, BoxError> {
        Ok(PathResult {
            at_rate: at_rate.next().ok_or("a phase is missing")?,
            at_max: at_max.next().ok_or("a phase is missing")?,
            cpu_at_rate: cpu_at_rate[i],
            cpu_at_max: cpu_at_max[i],
            connections: clients[i]
                .1
                .opened
                .load(std::sync::atomic::Ordering::Relaxed),
        })
    };
    Ok(ProtocolResult {
        protocol,
        direct: path_result(0)?,
        mesh: path_result(1)?,
        peak_rss_kb,
    })
}

/// CPU time so far of [outbound, inbound], in clock ticks.
fn cpu_ticks(pair: &MeshPair) -> Option<[u64; 2]> {
    Some([
        pair::cpu_ticks(pair.outbound.pid).ok()?,
        pair::cpu_ticks(pair.inbound.pid).ok()?,
    ])
}

/// What the proxies' own metrics say about the run: that the inbound saw the requests over
/// mutual TLS from the outbound's identity, on how many connections, and any error counters.
#[derive(Debug, Default)]
struct MetricsCheck {
    inbound_mtls_requests: u64,
    client_ids: Vec<String>,
    inbound_connections: u64,
    /// `proxy_errors`, `inbound_*_authz_deny` and `detect_timeout` series above zero, both proxies.
    errors: Vec<String>,
}

impl MetricsCheck {
    fn read(inbound: &str, outbound: &str) -> Self {
        let samples = |text: &str| -> Vec<(String, u64)> {
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let (series, value) = l.rsplit_once(' ')?;
                    Some((series.to_string(), value.trim().parse::<f64>().ok()? as u64))
                })
                .collect()
        };
        let label = |series: &str, name: &str| -> Option<String> {
            let start = series.find(&format!("{name}=\""))? + name.len() + 2;
            let len = series[start..].find('"')?;
            Some(series[start..start + len].to_string())
        };
        let mut check = Self::default();
        for (series, value) in samples(inbound) {
            if series.starts_with("request_total{") && series.contains("tls=\"true\"") {
                check.inbound_mtls_requests += value;
                if let Some(id) = label(&series, "client_id")
                    && !check.client_ids.contains(&id)
                {
                    check.client_ids.push(id);
                }
            }
            if series.starts_with("tcp_open_total{") && series.contains("peer=\"src\"") {
                check.inbound_connections += value;
            }
        }
        for (who, text) in [("inbound", inbound), ("outbound", outbound)] {
            for (series, value) in samples(text) {
                let counter = [
                    "proxy_errors",
                    "inbound_http_authz_deny",
                    "inbound_tcp_authz_deny",
                    "detect_timeout",
                ]
                .iter()
                .any(|n| series.starts_with(n));
                if counter && value > 0 {
                    check.errors.push(format!("{who}: {series} {value}"));
                }
            }
        }
        check
    }

    fn print(&self) {
        println!(
            "\nThe inbound proxy counted {} requests over mutual TLS from {}, on {} connection(s) \
             accepted from the outbound (warm-ups and probes included).",
            thousands(self.inbound_mtls_requests as f64),
            if self.client_ids.is_empty() {
                "no verified client".to_string()
            } else {
                self.client_ids.join(", ")
            },
            self.inbound_connections
        );
        for e in &self.errors {
            println!("    error counter: {e}");
        }
    }
}

/// Lines the proxies logged at WARN or ERROR: how many, and the first few.
fn log_findings(log: &std::path::Path) -> (usize, Vec<String>) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let hits: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR ") || l.contains("\"level\":\"WARN"))
        .collect();
    (
        hits.len(),
        hits.iter().take(5).map(|l| l.to_string()).collect(),
    )
}

// === report ===

fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn pair_of(v: Option<[f64; 2]>, decimals: usize) -> String {
    v.map_or_else(
        || "-".into(),
        |[a, b]| format!("{a:.decimals$}+{b:.decimals$}"),
    )
}

fn print_report(s: &Settings, results: &[ProtocolResult], before: &str, after: &str, cpus: usize) {
    let rate = thousands(f64::from(s.rate));
    println!(
        "\n### e2e: {rate} rps open loop, {} in flight closed loop, {} s phases; {cpus} CPUs, \
         load average {before} before, {after} after\n",
        s.concurrency,
        s.seconds.as_secs_f64()
    );
    println!(
        "| protocol | path | @{rate} rps p50 / p90 / p99 / p99.9 ms | max rps (c={}) | @max p50 / p99 ms | errors | CPU µs/req @{rate}: out+in (client+backend) | CPU µs/req @max: out+in (client+backend) | peak RSS MB out+in |",
        s.concurrency
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in results {
        for (path, p) in [("direct", &r.direct), ("mesh", &r.mesh)] {
            let rss = if path == "mesh" {
                match r.peak_rss_kb {
                    [Some(a), Some(b)] => {
                        format!("{:.1}+{:.1}", a as f64 / 1024.0, b as f64 / 1024.0)
                    }
                    _ => "?".into(),
                }
            } else {
                "-".into()
            };
            let max = if path == "mesh" {
                format!(
                    "{} ({:.2}x)",
                    thousands(p.at_max.rps()),
                    p.at_max.rps() / r.direct.at_max.rps().max(1e-9)
                )
            } else {
                thousands(p.at_max.rps())
            };
            println!(
                "| {} | {path} | {:.3} / {:.3} / {:.3} / {:.3} | {max} | {:.3} / {:.3} | {} | {} | {} | {rss} |",
                r.protocol.name(),
                p.at_rate.ms(0.5),
                p.at_rate.ms(0.9),
                p.at_rate.ms(0.99),
                p.at_rate.ms(0.999),
                p.at_max.ms(0.5),
                p.at_max.ms(0.99),
                p.at_rate.errors + p.at_max.errors,
                CpuPerRequest::cell(p.cpu_at_rate, path == "mesh"),
                CpuPerRequest::cell(p.cpu_at_max, path == "mesh"),
            );
        }
    }
    println!("\nThe mesh's cost over direct (same run):\n");
    println!(
        "| protocol | added p50 ms | added p90 ms | added p99 ms | added p99.9 ms | max throughput mesh/direct |"
    );
    println!("|---|---|---|---|---|---|");
    for r in results {
        let added = |q: f64| r.mesh.at_rate.ms(q) - r.direct.at_rate.ms(q);
        println!(
            "| {} | {:+.3} | {:+.3} | {:+.3} | {:+.3} | {:.2}x |",
            r.protocol.name(),
            added(0.5),
            added(0.9),
            added(0.99),
            added(0.999),
            r.mesh.at_max.rps() / r.direct.at_max.rps().max(1e-9)
        );
    }
    let lag = results
        .iter()
        .flat_map(|r| [&r.direct.at_rate, &r.mesh.at_rate])
        .map(|p| p.lag.value_at_quantile(0.99))
        .max()
        .unwrap_or(0);
    println!(
        "\nLoad generator: start lag p99 at most {:.3} ms (how late requests left their schedule; \
         included in the latencies above).",
        lag as f64 / 1e6
    );
    for r in results {
        for (path, p) in [("direct", &r.direct), ("mesh", &r.mesh)] {
            for (phase, rec) in [("constant rate", &p.at_rate), ("max throughput", &p.at_max)] {
                if let Some(e) = &rec.first_error {
                    println!(
                        "{} {path} {phase}: {} errors, the first: {e}",
                        r.protocol.name(),
                        rec.errors
                    );
                }
            }
        }
    }
}

fn phase_json(r: &Recorder) -> Value {
    json!({
        "ok": r.ok,
        "errors": r.errors,
        "first_error": r.first_error,
        "seconds": r.elapsed.as_secs_f64(),
        "rps": r.rps(),
        "p50_ms": r.ms(0.5),
        "p90_ms": r.ms(0.9),
        "p99_ms": r.ms(0.99),
        "p999_ms": r.ms(0.999),
        "max_ms": r.latency.max() as f64 / 1e6,
        "mean_ms": r.latency.mean() / 1e6,
        "start_lag_p99_ms": r.lag.value_at_quantile(0.99) as f64 / 1e6,
    })
}

fn path_json(p: &PathResult) -> Value {
    let cpu = |c: Option<CpuPerRequest>| {
        c.map(|c| {
            json!({
                "outbound": c.proxies[0],
                "inbound": c.proxies[1],
                "client_and_backend": c.client_backend,
            })
        })
    };
    json!({
        "constant_rate": phase_json(&p.at_rate),
        "max_throughput": phase_json(&p.at_max),
        "cpu_us_per_request_at_rate": cpu(p.cpu_at_rate),
        "cpu_us_per_request_at_max": cpu(p.cpu_at_max),
        "h1_connections_opened": p.connections,
    })
}

fn protocol_json(r: &ProtocolResult) -> Value {
    let added = |q: f64| r.mesh.at_rate.ms(q) - r.direct.at_rate.ms(q);
    json!({
        "protocol": r.protocol.name(),
        "direct": path_json(&r.direct),
        "mesh": path_json(&r.mesh),
        "peak_rss_kb": {"outbound": r.peak_rss_kb[0], "inbound": r.peak_rss_kb[1]},
        "added_ms": {"p50": added(0.5), "p90": added(0.9), "p99": added(0.99), "p999": added(0.999)},
        "throughput_ratio": r.mesh.at_max.rps() / r.direct.at_max.rps().max(1e-9),
    })
}
