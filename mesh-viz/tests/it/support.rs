//! A control plane and its observability in their own state directory.

use std::future::Future;
use std::time::Duration;

use mesh_control::ControlPlane;
use mesh_viz::Viz;

/// The bound on every wait in these tests.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Awaits `fut`, failing the test if it takes longer than [`PATIENCE`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(PATIENCE, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {PATIENCE:?}: {what}"),
    }
}

/// A TLS control plane with `mesh-viz` beside it, as `mesh control` starts them.
pub struct Harness {
    pub cp: ControlPlane,
    pub viz: Viz,
    /// Holds the state directory until the test ends.
    _dir: tempfile::TempDir,
}

impl Harness {
    /// With `yaml` as `mesh.yaml` (if given).
    pub async fn start(yaml: Option<&str>) -> Self {
        Self::start_with(yaml, |c| c).await
    }

    /// As [`start`](Self::start), with extra configuration of the observability side.
    pub async fn start_with(
        yaml: Option<&str>,
        configure: impl FnOnce(mesh_viz::Config) -> mesh_viz::Config,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = mesh_control::Config::new(dir.path().join("state"))
            .listen("127.0.0.1:0".parse().expect("addr"))
            .poll_interval(Duration::from_millis(50))
            .drain_timeout(Duration::from_secs(1));
        if let Some(yaml) = yaml {
            let file = dir.path().join("mesh.yaml");
            std::fs::write(&file, yaml).expect("write mesh.yaml");
            config = config.catalog_file(file);
        }
        let cp = within("start", ControlPlane::start(config))
            .await
            .expect("the control plane starts");
        let viz = within(
            "start viz",
            Viz::start(&cp, configure(mesh_viz::Config::new())),
        )
        .await
        .expect("observability starts");
        Self { cp, viz, _dir: dir }
    }
}
