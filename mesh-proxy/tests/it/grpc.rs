//! gRPC through the chain: a tonic client and server (Linkerd's own Identity and Destination
//! services as the test API: one unary, one server-streaming method), and Python's grpcio — a
//! gRPC stack no one here wrote.

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use futures_util::Stream;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use linkerd2_proxy_api::destination::destination_client::DestinationClient;
use linkerd2_proxy_api::destination::destination_server::{Destination, DestinationServer};
use linkerd2_proxy_api::destination::{DestinationProfile, GetDestination, Update};
use linkerd2_proxy_api::identity::identity_client::IdentityClient;
use linkerd2_proxy_api::identity::identity_server::{Identity, IdentityServer};
use linkerd2_proxy_api::identity::{CertifyRequest, CertifyResponse};
use tokio::net::{TcpListener, TcpStream};
use tonic::{Request, Response, Status};

use crate::support::*;

struct TestIdentity;

#[tonic::async_trait]
impl Identity for TestIdentity {
    async fn certify(
        &self,
        req: Request<CertifyRequest>,
    ) -> Result<Response<CertifyResponse>, Status> {
        let id = req.into_inner().identity;
        if id == "fail" {
            return Err(Status::permission_denied("no certificate for you"));
        }
        Ok(Response::new(CertifyResponse {
            leaf_certificate: format!("leaf-for-{id}").into_bytes(),
            intermediate_certificates: vec![],
            valid_until: None,
        }))
    }
}

struct TestDestination;

type Updates = Pin<Box<dyn Stream<Item = Result<Update, Status>> + Send>>;
type Profiles = Pin<Box<dyn Stream<Item = Result<DestinationProfile, Status>> + Send>>;

#[tonic::async_trait]
impl Destination for TestDestination {
    type GetStream = Updates;
    type GetProfileStream = Profiles;

    async fn get(&self, req: Request<GetDestination>) -> Result<Response<Updates>, Status> {
        let path = req.into_inner().path;
        // Three messages, spaced out: a real stream, not one buffered reply.
        let stream = futures_util::stream::unfold(0u32, move |i| {
            let path = path.clone();
            async move {
                if i == 3 {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                let update = Update {
                    update: Some(
                        linkerd2_proxy_api::destination::update::Update::NoEndpoints(
                            linkerd2_proxy_api::destination::NoEndpoints {
                                exists: path.len() as u32 % 2 == i % 2,
                            },
                        ),
                    ),
                };
                Some((Ok(update), i + 1))
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_profile(
        &self,
        _req: Request<GetDestination>,
    ) -> Result<Response<Profiles>, Status> {
        Err(Status::unimplemented("profiles are not part of this test"))
    }
}

/// A gRPC backend (plaintext HTTP/2, like an app behind its sidecar).
async fn grpc_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let routes = tonic::service::Routes::new(IdentityServer::new(TestIdentity))
        .add_service(DestinationServer::new(TestDestination));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let svc = hyper_util::service::TowerToHyperService::new(routes.clone());
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .http2_only()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

/// Connects every request to `addr`, whatever its URI says (the app's view of its sidecar).
#[derive(Clone)]
struct ToProxy(SocketAddr);

impl tower::Service<http::Uri> for ToProxy {
    type Response = TokioIo<TcpStream>;
    type Error = std::io::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let addr = self.0;
        Box::pin(async move { Ok(TokioIo::new(TcpStream::connect(addr).await?)) })
    }
}

async fn mesh() -> (tempfile::TempDir, mesh_proxy::Proxy, mesh_proxy::Proxy) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = ca_dir(dir.path());
    let app = grpc_backend().await;
    let inbound = inbound(&ca, "backend", app, &[]).await;
    let dst = destination(
        "backend.test:8080",
        inbound.inbound_addr().expect("inbound"),
        "backend",
    );
    let outbound = outbound(&ca, "web", dir.path(), &[dst], &[]).await;
    (dir, inbound, outbound)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_unary_and_streaming_calls_through_the_chain() {
    let (_dir, _inbound, outbound) = mesh().await;
    let out = outbound.outbound_addr().expect("outbound");
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build::<_, tonic::body::Body>(ToProxy(out));
    let origin: http::Uri = "http://backend.test:8080".parse().expect("uri");

    let mut identity = IdentityClient::with_origin(client.clone(), origin.clone());
    let rsp = tokio::time::timeout(
        Duration::from_secs(10),
        identity.certify(CertifyRequest {
            identity: "web".into(),
            ..Default::default()
        }),
    )
    .await
    .expect("in time")
    .expect("unary call");
    assert_eq!(rsp.into_inner().leaf_certificate, b"leaf-for-web");

    // A gRPC error status crosses the mesh intact.
    let status = identity
        .certify(CertifyRequest {
            identity: "fail".into(),
            ..Default::default()
        })
        .await
        .expect_err("denied");
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert_eq!(status.message(), "no certificate for you");

    let mut dest = DestinationClient::with_origin(client, origin);
    let mut stream = dest
        .get(GetDestination {
            path: "ab".into(),
            ..Default::default()
        })
        .await
        .expect("streaming call")
        .into_inner();
    let mut got = Vec::new();
    while let Some(update) = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("in time")
        .expect("message")
    {
        match update.update {
            Some(linkerd2_proxy_api::destination::update::Update::NoEndpoints(n)) => {
                got.push(n.exists)
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, vec![true, false, true]);

    // The metrics saw gRPC statuses from headers and trailers.
    let (_, metrics) = get(outbound.admin_addr(), "/metrics", &[])
        .await
        .expect("metrics");
    assert!(metrics.contains(r#"grpc_status="7""#), "{metrics}");
    assert!(metrics.contains(r#"grpc_status="0""#), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_client_through_the_chain() {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import grpc"])
        .output();
    if !probe.map(|o| o.status.success()).unwrap_or(false) {
        eprintln!(
            "\n*** SKIPPED: Python's grpcio is not installed; .ci/run installs it (pip install grpcio) ***\n"
        );
        return;
    }
    let (_dir, _inbound, outbound) = mesh().await;
    let out = outbound.outbound_addr().expect("outbound");
    // A raw unary call: the request is hand-encoded protobuf (field 1, string "py").
    let script = r#"
import grpc, sys
channel = grpc.insecure_channel(sys.argv[1], options=[("grpc.default_authority", "backend.test:8080")])
certify = channel.unary_unary("/io.linkerd.proxy.identity.Identity/Certify")
reply = certify(b"\x0a\x02py", timeout=10)
print(reply.hex())
"#;
    let out =
        tokio::task::spawn_blocking(move || run("python3", &["-c", script, &out.to_string()]))
            .await
            .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hex: String = b"leaf-for-py".iter().map(|b| format!("{b:02x}")).collect();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&hex),
        "grpcio reply: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}
