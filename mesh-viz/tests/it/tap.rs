//! Tap through the control plane: the fan-out to real `Tap.Observe` servers over mutual TLS,
//! the merged stream, the ND-JSON API over a socket, and the CLI's rendering and `top` math.
//!
//! Each "proxy" here is what `mesh-proxy` runs for tap (mesh-core's tap registry and layer,
//! the generated `Tap` server, mesh-tls's server layer requiring one client identity), with
//! requests driven through its tap layer in-process, so every event is deterministic.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use linkerd2_proxy_api::tap as api;
use linkerd2_proxy_api::tap::tap_server::{Tap as TapApi, TapServer};
use mesh_core::BoxError;
use mesh_core::tap::{Filter, Tap, TapLayer, TapMeta, TapPeer};
use mesh_tls::server::{ClientAuth, ServerTlsStream};
use mesh_tls::{Credentials, ServiceIdentity, TlsServerLayer};
use mesh_viz::tap::{
    self, Direction, Eos, Event, HttpEvent, ProxyState, ProxyStatus, StreamId, TapLine, TapQuery,
    Tapper, Top,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tower::util::BoxCloneService;
use tower::{Layer, ServiceExt, service_fn};

use crate::support::*;

const NS: &str = "emojivoto";
const CLIENT: &str = "127.0.0.1:53210";

// === A tapping proxy ===

/// The proxy's `Tap.Observe`, as `mesh-proxy`'s tap server implements it.
struct Observe {
    tap: Tap,
}

type Events = Pin<Box<dyn Stream<Item = Result<api::TapEvent, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl TapApi for Observe {
    type ObserveStream = Events;

    async fn observe(
        &self,
        req: tonic::Request<api::ObserveRequest>,
    ) -> Result<tonic::Response<Events>, tonic::Status> {
        let req = req.into_inner();
        let filter = match req.r#match {
            Some(m) => {
                Filter::try_from(m).map_err(|e| tonic::Status::invalid_argument(e.to_string()))?
            }
            None => Filter::all([]),
        };
        let limit = match req.limit {
            0 => None,
            n => Some(n as usize),
        };
        let sub = self.tap.subscribe(filter, limit, 1024);
        Ok(tonic::Response::new(Box::pin(
            sub.map(|ev| Ok(api::TapEvent::from(ev))),
        )))
    }
}

/// A workload's proxy: a tap registry with a fixed id base, its tap server, and a service to
/// drive requests through its tap layer.
struct FakeProxy {
    tap: Tap,
    addr: SocketAddr,
    svc: BoxCloneService<http::Request<()>, http::StatusCode, BoxError>,
    server: JoinHandle<()>,
}

impl Drop for FakeProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

struct ProxySpec<'a> {
    name: &'a str,
    namespace: &'a str,
    base: u32,
    /// The identity its certificate proves (the workload's, unless impersonating).
    presents: Option<&'a str>,
    /// The one identity it lets tap (the control plane's, unless misconfigured).
    allows: Option<ServiceIdentity>,
    meta: TapMeta,
}

impl<'a> ProxySpec<'a> {
    fn new(name: &'a str, meta: TapMeta) -> Self {
        Self {
            name,
            namespace: NS,
            base: 7,
            presents: None,
            allows: None,
            meta,
        }
    }
}

fn identity(h: &Harness, sa: &str, ns: &str) -> ServiceIdentity {
    h.cp.ca().domain().workload(sa, ns).expect("identity")
}

/// What a meshed inbound stack of `name` knows: the app it forwards to and its identity.
fn inbound_meta(h: &Harness, name: &str) -> TapMeta {
    TapMeta::inbound()
        .with_destination_addr("127.0.0.1:8080".parse::<SocketAddr>().expect("addr"))
        .with_destination_identity(identity(h, name, NS).as_str().to_owned())
        .with_tls(true)
}

/// Starts a proxy and records it in the state directory as `mesh run` does.
async fn start_proxy(h: &Harness, spec: ProxySpec<'_>) -> FakeProxy {
    let workload_id = identity(h, spec.name, spec.namespace);
    let cert_id = match spec.presents {
        Some(sa) => identity(h, sa, spec.namespace),
        None => workload_id.clone(),
    };
    let creds = Credentials::generate(cert_id.clone(), h.cp.trust_bundle()).expect("creds");
    creds
        .set_certificate(
            h.cp.ca()
                .sign(creds.csr().expect("csr"), &cert_id)
                .expect("sign"),
        )
        .expect("install");
    let allowed = spec.allows.unwrap_or_else(|| h.cp.identity().clone());

    let tap = Tap::with_base(spec.base);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(serve_tap(listener, creds, tap.clone(), allowed));

    let tapped = TapLayer::new(tap.clone(), spec.meta).layer(service_fn(app));
    let svc = BoxCloneService::new(service_fn(move |mut req: http::Request<()>| {
        let tapped = tapped.clone();
        req.extensions_mut().insert(
            TapPeer::new(CLIENT.parse().expect("addr"))
                .with_identity("vote-bot.emojivoto.serviceaccount.identity.mesh.cluster.local"),
        );
        async move {
            let rsp = tapped.oneshot(req).await?;
            let status = rsp.status();
            rsp.into_body().collect().await?;
            Ok::<_, BoxError>(status)
        }
    }));

    write_workload(h, spec.name, spec.namespace, &workload_id, Some(addr));
    FakeProxy {
        tap,
        addr,
        svc,
        server,
    }
}

fn write_workload(
    h: &Harness,
    name: &str,
    ns: &str,
    id: &ServiceIdentity,
    tap: Option<SocketAddr>,
) {
    let dir = h.cp.state_dir().join("workloads");
    std::fs::create_dir_all(&dir).expect("workloads dir");
    let json = serde_json::json!({
        "name": name,
        "namespace": ns,
        "identity": id.as_str(),
        "admin": "127.0.0.1:1",
        "tap": tap.map(|a| a.to_string()),
        "inbound": null,
        "pid": 1,
    });
    std::fs::write(dir.join(format!("{ns}.{name}.json")), json.to_string()).expect("write");
}

/// The tap server: mutual TLS, only `allowed` may observe.
async fn serve_tap(listener: TcpListener, creds: Credentials, tap: Tap, allowed: ServiceIdentity) {
    let api = TapServer::new(Observe { tap });
    let layer = TlsServerLayer::new(&creds)
        .client_auth(ClientAuth::Required)
        .alpn_protocols(vec![b"h2".to_vec()]);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let api = api.clone();
        let allowed = allowed.clone();
        let conn = layer.layer(service_fn(move |tls: ServerTlsStream<TcpStream>| {
            let api = api.clone();
            let allowed = allowed.clone();
            async move {
                if tls.client_identity() != Some(&allowed) {
                    return Ok::<_, Infallible>(());
                }
                let svc = hyper_util::service::TowerToHyperService::new(api);
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .http2_only()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
                Ok(())
            }
        }));
        tokio::spawn(async move {
            let _ = conn.oneshot(tcp).await;
        });
    }
}

type TestBody = BoxBody<Bytes, Infallible>;

/// The app behind the proxy: `/api/list` 200 with `[]`, `/api/vote*` 500, the voting gRPC
/// method answers with gRPC status 2 (Unknown) in the trailers, anything else 404.
async fn app(req: http::Request<()>) -> Result<http::Response<TestBody>, Infallible> {
    let path = req.uri().path();
    let rsp = if path == "/api/list" {
        http::Response::new(Full::new(Bytes::from_static(b"[]")).boxed())
    } else if path.starts_with("/api/vote") {
        http::Response::builder()
            .status(500)
            .body(Full::new(Bytes::new()).boxed())
            .expect("500")
    } else if path.starts_with("/emojivoto.v1.VotingService/") {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("2"));
        http::Response::builder()
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .body(
                Full::new(Bytes::from_static(b"\0\0\0\0\0"))
                    .with_trailers(async move { Some(Ok(trailers)) })
                    .boxed(),
            )
            .expect("grpc")
    } else {
        http::Response::builder()
            .status(404)
            .body(Full::new(Bytes::new()).boxed())
            .expect("404")
    };
    Ok(rsp)
}

impl FakeProxy {
    async fn send(&self, method: &str, uri: &str) -> u16 {
        let req = http::Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .expect("request");
        within("a request", self.svc.clone().oneshot(req))
            .await
            .expect("the app answers")
            .as_u16()
    }
}

// === Reading the merged stream ===

/// The next line of any stream of tap lines.
async fn next_line<S: Stream + Unpin>(lines: &mut S, what: &str) -> Option<S::Item> {
    within(what, lines.next()).await
}

/// Reads lines until `n` proxies have reported `Tapping` (they have subscribed, so traffic
/// from now on is seen); returns every status line read.
async fn until_tapping(lines: &mut tap::MergedTap, n: usize) -> Vec<ProxyStatus> {
    let mut statuses = Vec::new();
    while statuses
        .iter()
        .filter(|s: &&ProxyStatus| s.state == ProxyState::Tapping)
        .count()
        < n
    {
        match next_line(lines, "proxies to start tapping").await {
            Some(TapLine::Proxy(status)) => statuses.push(status),
            Some(TapLine::Event(e)) => panic!("an event before every proxy tapped: {e:?}"),
            None => panic!("the tap ended before every proxy tapped: {statuses:?}"),
        }
    }
    statuses
}

/// Reads the rest of the stream: its events, and its status lines.
async fn rest(lines: &mut tap::MergedTap) -> (Vec<Event>, Vec<ProxyStatus>) {
    let (mut events, mut statuses) = (Vec::new(), Vec::new());
    while let Some(line) = next_line(lines, "the rest of the tap").await {
        match line {
            TapLine::Event(e) => events.push(e),
            TapLine::Proxy(s) => statuses.push(s),
        }
    }
    (events, statuses)
}

/// Events as `workload kind detail`, per workload in arrival order.
fn summary(events: &[Event]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in events {
        let line = match &e.http {
            HttpEvent::RequestInit {
                id, method, path, ..
            } => format!("req {id} {method} {path}"),
            HttpEvent::ResponseInit { id, status, .. } => format!("rsp {id} {status}"),
            HttpEvent::ResponseEnd {
                id,
                eos,
                response_bytes,
                ..
            } => format!("end {id} {eos:?} {response_bytes}B"),
        };
        out.entry(format!("{}.{}", e.workload, e.namespace))
            .or_default()
            .push(line);
    }
    out
}

fn tapper(h: &Harness) -> Tapper {
    Tapper::for_control_plane(&h.cp)
        .expect("tapper")
        .connect_timeout(Duration::from_secs(5))
}

// === The fan-out ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_fans_out_and_merges_exactly_the_matching_events() {
    let h = Harness::start(None).await;
    let web = start_proxy(&h, ProxySpec::new("web", inbound_meta(&h, "web"))).await;
    let voting = start_proxy(
        &h,
        ProxySpec {
            base: 9,
            ..ProxySpec::new("voting", inbound_meta(&h, "voting"))
        },
    )
    .await;
    // Another namespace: not tapped by `deploy` in emojivoto.
    let other = start_proxy(
        &h,
        ProxySpec {
            namespace: "other",
            ..ProxySpec::new("web", TapMeta::inbound())
        },
    )
    .await;

    let query = TapQuery::new(NS, "deploy").max_rps(0.0).limit(2);
    let mut lines = tapper(&h).observe(&query).expect("observe");
    let statuses = until_tapping(&mut lines, 2).await;
    let mut tapped: Vec<_> = statuses.iter().map(|s| s.workload.as_str()).collect();
    tapped.sort_unstable();
    assert_eq!(tapped, ["voting", "web"]);
    assert_eq!(statuses[0].namespace, NS);
    assert!(
        statuses
            .iter()
            .all(|s| s.addr == Some(web.addr) || s.addr == Some(voting.addr)),
        "{statuses:?}"
    );
    assert_eq!(
        other.tap.subscribers(),
        0,
        "the other namespace is not tapped"
    );

    assert_eq!(
        other
            .send("GET", "http://web-svc.other:8080/api/list")
            .await,
        200
    );
    assert_eq!(
        web.send("GET", "http://web-svc.emojivoto:8080/api/list")
            .await,
        200
    );
    assert_eq!(
        voting
            .send(
                "POST",
                "http://voting-svc.emojivoto:8080/emojivoto.v1.VotingService/VoteDoughnut"
            )
            .await,
        200
    );

    // The limit (2 requests) ends the stream once both have ended.
    let (events, statuses) = rest(&mut lines).await;
    assert_eq!(
        summary(&events),
        BTreeMap::from([
            (
                "voting.emojivoto".to_owned(),
                vec![
                    "req 9:0 POST /emojivoto.v1.VotingService/VoteDoughnut".to_owned(),
                    "rsp 9:0 200".to_owned(),
                    "end 9:0 Some(GrpcStatus(2)) 5B".to_owned(),
                ]
            ),
            (
                "web.emojivoto".to_owned(),
                vec![
                    "req 7:0 GET /api/list".to_owned(),
                    "rsp 7:0 200".to_owned(),
                    "end 7:0 None 2B".to_owned(),
                ]
            ),
        ]),
        "exactly the tapped workloads' requests, each tagged with its workload"
    );
    assert!(
        statuses.iter().all(|s| s.state != ProxyState::Failed),
        "{statuses:?}"
    );

    // What the proxy said travels intact: addresses, identities, TLS.
    let req = events
        .iter()
        .find(|e| e.workload == "web" && matches!(e.http, HttpEvent::RequestInit { .. }))
        .expect("web's request");
    assert_eq!(req.direction, Direction::Inbound);
    assert_eq!(req.source, Some(CLIENT.parse().expect("addr")));
    assert_eq!(
        req.destination,
        Some("127.0.0.1:8080".parse().expect("addr"))
    );
    assert_eq!(req.tls(), "true");
    assert_eq!(
        req.source_meta.get("client_id").map(String::as_str),
        Some("vote-bot.emojivoto.serviceaccount.identity.mesh.cluster.local")
    );
    assert_eq!(
        tap::render::tap_line(req),
        "req id=7:0 proxy=in  src=127.0.0.1:53210 dst=127.0.0.1:8080 tls=true :method=GET \
         :authority=web-svc.emojivoto:8080 :path=/api/list"
    );
    let end = events
        .iter()
        .find(|e| e.workload == "voting" && matches!(e.http, HttpEvent::ResponseEnd { .. }))
        .expect("voting's end");
    let line = tap::render::tap_line(end);
    assert!(
        line.starts_with(
            "end id=9:0 proxy=in  src=127.0.0.1:53210 dst=127.0.0.1:8080 tls=true grpc-status=Unknown duration="
        ) && line.ends_with("µs response-length=5B"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_and_method_filters_reach_the_proxy() {
    let h = Harness::start(None).await;
    let web = start_proxy(&h, ProxySpec::new("web", inbound_meta(&h, "web"))).await;
    let query = TapQuery::new(NS, "deploy/web")
        .path("/api/vote")
        .method("post")
        .limit(1);
    let mut lines = tapper(&h).observe(&query).expect("observe");
    until_tapping(&mut lines, 1).await;

    let base = "http://web-svc.emojivoto:8080";
    assert_eq!(
        web.send("GET", &format!("{base}/api/vote?choice=doughnut"))
            .await,
        500
    );
    assert_eq!(web.send("POST", &format!("{base}/api/list")).await, 200);
    assert_eq!(
        web.send("POST", &format!("{base}/api/vote?choice=doughnut"))
            .await,
        500
    );

    let (events, _) = rest(&mut lines).await;
    assert_eq!(
        summary(&events),
        BTreeMap::from([(
            "web.emojivoto".to_owned(),
            vec![
                "req 7:0 POST /api/vote".to_owned(),
                "rsp 7:0 500".to_owned(),
                "end 7:0 None 0B".to_owned(),
            ]
        )]),
        "only the POST under /api/vote; the proxy numbered only the requests it tapped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_selects_the_services_a_workload_serves() {
    let yaml = "
services:
  - name: voting-svc
    namespace: emojivoto
    ports: [{port: 8080, protocol: grpc}]
    workloads: [voting]
  - name: emoji-svc
    namespace: emojivoto
    ports: [{port: 8080, protocol: grpc}]
    workloads: [emoji]
";
    let h = Harness::start(Some(yaml)).await;
    let outbound = TapMeta::outbound()
        .with_source_identity(identity(&h, "web", NS).as_str().to_owned())
        .with_tls(true);
    let web = start_proxy(&h, ProxySpec::new("web", outbound)).await;
    let query = TapQuery::new(NS, "deploy/web").to("deploy/voting").limit(1);
    let mut lines = tapper(&h).observe(&query).expect("observe");
    until_tapping(&mut lines, 1).await;

    let emoji = "http://emoji-svc.emojivoto:8080/emojivoto.v1.EmojiService/ListAll";
    let vote = "http://voting-svc.emojivoto:8080/emojivoto.v1.VotingService/VoteDoughnut";
    assert_eq!(web.send("POST", emoji).await, 404);
    assert_eq!(web.send("POST", vote).await, 200);

    let (events, _) = rest(&mut lines).await;
    let paths: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.http {
            HttpEvent::RequestInit {
                authority, path, ..
            } => Some(format!("{authority}{path}")),
            _ => None,
        })
        .collect();
    assert_eq!(
        paths,
        ["voting-svc.emojivoto:8080/emojivoto.v1.VotingService/VoteDoughnut"]
    );
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].direction, Direction::Outbound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_that_cannot_be_tapped_are_reported_and_the_others_stream() {
    let h = Harness::start(None).await;
    let web = start_proxy(&h, ProxySpec::new("web", inbound_meta(&h, "web"))).await;
    // Presents another workload's certificate: the control plane must not trust it.
    let _impostor = start_proxy(
        &h,
        ProxySpec {
            presents: Some("impostor"),
            ..ProxySpec::new("voting", TapMeta::inbound())
        },
    )
    .await;
    // Lets only another identity tap: it refuses the control plane.
    let _refuses = start_proxy(
        &h,
        ProxySpec {
            allows: Some(identity(&h, "someone-else", NS)),
            ..ProxySpec::new("emoji", TapMeta::inbound())
        },
    )
    .await;
    // Gone: nothing listens on its tap address any more.
    let gone = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr")
    };
    write_workload(
        &h,
        "vote-bot",
        NS,
        &identity(&h, "vote-bot", NS),
        Some(gone),
    );
    // Started without a tap listener.
    write_workload(&h, "untappable", NS, &identity(&h, "untappable", NS), None);

    let query = TapQuery::new(NS, "deploy").limit(1);
    let mut lines = tapper(&h).observe(&query).expect("observe");
    let mut failed: BTreeMap<String, String> = BTreeMap::new();
    let mut tapping = Vec::new();
    while failed.len() < 4 || tapping.is_empty() {
        match next_line(&mut lines, "every proxy's fate").await {
            Some(TapLine::Proxy(s)) if s.state == ProxyState::Failed => {
                failed.insert(s.workload.clone(), s.error.clone().unwrap_or_default());
            }
            Some(TapLine::Proxy(s)) if s.state == ProxyState::Tapping => tapping.push(s.workload),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(tapping, ["web"]);
    assert_eq!(
        failed.keys().collect::<Vec<_>>(),
        ["emoji", "untappable", "vote-bot", "voting"]
    );
    let voting = &failed["voting"];
    assert!(
        voting.contains("server identity mismatch")
            && voting.contains("voting.emojivoto.serviceaccount")
            && voting.contains("impostor.emojivoto.serviceaccount"),
        "{voting}"
    );
    assert!(
        failed["emoji"].contains("--tap-identity"),
        "{}",
        failed["emoji"]
    );
    assert!(
        failed["vote-bot"].to_lowercase().contains("refused"),
        "{}",
        failed["vote-bot"]
    );
    assert!(failed["untappable"].contains("no tap listener"));

    // The healthy proxy still streams.
    assert_eq!(
        web.send("GET", "http://web-svc.emojivoto:8080/api/list")
            .await,
        200
    );
    let (events, _) = rest(&mut lines).await;
    assert_eq!(summary(&events)["web.emojivoto"].len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_that_name_nothing_fail_at_once() {
    let h = Harness::start(None).await;
    let _web = start_proxy(&h, ProxySpec::new("web", inbound_meta(&h, "web"))).await;
    let t = tapper(&h);
    let err = t
        .observe(&TapQuery::new(NS, "deploy/nope"))
        .expect_err("no such workload");
    assert!(
        matches!(&err, tap::TapError::Query(q) if q.is_not_found()),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("no running workload nope in namespace emojivoto")
    );
    for bad in [
        TapQuery::new(NS, "cronjob/web"),
        TapQuery::new(NS, "svc/web-svc"),
        TapQuery::new(NS, "deploy/web").method("NOT A METHOD"),
        TapQuery::new(NS, "deploy/web").to("deploy"),
        TapQuery::new(NS, "deploy/web").max_rps(-1.0),
    ] {
        let err = t.observe(&bad).expect_err("malformed");
        assert!(
            matches!(&err, tap::TapError::Query(q) if !q.is_not_found()),
            "{bad:?}: {err}"
        );
    }
}

// === The HTTP API ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_streams_ndjson_over_a_socket() {
    let h = Harness::start(None).await;
    let web = start_proxy(&h, ProxySpec::new("web", inbound_meta(&h, "web"))).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let api = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(tap::api::serve(listener, tapper(&h), async move {
        let _ = stopped.await;
    }));

    // The CLI's client: a limited tap ends by itself.
    let query = TapQuery::new(NS, "deploy/web").path("/api").limit(1);
    let mut lines = within("the API", tap::client::stream(api, &query))
        .await
        .expect("stream");
    match within("the first line", lines.next()).await {
        Some(Ok(TapLine::Proxy(s))) => assert_eq!(
            (s.workload.as_str(), s.state, s.addr),
            ("web", ProxyState::Tapping, Some(web.addr))
        ),
        other => panic!("expected web to be tapped, got {other:?}"),
    }
    assert_eq!(
        web.send("GET", "http://web-svc.emojivoto:8080/api/list")
            .await,
        200
    );
    let mut kinds = Vec::new();
    while let Some(line) = within("the events", lines.next()).await {
        match line.expect("a tap line") {
            TapLine::Event(e) => kinds.push(tap::render::tap_line(&e)[..3].to_owned()),
            TapLine::Proxy(s) => assert_ne!(s.state, ProxyState::Failed, "{s}"),
        }
    }
    assert_eq!(kinds, ["req", "rsp", "end"]);

    // Errors come back as what the API said.
    for (query, status, says) in [
        (
            TapQuery::new(NS, "deploy/nope"),
            404,
            "no running workload nope",
        ),
        (
            TapQuery::new(NS, "cronjob/web"),
            400,
            "unknown resource type",
        ),
    ] {
        match within("the API", tap::client::stream(api, &query)).await {
            Err(tap::client::ClientError::Api { status: s, message }) => {
                assert_eq!(s, status);
                assert!(message.contains(says), "{message}");
            }
            other => panic!("expected an API error, got {other:?}"),
        }
    }

    // On the wire: ND-JSON, one object per line.
    let tcp = TcpStream::connect(api).await.expect("connect");
    let (mut send, conn) = within(
        "handshake",
        hyper::client::conn::http1::handshake(TokioIo::new(tcp)),
    )
    .await
    .expect("handshake");
    tokio::spawn(conn);
    let req = http::Request::get(format!(
        "/api/tap?{}",
        TapQuery::new(NS, "deploy/web").to_query_string()
    ))
    .header("host", api.to_string())
    .body(http_body_util::Empty::<Bytes>::new())
    .expect("request");
    let rsp = within("the response head", send.send_request(req))
        .await
        .expect("response");
    assert_eq!(rsp.status(), 200);
    assert_eq!(rsp.headers()["content-type"], "application/x-ndjson");
    let mut body = rsp.into_body();
    let frame = within("the first line", body.frame())
        .await
        .expect("a frame")
        .expect("data");
    let data = frame.into_data().expect("data frame");
    let text = std::str::from_utf8(&data).expect("utf-8");
    assert!(text.ends_with('\n'), "{text:?}");
    let first: serde_json::Value = serde_json::from_str(text.trim_end()).expect("json");
    assert_eq!(first["type"], "proxy");
    assert_eq!(first["workload"], "web");
    assert_eq!(first["state"], "tapping");

    // Shutdown ends open taps, so the server drains.
    let _ = stop.send(());
    while let Some(frame) = within("the stream to end at shutdown", body.frame()).await {
        frame.expect("a clean end");
    }
    within("the server to stop", server)
        .await
        .expect("server task")
        .expect("serve");
}

// === Rendering and top, on fixed events ===

fn event(direction: Direction, http: HttpEvent) -> Event {
    let tls = |side: &str| -> BTreeMap<String, String> {
        let (src, dst) = match direction {
            Direction::Inbound => ("true", "loopback"),
            _ => ("loopback", "true"),
        };
        BTreeMap::from([(
            "tls".to_owned(),
            if side == "src" { src } else { dst }.to_owned(),
        )])
    };
    Event {
        workload: "web".into(),
        namespace: NS.into(),
        direction,
        source: Some("127.0.0.1:53210".parse().expect("addr")),
        destination: Some("127.0.0.1:4143".parse().expect("addr")),
        source_meta: tls("src"),
        destination_meta: tls("dst"),
        route_meta: BTreeMap::new(),
        http,
    }
}

const ID: StreamId = StreamId { base: 7, stream: 8 };

fn req(path: &str) -> HttpEvent {
    HttpEvent::RequestInit {
        id: ID,
        method: "POST".into(),
        scheme: Some("http".into()),
        authority: "voting-svc.emojivoto:8080".into(),
        path: path.into(),
    }
}

fn end(eos: Option<Eos>, since_request_init_ns: u64) -> HttpEvent {
    HttpEvent::ResponseEnd {
        id: ID,
        since_request_init_ns,
        since_response_init_ns: 56_789,
        response_bytes: 5,
        eos,
    }
}

#[test]
fn tap_lines_match_linkerds_byte_for_byte() {
    let out = |http| tap::render::tap_line(&event(Direction::Outbound, http));
    assert_eq!(
        out(req("/emojivoto.v1.VotingService/VoteDoughnut")),
        "req id=7:8 proxy=out src=127.0.0.1:53210 dst=127.0.0.1:4143 tls=true :method=POST \
         :authority=voting-svc.emojivoto:8080 :path=/emojivoto.v1.VotingService/VoteDoughnut"
    );
    assert_eq!(
        out(HttpEvent::ResponseInit {
            id: ID,
            status: 200,
            since_request_init_ns: 1_234_999,
        }),
        "rsp id=7:8 proxy=out src=127.0.0.1:53210 dst=127.0.0.1:4143 tls=true :status=200 latency=1234µs"
    );
    assert_eq!(
        out(end(Some(Eos::GrpcStatus(2)), 0)),
        "end id=7:8 proxy=out src=127.0.0.1:53210 dst=127.0.0.1:4143 tls=true grpc-status=Unknown duration=56µs response-length=5B"
    );
    assert_eq!(
        out(end(Some(Eos::GrpcStatus(0)), 0)),
        "end id=7:8 proxy=out src=127.0.0.1:53210 dst=127.0.0.1:4143 tls=true grpc-status=OK duration=56µs response-length=5B"
    );
    assert_eq!(
        out(end(Some(Eos::ResetError(8)), 0)),
        "end id=7:8 proxy=out src=127.0.0.1:53210 dst=127.0.0.1:4143 tls=true reset-error=8 duration=56µs response-length=5B"
    );
    assert_eq!(
        out(end(None, 0)),
        "end id=7:8 proxy=out src=127.0.0.1:53210 dst=127.0.0.1:4143 tls=true duration=56µs response-length=5B"
    );
    // Inbound: `in ` is padded to align with `out`; tls is the source's.
    let mut inbound = event(Direction::Inbound, req("/api/list"));
    inbound
        .source_meta
        .insert("tls".into(), "no_tls_from_remote".into());
    assert_eq!(
        tap::render::tap_line(&inbound),
        "req id=7:8 proxy=in  src=127.0.0.1:53210 dst=127.0.0.1:4143 tls=no_tls_from_remote \
         :method=POST :authority=voting-svc.emojivoto:8080 :path=/api/list"
    );
    // Unknown addresses print as Linkerd prints an unset one.
    let mut unknown = event(Direction::Outbound, req("/"));
    unknown.destination = None;
    assert!(tap::render::tap_line(&unknown).contains(" dst=:0 tls=true "));
    assert_eq!(tap::render::grpc_code_name(16), "Unauthenticated");
    assert_eq!(tap::render::grpc_code_name(17), "Code(17)");
}

#[test]
fn json_output_has_linkerds_shape() {
    let json = |http| tap::render::json_line(&event(Direction::Outbound, http));
    assert_eq!(
        json(req("/vote")),
        r#"{"source":{"ip":"127.0.0.1","port":53210,"metadata":{"tls":"loopback"}},"destination":{"ip":"127.0.0.1","port":4143,"metadata":{"tls":"true"}},"routeMeta":null,"proxyDirection":"OUTBOUND","requestInitEvent":{"id":{"base":7,"stream":8},"method":"POST","scheme":"HTTP","authority":"voting-svc.emojivoto:8080","path":"/vote","headers":null},"workload":"web","namespace":"emojivoto"}"#
    );
    assert_eq!(
        json(HttpEvent::ResponseInit {
            id: ID,
            status: 503,
            since_request_init_ns: 1_500_000_000,
        }),
        r#"{"source":{"ip":"127.0.0.1","port":53210,"metadata":{"tls":"loopback"}},"destination":{"ip":"127.0.0.1","port":4143,"metadata":{"tls":"true"}},"routeMeta":null,"proxyDirection":"OUTBOUND","responseInitEvent":{"id":{"base":7,"stream":8},"sinceRequestInit":{"seconds":1,"nanos":500000000},"httpStatus":503,"headers":null},"workload":"web","namespace":"emojivoto"}"#
    );
    assert_eq!(
        json(end(Some(Eos::ResetError(2)), 2_000_000_000)),
        r#"{"source":{"ip":"127.0.0.1","port":53210,"metadata":{"tls":"loopback"}},"destination":{"ip":"127.0.0.1","port":4143,"metadata":{"tls":"true"}},"routeMeta":null,"proxyDirection":"OUTBOUND","responseEndEvent":{"id":{"base":7,"stream":8},"sinceRequestInit":{"seconds":2},"sinceResponseInit":{"nanos":56789},"responseBytes":5,"trailers":null,"grpcStatusCode":0,"resetErrorCode":2},"workload":"web","namespace":"emojivoto"}"#
    );
}

#[test]
fn the_wire_format_round_trips() {
    let lines = [
        TapLine::Event(event(Direction::Inbound, req("/x"))),
        TapLine::Event(event(
            Direction::Outbound,
            end(Some(Eos::GrpcStatus(14)), 9),
        )),
        TapLine::Proxy(ProxyStatus {
            workload: "voting".into(),
            namespace: NS.into(),
            addr: Some("127.0.0.1:4190".parse().expect("addr")),
            state: ProxyState::Failed,
            error: Some("connection refused".into()),
        }),
    ];
    for line in lines {
        let json = serde_json::to_string(&line).expect("serialize");
        let back: TapLine = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, line, "{json}");
    }
    let status = r#"{"type":"proxy","workload":"voting","namespace":"emojivoto","addr":"127.0.0.1:4190","state":"failed","error":"connection refused"}"#;
    let TapLine::Proxy(s) = serde_json::from_str(status).expect("a status line") else {
        panic!("not a status")
    };
    assert_eq!(
        s.to_string(),
        "cannot tap emojivoto/voting (127.0.0.1:4190): connection refused"
    );
}

/// Feeds `top` one request: its `req`, `rsp` (unless `status` is 0) and `end`.
fn request(
    top: &mut Top,
    stream: u64,
    direction: Direction,
    path: &str,
    status: u16,
    eos: Option<Eos>,
    latency_us: u64,
) {
    let id = StreamId { base: 1, stream };
    let mut e = event(
        direction,
        HttpEvent::RequestInit {
            id,
            method: "GET".into(),
            scheme: None,
            authority: "voting-svc.emojivoto:8080".into(),
            path: path.into(),
        },
    );
    e.source_meta.insert(
        "client_id".into(),
        "vote-bot.emojivoto.serviceaccount.identity.mesh.cluster.local".into(),
    );
    e.destination_meta.insert(
        "server_id".into(),
        "voting.emojivoto.serviceaccount.identity.mesh.cluster.local".into(),
    );
    top.insert(&e);
    if status != 0 {
        e.http = HttpEvent::ResponseInit {
            id,
            status,
            since_request_init_ns: latency_us * 500,
        };
        top.insert(&e);
    }
    e.http = HttpEvent::ResponseEnd {
        id,
        since_request_init_ns: latency_us * 1_000,
        since_response_init_ns: latency_us * 500,
        response_bytes: 1,
        eos,
    };
    top.insert(&e);
}

#[test]
fn top_aggregates_exactly() {
    use Direction::{Inbound, Outbound};
    let mut top = Top::new();
    // web -> voting, /vote: 4 requests, 1 success; latencies 1.2ms, 850µs, 2.5s, 12.5ms.
    request(
        &mut top,
        0,
        Outbound,
        "/vote",
        200,
        Some(Eos::GrpcStatus(0)),
        1_200,
    );
    request(
        &mut top,
        1,
        Outbound,
        "/vote",
        200,
        Some(Eos::GrpcStatus(14)),
        850,
    );
    request(
        &mut top,
        2,
        Outbound,
        "/vote",
        0,
        Some(Eos::ResetError(7)),
        2_500_000,
    );
    request(&mut top, 3, Outbound, "/vote", 503, None, 12_500);
    // vote-bot -> web, /api/list: 2 requests, both fine (404 is not a failure).
    request(&mut top, 4, Inbound, "/api/list", 200, None, 3_000);
    request(&mut top, 5, Inbound, "/api/list", 404, None, 1_000);
    // Another path seen once, started before the others' ends: ties keep first-seen order.
    request(
        &mut top,
        6,
        Inbound,
        "/api/vote",
        200,
        Some(Eos::GrpcStatus(5)),
        100,
    );
    // A request still in flight is not counted yet.
    top.insert(&event(Outbound, req("/pending")));
    assert_eq!(top.pending(), 1);

    let rows: Vec<[String; 9]> = top.rows().iter().map(|r| r.cells()).collect();
    let expect = |cells: [&str; 9]| cells.map(str::to_owned);
    assert_eq!(
        rows,
        [
            expect([
                "web", "voting", "GET", "/vote", "4", "850µs", "3s", "13ms", "25.00%"
            ]),
            expect([
                "vote-bot",
                "web",
                "GET",
                "/api/list",
                "2",
                "1ms",
                "3ms",
                "1ms",
                "100.00%"
            ]),
            expect([
                "vote-bot",
                "web",
                "GET",
                "/api/vote",
                "1",
                "100µs",
                "100µs",
                "100µs",
                "100.00%"
            ]),
        ]
    );
    assert_eq!(tap::TOP_HEADERS[8], "Success Rate");

    // Success rates are Linkerd's float32 arithmetic: 2 of 3 is 66.67%.
    let mut top = Top::new();
    for (i, eos) in [None, Some(Eos::GrpcStatus(4)), None]
        .into_iter()
        .enumerate()
    {
        request(&mut top, i as u64, Outbound, "/x", 200, eos, 10);
    }
    assert_eq!(top.rows()[0].cells()[8], "66.67%");
    assert_eq!(top.rows()[0].successes, 2);
    assert_eq!(top.rows()[0].failures, 1);

    // A proxy whose stream failed: its unfinished requests are dropped.
    let mut top = Top::new();
    top.insert(&event(Outbound, req("/pending")));
    top.insert_line(&TapLine::Proxy(ProxyStatus {
        workload: "web".into(),
        namespace: NS.into(),
        addr: None,
        state: ProxyState::Failed,
        error: None,
    }));
    assert_eq!(top.pending(), 0);
}
