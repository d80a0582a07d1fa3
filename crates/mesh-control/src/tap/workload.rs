//! The workloads `mesh run` records in the state directory, as far as tap needs them.
//!
//! `mesh run` writes `<state-dir>/workloads/<namespace>.<name>.json` for every workload it
//! starts: its name, namespace, identity, and the addresses of its proxy's admin, tap and
//! inbound listeners. Tap reads only what it needs (name, namespace, identity, tap and inbound
//! addresses) and ignores the rest.
//!
//! This is deliberately a private reader: the metrics module owns the file's full serde type,
//! and tap should not depend on it while both are young. When they settle, one type can serve
//! both.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use mesh_tls::ServiceIdentity;
use serde::Deserialize;

/// The directory under the state directory holding one file per running workload.
pub(crate) const WORKLOADS_DIR: &str = "workloads";

/// A running workload's proxy, as tap sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Workload {
    pub(crate) name: String,
    pub(crate) namespace: String,
    /// The identity the proxy proves; the tap client expects it of the tap listener.
    pub(crate) identity: ServiceIdentity,
    /// The proxy's tap listener, if it has one.
    pub(crate) tap: Option<SocketAddr>,
    /// The proxy's inbound listener, if the workload serves.
    pub(crate) inbound: Option<SocketAddr>,
}

#[derive(Deserialize)]
struct File {
    name: String,
    namespace: String,
    identity: String,
    #[serde(default)]
    tap: Option<SocketAddr>,
    #[serde(default)]
    inbound: Option<SocketAddr>,
}

/// `<state-dir>/workloads`.
pub(crate) fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join(WORKLOADS_DIR)
}

/// Every workload recorded in `dir`, sorted by namespace and name. A missing directory is no
/// workloads; a file that cannot be read or parsed is skipped with a warning (it may be a
/// workload starting or stopping).
pub(crate) fn read_all(dir: &Path) -> io::Result<Vec<Workload>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut workloads = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        match read(&path) {
            Ok(w) => workloads.push(w),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "skipping an unreadable workload file");
            }
        }
    }
    workloads.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(workloads)
}

fn read(path: &Path) -> io::Result<Workload> {
    let text = std::fs::read_to_string(path)?;
    let file: File = serde_json::from_str(&text).map_err(io::Error::other)?;
    let identity = ServiceIdentity::parse(&file.identity).map_err(io::Error::other)?;
    Ok(Workload {
        name: file.name,
        namespace: file.namespace,
        identity,
        tap: file.tap,
        inbound: file.inbound,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_mesh_run_writes_and_skips_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("emojivoto.web.json"),
            r#"{"name": "web", "namespace": "emojivoto",
                "identity": "web.emojivoto.serviceaccount.identity.mesh.cluster.local",
                "admin": "127.0.0.1:4191", "tap": "127.0.0.1:4190", "inbound": null, "pid": 1234}"#,
        )
        .expect("write");
        std::fs::write(dir.path().join("emojivoto.broken.json"), "{").expect("write");
        std::fs::write(dir.path().join("notes.txt"), "not a workload").expect("write");
        let all = read_all(dir.path()).expect("read");
        assert_eq!(
            all,
            [Workload {
                name: "web".into(),
                namespace: "emojivoto".into(),
                identity: ServiceIdentity::parse(
                    "web.emojivoto.serviceaccount.identity.mesh.cluster.local"
                )
                .expect("identity"),
                tap: Some("127.0.0.1:4190".parse().expect("addr")),
                inbound: None,
            }]
        );
        assert_eq!(
            read_all(&dir.path().join("missing")).expect("missing dir"),
            []
        );
    }
}
