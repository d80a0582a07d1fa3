//! The workloads `mesh run` records in the state directory: what the scraper scrapes.
//!
//! ```text
//! <state-dir>/workloads/<namespace>.<name>.json
//! {"name": "web", "namespace": "emojivoto",
//!  "identity": "web.emojivoto.serviceaccount.identity.mesh.cluster.local",
//!  "admin": "127.0.0.1:4191", "tap": "127.0.0.1:4190", "inbound": "127.0.0.1:4143", "pid": 1234}
//! ```
//!
//! `mesh run` writes the file ([`Workload::write`]) once its sidecar is ready and removes it
//! ([`Workload::remove`]) when the workload exits. Readers tolerate a directory in flux: a file
//! that cannot be read or parsed is skipped (it may be half-written by someone not using
//! [`Workload::write`], or a workload stopping).

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The directory under the state directory holding one file per running workload.
pub const WORKLOADS_DIR: &str = "workloads";

/// A running workload and its proxy, as `mesh run` records it.
///
/// ```
/// use mesh_viz::metrics::Workload;
///
/// let dir = tempfile::tempdir().unwrap();
/// let web = Workload {
///     name: "web".into(),
///     namespace: "emojivoto".into(),
///     identity: "web.emojivoto.serviceaccount.identity.mesh.cluster.local".into(),
///     admin: "127.0.0.1:4191".parse().unwrap(),
///     tap: Some("127.0.0.1:4190".parse().unwrap()),
///     inbound: Some("127.0.0.1:4143".parse().unwrap()),
///     pid: 1234,
/// };
/// let path = web.write(dir.path()).unwrap();
/// assert!(path.ends_with("workloads/emojivoto.web.json"));
/// assert_eq!(Workload::load_all(dir.path()).unwrap(), [web.clone()]);
/// Workload::remove(dir.path(), "emojivoto", "web").unwrap();
/// assert!(Workload::load_all(dir.path()).unwrap().is_empty());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Workload {
    /// The workload's name (a deployment, in Kubernetes terms; also its service's name).
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// The identity its proxy proves
    /// (`<name>.<namespace>.serviceaccount.identity.<suffix>` in local mode).
    pub identity: String,
    /// The proxy's admin server (`/metrics`, `/ready`).
    pub admin: SocketAddr,
    /// The proxy's tap server, if it runs one.
    #[serde(default)]
    pub tap: Option<SocketAddr>,
    /// The proxy's inbound listener; `None` for a workload that serves nothing (a load
    /// generator).
    #[serde(default)]
    pub inbound: Option<SocketAddr>,
    /// The process id of `mesh run`.
    pub pid: u32,
}

impl Workload {
    /// `<state-dir>/workloads`.
    pub fn dir(state_dir: &Path) -> PathBuf {
        state_dir.join(WORKLOADS_DIR)
    }

    /// `<state-dir>/workloads/<namespace>.<name>.json`.
    pub fn path(state_dir: &Path, namespace: &str, name: &str) -> PathBuf {
        Self::dir(state_dir).join(format!("{namespace}.{name}.json"))
    }

    /// Every workload recorded under `state_dir`, sorted by namespace and name. A missing
    /// directory is no workloads; unreadable or malformed files are skipped (logged at debug
    /// level: a workload may be starting or stopping).
    pub fn load_all(state_dir: &Path) -> io::Result<Vec<Workload>> {
        let dir = Self::dir(state_dir);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut all = Vec::new();
        for entry in entries {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            match Self::load(&path) {
                Ok(w) => all.push(w),
                Err(error) => {
                    tracing::debug!(path = %path.display(), %error, "skipping a workload file");
                }
            }
        }
        all.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Ok(all)
    }

    /// Reads one workload file.
    pub fn load(path: &Path) -> io::Result<Workload> {
        let text = std::fs::read_to_string(path)?;
        serde_json::from_str(&text).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })
    }

    /// Writes this workload's file atomically (a temporary file renamed over it), creating the
    /// directory if needed; returns its path. What `mesh run` calls once the sidecar is ready.
    pub fn write(&self, state_dir: &Path) -> io::Result<PathBuf> {
        let dir = Self::dir(state_dir);
        std::fs::create_dir_all(&dir)?;
        let path = Self::path(state_dir, &self.namespace, &self.name);
        let tmp = dir.join(format!(".{}.{}.json.tmp", self.namespace, self.name));
        let text = serde_json::to_string_pretty(self).map_err(io::Error::other)?;
        std::fs::write(&tmp, text + "\n")?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }

    /// Removes a workload's file; a file already gone is not an error. What `mesh run` calls
    /// when the workload exits.
    pub fn remove(state_dir: &Path, namespace: &str, name: &str) -> io::Result<()> {
        match std::fs::remove_file(Self::path(state_dir, namespace, name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// `(namespace, name)`.
    pub fn key(&self) -> (&str, &str) {
        (&self.namespace, &self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_mesh_run_writes_and_skips_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wdir = Workload::dir(dir.path());
        std::fs::create_dir_all(&wdir).expect("mkdir");
        std::fs::write(
            wdir.join("emojivoto.vote-bot.json"),
            r#"{"name": "vote-bot", "namespace": "emojivoto",
                "identity": "vote-bot.emojivoto.serviceaccount.identity.mesh.cluster.local",
                "admin": "127.0.0.1:4191", "tap": "127.0.0.1:4190", "inbound": null, "pid": 1234}"#,
        )
        .expect("write");
        std::fs::write(wdir.join("emojivoto.broken.json"), "{\"name\": ").expect("write");
        std::fs::write(wdir.join("notes.txt"), "not a workload").expect("write");
        let all = Workload::load_all(dir.path()).expect("load");
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].name, "vote-bot");
        assert_eq!(all[0].inbound, None);
        assert_eq!(all[0].pid, 1234);
        assert!(
            Workload::load_all(&dir.path().join("missing"))
                .expect("missing dir")
                .is_empty()
        );
    }
}
