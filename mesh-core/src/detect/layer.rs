use tower_layer::Layer;

use super::{Config, Detect};

/// Detects the protocol of each accepted connection before the inner service sees it.
///
/// The inner service is a `Service<(Detected, PrefixedIo<IO>)>`: it learns the
/// [`Detected`](super::Detected) protocol and reads the connection from its first byte.
///
/// ```
/// use mesh_core::detect::{Config, DetectLayer, Detected, PrefixedIo, Protocol};
/// use std::time::Duration;
/// use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), mesh_core::BoxError> {
/// let svc = ServiceBuilder::new()
///     .layer(DetectLayer::new(Config::default().with_timeout(Duration::from_secs(3))))
///     .service_fn(|(detected, mut io): (Detected, PrefixedIo<DuplexStream>)| async move {
///         // A proxy would hand HTTP to its HTTP server and forward anything else.
///         let mut line = [0; 16];
///         io.read_exact(&mut line).await?;
///         Ok::<_, std::io::Error>((detected.into_protocol(), line))
///     });
///
/// let (mut client, server) = tokio::io::duplex(64);
/// client.write_all(b"GET / HTTP/1.1\r\nhost: web\r\n\r\n").await?;
/// let (protocol, line) = svc.oneshot(server).await?;
/// assert_eq!(protocol, Protocol::Http1);
/// assert_eq!(&line, b"GET / HTTP/1.1\r\n");
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct DetectLayer {
    config: Config,
}

// === impl DetectLayer ===

impl DetectLayer {
    /// Detects with `config`; `DetectLayer::default()` uses [`Config::default`].
    pub const fn new(config: Config) -> Self {
        Self { config }
    }

    /// The configuration.
    pub const fn config(&self) -> &Config {
        &self.config
    }
}

impl<S> Layer<S> for DetectLayer {
    type Service = Detect<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Detect::new(inner, self.config)
    }
}
