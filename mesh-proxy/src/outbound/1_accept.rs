//! Stage 1, per connection: the listeners the app connects to, and what each connection is for.
//!
//! | listener | destination | protocol |
//! |---|---|---|
//! | authority-routed (`--outbound-listen`) | each request's `Host` / `:authority` | HTTP |
//! | per-upstream (`--upstream AUTHORITY=ADDR`) | the configured authority | opaque TCP when discovery says the destination is opaque; else detected: HTTP, or opaque TCP for anything else |
//! | original destination (`--orig-dst-listen`, iptables `REDIRECT`) | the address the app dialled (`SO_ORIGINAL_DST`) | as per-upstream, and opaque TCP for server-speaks-first ports; unknown addresses are passed through untouched |
//!
//! Every connection is counted and tracked for drain ([`serve::accept_loop`]); HTTP goes on to
//! stage 2, opaque TCP to [`opaque`](super::opaque).

use std::net::SocketAddr;
use std::sync::Arc;

use mesh_core::detect;
use mesh_core::metrics::Labels;
use tokio::net::{TcpListener, TcpStream};

use super::Outbound;
use super::http_server::NewHttp;
use super::opaque::Opaque;
use super::target::{Accept, AcceptDst};
use crate::discovery::{Protocol, normalize_authority};
use crate::runtime::Runtime;
use crate::{orig_dst, serve};

/// The outbound side of a proxy, ready to serve its listeners. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Server {
    inner: Arc<Listeners>,
}

struct Listeners {
    rt: Runtime,
    discovery: Arc<dyn crate::discovery::Discover>,
    http: NewHttp,
    opaque: Opaque,
}

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listeners")
            .field("http", &self.http)
            .field("opaque", &self.opaque)
            .finish_non_exhaustive()
    }
}

impl Outbound<NewHttp> {
    /// The finished stack, behind its listeners.
    pub(crate) fn into_server(self) -> Server {
        let opaque = Opaque::new(self.rt.clone(), self.discovery.clone());
        Server {
            inner: Arc::new(Listeners {
                rt: self.rt,
                discovery: self.discovery,
                http: self.stack,
                opaque,
            }),
        }
    }
}

impl Server {
    /// Serves the authority-routed listener: each request goes to the destination its
    /// authority names.
    pub(crate) async fn serve_routed(self, listener: TcpListener) {
        let rt = self.inner.rt.clone();
        serve::accept_loop(listener, rt, "outbound", move |tcp, peer| {
            let this = self.clone();
            async move {
                let accept = Accept {
                    peer,
                    dst: AcceptDst::Routed,
                };
                this.inner.http.serve(tcp, accept).await;
            }
        })
        .await;
    }

    /// Serves a per-upstream listener: everything sent to it goes to `authority`, as bytes when
    /// discovery says the destination is opaque, else as what the client speaks (see
    /// [`fixed`](Self::fixed)).
    pub(crate) async fn serve_upstream(self, listener: TcpListener, authority: String) {
        let authority: Arc<str> = normalize_authority(&authority).into();
        let rt = self.inner.rt.clone();
        serve::accept_loop(listener, rt, "outbound", move |tcp, peer| {
            let this = self.clone();
            let authority = authority.clone();
            async move {
                let opaque = this
                    .inner
                    .discovery
                    .resolve(&authority)
                    .is_some_and(|d| d.borrow().protocol == Protocol::Opaque);
                this.fixed(tcp, peer, authority, opaque).await
            }
        })
        .await;
    }

    /// A connection to a fixed destination: opaque when the destination (or its port) says
    /// so; otherwise the client's first bytes tell: HTTP goes to the HTTP stack, anything else
    /// (or silence until the detect timeout: a protocol whose server speaks first) is forwarded
    /// as bytes, as Linkerd's outbound detection does.
    async fn fixed(&self, tcp: TcpStream, peer: SocketAddr, authority: Arc<str>, opaque: bool) {
        let rt = &self.inner.rt;
        if opaque {
            return self.inner.opaque.serve(tcp, &authority).await;
        }
        let config = detect::Config::new()
            .with_timeout(rt.config.detect_timeout)
            .with_capacity(8 * 1024);
        let (detected, io) = match detect::detect(tcp, &config).await {
            Ok(d) => d,
            Err(error) => {
                tracing::debug!(%error, %peer, "outbound detection failed");
                rt.metrics.conn_error("outbound", "detect");
                return;
            }
        };
        match detected.protocol() {
            p @ (detect::Protocol::Http1 | detect::Protocol::Http2) => {
                let version = Some(p.clone());
                let dst = AcceptDst::Fixed(authority);
                self.inner
                    .http
                    .serve_as(io, Accept { peer, dst }, version)
                    .await;
            }
            _ => {
                if detected.is_timeout() {
                    rt.metrics
                        .detect_timeouts
                        .get_or_create(&Labels::new().with("direction", "outbound"))
                        .inc();
                }
                self.inner.opaque.serve(io, &authority).await;
            }
        }
    }

    /// Serves connections redirected to `listener` by iptables (Kubernetes-style transparent
    /// proxying): the original destination (`SO_ORIGINAL_DST`) picks the destination. Known
    /// destinations are proxied (HTTP, or opaque for opaque destinations and server-speaks-first
    /// ports); unknown ones are forwarded to the original address as they are.
    pub(crate) async fn serve_orig_dst(self, listener: TcpListener) {
        let local = listener.local_addr().ok();
        let rt = self.inner.rt.clone();
        serve::accept_loop(listener, rt, "outbound", move |tcp, peer| {
            let this = self.clone();
            async move { this.orig_dst(tcp, peer, local).await }
        })
        .await;
    }

    async fn orig_dst(&self, tcp: TcpStream, peer: SocketAddr, local: Option<SocketAddr>) {
        let rt = &self.inner.rt;
        let orig = match orig_dst::original_dst(&tcp) {
            Ok(orig) if Some(orig) != local => orig,
            Ok(_) => {
                tracing::info!(%peer, "connection was not redirected: no original destination; is the iptables REDIRECT rule in place?");
                rt.metrics.conn_error("outbound", "no_original_dst");
                return;
            }
            Err(error) => {
                tracing::info!(%error, %peer, "cannot read the original destination");
                rt.metrics.conn_error("outbound", "no_original_dst");
                return;
            }
        };
        let authority: Arc<str> = orig.to_string().into();
        let known = self.inner.discovery.resolve(&authority);
        let opaque_port = rt.config.opaque_ports.contains(&orig.port());
        match known {
            Some(d) => {
                let opaque = d.borrow().protocol == Protocol::Opaque || opaque_port;
                self.fixed(tcp, peer, authority, opaque).await;
            }
            None => self.passthrough(tcp, orig, &authority).await,
        }
    }

    /// Not part of the mesh: the bytes go where they were going.
    async fn passthrough(&self, tcp: TcpStream, orig: SocketAddr, authority: &str) {
        let rt = &self.inner.rt;
        let labels = Labels::new()
            .with("direction", "outbound")
            .with("authority", authority)
            .with("tls", "no_identity");
        let mut client = rt.metrics.tcp.sensor(&labels).wrap(tcp);
        match tokio::time::timeout(rt.config.connect_timeout, TcpStream::connect(orig)).await {
            Ok(Ok(mut server)) => {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }
            _ => rt.metrics.conn_error("outbound", "passthrough_connect"),
        }
    }
}
