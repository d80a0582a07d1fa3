//! An HTTP echo server behind mesh-tls's mutual TLS layers: the template for putting the mesh's
//! mTLS in front of your own hyper/axum/tonic service.
//!
//! ```text
//! cargo run --release --example mtls_echo -- /tmp/mesh-mtls [--listen 127.0.0.1:8443]
//! ```
//!
//! It keeps a CA in `DIR/ca` (generated on first run, reused after), certifies the server with a
//! key made in this process (refreshed at 70% of its lifetime), writes a trust anchor and a client
//! certificate and key to `DIR` for curl and openssl, calls itself once through `TlsClientLayer`
//! to show both layers, and serves HTTP/1.1 and HTTP/2 until Ctrl-C. Every response names the
//! client's verified identity; a POST body is echoed back.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use mesh_tls::certify::{self, RefreshPolicy};
use mesh_tls::client::ServerIdentity;
use mesh_tls::server::{ClientIdentity, ClientIdentityLayer, ServerTlsStream};
use mesh_tls::{BoxError, CertificateAuthority, Credentials, TlsClientLayer, TlsServerLayer};
use tokio::net::{TcpListener, TcpStream};
use tower::{Layer, ServiceExt, service_fn};

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("mtls_echo: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let mut dir = None;
    let mut listen: SocketAddr = "127.0.0.1:8443".parse()?;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => {
                let v = args
                    .next()
                    .ok_or("--listen needs an address, e.g. 127.0.0.1:8443")?;
                listen = v
                    .parse()
                    .map_err(|e| format!("--listen {v}: {e}; give IP:PORT"))?;
            }
            "-h" | "--help" => {
                println!("usage: mtls_echo DIR [--listen 127.0.0.1:8443]");
                return Ok(());
            }
            other if dir.is_none() && !other.starts_with('-') => dir = Some(PathBuf::from(other)),
            other => {
                return Err(format!(
                    "unexpected argument {other:?}; usage: mtls_echo DIR [--listen ADDR]"
                )
                .into());
            }
        }
    }
    let dir = dir.ok_or(
        "usage: mtls_echo DIR [--listen 127.0.0.1:8443] (DIR receives the CA and client files)",
    )?;

    // The CA: generated once, then reused from DIR/ca.
    let ca = Arc::new(CertificateAuthority::builder().load_or_generate(&dir.join("ca"))?);
    let server_id = ca.domain().workload("echo", "default")?;
    let curl_id = ca.domain().workload("curl", "default")?;

    // The server's credentials: a key made here, certified by the CA, refreshed in the background.
    let server_creds = Credentials::generate(server_id.clone(), ca.trust_bundle())?;
    tokio::spawn(certify::refresh(
        server_creds.clone(),
        ca.clone(),
        RefreshPolicy::default(),
    ));
    server_creds.ready().await;

    // Files for clients that cannot make a CSR: curl and openssl.
    let client = ca.issue(&curl_id)?;
    std::fs::write(dir.join("ca.pem"), ca.trust_bundle().to_pem())?;
    std::fs::write(dir.join("client.pem"), client.chain_pem())?;
    write_secret(&dir.join("client.key"), &client.key_pem())?;

    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let server = TlsServerLayer::new(&server_creds).layer(service_fn(serve_connection));
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    eprintln!("accept failed: {e}");
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let conn = server.clone().oneshot(tcp);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    eprintln!("connection from {peer}: {e}");
                }
            });
        }
    });

    // Show the client layer too: a meshed `web` workload calls the server.
    let web_id = ca.domain().workload("web", "default")?;
    let web = Credentials::generate(web_id.clone(), ca.trust_bundle())?;
    web.set_certificate(ca.sign(web.csr()?, &web_id)?)?;
    let reply = self_call(&web, addr, &server_id).await?;

    let d = dir.display();
    println!("mesh mTLS echo server listening on https://{addr}");
    println!("  server identity: {server_id}");
    println!(
        "  self-check through TlsClientLayer as {web_id}: {}",
        reply.trim_end()
    );
    println!();
    println!("Call it with the client certificate written to {d}:");
    println!(
        "  curl --cacert {d}/ca.pem --cert {d}/client.pem --key {d}/client.key \\\n       --resolve {server_id}:{port}:{ip} https://{server_id}:{port}/",
        port = addr.port(),
        ip = addr.ip()
    );
    println!(
        "  openssl s_client -connect {addr} -servername {server_id} -CAfile {d}/ca.pem -cert {d}/client.pem -cert_chain {d}/client.pem -key {d}/client.key"
    );
    println!("Without --cert/--key the server refuses the connection: it requires mutual TLS.");
    println!("Ctrl-C stops it.");
    tokio::signal::ctrl_c().await?;
    Ok(())
}

/// Serves HTTP/1.1 and HTTP/2 on one verified TLS connection.
async fn serve_connection(conn: ServerTlsStream<TcpStream>) -> Result<(), BoxError> {
    let client = conn.client_identity().cloned();
    let svc = ClientIdentityLayer::new(client).layer(service_fn(echo));
    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(conn), TowerToHyperService::new(svc))
        .await
}

async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let who = req
        .extensions()
        .get::<ClientIdentity>()
        .map(|c| c.0.to_string())
        .unwrap_or_else(|| "anonymous".into());
    let version = req.version();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut text = format!("hello {who} ({version:?})\n");
    if !body.is_empty() {
        text.push_str(&String::from_utf8_lossy(&body));
    }
    Ok(Response::new(Full::new(Bytes::from(text))))
}

async fn self_call(
    creds: &Credentials,
    addr: SocketAddr,
    server: &mesh_tls::ServiceIdentity,
) -> Result<String, BoxError> {
    let connector = service_fn(move |_: ServerIdentity| TcpStream::connect(addr));
    let tls = TlsClientLayer::new(creds)
        .alpn_protocols(vec![b"h2".to_vec()])
        .layer(connector)
        .oneshot(ServerIdentity(server.clone()))
        .await?;
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let req = Request::get(format!("https://{server}/")).body(Full::new(Bytes::new()))?;
    let rsp = send.send_request(req).await?;
    let body = rsp.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn write_secret(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())
}
