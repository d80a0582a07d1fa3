//! The names proxies look up: `svc.ns.svc.cluster.local:port` and its short forms, or `ip:port`.
//!
//! Accepted forms (the cluster domain is configurable; `cluster.local` by default):
//!
//! | path | meaning |
//! |---|---|
//! | `web.emojivoto.svc.cluster.local:8080` | service `web` in namespace `emojivoto`, port 8080 |
//! | `web.emojivoto.svc:8080`, `web.emojivoto:8080` | the same |
//! | `web.emojivoto.svc.cluster.local.:8080` | the same (a trailing dot is allowed) |
//! | `web.emojivoto` | port 80 when none is given |
//! | `127.0.0.1:4143`, `[::1]:4143` | an endpoint address |
//!
//! A two-label host is always read as `<service>.<namespace>` (so `example.com:443` is service
//! `example` in namespace `com`, which the catalog will not know either). Any other host
//! (`api.example.com:443`, another cluster domain) is a name outside the cluster.

use std::fmt;
use std::net::SocketAddr;

use crate::catalog::ServiceRef;

/// A parsed lookup name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DstName {
    /// A service in the cluster domain, and a port.
    Service {
        /// The service.
        service: ServiceRef,
        /// The port.
        port: u16,
    },
    /// An IP address and port.
    Addr(SocketAddr),
    /// A name outside the cluster domain.
    External {
        /// The host, lower-cased, without a trailing dot.
        host: String,
        /// The port.
        port: u16,
    },
}

/// A lookup name that cannot be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid destination {input:?}: {reason}; expected <service>.<namespace>.svc.<cluster-domain>:<port> (or <service>.<namespace>:<port>, or <ip>:<port>)"
)]
pub struct InvalidName {
    input: String,
    reason: &'static str,
}

impl DstName {
    /// Parses `input` (a `GetDestination.path`, a `TrafficSpec` authority) for `cluster_domain`.
    pub fn parse(input: &str, cluster_domain: &str) -> Result<Self, InvalidName> {
        let invalid = |reason| InvalidName {
            input: input.chars().take(256).collect(),
            reason,
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(invalid("the name is empty"));
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(Self::Addr(addr));
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((host, port)) => {
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| invalid("the port is not a number from 1 to 65535"))?;
                (host, port)
            }
            None => (s, 80),
        };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if host.is_empty() || host.split('.').any(str::is_empty) {
            return Err(invalid("the host has an empty label"));
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(invalid("the host has characters a DNS name cannot have"));
        }
        let labels: Vec<&str> = host.split('.').collect();
        let domain = cluster_domain.trim_end_matches('.').to_ascii_lowercase();
        let is_cluster = match labels.as_slice() {
            [_, _] | [_, _, "svc"] => true,
            [_, _, "svc", rest @ ..] => rest.join(".") == domain,
            _ => false,
        };
        if is_cluster {
            return Ok(Self::Service {
                service: ServiceRef::new(labels[0], labels[1]),
                port,
            });
        }
        Ok(Self::External { host, port })
    }
}

impl fmt::Display for DstName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Service { service, port } => write!(f, "{service}:{port}"),
            Self::Addr(addr) => write!(f, "{addr}"),
            Self::External { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str, ns: &str, port: u16) -> DstName {
        DstName::Service {
            service: ServiceRef::new(name, ns),
            port,
        }
    }

    #[test]
    fn cluster_names_in_all_forms() {
        let d = "cluster.local";
        for path in [
            "web.emojivoto.svc.cluster.local:8080",
            "web.emojivoto.svc.cluster.local.:8080",
            "WEB.emojivoto.svc:8080",
            "web.emojivoto:8080",
        ] {
            assert_eq!(
                DstName::parse(path, d),
                Ok(svc("web", "emojivoto", 8080)),
                "{path}"
            );
        }
        assert_eq!(
            DstName::parse("web.emojivoto", d),
            Ok(svc("web", "emojivoto", 80))
        );
        assert_eq!(
            DstName::parse("web.emojivoto.svc.example.org:1", "example.org"),
            Ok(svc("web", "emojivoto", 1))
        );
    }

    #[test]
    fn addresses_and_external_names() {
        let d = "cluster.local";
        assert_eq!(
            DstName::parse("127.0.0.1:4143", d),
            Ok(DstName::Addr("127.0.0.1:4143".parse().unwrap()))
        );
        assert_eq!(
            DstName::parse("[::1]:4143", d),
            Ok(DstName::Addr("[::1]:4143".parse().unwrap()))
        );
        assert_eq!(
            DstName::parse("api.example.com:443", d),
            Ok(DstName::External {
                host: "api.example.com".into(),
                port: 443
            })
        );
        // Another cluster domain is not ours.
        assert!(matches!(
            DstName::parse("web.ns.svc.other.local:80", d),
            Ok(DstName::External { .. })
        ));
    }

    #[test]
    fn garbage_is_refused_with_the_expected_form() {
        for bad in [
            "",
            "web.ns:http",
            "web.ns:0",
            "web..ns:80",
            "web ns:80",
            ":80",
        ] {
            let err = DstName::parse(bad, "cluster.local").unwrap_err();
            assert!(
                err.to_string().contains("<service>.<namespace>"),
                "{bad}: {err}"
            );
        }
    }
}
