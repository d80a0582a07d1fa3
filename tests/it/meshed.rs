//! A control plane and sidecars certified, fed and policed by it, as `mesh run` sets them up:
//! the shared harness of the tests that need both (`mesh-proxy` and `mesh-control`).

use std::path::Path;
use std::time::Duration;

use clap::Parser;
use mesh_control::{Config as ControlConfig, ControlPlane};
use mesh_proxy::{Args, Proxy};

use crate::proxy_support::{identity, wait_ready};

/// A control plane in `dir/state` with `yaml` as its `mesh.yaml` (`dir/mesh.yaml`, re-read
/// every 100 ms), listening on `listen`.
pub async fn control_plane(dir: &Path, yaml: &str, listen: &str) -> ControlPlane {
    let file = dir.join("mesh.yaml");
    std::fs::write(&file, yaml).expect("write mesh.yaml");
    ControlPlane::start(
        ControlConfig::new(dir.join("state"))
            .listen(listen.parse().expect("listen address"))
            .catalog_file(Some(file))
            .poll_interval(Duration::from_millis(100)),
    )
    .await
    .expect("control plane")
}

/// A sidecar for service account `sa` (namespace `test`) certified by `cp` with a bootstrap
/// token, with `args` added to its flags; returns once it is ready.
pub async fn sidecar(cp: &ControlPlane, dir: &Path, sa: &str, args: &[&str]) -> Proxy {
    let id = identity(sa);
    let token = cp
        .issue_token(&id.parse().expect("identity"), Duration::from_secs(60))
        .expect("token");
    let anchors = dir.join("state").join("trust-anchors.pem");
    let mut v = vec![
        "mesh-proxy".to_string(),
        "--control".into(),
        cp.addr().to_string(),
        "--control-identity".into(),
        cp.identity().to_string(),
        "--trust-anchors".into(),
        anchors.display().to_string(),
        "--identity".into(),
        id,
        "--token".into(),
        token,
        "--admin-listen".into(),
        "127.0.0.1:0".into(),
    ];
    v.extend(args.iter().map(|s| s.to_string()));
    let p = Proxy::start(Args::parse_from(v).validate().expect("config"))
        .await
        .expect("start proxy");
    wait_ready(p.admin_addr()).await;
    p
}

/// A server's sidecar: the app at `app` registered as `service.test:port`.
pub async fn server(
    cp: &ControlPlane,
    dir: &Path,
    sa: &str,
    app: std::net::SocketAddr,
    service: &str,
    port: u16,
) -> Proxy {
    let app = app.to_string();
    let register = format!("{service}.test:{port}");
    sidecar(
        cp,
        dir,
        sa,
        &[
            "--inbound-listen",
            "127.0.0.1:0",
            "--inbound-forward",
            &app,
            "--register",
            &register,
        ],
    )
    .await
}
