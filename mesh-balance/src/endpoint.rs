//! What discovery knows about one endpoint: where it is and how to talk to it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use mesh_core::stack::Param;

/// One endpoint of a target, as discovery reports it.
///
/// Discovery streams ([`crate::discover`]) yield these; the balancer hands each to the endpoint
/// factory ([`NewService`](crate::NewService)) that builds the service talking to it. An endpoint
/// is keyed by its address: a later update for the same address replaces it.
///
/// ```
/// use mesh_balance::{Endpoint, ProtocolHint, TlsIdentity};
///
/// let ep = Endpoint::new(([10, 0, 0, 7], 8080).into())
///     .with_weight(10_000)
///     .with_identity(TlsIdentity::new("voting.emojivoto.serviceaccount.identity.mesh.local"))
///     .with_protocol(ProtocolHint::Http2)
///     .with_label("pod", "voting-7c9f");
/// assert_eq!(ep.addr().port(), 8080);
/// assert_eq!(ep.labels().get("pod"), Some("voting-7c9f"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    addr: SocketAddr,
    weight: u32,
    identity: Option<TlsIdentity>,
    protocol: ProtocolHint,
    labels: Labels,
}

/// The TLS identity an endpoint must prove, as discovery names it.
///
/// Opaque here: `mesh-balance` only carries it to the endpoint factory, which (in `mesh-proxy`)
/// turns it into the `mesh-tls` server identity the client handshake checks.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TlsIdentity(Arc<str>);

/// What the endpoint's side can speak, according to discovery.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProtocolHint {
    /// Nothing is known: send requests in the protocol they came in.
    #[default]
    Unknown,
    /// The endpoint is meshed and its proxy takes HTTP/2 from a proxy, so HTTP/1 requests may be
    /// upgraded to HTTP/2 on the way (Linkerd's `protocol_hint.h2`).
    Http2,
    /// The endpoint's proxy expects opaque transport: forward bytes, do not speak HTTP to it.
    Opaque,
}

/// Metric labels discovery attaches to an endpoint (pod, namespace, zone...). Cheap to clone.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels(Arc<BTreeMap<String, String>>);

// === impl Endpoint ===

impl Endpoint {
    /// The weight an endpoint has unless discovery says otherwise (Linkerd's default).
    pub const DEFAULT_WEIGHT: u32 = 10_000;

    /// An endpoint at `addr` with the default weight, no identity, no protocol hint, no labels.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            weight: Self::DEFAULT_WEIGHT,
            identity: None,
            protocol: ProtocolHint::Unknown,
            labels: Labels::default(),
        }
    }

    /// Sets the weight discovery gave. Default is [`Endpoint::DEFAULT_WEIGHT`].
    ///
    /// The weight is carried for the endpoint stack and views; the P2C pick does not scale load
    /// by it (Linkerd's proxy does not either). Weighted traffic between *backends* is
    /// [`Split`](crate::Split)'s job.
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Sets the identity the endpoint must prove over mTLS. Default is none (no mTLS).
    pub fn with_identity(mut self, identity: impl Into<Option<TlsIdentity>>) -> Self {
        self.identity = identity.into();
        self
    }

    /// Sets the protocol hint. Default is [`ProtocolHint::Unknown`].
    pub fn with_protocol(mut self, hint: ProtocolHint) -> Self {
        self.protocol = hint;
        self
    }

    /// Replaces the metric labels. Default is none.
    pub fn with_labels(mut self, labels: Labels) -> Self {
        self.labels = labels;
        self
    }

    /// Adds one metric label.
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.labels.0).insert(key.into(), value.into());
        self
    }

    /// Where the endpoint listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The weight discovery gave.
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// The identity the endpoint must prove, if it is meshed.
    pub fn identity(&self) -> Option<&TlsIdentity> {
        self.identity.as_ref()
    }

    /// What the endpoint can speak.
    pub fn protocol(&self) -> ProtocolHint {
        self.protocol
    }

    /// Its metric labels.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Endpoint");
        d.field("addr", &self.addr).field("weight", &self.weight);
        if let Some(id) = &self.identity {
            d.field("identity", id);
        }
        if self.protocol != ProtocolHint::Unknown {
            d.field("protocol", &self.protocol);
        }
        if !self.labels.is_empty() {
            d.field("labels", &self.labels);
        }
        d.finish()
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Self {
        Self::new(addr)
    }
}

impl Param<SocketAddr> for Endpoint {
    fn param(&self) -> SocketAddr {
        self.addr
    }
}

impl Param<ProtocolHint> for Endpoint {
    fn param(&self) -> ProtocolHint {
        self.protocol
    }
}

impl Param<Option<TlsIdentity>> for Endpoint {
    fn param(&self) -> Option<TlsIdentity> {
        self.identity.clone()
    }
}

impl Param<Labels> for Endpoint {
    fn param(&self) -> Labels {
        self.labels.clone()
    }
}

// === impl TlsIdentity ===

impl TlsIdentity {
    /// An identity name, e.g. `web.emojivoto.serviceaccount.identity.mesh.local` or a SPIFFE ID.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self(name.into())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// === impl Labels ===

impl Labels {
    /// The value of label `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// All labels, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// How many labels there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Labels {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(Arc::new(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        ))
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_and_params() {
        let labels: Labels = [("zone", "a"), ("pod", "p-1")].into_iter().collect();
        let ep = Endpoint::new(([127, 0, 0, 1], 80).into())
            .with_labels(labels)
            .with_label("ns", "emojivoto")
            .with_protocol(ProtocolHint::Http2)
            .with_identity(TlsIdentity::new("web.emojivoto"));
        let addr: SocketAddr = ep.param();
        assert_eq!(addr.port(), 80);
        assert_eq!(Param::<ProtocolHint>::param(&ep), ProtocolHint::Http2);
        let id: Option<TlsIdentity> = ep.param();
        assert_eq!(id.as_ref().map(TlsIdentity::as_str), Some("web.emojivoto"));
        let keys: Vec<_> = ep.labels().iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["ns", "pod", "zone"]);
        assert_eq!(ep.weight(), Endpoint::DEFAULT_WEIGHT);
        let dbg = format!("{ep:?}");
        assert!(
            dbg.contains("web.emojivoto") && dbg.contains("Http2"),
            "{dbg}"
        );
    }
}
