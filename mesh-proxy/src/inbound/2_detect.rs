//! Stage 2, per connection: what does the client speak? The first bytes are peeked once
//! (bounded, with a timeout): a TLS ClientHello from a meshed peer (stage 3), plaintext HTTP/1
//! or HTTP/2 (its version is kept, so the HTTP server does not sniff again), or anything else:
//! opaque TCP. Server-speaks-first app ports are never detected as HTTP; a meshed peer's TLS is
//! still detected and terminated there (its ClientHello speaks first whatever the app's
//! protocol). An unmeshed client that waits for the app's greeting waits for the detect timeout,
//! as with Linkerd's opaque ports (such clients need the port skipped instead).

use mesh_core::detect::{self, Protocol};
use mesh_core::metrics::Labels;
use tokio::net::TcpStream;

use super::Inbound;
use super::target::{Accept, Http, Tls};
use super::tls::NewTls;
use crate::runtime::Runtime;

/// Detects the protocol, then hands the connection to TLS or straight to authorization. Cheap
/// to clone.
#[derive(Clone, Debug)]
pub(crate) struct Detect {
    rt: Runtime,
    tls: NewTls,
}

impl Inbound<NewTls> {
    /// Protocol detection in front of TLS termination.
    pub(crate) fn push_detect(self) -> Inbound<Detect> {
        let rt = self.rt.clone();
        self.map_stack(|tls| Detect { rt, tls })
    }
}

impl Detect {
    /// Serves an accepted connection.
    pub(crate) async fn serve(&self, tcp: TcpStream, accept: Accept) {
        let rt = &self.rt;
        let opaque_port = rt.config.opaque_ports.contains(&accept.app.port());
        let config = detect::Config::new()
            .with_timeout(rt.config.detect_timeout)
            .with_capacity(8 * 1024);
        let (detected, io) = match detect::detect(tcp, &config).await {
            Ok(d) => d,
            Err(error) => {
                tracing::debug!(%error, peer = %accept.peer, "detection failed");
                rt.metrics.conn_error("inbound", "detect");
                return;
            }
        };
        if detected.is_timeout() {
            rt.metrics
                .detect_timeouts
                .get_or_create(&Labels::new().with("direction", "inbound"))
                .inc();
        }
        let plaintext = Tls {
            accept: accept.clone(),
            client: None,
        };
        let authorize = self.tls.authorize();
        match detected.protocol() {
            Protocol::Tls { .. } => self.tls.serve(io, accept).await,
            _ if opaque_port => authorize.serve_opaque(io, plaintext).await,
            p @ (Protocol::Http1 | Protocol::Http2) => {
                let version = Some(p.clone());
                authorize
                    .serve_http(
                        io,
                        Http {
                            tls: plaintext,
                            version,
                        },
                    )
                    .await
            }
            Protocol::Opaque => authorize.serve_opaque(io, plaintext).await,
        }
    }
}
