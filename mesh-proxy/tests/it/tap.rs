//! Linkerd's Tap/Observe on the proxy's tap server, over mTLS, for the tap identity only.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use linkerd2_proxy_api::http_types::HttpMethod;
use linkerd2_proxy_api::tap::observe_request::Match;
use linkerd2_proxy_api::tap::observe_request::r#match::{self, Match as Kind};
use linkerd2_proxy_api::tap::tap_client::TapClient;
use linkerd2_proxy_api::tap::{ObserveRequest, tap_event};
use mesh_tls::client::ServerIdentity;
use mesh_tls::{CertificateAuthority, Credentials, TlsClientLayer};
use tokio::net::TcpStream;
use tower::{Layer, ServiceExt};

use crate::support::*;

/// A tonic transport over one hyper HTTP/2 connection.
#[derive(Clone)]
struct H2(hyper::client::conn::http2::SendRequest<tonic::body::Body>);

impl tower::Service<http::Request<tonic::body::Body>> for H2 {
    type Response = http::Response<Incoming>;
    type Error = hyper::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, hyper::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let fut = self.0.send_request(req);
        Box::pin(fut)
    }
}

async fn tap_client(
    ca: &std::path::Path,
    as_sa: &str,
    tap: SocketAddr,
    server_sa: &str,
) -> Result<TapClient<H2>, mesh_core::BoxError> {
    let ca = CertificateAuthority::builder().load(ca)?;
    let id: mesh_tls::ServiceIdentity = identity(as_sa).parse()?;
    let creds = Credentials::generate(id.clone(), ca.trust_bundle())?;
    creds.set_certificate(ca.sign(creds.csr()?, &id)?)?;
    let connect = tower::service_fn(move |_: ServerIdentity| TcpStream::connect(tap));
    let tls = TlsClientLayer::new(&creds)
        .alpn_protocols(vec![b"h2".to_vec()])
        .layer(connect)
        .oneshot(ServerIdentity(identity(server_sa).parse()?))
        .await?;
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    Ok(TapClient::with_origin(H2(send), "http://tap".parse()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tap_identity_observes_matching_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = ca_dir(dir.path());
    let app = backend().await;
    let inbound = inbound(
        &ca,
        "backend",
        app,
        &[
            "--tap-listen",
            "127.0.0.1:0",
            "--tap-identity",
            &identity("tap"),
        ],
    )
    .await;
    let dst = destination(
        "backend.test:8080",
        inbound.inbound_addr().expect("inbound"),
        "backend",
    );
    let outbound = outbound(&ca, "web", dir.path(), &[dst], &[]).await;
    let tap_addr = inbound.tap_addr().expect("tap listener");

    let mut tap = tap_client(&ca, "tap", tap_addr, "backend")
        .await
        .expect("tap client");
    let observe = ObserveRequest {
        limit: 2,
        r#match: Some(Match {
            r#match: Some(Kind::All(r#match::Seq {
                matches: vec![
                    Match {
                        r#match: Some(Kind::Http(r#match::Http {
                            r#match: Some(r#match::http::Match::Path(r#match::http::StringMatch {
                                r#match: Some(r#match::http::string_match::Match::Prefix(
                                    "/tapped".into(),
                                )),
                            })),
                        })),
                    },
                    Match {
                        r#match: Some(Kind::Http(r#match::Http {
                            r#match: Some(r#match::http::Match::Method(HttpMethod::from(
                                http::Method::GET,
                            ))),
                        })),
                    },
                ],
            })),
        }),
        extract: None,
    };
    let mut events = tap.observe(observe).await.expect("observe").into_inner();

    let out = outbound.outbound_addr().expect("outbound");
    for path in ["/tapped/1", "/other", "/tapped/2", "/tapped/3"] {
        let (status, _) = get(out, path, &[("host", "backend.test:8080")])
            .await
            .expect("request");
        assert_eq!(status, 200);
    }

    let mut seen = Vec::new();
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(10), events.message())
        .await
        .expect("tap event in time")
        .expect("tap stream")
    {
        let http = ev.event.and_then(|e| match e {
            linkerd2_proxy_api::tap::tap_event::Event::Http(h) => h.event,
        });
        match http {
            Some(tap_event::http::Event::RequestInit(init)) => {
                let path = init.path.clone();
                assert_eq!(init.authority, "backend.test:8080");
                seen.push(format!("req {path}"));
            }
            Some(tap_event::http::Event::ResponseInit(r)) => {
                seen.push(format!("rsp {}", r.http_status))
            }
            Some(tap_event::http::Event::ResponseEnd(_)) => seen.push("end".into()),
            None => panic!("empty event"),
        }
    }
    assert_eq!(
        seen,
        [
            "req /tapped/1",
            "rsp 200",
            "end",
            "req /tapped/2",
            "rsp 200",
            "end"
        ],
        "exactly the matching requests, up to the limit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_identities_may_not_tap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = ca_dir(dir.path());
    let app = backend().await;
    let inbound = inbound(
        &ca,
        "backend",
        app,
        &[
            "--tap-listen",
            "127.0.0.1:0",
            "--tap-identity",
            &identity("tap"),
        ],
    )
    .await;
    let tap_addr = inbound.tap_addr().expect("tap listener");
    let result = async {
        let mut tap = tap_client(&ca, "web", tap_addr, "backend").await?;
        tap.observe(ObserveRequest::default()).await?;
        Ok::<_, mesh_core::BoxError>(())
    }
    .await;
    assert!(result.is_err(), "a workload identity was allowed to tap");
    let (_, metrics) = get(inbound.admin_addr(), "/metrics", &[])
        .await
        .expect("metrics");
    assert!(
        metrics.contains(r#"proxy_errors_total{direction="tap",reason="unauthorized"} 1"#),
        "{metrics}"
    );
}
