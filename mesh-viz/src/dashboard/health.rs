//! The control plane's health, as the overview shows it and `GET /api/health` answers it:
//! each component (destination, identity, policy, tap, metrics API) and the expiry of the
//! trust anchors and the issuer.
//!
//! Certificates are judged as `mesh check` judges the issuer: valid for at least
//! [`EXPIRY_WARNING`] (60 days) is fine, less is a warning, expired is a failure
//! ([`certificate_status`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mesh_tls::{CertificateAuthority, ServiceIdentity, UtcTime};
use serde::{Deserialize, Serialize};

use crate::metrics::MetricsSource;
use crate::tap::Tapper;
use mesh_control::catalog::Snapshot;

/// Why the control plane's gRPC listener did not take a connection.
#[derive(Debug, thiserror::Error)]
enum ProbeError {
    #[error(transparent)]
    Connect(std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// A certificate that expires within this is a warning (what `mesh check` warns at).
pub const EXPIRY_WARNING: Duration = Duration::from_secs(60 * 86_400);

/// How long the probe of the gRPC listener may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Fine, worth a look, or broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Working.
    Ok,
    /// Working, but needs attention soon.
    Warn,
    /// Not working.
    Fail,
}

impl Status {
    /// `ok`, `warn` or `fail`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }

    /// `√`, `‼` or `×`, as `mesh check` prints them.
    pub fn mark(self) -> &'static str {
        match self {
            Status::Ok => "√",
            Status::Warn => "‼",
            Status::Fail => "×",
        }
    }
}

/// One component of the control plane.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    /// `destination`, `identity`, `policy`, `tap` or `metrics`.
    pub name: String,
    /// How it is.
    pub status: Status,
    /// What it does, or what is wrong and what to do.
    pub detail: String,
}

/// One certificate of the mesh's CA.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    /// `trust anchor` (numbered when there are several) or `issuer`.
    pub name: String,
    /// Its expiry, RFC 3339 UTC.
    pub not_after: String,
    /// Whole days until then (negative once expired).
    pub days_left: i64,
    /// See [`certificate_status`].
    pub status: Status,
}

/// What `GET /api/health` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// The worst status of all.
    pub status: Status,
    /// The components.
    pub components: Vec<Component>,
    /// The trust anchors and the issuer.
    pub certificates: Vec<Certificate>,
}

/// A certificate valid until `not_after` is, at `now`: failed once expired, a warning within
/// [`EXPIRY_WARNING`], fine otherwise; with the whole days left.
pub fn certificate_status(not_after: SystemTime, now: SystemTime) -> (Status, i64) {
    match not_after.duration_since(now) {
        Ok(left) => {
            let days = (left.as_secs() / 86_400) as i64;
            let status = if left >= EXPIRY_WARNING {
                Status::Ok
            } else {
                Status::Warn
            };
            (status, days)
        }
        Err(e) => (
            Status::Fail,
            -((e.duration().as_secs() / 86_400) as i64) - 1,
        ),
    }
}

/// When a DER certificate expires.
fn not_after(der: &[u8]) -> Option<SystemTime> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let secs = cert.validity().not_after.timestamp();
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// The certificates of `ca`, judged at `now`.
pub fn certificates(ca: &CertificateAuthority, now: SystemTime) -> Vec<Certificate> {
    let anchors = ca.trust_bundle();
    let anchors = anchors.anchors();
    let mut out = Vec::new();
    for (i, der) in anchors.iter().enumerate() {
        let name = if anchors.len() == 1 {
            "trust anchor".to_string()
        } else {
            format!("trust anchor {}", i + 1)
        };
        match not_after(der) {
            Some(t) => {
                let (status, days_left) = certificate_status(t, now);
                out.push(Certificate {
                    name,
                    not_after: UtcTime(t).to_string(),
                    days_left,
                    status,
                });
            }
            None => out.push(Certificate {
                name,
                not_after: "unreadable".into(),
                days_left: 0,
                status: Status::Fail,
            }),
        }
    }
    let (status, days_left) = certificate_status(ca.issuer_not_after(), now);
    out.push(Certificate {
        name: "issuer".into(),
        not_after: UtcTime(ca.issuer_not_after()).to_string(),
        days_left,
        status,
    });
    out
}

/// What the health check knows of the control plane it runs in.
#[derive(Clone)]
pub(crate) struct ControlInfo {
    pub(crate) addr: SocketAddr,
    pub(crate) identity: ServiceIdentity,
    pub(crate) ca: Arc<CertificateAuthority>,
}

/// Checks every component now.
pub(crate) async fn check(
    control: Option<&ControlInfo>,
    snapshot: Option<&Snapshot>,
    tapper: Option<&Tapper>,
    source: &dyn MetricsSource,
) -> Health {
    let mut components = Vec::new();
    let services = snapshot.map(|s| s.services.len());
    let count = |n: Option<usize>| match n {
        Some(1) => "1 service".to_string(),
        Some(n) => format!("{n} services"),
        None => "the catalog".to_string(),
    };
    let mut certificates = Vec::new();
    match control {
        Some(c) => {
            let probe =
                tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(c.addr)).await;
            let listening = match probe {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(ProbeError::Connect(e)),
                Err(_) => Err(ProbeError::Timeout(PROBE_TIMEOUT)),
            };
            let grpc = |name: &str, what: String| match &listening {
                Ok(()) => Component {
                    name: name.into(),
                    status: Status::Ok,
                    detail: format!("{what} on {}", c.addr),
                },
                Err(e) => Component {
                    name: name.into(),
                    status: Status::Fail,
                    detail: format!(
                        "not accepting connections on {}: {e}; restart `mesh control`",
                        c.addr
                    ),
                },
            };
            components.push(grpc(
                "destination",
                format!("serving endpoints and profiles of {}", count(services)),
            ));
            let mut identity = grpc(
                "identity",
                format!(
                    "issuing certificates for *.{} (valid {}h) as {}",
                    c.ca.domain().suffix(),
                    c.ca.leaf_lifetime().as_secs() / 3600,
                    c.identity
                ),
            );
            if c.ca.issuer_not_after() <= SystemTime::now() {
                identity.status = Status::Fail;
                identity.detail = format!(
                    "the issuer expired at {}: give `mesh control` a new one with \
                     --issuer-cert/--issuer-key",
                    UtcTime(c.ca.issuer_not_after())
                );
            }
            components.push(identity);
            components.push(grpc(
                "policy",
                format!("serving inbound and outbound policy of {}", count(services)),
            ));
            certificates = certificates_of(&c.ca);
        }
        None => {
            for name in ["destination", "identity", "policy"] {
                components.push(Component {
                    name: name.into(),
                    status: Status::Warn,
                    detail: "not served by this process".into(),
                });
            }
        }
    }
    components.push(match tapper {
        Some(t) => Component {
            name: "tap".into(),
            status: Status::Ok,
            detail: format!("tapping proxies on request, as {}", t.identity()),
        },
        None => Component {
            name: "tap".into(),
            status: Status::Warn,
            detail: "not served by this process".into(),
        },
    });
    components.push(match source.workloads().await {
        Ok(workloads) => {
            let failing: Vec<String> = workloads
                .iter()
                .filter(|w| w.last_error.is_some())
                .map(|w| format!("{}/{}", w.workload.namespace, w.workload.name))
                .collect();
            let meshed = workloads.iter().filter(|w| w.meshed).count();
            if failing.is_empty() {
                Component {
                    name: "metrics".into(),
                    status: Status::Ok,
                    detail: format!("scraping {} proxies, {meshed} ready", workloads.len()),
                }
            } else {
                Component {
                    name: "metrics".into(),
                    status: Status::Warn,
                    detail: format!(
                        "scraping {} proxies; the last scrape of {} failed (see `mesh check`)",
                        workloads.len(),
                        failing.join(", ")
                    ),
                }
            }
        }
        Err(e) => Component {
            name: "metrics".into(),
            status: Status::Fail,
            detail: e.to_string(),
        },
    });
    let status = components
        .iter()
        .map(|c| c.status)
        .chain(certificates.iter().map(|c| c.status))
        .max()
        .unwrap_or(Status::Ok);
    Health {
        status,
        components,
        certificates,
    }
}

fn certificates_of(ca: &CertificateAuthority) -> Vec<Certificate> {
    certificates(ca, SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_judged_as_mesh_check_judges_them() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let days = |d: u64| Duration::from_secs(d * 86_400);
        assert_eq!(certificate_status(now + days(365), now), (Status::Ok, 365));
        assert_eq!(certificate_status(now + days(60), now), (Status::Ok, 60));
        assert_eq!(certificate_status(now + days(59), now), (Status::Warn, 59));
        assert_eq!(certificate_status(now - days(2), now).0, Status::Fail);
        assert!(certificate_status(now - days(2), now).1 < 0);
    }

    #[test]
    fn a_generated_ca_has_an_anchor_and_an_issuer() {
        let ca = CertificateAuthority::builder().generate().expect("ca");
        let certs = certificates(&ca, SystemTime::now());
        let names: Vec<&str> = certs.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["trust anchor", "issuer"]);
        assert!(certs.iter().all(|c| c.status == Status::Ok), "{certs:?}");
        assert!(certs.iter().all(|c| c.not_after.ends_with('Z')));
        // The issuer lives no longer than the anchor.
        assert!(certs[1].days_left <= certs[0].days_left);
    }
}
