//! The seed's story, asserted: `mesh demo` brings up the mesh and emojivoto, and the CLI shows
//! where it fails — parsed from the CLI's own output, not just printed.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::wait::{try_until, until};

const MESH: &str = env!("CARGO_BIN_EXE_mesh");

/// `mesh demo` in a state directory of the test's, its output discarded; stopped with Ctrl-C
/// (SIGINT) on drop, as a person stops it.
///
/// One demo at a time in this test binary: each is a control plane and eight processes picking
/// free ports, and three at once on two cores made a slow start (and a port picked twice)
/// possible.
pub(crate) struct Demo {
    child: Child,
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
}

static ONE_DEMO: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Demo {
    /// Starts the demo with a vote-bot iteration every `vote_interval`.
    pub(crate) fn start(state: &Path, vote_interval: &str) -> Self {
        // A test that failed while holding it poisoned it; the next demo may still run.
        let guard = ONE_DEMO.lock().unwrap_or_else(|p| p.into_inner());
        let child = Command::new(MESH)
            .args(["demo", "--vote-interval", vote_interval, "--state-dir"])
            .arg(state)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mesh demo");
        Demo {
            child,
            _one_at_a_time: guard,
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn mesh(state: &Path, args: &[&str]) -> std::process::Output {
    Command::new("timeout")
        .arg("30")
        .arg(MESH)
        .args(args)
        .env("MESH_STATE_DIR", state)
        .output()
        .expect("mesh")
}

fn json(state: &Path, args: &[&str]) -> Option<serde_json::Value> {
    let out = mesh(state, args);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// Whether any process of process group `pgid` runs.
fn running_group(pgid: &str) -> bool {
    Command::new("pgrep")
        .args(["-g", pgid])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn the_demo_shows_where_emojivoto_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path();
    let demo = Demo::start(state, "50ms");

    // All four workloads meshed, web and vote-bot failing some requests, emoji never.
    let rows = until(Duration::from_secs(90), "stat rows with traffic", || {
        let rows = json(
            state,
            &[
                "stat",
                "deploy",
                "-n",
                "emojivoto",
                "-o",
                "json",
                "-t",
                "1m",
            ],
        )?;
        let rows = rows.as_array()?.clone();
        let by = |n: &str| rows.iter().find(|r| r["name"] == n).cloned();
        let ready = ["emoji", "voting", "web", "vote-bot"].iter().all(|n| {
            by(n)
                .is_some_and(|r| r["meshed"] == "1/1" && r["success"].is_f64() && r["rps"].is_f64())
        });
        let failing = by("web")
            .and_then(|r| r["success"].as_f64())
            .is_some_and(|s| s < 1.0);
        (ready && failing).then_some(rows)
    });
    let success = |n: &str| {
        rows.iter()
            .find(|r| r["name"] == n)
            .and_then(|r| r["success"].as_f64())
            .unwrap_or_else(|| panic!("no success rate for {n}"))
    };
    assert!(success("web") < 1.0, "{rows:?}");
    assert!(success("vote-bot") < 1.0, "{rows:?}");
    assert_eq!(success("emoji"), 1.0, "{rows:?}");

    // Every edge secured by mTLS, with the right identities.
    let edges = until(Duration::from_secs(30), "edges", || {
        let e = json(state, &["edges", "deploy", "-n", "emojivoto", "-o", "json"])?;
        let e = e.as_array()?.clone();
        let has = |s: &str, d: &str| e.iter().any(|r| r["src"] == s && r["dst"] == d);
        (has("vote-bot", "web") && has("web", "emoji") && has("web", "voting")).then_some(e)
    });
    for e in &edges {
        assert_eq!(e["secured"], true, "{e}");
        let src = e["src"].as_str().unwrap_or_default();
        assert_eq!(
            e["client_id"],
            format!("{src}.emojivoto.serviceaccount.identity.mesh.cluster.local"),
            "{e}"
        );
    }

    // Per-route numbers, labelled by the routes of each service's profile: web's own routes
    // (its inbound side), and web's calls to voting (its outbound side, effective and actual).
    let routes = until(Duration::from_secs(60), "web's routes with traffic", || {
        let r = json(
            state,
            &["routes", "deploy/web", "-n", "emojivoto", "-o", "json"],
        )?;
        let r = r.as_array()?.clone();
        let has = |name: &str| {
            r.iter()
                .any(|row| row["route"] == name && row["success"].is_f64())
        };
        (has("GET /api/vote") && has("GET /api/list")).then_some(r)
    });
    let route_success = |rows: &[serde_json::Value], name: &str| {
        rows.iter()
            .find(|row| row["route"] == name)
            .and_then(|row| row["success"].as_f64())
            .unwrap_or_else(|| panic!("no route {name} in {rows:?}"))
    };
    assert!(route_success(&routes, "GET /api/vote") < 1.0, "{routes:?}");
    assert_eq!(route_success(&routes, "GET /api/list"), 1.0, "{routes:?}");
    let to_voting = until(Duration::from_secs(30), "web's routes to voting", || {
        let r = json(
            state,
            &[
                "routes",
                "deploy/web",
                "-n",
                "emojivoto",
                "--to",
                "deploy/voting",
                "-o",
                "json",
            ],
        )?;
        let r = r.as_array()?.clone();
        r.iter()
            .any(|row| {
                row["route"] == "POST /emojivoto.v1.VotingService/Vote"
                    && row["effective_success"].is_f64()
            })
            .then_some(r)
    });
    let vote = to_voting
        .iter()
        .find(|row| row["route"] == "POST /emojivoto.v1.VotingService/Vote")
        .expect("the vote route");
    let effective = vote["effective_success"].as_f64().unwrap_or(1.0);
    assert!(effective < 1.0, "{to_voting:?}");

    // The text forms Linkerd users know.
    let out = mesh(state, &["stat", "deploy", "-n", "emojivoto"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let header: Vec<_> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "MESHED",
            "SUCCESS",
            "RPS",
            "LATENCY_P50",
            "LATENCY_P95",
            "LATENCY_P99",
            "TCP_CONN"
        ]
    );

    // mesh tap shows the failing votes: /api/vote answered 500 (the doughnut), and web's call to
    // voting failing with a gRPC error.
    let tap = until(Duration::from_secs(60), "failed votes in tap", || {
        let out = mesh(
            state,
            &[
                "tap",
                "deploy/web",
                "-n",
                "emojivoto",
                "--path",
                "/",
                "--limit",
                "60",
            ],
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let failed_vote = text
            .lines()
            .any(|l| l.starts_with("rsp ") && l.contains(":status=500"));
        let grpc_error = text.lines().any(|l| {
            l.starts_with("end ") && l.contains("proxy=out") && l.contains("grpc-status=Unknown")
        });
        (failed_vote && grpc_error).then_some(text)
    });
    // Outbound events name the endpoint the balancer picked, not just the authority.
    let outbound: Vec<&str> = tap.lines().filter(|l| l.contains("proxy=out")).collect();
    assert!(
        outbound
            .iter()
            .all(|l| l.contains(" dst=127.0.0.1:") && !l.contains(" dst=:0")),
        "{outbound:#?}"
    );
    let first = tap
        .lines()
        .find(|l| l.starts_with("req "))
        .unwrap_or_default();
    assert!(
        first.contains("tls=true") && first.contains(":method="),
        "{first}"
    );

    // mesh check passes.
    let check = mesh(state, &["check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    assert!(String::from_utf8_lossy(&check.stdout).contains("Status check results are √"));

    // Ctrl-C stops everything and leaves no process behind: each `mesh run` leads a process
    // group holding its app; none may survive.
    let groups: Vec<String> = std::fs::read_dir(state.join("workloads"))
        .expect("workloads")
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.ok()?.path()).ok()?;
            let w: serde_json::Value = serde_json::from_str(&text).ok()?;
            Some(w["pid"].as_u64()?.to_string())
        })
        .collect();
    assert_eq!(groups.len(), 4, "{groups:?}");
    assert!(
        groups.iter().all(|g| running_group(g)),
        "the demo's workloads are not running?"
    );
    drop(demo);
    until(
        Duration::from_secs(45),
        "every demo process to stop",
        || (!groups.iter().any(|g| running_group(g))).then_some(()),
    );
}

/// The same `mesh stat` numbers from a real Prometheus (Debian's, scraping every proxy with
/// Linkerd's relabelling) as from the control plane's embedded store.
///
/// Tolerance: the two answer over different windows (the store from its snapshots, Prometheus
/// `rate()` with extrapolation over the samples of the last minute), so success rates may differ
/// by at most 0.15 and request rates by at most a factor of 2.
#[test]
fn prometheus_and_the_embedded_store_agree() {
    use crate::prometheus::{KillOnDrop, free_port, prometheus_binary};
    let Some(bin) = prometheus_binary() else {
        eprintln!(
            "\n*** SKIPPED: no prometheus binary (set MESH_PROMETHEUS; .ci/run installs it) ***\n"
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let _demo = Demo::start(&state, "50ms");
    until(Duration::from_secs(60), "four workloads", || {
        let n = std::fs::read_dir(state.join("workloads")).ok()?.count();
        (n == 4).then_some(())
    });
    let sd = dir.path().join("targets.json");
    let targets = mesh_viz::metrics::prometheus::file_sd_targets(&state).expect("targets");
    std::fs::write(&sd, targets.to_string()).expect("write targets");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        mesh_viz::metrics::prometheus::scrape_config(&sd, Duration::from_secs(1)),
    )
    .expect("write config");
    let prom = format!("127.0.0.1:{}", free_port());
    let _prometheus = KillOnDrop(
        Command::new(&bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={prom}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus"),
    );
    let url = format!("http://{prom}");
    // A 10 s window, so Prometheus (whose rates divide an increase by the window, as Linkerd's
    // PromQL does) has a full window of samples within seconds of starting.
    let stat = |extra: &[&str]| -> Option<Vec<serde_json::Value>> {
        let mut args = vec![
            "stat",
            "deploy",
            "-n",
            "emojivoto",
            "-o",
            "json",
            "-t",
            "10s",
        ];
        args.extend_from_slice(extra);
        let rows = json(&state, &args)?;
        rows.as_array().cloned()
    };
    let value = |rows: &[serde_json::Value], name: &str, f: &str| {
        rows.iter()
            .find(|r| r["name"] == name)
            .and_then(|r| r[f].as_f64())
    };
    let agree = |e: &[serde_json::Value], p: &[serde_json::Value]| {
        ["emoji", "voting", "web", "vote-bot"].iter().all(|n| {
            let (Some(se), Some(sp), Some(re), Some(rp)) = (
                value(e, n, "success"),
                value(p, n, "success"),
                value(e, n, "rps"),
                value(p, n, "rps"),
            ) else {
                return false;
            };
            (se - sp).abs() <= 0.15 && re > 0.0 && rp > 0.0 && re / rp <= 2.0 && rp / re <= 2.0
        })
    };
    let mut last = (Vec::new(), Vec::new());
    let agreed = try_until(Duration::from_secs(120), Duration::from_millis(500), || {
        let (e, p) = (stat(&[])?, stat(&["--prometheus", &url])?);
        let ok = agree(&e, &p);
        last = (e, p);
        ok.then_some(())
    })
    .is_some();
    assert!(
        agreed,
        "the sources never agreed within tolerance:\nembedded: {:?}\nprometheus: {:?}",
        last.0, last.1
    );
}
