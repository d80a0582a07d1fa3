use std::fmt;

/// What a connection speaks, as far as its first bytes tell.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP/1.x: the connection starts with a request line (`GET / HTTP/1.1\r\n`).
    Http1,
    /// HTTP/2 with prior knowledge: the connection starts with the preface
    /// `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`.
    Http2,
    /// TLS: the connection starts with a handshake record.
    Tls {
        /// The server name the ClientHello asks for (lowercased), or `None` when it sends
        /// none, or the ClientHello was malformed, cut short, or longer than the buffer.
        sni: Option<String>,
    },
    /// Anything else: bytes to forward untouched.
    Opaque,
}

impl Protocol {
    /// A short, stable label value: `http/1`, `h2`, `tls` or `opaque`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Protocol::Http1 => "http/1",
            Protocol::Http2 => "h2",
            Protocol::Tls { .. } => "tls",
            Protocol::Opaque => "opaque",
        }
    }

    /// Whether it is HTTP/1 or HTTP/2 in the clear.
    pub const fn is_http(&self) -> bool {
        matches!(self, Protocol::Http1 | Protocol::Http2)
    }

    /// The SNI server name, for TLS connections that sent one.
    pub fn sni(&self) -> Option<&str> {
        match self {
            Protocol::Tls { sni } => sni.as_deref(),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// What ended detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecidedBy {
    /// The bytes: they match a protocol, or cannot match any.
    Bytes,
    /// The timeout fired first. Count these: a port that times out often is probably
    /// server-speaks-first and should be configured as opaque.
    Timeout,
    /// The client closed its side (or the connection) first. The bytes it sent, if any, are
    /// still there to replay.
    Eof,
    /// The buffer filled up without a decision (a request line longer than the capacity, say).
    Full,
}

impl DecidedBy {
    /// A short, stable label value: `bytes`, `timeout`, `eof` or `full`.
    pub const fn as_str(self) -> &'static str {
        match self {
            DecidedBy::Bytes => "bytes",
            DecidedBy::Timeout => "timeout",
            DecidedBy::Eof => "eof",
            DecidedBy::Full => "full",
        }
    }
}

impl fmt::Display for DecidedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The result of detection: the [`Protocol`], and what decided it.
///
/// Only [`DecidedBy::Bytes`] is a positive identification; otherwise the protocol is
/// [`Protocol::Opaque`], or [`Protocol::Tls`] without a name when a TLS record header had
/// already arrived (the name was still on its way).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Detected {
    protocol: Protocol,
    decided_by: DecidedBy,
}

// === impl Detected ===

impl Detected {
    /// A detection result; for tests and for stacks that know the protocol beforehand (an
    /// opaque port skips detection and says `Detected::new(Protocol::Opaque, DecidedBy::Bytes)`
    /// to the layers below, say).
    pub const fn new(protocol: Protocol, decided_by: DecidedBy) -> Self {
        Self {
            protocol,
            decided_by,
        }
    }

    /// The protocol.
    pub const fn protocol(&self) -> &Protocol {
        &self.protocol
    }

    /// The protocol, consuming `self`.
    pub fn into_protocol(self) -> Protocol {
        self.protocol
    }

    /// What ended detection.
    pub const fn decided_by(&self) -> DecidedBy {
        self.decided_by
    }

    /// Whether detection timed out (the metric the proxy counts).
    pub const fn is_timeout(&self) -> bool {
        matches!(self.decided_by, DecidedBy::Timeout)
    }
}

impl fmt::Display for Detected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (by {})", self.protocol, self.decided_by)
    }
}
