//! A 100 MiB body each way through the chain (curl -> outbound -> mTLS HTTP/2 -> inbound -> app),
//! with the proxies' memory bounded: they stream, they do not buffer.
//!
//! Peak RSS is per process, and the test harness runs tests in parallel threads of one process,
//! so the measurement runs in a process of its own: the test below runs this test binary again
//! with only [`large_bodies_in_this_process`] selected.

use std::time::Duration;

use crate::apps;
use crate::support::*;

const SIZE: u64 = 100 << 20;
/// How much the process' peak RSS may grow while both proxies (and the app) carry 2 x 100 MiB.
const MAX_GROWTH_KIB: u64 = 48 << 10;
const ISOLATED: &str = "MESH_TEST_STREAMING_ISOLATED";

#[test]
fn large_bodies_both_ways_with_bounded_memory() {
    let exe = std::env::current_exe().expect("the test binary");
    let out = std::process::Command::new("timeout")
        .arg("120")
        .arg(exe)
        .args([
            "streaming::large_bodies_in_this_process",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(ISOLATED, "1")
        .output()
        .expect("run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stdout.lines().filter(|l| l.contains("MiB")) {
        eprintln!("{line}");
    }
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the isolated run failed ({:?}):\n{stdout}\n{stderr}",
        out.status
    );
}

/// `VmHWM` (peak resident set) and `VmRSS` of this process, in KiB.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/self/status"))
    };
    (field("VmHWM:"), field("VmRSS:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run in a process of its own by large_bodies_both_ways_with_bounded_memory"]
async fn large_bodies_in_this_process() {
    if std::env::var_os(ISOLATED).is_none() {
        eprintln!("not isolated: run large_bodies_both_ways_with_bounded_memory instead");
        return;
    }
    let app = apps::app().await;
    let chain = Chain::start(app.addr, &[], &[]).await;
    let out = chain.out();
    // Warm up: connections made, buffers and pools allocated once.
    for _ in 0..3 {
        let (status, _) = get(out, "/", &[("host", BACKEND)]).await.expect("warm up");
        assert_eq!(status, 200);
    }
    let (peak_before, rss_before) = memory();

    // POST streams straight through; PUT is idempotent, so the retry layer first reads up to its
    // replay limit (64 KiB) of the body, then must stream the rest.
    for (version, method) in [("--http1.1", "POST"), ("--http2-prior-knowledge", "PUT")] {
        let started = tokio::time::Instant::now();
        let script = format!(
            "head -c {SIZE} /dev/zero | curl -sS {version} -T - -X {method} -H 'Host: {BACKEND}' \
             -o /dev/null -D - -w 'code=%{{http_code}} down=%{{size_download}}\\n' \
             http://{out}/stream/{SIZE}"
        );
        let run = tokio::task::spawn_blocking(move || run("sh", &["-c", &script]))
            .await
            .expect("curl");
        let took = started.elapsed();
        let stdout = String::from_utf8_lossy(&run.stdout).to_ascii_lowercase();
        assert!(
            run.status.success(),
            "{version}: {stdout}{}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert!(
            stdout.contains(&format!("\r\nx-received: {SIZE}\r\n")),
            "{version}: the app did not receive the whole body: {stdout}"
        );
        assert!(
            stdout.contains(&format!("code=200 down={SIZE}")),
            "{version}: {stdout}"
        );
        let (peak, rss) = memory();
        println!(
            "{version} {method}: 2 x {} MiB in {took:?}; peak RSS {} -> {} MiB, RSS {} -> {} MiB",
            SIZE >> 20,
            peak_before >> 10,
            peak >> 10,
            rss_before >> 10,
            rss >> 10
        );
        assert!(took < Duration::from_secs(60), "{version}: {took:?}");
    }
    let (peak_after, _) = memory();
    let growth = peak_after.saturating_sub(peak_before);
    assert!(
        growth < MAX_GROWTH_KIB,
        "peak RSS grew by {} MiB while streaming: something buffers bodies",
        growth >> 10
    );
}
