//! Original-destination mode inside a network namespace with an iptables REDIRECT rule, as
//! Kubernetes sidecars run: the app calls the service's address, iptables sends the connection
//! to the proxy, and `SO_ORIGINAL_DST` tells the proxy where it was going.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::*;

const SERVICE: &str = "10.255.0.1:8080";

/// Runs `cmd` inside `ns`; the output.
fn in_ns(ns: &str, cmd: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", ns, "timeout", "20"])
        .args(cmd)
        .output()
        .unwrap_or_else(|e| panic!("ip netns exec {cmd:?}: {e}"))
}

struct Netns(String, Vec<Child>);

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.1 {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

impl Netns {
    fn spawn(&mut self, args: &[&str], log: &Path) {
        let out = std::fs::File::create(log).expect("log file");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("spawn in netns");
        self.1.push(child);
    }
}

fn skip(why: &str) {
    eprintln!("\n*** SKIPPED: original-destination test: {why} ***\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iptables_redirect_to_the_original_destination_listener() {
    if Command::new("iptables").arg("--version").output().is_err() {
        return skip("iptables is not installed (.ci/run installs it)");
    }
    let ns = format!("meshtest{}", std::process::id());
    match Command::new("ip").args(["netns", "add", &ns]).output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return skip(&format!(
                "this machine forbids network namespaces: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
        Err(e) => return skip(&format!("no `ip` command: {e}")),
    }
    let mut netns = Netns(ns.clone(), Vec::new());
    for cmd in [
        &["ip", "link", "set", "lo", "up"][..],
        &["ip", "addr", "add", "10.255.0.1/32", "dev", "lo"],
        &[
            "iptables",
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-p",
            "tcp",
            "-d",
            "10.255.0.1",
            "--dport",
            "8080",
            "-j",
            "REDIRECT",
            "--to-ports",
            "4140",
        ],
    ] {
        let o = in_ns(&ns, cmd);
        if !o.status.success() {
            return skip(&format!(
                "{cmd:?} failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let ca = ca_dir(dir.path());
    let bin = env!("CARGO_BIN_EXE_mesh-proxy");
    let destinations = serde_json::json!({ "destinations": [{
        "authority": SERVICE,
        "endpoints": [{ "addr": "127.0.0.1:4143", "identity": identity("backend") }],
    }]});
    let dests = dir.path().join("destinations.json");
    std::fs::write(&dests, destinations.to_string()).expect("write");
    let ca_s = ca.display().to_string();
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).expect("mkdir");
    std::fs::write(www.join("hello.txt"), "hello through iptables\n").expect("write");
    netns.spawn(
        &[
            "python3",
            "-m",
            "http.server",
            "9090",
            "--bind",
            "127.0.0.1",
            "--directory",
            &www.display().to_string(),
        ],
        &dir.path().join("backend.log"),
    );
    netns.spawn(
        &[
            bin,
            "--ca-dir",
            &ca_s,
            "--identity",
            &identity("backend"),
            "--inbound-listen",
            "127.0.0.1:4143",
            "--inbound-forward",
            "127.0.0.1:9090",
            "--admin-listen",
            "127.0.0.1:4191",
        ],
        &dir.path().join("inbound.log"),
    );
    netns.spawn(
        &[
            bin,
            "--ca-dir",
            &ca_s,
            "--identity",
            &identity("web"),
            "--orig-dst-listen",
            "127.0.0.1:4140",
            "--destinations",
            &dests.display().to_string(),
            "--admin-listen",
            "127.0.0.1:4192",
        ],
        &dir.path().join("outbound.log"),
    );
    // Wait for both proxies and the backend.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ready = [
            "http://127.0.0.1:4191/ready",
            "http://127.0.0.1:4192/ready",
            "http://127.0.0.1:9090/hello.txt",
        ]
        .iter()
        .all(|u| {
            in_ns(&ns, &["curl", "-sf", "-o", "/dev/null", u])
                .status
                .success()
        });
        if ready {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "proxies never became ready; logs in {}",
            dir.path().display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let out = in_ns(
        &ns,
        &["curl", "-sS", &format!("http://{SERVICE}/hello.txt")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello through iptables\n"
    );

    // It went through both proxies, over mTLS: the inbound proxy saw the outbound's identity.
    let metrics = in_ns(&ns, &["curl", "-sS", "http://127.0.0.1:4191/metrics"]);
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    let line = format!(r#"client_id="{}""#, identity("web"));
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("request_total{") && l.contains(&line) && l.ends_with(" 1")),
        "{metrics}"
    );
}
