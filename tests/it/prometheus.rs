//! A real Prometheus scrapes the embedding example's `/metrics` and answers queries about it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::example::Running;
use crate::http::get;
use crate::wait::until;

/// Debian's prometheus binary: `$MESH_PROMETHEUS`, or `prometheus` on the PATH.
pub fn prometheus_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MESH_PROMETHEUS") {
        return Some(PathBuf::from(p));
    }
    let out = Command::new("sh")
        .args(["-c", "command -v prometheus"])
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!path.is_empty()).then(|| PathBuf::from(path))
}

pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn query(prom: SocketAddr, promql: &str) -> Option<f64> {
    let encoded: String = promql
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let (status, body) = get(prom, &format!("/api/v1/query?query={encoded}"));
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let value = v["data"]["result"].get(0)?["value"]
        .get(1)?
        .as_str()?
        .to_string();
    value.parse().ok()
}

#[test]
fn a_real_prometheus_scrapes_golden_metrics() {
    let Some(bin) = prometheus_binary() else {
        eprintln!(
            "\n*** SKIPPED: no prometheus binary (set MESH_PROMETHEUS or install Debian's \
             prometheus; .ci/run does) ***\n"
        );
        return;
    };
    let mut app = Running::start("embed_layers", &["--listen", "127.0.0.1:0"]);
    let line = app.wait_for_line("listening on http://", Duration::from_secs(30));
    let addr: SocketAddr = line
        .rsplit("http://")
        .next()
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    for _ in 0..5 {
        assert_eq!(get(addr, "/hello").0, 200);
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: embed\n    metrics_path: /metrics\n    static_configs:\n      - targets: ['{addr}']\n"
        ),
    )
    .expect("write config");
    let prom: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let _prometheus = KillOnDrop(
        Command::new(&bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={prom}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display())),
    );

    until(
        Duration::from_secs(60),
        "the scrape target to be up",
        || {
            let (status, body) = std::panic::catch_unwind(|| get(prom, "/api/v1/targets")).ok()?;
            (status == 200 && body.contains(r#""health":"up""#)).then_some(())
        },
    );
    let hello = until(
        Duration::from_secs(30),
        "request_total in Prometheus",
        || {
            query(
                prom,
                r#"request_total{job="embed",direction="inbound",route="/hello"}"#,
            )
            .filter(|v| *v == 5.0)
        },
    );
    assert_eq!(hello, 5.0);
    let ok = until(
        Duration::from_secs(30),
        "response_total in Prometheus",
        || {
            query(
            prom,
            r#"sum(response_total{job="embed",route="/hello",classification="success",status_code="200"})"#,
        )
        .filter(|v| *v == 5.0)
        },
    );
    assert_eq!(ok, 5.0);
    let latency_count = until(Duration::from_secs(30), "the latency histogram", || {
        query(
            prom,
            r#"sum(response_latency_ms_count{job="embed",route="/hello"})"#,
        )
        .filter(|v| *v == 5.0)
    });
    assert_eq!(latency_count, 5.0);
}
