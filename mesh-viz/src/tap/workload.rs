//! The workloads `mesh run` records in the state directory, as far as tap needs them.
//!
//! `mesh run` writes `<state-dir>/workloads/<namespace>.<name>.json` for every workload it
//! starts ([`metrics::Workload`](crate::metrics::Workload) owns the file, and reads it). Tap
//! keeps what it needs of each: name, namespace, the identity its tap listener must prove, and
//! the tap and inbound addresses.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use mesh_tls::ServiceIdentity;

use crate::metrics::Workload as Record;

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

/// `<state-dir>/workloads`.
pub(crate) fn dir(state_dir: &Path) -> PathBuf {
    Record::dir(state_dir)
}

/// Every workload recorded under `state_dir`, sorted by namespace and name. A missing
/// directory is no workloads; a file that cannot be read or parsed, or names an invalid
/// identity, is skipped (it may be a workload starting or stopping).
pub(crate) fn read_all(state_dir: &Path) -> io::Result<Vec<Workload>> {
    Ok(Record::load_all(state_dir)?
        .into_iter()
        .filter_map(|w| match ServiceIdentity::parse(&w.identity) {
            Ok(identity) => Some(Workload {
                name: w.name,
                namespace: w.namespace,
                identity,
                tap: w.tap,
                inbound: w.inbound,
            }),
            Err(error) => {
                tracing::warn!(workload = %w.name, namespace = %w.namespace, %error,
                    "skipping a workload with an invalid identity");
                None
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_mesh_run_writes_and_skips_the_rest() {
        let state = tempfile::tempdir().expect("tempdir");
        let dir = dir(state.path());
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(
            dir.join("emojivoto.web.json"),
            r#"{"name": "web", "namespace": "emojivoto",
                "identity": "web.emojivoto.serviceaccount.identity.mesh.cluster.local",
                "admin": "127.0.0.1:4191", "tap": "127.0.0.1:4190", "inbound": null, "pid": 1234}"#,
        )
        .expect("write");
        std::fs::write(dir.join("emojivoto.broken.json"), "{").expect("write");
        std::fs::write(dir.join("notes.txt"), "not a workload").expect("write");
        let all = read_all(state.path()).expect("read");
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
            read_all(&state.path().join("missing")).expect("missing dir"),
            []
        );
    }
}
