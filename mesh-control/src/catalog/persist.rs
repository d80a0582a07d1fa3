//! Registrations saved across control-plane restarts.
//!
//! When the control plane restarts, proxies do not notice until their next renewal; if the
//! catalog started empty, every client that resynchronizes in that window would be told the
//! registered services have no endpoints. So the live registrations are written to
//! `<state-dir>/registrations.json` on every change, and restored at start with a fresh lease
//! each: a proxy that is still alive renews it, one that died meanwhile expires one lease later.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Protocol, ProtocolHint, Registration, ServiceRef};

#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    service: String,
    namespace: String,
    port: u16,
    addr: SocketAddr,
    #[serde(default)]
    identity: Option<String>,
    #[serde(default)]
    hint: String,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    workload: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    default_policy: Option<String>,
    lease_ms: u64,
}

/// Writes `leases` to `path` atomically.
pub(crate) fn save(path: &Path, leases: &[(Registration, Duration)]) -> std::io::Result<()> {
    let saved: Vec<Saved> = leases
        .iter()
        .map(|(r, lease)| Saved {
            service: r.service.name.clone(),
            namespace: r.service.namespace.clone(),
            port: r.port,
            addr: r.addr,
            identity: r.identity.as_ref().map(|i| i.as_str().to_owned()),
            hint: match r.protocol_hint {
                ProtocolHint::Auto => "auto",
                ProtocolHint::None => "none",
                ProtocolHint::H2 => "h2",
                ProtocolHint::Opaque => "opaque",
            }
            .to_owned(),
            protocol: r.protocol.map(|p| p.as_str().to_owned()),
            workload: r.workload.clone(),
            labels: r.labels.clone(),
            default_policy: r.default_policy.map(|p| p.as_str().to_owned()),
            lease_ms: u64::try_from(lease.as_millis()).unwrap_or(u64::MAX),
        })
        .collect();
    let json = serde_json::to_vec_pretty(&saved).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, path)
}

/// Reads the registrations saved in `path`; a missing file is none, unreadable entries are
/// skipped with a warning.
pub(crate) fn load(path: &Path) -> Vec<(Registration, Duration)> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(error) => {
            tracing::warn!(file = %path.display(), %error, "cannot read saved registrations");
            return Vec::new();
        }
    };
    let saved: Vec<Saved> = match serde_json::from_slice(&bytes) {
        Ok(s) => s,
        Err(error) => {
            tracing::warn!(file = %path.display(), %error, "ignoring unreadable saved registrations");
            return Vec::new();
        }
    };
    saved
        .into_iter()
        .filter_map(|s| {
            let identity = match s.identity.as_deref().map(mesh_tls::ServiceIdentity::parse) {
                None => None,
                Some(Ok(id)) => Some(id),
                Some(Err(_)) => return None,
            };
            let protocol = match s.protocol.as_deref() {
                None => None,
                Some("detect") => Some(Protocol::Detect),
                Some("http1") => Some(Protocol::Http1),
                Some("http2") => Some(Protocol::Http2),
                Some("grpc") => Some(Protocol::Grpc),
                Some("opaque") => Some(Protocol::Opaque),
                Some(_) => return None,
            };
            let registration = Registration {
                service: ServiceRef::new(s.service, s.namespace),
                port: s.port,
                addr: s.addr,
                identity,
                protocol_hint: match s.hint.as_str() {
                    "none" => ProtocolHint::None,
                    "h2" => ProtocolHint::H2,
                    "opaque" => ProtocolHint::Opaque,
                    _ => ProtocolHint::Auto,
                },
                protocol,
                workload: s.workload,
                labels: s.labels,
                default_policy: s.default_policy.and_then(|p| p.parse().ok()),
            };
            Some((registration, Duration::from_millis(s.lease_ms)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registrations.json");
        assert!(load(&path).is_empty());
        let mut r = Registration::new(
            ServiceRef::new("web", "emojivoto"),
            8080,
            "127.0.0.1:4143".parse().unwrap(),
        );
        r.identity = Some(
            "web.emojivoto.serviceaccount.identity.mesh.cluster.local"
                .parse()
                .unwrap(),
        );
        r.protocol_hint = ProtocolHint::H2;
        r.protocol = Some(Protocol::Grpc);
        r.workload = Some("web-0".into());
        r.labels.insert("zone".into(), "a".into());
        save(&path, &[(r.clone(), Duration::from_secs(30))]).unwrap();
        assert_eq!(load(&path), vec![(r, Duration::from_secs(30))]);
        std::fs::write(&path, "garbage").unwrap();
        assert!(load(&path).is_empty());
    }
}
