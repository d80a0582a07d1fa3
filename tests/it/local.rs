//! `mesh control` and `mesh run` as a user runs them: real processes, checked for clear errors
//! and for leaving no process behind.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::wait::until;

const MESH: &str = env!("CARGO_BIN_EXE_mesh");

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn control(state: &Path) -> Killed {
    let child = Command::new(MESH)
        .args(["control", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mesh control");
    let cp = Killed(child);
    until(Duration::from_secs(30), "the control plane", || {
        state.join("control.addr").exists().then_some(())
    });
    cp
}

fn mesh_run(state: &Path, args: &[&str]) -> Output {
    Command::new("timeout")
        .arg("60")
        .arg(MESH)
        .args(["run", "--state-dir"])
        .arg(state)
        .args(args)
        .output()
        .expect("mesh run")
}

/// Whether a process whose command line *starts* with `marker` runs (so `mesh run`, whose
/// arguments contain the marker too, does not count).
fn alive(marker: &str) -> bool {
    Command::new("pgrep")
        .args(["-f", &format!("^{}", marker.replace('.', "\\."))])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn a_control_plane_that_is_down_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = mesh_run(dir.path(), &["--name", "job", "-n", "test", "--", "true"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no control plane recorded") && err.contains("mesh control"),
        "{err}"
    );

    // Recorded but gone.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    std::fs::write(dir.path().join("control.addr"), port.to_string()).expect("write");
    let out = mesh_run(dir.path(), &["--name", "job", "-n", "test", "--", "true"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not reachable") && err.contains("mesh control"),
        "{err}"
    );
}

#[test]
fn run_passes_the_apps_exit_status_and_cleans_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _cp = control(dir.path());

    // A batch job: the sidecar drains and `mesh run` exits with the app's status.
    let out = mesh_run(
        dir.path(),
        &[
            "--name",
            "job",
            "-n",
            "test",
            "--",
            "sh",
            "-c",
            "test -n \"$MESH_OUTBOUND_ADDR\" && exit 3",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("certified"), "{err}");
    assert!(
        !dir.path().join("workloads/test.job.json").exists(),
        "stale workload record"
    );

    // A port already in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let out = mesh_run(
        dir.path(),
        &[
            "--name", "web", "-n", "test", "--port", &port, "--", "sleep", "29.101",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already in use"), "{err}");
    assert!(!alive("sleep 29.101"), "the app was started anyway");
}

#[test]
fn an_app_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _cp = control(dir.path());
    let marker = "sleep 31.4159";
    let mut run = Killed(
        Command::new(MESH)
            .args([
                "run",
                "--grace",
                "500ms",
                "--name",
                "stubborn",
                "-n",
                "test",
                "--state-dir",
            ])
            .arg(dir.path())
            .args(["--", "sh", "-c", &format!("trap '' TERM; {marker}; true")])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mesh run"),
    );
    until(Duration::from_secs(30), "the app", || {
        alive(marker).then_some(())
    });
    let pid = run.0.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    until(Duration::from_secs(15), "mesh run to exit", || {
        run.0.try_wait().ok().flatten().map(|_| ())
    });
    assert!(!alive(marker), "the app outlived mesh run");
    let mut err = String::new();
    if let Some(mut e) = run.0.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert!(err.contains("ignored SIGTERM"), "{err}");
    assert!(
        !dir.path().join("workloads/test.stubborn.json").exists(),
        "stale workload record"
    );
}
