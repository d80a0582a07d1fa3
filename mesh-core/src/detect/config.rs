use std::time::Duration;

/// How much detection may read, and for how long. Cheap to copy.
///
/// ```
/// use mesh_core::detect::Config;
/// use std::time::Duration;
///
/// let config = Config::new().with_capacity(16 * 1024).with_timeout(Duration::from_secs(1));
/// assert_eq!(config.capacity(), 16 * 1024);
/// assert_eq!(Config::default().timeout(), Duration::from_secs(10));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    capacity: usize,
    timeout: Duration,
}

// === impl Config ===

impl Config {
    /// The default [capacity](Self::with_capacity): 8 KiB.
    pub const DEFAULT_CAPACITY: usize = 8 * 1024;

    /// The default [timeout](Self::with_timeout): 10 s, as Linkerd's proxy.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// The smallest capacity: the length of the HTTP/2 connection preface, so every protocol
    /// can still be told apart.
    pub const MIN_CAPACITY: usize = super::sniff::H2_PREFACE.len();

    /// The defaults: 8 KiB, 10 s.
    pub const fn new() -> Self {
        Self {
            capacity: Self::DEFAULT_CAPACITY,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    /// The most bytes detection reads (and holds) per connection. A connection whose first
    /// bytes do not decide within them is opaque: an HTTP/1 request line longer than this, or
    /// the server name of a ClientHello that does not fit (the connection is still TLS).
    ///
    /// Default is 8 KiB ([`DEFAULT_CAPACITY`](Self::DEFAULT_CAPACITY)), which holds any
    /// request line a typical server accepts (hyper's default limit for the whole head is
    /// larger, but lines beyond 8 KiB are rare) and a post-quantum ClientHello (about 2 KiB).
    /// Values below [`MIN_CAPACITY`](Self::MIN_CAPACITY) are raised to it.
    #[must_use]
    pub const fn with_capacity(mut self, bytes: usize) -> Self {
        self.capacity = if bytes < Self::MIN_CAPACITY {
            Self::MIN_CAPACITY
        } else {
            bytes
        };
        self
    }

    /// How long a client has to say enough to be identified, from the moment detection starts;
    /// then the connection is opaque (see [`DecidedBy::Timeout`](super::DecidedBy::Timeout)).
    ///
    /// Default is 10 s ([`DEFAULT_TIMEOUT`](Self::DEFAULT_TIMEOUT)), as in Linkerd: long
    /// enough for a slow client on a bad network, short enough that a silent one does not hold
    /// its buffer for long.
    #[must_use]
    pub const fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The capacity in bytes.
    pub const fn capacity(&self) -> usize {
        self.capacity
    }

    /// The timeout.
    pub const fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl Default for Config {
    /// 8 KiB, 10 s.
    fn default() -> Self {
        Self::new()
    }
}
