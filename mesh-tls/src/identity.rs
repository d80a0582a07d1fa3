//! Service identities: the names that mutual TLS proves.
//!
//! A [`ServiceIdentity`] is either a DNS-like name or a SPIFFE ID. The mesh's CA issues workloads
//! the DNS-like name `<service-account>.<namespace>.serviceaccount.identity.<suffix>` (Linkerd's
//! shape, so its tooling reads ours) together with the SPIFFE ID
//! `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>` in the same certificate; an
//! [`IdentityDomain`] holds the suffix and the trust domain. From peers any valid DNS-like name or
//! SPIFFE ID is accepted, so certificates from another issuer (cert-manager, SPIRE) work too.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// A name that a peer proves with its certificate: a DNS-like name or a SPIFFE ID.
///
/// Cheap to clone. DNS-like names are kept in lower case; comparison is exact.
///
/// ```
/// use mesh_tls::ServiceIdentity;
///
/// let dns: ServiceIdentity = "web.emojivoto.serviceaccount.identity.mesh.cluster.local".parse()?;
/// assert!(dns.is_dns());
/// let spiffe: ServiceIdentity = "spiffe://cluster.local/ns/emojivoto/sa/web".parse()?;
/// assert!(spiffe.is_spiffe());
/// assert!("not an identity!".parse::<ServiceIdentity>().is_err());
/// # Ok::<(), mesh_tls::identity::InvalidIdentity>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceIdentity {
    name: Arc<str>,
    kind: Kind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Dns,
    Spiffe,
}

/// A string that is neither a DNS-like name nor a SPIFFE ID.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid identity {input:?}: {reason}; an identity is a DNS-like name (e.g. web.emojivoto.serviceaccount.identity.mesh.cluster.local) or a SPIFFE ID (spiffe://trust-domain/path)"
)]
pub struct InvalidIdentity {
    input: String,
    reason: &'static str,
}

// === impl ServiceIdentity ===

impl ServiceIdentity {
    /// Parses a DNS-like name or a SPIFFE ID.
    pub fn parse(s: &str) -> Result<Self, InvalidIdentity> {
        let invalid = |reason| InvalidIdentity {
            input: s.chars().take(300).collect(),
            reason,
        };
        if let Some(rest) = strip_prefix_ignore_case(s, "spiffe://") {
            validate_spiffe(rest).map_err(invalid)?;
            // The scheme and trust domain are case-insensitive; the path is not.
            let (td, path) = rest.split_once('/').unwrap_or((rest, ""));
            let name = if path.is_empty() {
                format!("spiffe://{}", td.to_ascii_lowercase())
            } else {
                format!("spiffe://{}/{path}", td.to_ascii_lowercase())
            };
            return Ok(Self {
                name: name.into(),
                kind: Kind::Spiffe,
            });
        }
        if s.contains("://") {
            return Err(invalid("only spiffe:// URIs are identities"));
        }
        validate_dns(s).map_err(invalid)?;
        Ok(Self {
            name: s.trim_end_matches('.').to_ascii_lowercase().into(),
            kind: Kind::Dns,
        })
    }

    /// The identity as text, as it appears in certificates and in metrics labels.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// Whether this is a DNS-like name.
    pub fn is_dns(&self) -> bool {
        self.kind == Kind::Dns
    }

    /// Whether this is a SPIFFE ID.
    pub fn is_spiffe(&self) -> bool {
        self.kind == Kind::Spiffe
    }

    /// The DNS-like name to send as TLS SNI when connecting to a peer with this identity: the
    /// name itself, or a SPIFFE ID's trust domain.
    pub fn sni_name(&self) -> &str {
        match self.kind {
            Kind::Dns => &self.name,
            Kind::Spiffe => {
                let rest = &self.name["spiffe://".len()..];
                rest.split('/').next().unwrap_or(rest)
            }
        }
    }
}

impl FromStr for ServiceIdentity {
    type Err = InvalidIdentity;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for ServiceIdentity {
    type Error = InvalidIdentity;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl fmt::Display for ServiceIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.name)
    }
}

impl fmt::Debug for ServiceIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.name, f)
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn validate_dns(s: &str) -> Result<(), &'static str> {
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.is_empty() {
        return Err("empty name");
    }
    if s.len() > 253 {
        return Err("a DNS name has at most 253 characters");
    }
    for label in s.split('.') {
        if label.is_empty() {
            return Err("empty label");
        }
        if label.len() > 63 {
            return Err("a DNS label has at most 63 characters");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a DNS label may not start or end with '-'");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("a DNS label holds only letters, digits, '-' and '_'");
        }
    }
    if s.split('.').all(|l| l.bytes().all(|b| b.is_ascii_digit())) {
        return Err("an IP address is not an identity");
    }
    Ok(())
}

fn validate_spiffe(rest: &str) -> Result<(), &'static str> {
    let (td, path) = match rest.split_once('/') {
        Some((td, path)) => (td, Some(path)),
        None => (rest, None),
    };
    if td.is_empty() {
        return Err("a SPIFFE ID needs a trust domain");
    }
    if !td
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    {
        return Err("a SPIFFE trust domain holds only letters, digits, '.', '-' and '_'");
    }
    if rest.len() > 2048 - "spiffe://".len() {
        return Err("a SPIFFE ID has at most 2048 characters");
    }
    if let Some(path) = path {
        for seg in path.split('/') {
            if seg.is_empty() {
                return Err("a SPIFFE path has no empty segments");
            }
            if seg == "." || seg == ".." {
                return Err("a SPIFFE path has no '.' or '..' segments");
            }
            if !seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
            {
                return Err("a SPIFFE path segment holds only letters, digits, '.', '-' and '_'");
            }
        }
    }
    Ok(())
}

/// Where the mesh's CA issues names: the DNS suffix and the SPIFFE trust domain.
///
/// ```
/// use mesh_tls::IdentityDomain;
///
/// let domain = IdentityDomain::default();
/// let web = domain.workload("web", "emojivoto")?;
/// assert_eq!(web.as_str(), "web.emojivoto.serviceaccount.identity.mesh.cluster.local");
/// assert_eq!(
///     domain.spiffe_id_of(&web).unwrap().as_str(),
///     "spiffe://cluster.local/ns/emojivoto/sa/web"
/// );
/// # Ok::<(), mesh_tls::identity::InvalidIdentity>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityDomain {
    suffix: String,
    trust_domain: String,
}

impl Default for IdentityDomain {
    /// Suffix `mesh.cluster.local`, trust domain `cluster.local`.
    fn default() -> Self {
        Self {
            suffix: "mesh.cluster.local".into(),
            trust_domain: "cluster.local".into(),
        }
    }
}

impl IdentityDomain {
    /// A domain with the given DNS suffix (Linkerd's is `linkerd.cluster.local`) and SPIFFE trust
    /// domain (`cluster.local` for both).
    pub fn new(suffix: &str, trust_domain: &str) -> Result<Self, InvalidIdentity> {
        let s = ServiceIdentity::parse(suffix)?;
        let td = ServiceIdentity::parse(&format!("spiffe://{trust_domain}"))?;
        Ok(Self {
            suffix: s.as_str().to_owned(),
            trust_domain: td.sni_name().to_owned(),
        })
    }

    /// The DNS suffix, e.g. `mesh.cluster.local`.
    pub fn suffix(&self) -> &str {
        &self.suffix
    }

    /// The SPIFFE trust domain, e.g. `cluster.local`.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The identity issued to `service_account` in `namespace`.
    pub fn workload(
        &self,
        service_account: &str,
        namespace: &str,
    ) -> Result<ServiceIdentity, InvalidIdentity> {
        if service_account.contains('.') || namespace.contains('.') {
            return Err(InvalidIdentity {
                input: format!("{service_account}.{namespace}"),
                reason: "service account and namespace may not contain '.'",
            });
        }
        ServiceIdentity::parse(&format!(
            "{service_account}.{namespace}.serviceaccount.identity.{}",
            self.suffix
        ))
    }

    /// The (service account, namespace) of a workload identity in this domain.
    pub fn workload_of<'a>(&self, id: &'a ServiceIdentity) -> Option<(&'a str, &'a str)> {
        if !id.is_dns() {
            return None;
        }
        let head = id
            .as_str()
            .strip_suffix(self.suffix.as_str())?
            .strip_suffix(".serviceaccount.identity.")?;
        let (sa, ns) = head.split_once('.')?;
        (!ns.contains('.')).then_some((sa, ns))
    }

    /// The SPIFFE ID that goes with a workload identity of this domain.
    pub fn spiffe_id_of(&self, id: &ServiceIdentity) -> Option<ServiceIdentity> {
        let (sa, ns) = self.workload_of(id)?;
        ServiceIdentity::parse(&format!("spiffe://{}/ns/{ns}/sa/{sa}", self.trust_domain)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        for ok in [
            "web.emojivoto.serviceaccount.identity.mesh.cluster.local",
            "Inbound.Rig.Local.",
            "a",
            "spiffe://cluster.local/ns/a/sa/b",
            "SPIFFE://Example.ORG/Path",
        ] {
            ServiceIdentity::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "",
            "web..x",
            "-web.x",
            "web x",
            "https://x.y/z",
            "spiffe://",
            "spiffe:///path",
            "spiffe://td/a//b",
            "spiffe://td/../b",
            "spiffe://td/a?b",
            "127.0.0.1",
            &"a".repeat(64),
        ] {
            let err = ServiceIdentity::parse(bad).expect_err(bad);
            assert!(err.to_string().contains("invalid identity"), "{err}");
        }
    }

    #[test]
    fn normalizes_case() {
        let a = ServiceIdentity::parse("Inbound.Rig.Local.").unwrap();
        assert_eq!(a.as_str(), "inbound.rig.local");
        let s = ServiceIdentity::parse("SPIFFE://Example.ORG/Path").unwrap();
        assert_eq!(s.as_str(), "spiffe://example.org/Path");
        assert_eq!(s.sni_name(), "example.org");
    }

    #[test]
    fn workload_names() {
        let d = IdentityDomain::new("linkerd.cluster.local", "cluster.local").unwrap();
        let id = d.workload("default", "emojivoto").unwrap();
        assert_eq!(
            id.as_str(),
            "default.emojivoto.serviceaccount.identity.linkerd.cluster.local"
        );
        assert_eq!(d.workload_of(&id), Some(("default", "emojivoto")));
        assert!(d.workload("a.b", "c").is_err());
        let other = ServiceIdentity::parse("inbound.rig.local").unwrap();
        assert_eq!(d.workload_of(&other), None);
        assert_eq!(d.spiffe_id_of(&other), None);
    }
}
