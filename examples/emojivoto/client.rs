//! Where the apps' outgoing connections go: the one seam between emojivoto and the mesh.
//!
//! Every app names its peers by *authority*, the `host:port` a request is for
//! (`emoji-svc.emojivoto:8080`), and builds its clients with [`Outbound`]:
//!
//! - **Without a mesh** ([`Outbound::direct`]) a connection goes to the authority itself, which must
//!   then be an `IP:port` or a name the resolver knows (`127.0.0.1:8081`, `localhost:8081`).
//! - **With a mesh in local mode** (`MESH_OUTBOUND_ADDR=127.0.0.1:4140`, [`Outbound::via`]) every
//!   connection goes to that address, the app's sidecar, whatever the request's authority. The
//!   request itself is unchanged: HTTP/1 carries the authority in `Host`, HTTP/2 and gRPC in
//!   `:authority`, and that is how the sidecar knows where the app meant to go. The sidecar resolves
//!   the name, balances over the endpoints, adds mTLS, retries, and reports metrics; the app sends
//!   plain HTTP or gRPC to a local socket and cannot tell the difference.
//!
//! That is the contract "the app changes no line of code": the mesh sets one environment variable
//! (read once, at the command-line edge, by clap), and this module is the only code that reads the
//! resulting setting. On Kubernetes the variable is unset and iptables sends the same connections to
//! the sidecar instead.
//!
//! Clients are hyper-util's pooled "legacy" client over a [`Connector`] that picks the address:
//! gRPC clients speak HTTP/2 with prior knowledge ([`Outbound::grpc`]), the web client HTTP/1.1
//! ([`Outbound::http1`]). Neither speaks TLS: the mesh adds it between sidecars.
//!
//! ```ignore
//! use emojivoto::client::Outbound;
//! // MESH_OUTBOUND_ADDR=127.0.0.1:4140 was read by clap; None means "connect directly".
//! let via: Option<std::net::SocketAddr> = Some("127.0.0.1:4140".parse()?);
//! let outbound = Outbound::new(via);
//! let emoji = emojivoto::proto::EmojiClient::new(outbound.grpc("emoji-svc.emojivoto:8080")?);
//! let all = emoji.list_all().await?; // dials 127.0.0.1:4140, :authority emoji-svc.emojivoto:8080
//! ```

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use super::BoxError;

/// The environment variable `mesh run` sets to its sidecar's outbound address (`IP:PORT`).
pub const OUTBOUND_ADDR_ENV: &str = "MESH_OUTBOUND_ADDR";

/// A pooled HTTP client whose connections go where [`Outbound`] says.
pub type HttpClient<B> = Client<Connector, B>;

/// A gRPC client for one authority (cheap to clone: the connection pool is shared).
pub type GrpcChannel = tonic::client::Grpc<HttpClient<tonic::body::Body>>;

/// Where outgoing connections go: straight to each request's authority, or all to one address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outbound {
    via: Option<SocketAddr>,
}

impl Outbound {
    /// Connections to `via` when it is set (the sidecar), else to each request's authority.
    pub const fn new(via: Option<SocketAddr>) -> Self {
        Self { via }
    }

    /// Connections go to each request's authority. The default.
    pub const fn direct() -> Self {
        Self { via: None }
    }

    /// Every connection goes to `addr`; requests keep their own authority.
    pub const fn via(addr: SocketAddr) -> Self {
        Self { via: Some(addr) }
    }

    /// The address every connection goes to, if any.
    pub const fn via_addr(&self) -> Option<SocketAddr> {
        self.via
    }

    /// The connector behind the clients below, for building other clients.
    pub const fn connector(&self) -> Connector {
        Connector { via: self.via }
    }

    /// An HTTP/1.1 client. Requests need absolute URIs (`http://web-svc.emojivoto:80/api/list`);
    /// the client sends the path in origin form and the authority in `Host`.
    pub fn http1<B>(&self) -> HttpClient<B>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
    {
        Client::builder(TokioExecutor::new()).build(self.connector())
    }

    /// A gRPC client (HTTP/2 with prior knowledge, no TLS) for the service at `authority`.
    pub fn grpc(&self, authority: &str) -> Result<GrpcChannel, BoxError> {
        let origin: Uri = format!("http://{authority}")
            .parse()
            .map_err(|e| format!("{authority:?} is not an authority (host:port): {e}"))?;
        if origin.host().is_none_or(str::is_empty) {
            return Err(format!("{authority:?} is not an authority (host:port)").into());
        }
        let client = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build(self.connector());
        Ok(tonic::client::Grpc::with_origin(client, origin))
    }
}

// === impl Connector ===

/// Opens the TCP connection for a request's URI: to the configured address, else to the URI's
/// authority (port 80 when it names none). Sets `TCP_NODELAY`.
#[derive(Clone, Debug)]
pub struct Connector {
    via: Option<SocketAddr>,
}

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<TcpStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let via = self.via;
        Box::pin(async move {
            let stream = match via {
                Some(addr) => TcpStream::connect(addr).await.map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("connect to {addr} ({OUTBOUND_ADDR_ENV}) for {uri}: {e}"),
                    )
                })?,
                None => {
                    let target = dial_target(&uri)?;
                    TcpStream::connect(target.as_str()).await.map_err(|e| {
                        io::Error::new(e.kind(), format!("connect to {target}: {e}"))
                    })?
                }
            };
            stream.set_nodelay(true)?;
            Ok(TokioIo::new(stream))
        })
    }
}

/// `host:port` to dial for `uri` when no outbound address is configured.
fn dial_target(uri: &Uri) -> io::Result<String> {
    let authority = uri.authority().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{uri} names no authority"),
        )
    })?;
    Ok(match authority.port_u16() {
        Some(_) => authority.as_str().to_owned(),
        None => format!("{}:80", authority.host()),
    })
}

/// An error and its sources on one line: hyper's errors keep the useful part in `source()`.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}
