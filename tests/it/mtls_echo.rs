//! The mTLS example against clients no one here wrote: openssl s_client and curl.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::example::Running;

const SERVER: &str = "echo.default.serviceaccount.identity.mesh.cluster.local";
const CLIENT: &str = "curl.default.serviceaccount.identity.mesh.cluster.local";

fn have(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
        || Command::new(tool)
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
    if !found {
        eprintln!(
            "\n*** SKIPPED: `{tool}` is not installed; .ci/run installs it (apt-get install {tool}) ***\n"
        );
    }
    found
}

fn start(dir: &Path) -> (Running, SocketAddr) {
    let mut server = Running::start(
        "mtls_echo",
        &[dir.to_str().expect("utf-8 path"), "--listen", "127.0.0.1:0"],
    );
    let line = server.wait_for_line("listening on https://", Duration::from_secs(30));
    let addr = line
        .rsplit("https://")
        .next()
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (server, addr)
}

fn s_client(addr: SocketAddr, dir: &Path, with_cert: bool) -> Output {
    // coreutils `timeout` bounds the client in time.
    let mut cmd = Command::new("timeout");
    cmd.args(["20", "openssl", "s_client"])
        .arg("-connect")
        .arg(addr.to_string())
        .args(["-servername", SERVER, "-verify_return_error", "-quiet"])
        .arg("-CAfile")
        .arg(dir.join("ca.pem"));
    if with_cert {
        cmd.arg("-cert")
            .arg(dir.join("client.pem"))
            .arg("-cert_chain")
            .arg(dir.join("client.pem"))
            .arg("-key")
            .arg(dir.join("client.key"));
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(b"GET / HTTP/1.1\r\nHost: echo\r\nConnection: close\r\n\r\n")
            .expect("write request");
    }
    child.wait_with_output().expect("openssl output")
}

#[test]
fn openssl_s_client_needs_a_client_certificate() {
    if !have("openssl") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, addr) = start(dir.path());

    let ok = s_client(addr, dir.path(), true);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        stdout.contains(&format!("hello {CLIENT}")),
        "with a certificate: stdout={stdout} stderr={}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let refused = s_client(addr, dir.path(), false);
    let stdout = String::from_utf8_lossy(&refused.stdout);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !stdout.contains("hello"),
        "served without a certificate: {stdout}"
    );
    assert!(stderr.contains("certificate required"), "{stderr}");
}

#[test]
fn curl_over_http2_and_http1_with_a_client_certificate() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, addr) = start(dir.path());
    let resolve = format!("{SERVER}:{}:{}", addr.port(), addr.ip());
    let url = format!("https://{SERVER}:{}/", addr.port());
    let curl = |extra: &[&str], with_cert: bool| {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "10", "--resolve", &resolve])
            .arg("--cacert")
            .arg(dir.path().join("ca.pem"));
        if with_cert {
            cmd.arg("--cert")
                .arg(dir.path().join("client.pem"))
                .arg("--key")
                .arg(dir.path().join("client.key"));
        }
        cmd.args(extra).arg(&url).output().expect("run curl")
    };
    let h2 = curl(&["--http2", "-d", "ping"], true);
    assert!(
        h2.status.success(),
        "{}",
        String::from_utf8_lossy(&h2.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&h2.stdout),
        format!("hello {CLIENT} (HTTP/2.0)\nping")
    );
    let h1 = curl(&["--http1.1"], true);
    assert_eq!(
        String::from_utf8_lossy(&h1.stdout),
        format!("hello {CLIENT} (HTTP/1.1)\n")
    );
    let refused = curl(&[], false);
    assert!(
        !refused.status.success(),
        "served without a client certificate"
    );
}
