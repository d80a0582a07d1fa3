use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body::{Body, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use tokio::time::{Instant, timeout};
use tower::{Layer, Service, ServiceExt, service_fn};

use super::*;
use crate::BoxError;
use crate::classify::ErrorReason;

type TestBody = BoxBody<Bytes, Infallible>;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

fn request(method: Method, uri: &str, peer: Option<&str>) -> http::Request<()> {
    let mut req = http::Request::builder()
        .method(method)
        .uri(uri)
        .body(())
        .expect("test request");
    if let Some(peer) = peer {
        req.extensions_mut().insert(TapPeer::new(addr(peer)));
    }
    req
}

/// `/api/*` answers after 10 ms with `hello`; `/grpc/ok` and `/grpc/unavailable` answer gRPC
/// with `abc` and a status in the trailers; `/refused` fails; anything else is a 404.
fn app() -> impl Service<
    http::Request<()>,
    Response = http::Response<TestBody>,
    Error = std::io::Error,
    Future = impl Future<Output = Result<http::Response<TestBody>, std::io::Error>> + Send,
> + Clone
+ Send {
    service_fn(|req: http::Request<()>| async move {
        let path = req.uri().path().to_owned();
        if path.starts_with("/api") {
            tokio::time::sleep(Duration::from_millis(10)).await;
            return Ok(http::Response::new(Full::new(Bytes::from("hello")).boxed()));
        }
        if let Some(name) = path.strip_prefix("/grpc/") {
            let code = if name == "ok" { "0" } else { "14" };
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static(code));
            let body = Full::new(Bytes::from("abc"))
                .with_trailers(async move { Some(Ok(trailers)) })
                .boxed();
            return Ok(http::Response::builder()
                .header(http::header::CONTENT_TYPE, "application/grpc")
                .body(body)
                .expect("grpc response"));
        }
        if path == "/refused" {
            return Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        }
        Ok(http::Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::new()).boxed())
            .expect("404"))
    })
}

fn inbound_meta() -> TapMeta {
    TapMeta::inbound()
        .with_destination_addr(addr("10.0.0.2:8080"))
        .with_destination_label("deployment", "web")
}

/// Sends `req` and reads its body to the end; `Err` if the service failed.
async fn send<S, B>(svc: &S, req: http::Request<()>) -> Result<(bool, Bytes), BoxError>
where
    S: Service<http::Request<()>, Response = http::Response<TapBody<B>>, Error = BoxError> + Clone,
    B: Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let rsp = svc.clone().oneshot(req).await?;
    let tapped = rsp.body().is_tapped();
    let body = rsp.into_body().collect().await?.to_bytes();
    Ok((tapped, body))
}

fn render(event: &TapEvent) -> String {
    let id = event.id();
    match event.kind() {
        TapEventKind::RequestInit => {
            let req = event.request();
            format!(
                "{id} req {} {} {} src={}",
                req.method(),
                req.authority().map_or("-", |a| a.as_str()),
                req.path(),
                req.source_addr()
                    .map_or_else(|| "-".to_owned(), |a| a.to_string()),
            )
        }
        TapEventKind::ResponseInit(init) => {
            format!(
                "{id} rsp {} {:?}",
                init.status.as_u16(),
                init.since_request_init
            )
        }
        TapEventKind::ResponseEnd(end) => format!(
            "{id} end status={:?} grpc={:?} err={:?} bytes={} {:?}/{:?}",
            end.status.map(|s| s.as_u16()),
            end.grpc_status,
            end.error,
            end.response_bytes,
            end.since_request_init,
            end.since_response_init,
        ),
    }
}

fn drain(sub: &mut Subscription) -> Vec<String> {
    std::iter::from_fn(|| sub.try_next())
        .map(|e| render(&e))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn subscribers_see_exactly_the_requests_their_filters_match() {
    let tap = Tap::with_base(7);
    let svc = TapLayer::new(tap.clone(), inbound_meta()).layer(app());

    let mut api = tap.subscribe(Filter::path_prefix("/api"), None, 64);
    let mut voting_posts = tap.subscribe(
        Filter::all([
            Filter::authority("voting.emojivoto:8080"),
            Filter::method(Method::POST),
        ]),
        None,
        64,
    );
    let from_7 = Netmask::new(addr("10.0.0.7:0").ip(), 32).expect("netmask");
    let mut not_api_from_7 = tap.subscribe(
        Filter::all([
            Filter::Source(AddrMatch::Net(from_7)),
            !Filter::path_prefix("/api"),
        ]),
        None,
        64,
    );
    assert_eq!(tap.subscribers(), 3);

    let web = "http://web.emojivoto:8080";
    let voting = "http://voting.emojivoto:8080";
    let (tapped, body) = send(
        &svc,
        request(
            Method::GET,
            &format!("{web}/api/list"),
            Some("10.0.0.7:40000"),
        ),
    )
    .await
    .expect("r0");
    assert!(tapped);
    assert_eq!(body, "hello");
    send(
        &svc,
        request(
            Method::POST,
            &format!("{voting}/grpc/ok"),
            Some("10.0.0.8:40001"),
        ),
    )
    .await
    .expect("r1");
    send(
        &svc,
        request(
            Method::GET,
            &format!("{web}/missing"),
            Some("10.0.0.7:40000"),
        ),
    )
    .await
    .expect("r2");
    // Nobody's: not tapped, and it takes no id.
    let (tapped, _) = send(
        &svc,
        request(
            Method::GET,
            "http://other:80/static",
            Some("10.0.0.9:40002"),
        ),
    )
    .await
    .expect("untapped");
    assert!(!tapped);
    send(
        &svc,
        request(
            Method::POST,
            &format!("{voting}/grpc/unavailable"),
            Some("10.0.0.7:40000"),
        ),
    )
    .await
    .expect("r3");
    send(
        &svc,
        request(
            Method::GET,
            &format!("{web}/api/vote"),
            Some("10.0.0.9:40002"),
        ),
    )
    .await
    .expect("r4");
    let err = send(
        &svc,
        request(
            Method::GET,
            &format!("{web}/refused"),
            Some("10.0.0.7:40000"),
        ),
    )
    .await
    .expect_err("r5 fails");
    assert!(err.is::<std::io::Error>());

    assert_eq!(
        drain(&mut api),
        [
            "7:0 req GET web.emojivoto:8080 /api/list src=10.0.0.7:40000",
            "7:0 rsp 200 10ms",
            "7:0 end status=Some(200) grpc=None err=None bytes=5 10ms/Some(0ns)",
            "7:4 req GET web.emojivoto:8080 /api/vote src=10.0.0.9:40002",
            "7:4 rsp 200 10ms",
            "7:4 end status=Some(200) grpc=None err=None bytes=5 10ms/Some(0ns)",
        ]
    );
    assert_eq!(
        drain(&mut voting_posts),
        [
            "7:1 req POST voting.emojivoto:8080 /grpc/ok src=10.0.0.8:40001",
            "7:1 rsp 200 0ns",
            "7:1 end status=Some(200) grpc=Some(0) err=None bytes=3 0ns/Some(0ns)",
            "7:3 req POST voting.emojivoto:8080 /grpc/unavailable src=10.0.0.7:40000",
            "7:3 rsp 200 0ns",
            "7:3 end status=Some(200) grpc=Some(14) err=None bytes=3 0ns/Some(0ns)",
        ]
    );
    assert_eq!(
        drain(&mut not_api_from_7),
        [
            "7:2 req GET web.emojivoto:8080 /missing src=10.0.0.7:40000",
            "7:2 rsp 404 0ns",
            "7:2 end status=Some(404) grpc=None err=None bytes=0 0ns/Some(0ns)",
            "7:3 req POST voting.emojivoto:8080 /grpc/unavailable src=10.0.0.7:40000",
            "7:3 rsp 200 0ns",
            "7:3 end status=Some(200) grpc=Some(14) err=None bytes=3 0ns/Some(0ns)",
            "7:5 req GET web.emojivoto:8080 /refused src=10.0.0.7:40000",
            "7:5 end status=None grpc=None err=Some(ConnectRefused) bytes=0 0ns/None",
        ]
    );
    for sub in [&api, &voting_posts, &not_api_from_7] {
        assert_eq!(sub.dropped(), 0);
    }
    assert_eq!(
        (
            api.matched(),
            voting_posts.matched(),
            not_api_from_7.matched()
        ),
        (2, 2, 3)
    );
}

#[tokio::test(start_paused = true)]
async fn events_carry_the_target_and_the_peer() {
    let tap = Tap::with_base(1);
    let meta = TapMeta::outbound()
        .with_source_identity("web.emojivoto.serviceaccount.identity.mesh.cluster.local")
        .with_destination_addr(addr("10.1.0.5:8080"))
        .with_destination_identity("voting.emojivoto.serviceaccount.identity.mesh.cluster.local")
        .with_tls(true)
        .with_destination_label("deployment", "voting")
        .with_route_label("route", "vote");
    let svc = TapLayer::new(tap.clone(), meta).layer(app());
    let mut sub = tap.subscribe(Filter::destination_label("deployment", "voting"), None, 8);

    // Without a peer, the target's source; with one, the peer's.
    send(&svc, request(Method::GET, "/missing", None))
        .await
        .expect("no peer");
    let event = sub.try_next().expect("request init");
    let req = event.request();
    assert_eq!(req.direction(), Direction::Outbound);
    assert_eq!(req.source_addr(), None);
    assert_eq!(
        req.source_identity(),
        Some("web.emojivoto.serviceaccount.identity.mesh.cluster.local")
    );
    assert_eq!(req.destination_addr(), Some(addr("10.1.0.5:8080")));
    assert_eq!(
        req.destination_identity(),
        Some("voting.emojivoto.serviceaccount.identity.mesh.cluster.local")
    );
    assert!(req.tls());
    assert_eq!(
        req.route_labels().get("route").map(String::as_str),
        Some("vote")
    );
    assert_eq!((req.scheme(), req.authority()), (None, None));
    drain(&mut sub);

    let mut with_peer = request(Method::GET, "/missing?secret=1", None);
    with_peer.headers_mut().insert(
        http::header::HOST,
        http::HeaderValue::from_static("voting:8080"),
    );
    with_peer.extensions_mut().insert(
        TapPeer::new(addr("127.0.0.1:5555"))
            .with_identity("other.ns.serviceaccount.identity.mesh.cluster.local")
            .with_tls(false),
    );
    send(&svc, with_peer).await.expect("peer");
    let event = sub.try_next().expect("request init");
    let req = event.request();
    assert_eq!(req.source_addr(), Some(addr("127.0.0.1:5555")));
    assert_eq!(
        req.source_identity(),
        Some("other.ns.serviceaccount.identity.mesh.cluster.local")
    );
    assert!(!req.tls());
    assert_eq!(req.authority().map(|a| a.as_str()), Some("voting:8080"));
    assert_eq!(req.path(), "/missing", "the query is not reported");
}

#[tokio::test(start_paused = true)]
async fn a_limit_of_n_requests_is_honoured() {
    let tap = Tap::with_base(0);
    let svc = TapLayer::new(tap.clone(), inbound_meta()).layer(app());
    let mut two = tap.subscribe(Filter::all_requests(), 2, 64);
    let mut all = tap.subscribe(Filter::all_requests(), None, 64);
    assert_eq!(two.limit(), Some(2));

    for _ in 0..5 {
        send(&svc, request(Method::GET, "/missing", None))
            .await
            .expect("request");
    }
    let ids = |events: Vec<String>| -> Vec<String> {
        events
            .iter()
            .map(|e| e.split(' ').take(2).collect::<Vec<_>>().join(" "))
            .collect()
    };
    assert_eq!(
        ids(drain(&mut two)),
        [
            "0:0 req", "0:0 rsp", "0:0 end", "0:1 req", "0:1 rsp", "0:1 end"
        ]
    );
    assert_eq!(two.matched(), 2);
    // Its requests have ended: so has the subscription.
    assert!(
        timeout(Duration::from_secs(1), two.next())
            .await
            .expect("ended")
            .is_none()
    );
    assert_eq!(drain(&mut all).len(), 15);
    assert_eq!(tap.subscribers(), 1);

    // A limit of zero has ended from the start and never registers.
    let mut none = tap.subscribe(Filter::all_requests(), 0, 8);
    assert_eq!(tap.subscribers(), 1);
    assert!(none.next().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_limited_subscription_ends_after_its_requests_in_flight() {
    let tap = Tap::with_base(0);
    let svc = TapLayer::new(tap.clone(), inbound_meta()).layer(app());
    let mut one = tap.subscribe(Filter::all_requests(), 1, 8);

    let rsp = svc
        .clone()
        .oneshot(request(Method::GET, "/api/x", None))
        .await
        .expect("rsp");
    // The limit is reached: no more matching, but the open response still reports.
    assert_eq!(tap.subscribers(), 0);
    let (tapped, _) = send(&svc, request(Method::GET, "/api/y", None))
        .await
        .expect("untapped");
    assert!(!tapped);
    assert_eq!(drain(&mut one).len(), 2);
    rsp.into_body().collect().await.expect("body");
    let end = one.next().await.expect("end");
    assert!(matches!(end.kind(), TapEventKind::ResponseEnd(e) if e.response_bytes == 5));
    assert!(one.next().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_stalled_subscriber_drops_events_and_never_slows_requests() {
    const REQUESTS: u64 = 50;
    let tap = Tap::with_base(0);
    let svc = TapLayer::new(tap.clone(), inbound_meta()).layer(app());
    // Never read, room for one event.
    let stalled = tap.subscribe(Filter::all_requests(), None, 1);
    let mut healthy = tap.subscribe(Filter::all_requests(), None, 1024);

    let start = Instant::now();
    // With the clock paused, anything that waited would let it run to the timeout.
    timeout(Duration::from_secs(1), async {
        for _ in 0..REQUESTS {
            let (tapped, body) = send(&svc, request(Method::GET, "/missing", None))
                .await
                .expect("request");
            assert!(tapped);
            assert!(body.is_empty());
        }
    })
    .await
    .expect("requests complete without waiting for subscribers");
    assert_eq!(Instant::now(), start, "no time passed");

    // Three events per request; the queue kept the first.
    assert_eq!(stalled.dropped(), 3 * REQUESTS - 1);
    assert_eq!(tap.dropped_total(), 3 * REQUESTS - 1);
    assert_eq!(healthy.dropped(), 0);
    assert_eq!(drain(&mut healthy).len() as u64, 3 * REQUESTS);
    let mut stalled = stalled;
    assert_eq!(
        drain(&mut stalled),
        ["0:0 req GET - /missing src=-"],
        "what the stalled subscriber kept"
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_a_subscription_unsubscribes() {
    let tap = Tap::with_base(0);
    let svc = TapLayer::new(tap.clone(), inbound_meta()).layer(app());
    let sub = tap.subscribe(Filter::all_requests(), None, 8);
    let mut other = tap.subscribe(Filter::path("/missing"), None, 64);
    assert_eq!(tap.subscribers(), 2);

    let open = svc
        .clone()
        .oneshot(request(Method::GET, "/api/a", None))
        .await
        .expect("rsp");
    assert!(open.body().is_tapped());
    drop(sub);
    assert_eq!(tap.subscribers(), 1);
    let (tapped, _) = send(&svc, request(Method::GET, "/api/b", None))
        .await
        .expect("b");
    assert!(!tapped, "nobody else wants /api");
    // The open response ends quietly: a closed subscription is not a dropped event.
    open.into_body().collect().await.expect("body");
    assert_eq!(tap.dropped_total(), 0);
    // The other subscription goes on.
    let (tapped, _) = send(&svc, request(Method::GET, "/missing", None))
        .await
        .expect("c");
    assert!(tapped);
    assert_eq!(drain(&mut other).len(), 3);

    drop(other);
    assert_eq!(tap.subscribers(), 0);
    let (tapped, _) = send(&svc, request(Method::GET, "/missing", None))
        .await
        .expect("d");
    assert!(!tapped);

    // A subscription outliving every clone of its tap ends (a huge capacity is clamped).
    let mut orphan = tap.subscribe(Filter::all_requests(), None, usize::MAX);
    drop((tap, svc));
    assert!(orphan.next().await.is_none());
}

/// A body that is nothing but a tag, to see it come back untouched.
#[derive(Debug, PartialEq, Eq)]
struct Tagged(u32);

impl Body for Tagged {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        true
    }
}

#[tokio::test(start_paused = true)]
async fn untapped_responses_pass_the_body_through() {
    let tap = Tap::with_base(0);
    let svc = TapLayer::new(tap.clone(), inbound_meta()).layer(service_fn(
        |_: http::Request<()>| async { Ok::<_, Infallible>(http::Response::new(Tagged(42))) },
    ));
    let untapped = |rsp: http::Response<TapBody<Tagged>>| {
        let body = rsp.into_body();
        assert!(!body.is_tapped());
        body.into_untapped().expect("the inner body")
    };

    // Nobody subscribes.
    let rsp = svc
        .clone()
        .oneshot(request(Method::GET, "/", None))
        .await
        .expect("rsp");
    assert_eq!(untapped(rsp), Tagged(42));

    // Somebody subscribes, to other requests.
    let mut sub = tap.subscribe(Filter::method(Method::POST), 1, 8);
    let rsp = svc
        .clone()
        .oneshot(request(Method::GET, "/", None))
        .await
        .expect("rsp");
    assert_eq!(untapped(rsp), Tagged(42));

    // A match is tapped...
    let rsp = svc
        .clone()
        .oneshot(request(Method::POST, "/", None))
        .await
        .expect("rsp");
    assert!(rsp.body().is_tapped());
    assert!(rsp.into_body().into_untapped().is_err());
    // ...until the limit is reached.
    let rsp = svc
        .clone()
        .oneshot(request(Method::POST, "/", None))
        .await
        .expect("rsp");
    assert_eq!(untapped(rsp), Tagged(42));
    // The tapped body was dropped at its end (never polled): a complete response.
    assert_eq!(
        drain(&mut sub)[2],
        "0:0 end status=Some(200) grpc=None err=None bytes=0 0ns/Some(0ns)"
    );

    // Both kinds forward the inner body's hints.
    let hint = |b: &TapBody<Full<Bytes>>| (b.size_hint().exact(), b.is_end_stream());
    assert_eq!(
        hint(&TapBody::passthrough(Full::new(Bytes::from("hello")))),
        (Some(5), false)
    );
}

#[tokio::test(start_paused = true)]
async fn failures_end_the_request() {
    let tap = Tap::with_base(0);
    let mut sub = tap.subscribe(Filter::all_requests(), None, 64);
    let layer = TapLayer::new(tap.clone(), inbound_meta());

    // The service times out.
    let svc = layer.layer(service_fn(|_: http::Request<()>| async {
        Err::<http::Response<Empty<Bytes>>, _>(tower::timeout::error::Elapsed::new())
    }));
    let err = svc
        .oneshot(request(Method::GET, "/slow", None))
        .await
        .expect_err("timeout");
    assert!(err.is::<tower::timeout::error::Elapsed>());

    // The body fails after two bytes.
    type Frames =
        futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, std::io::Error>>>;
    let svc = layer.layer(service_fn(|_: http::Request<()>| async {
        let frames = vec![
            Ok(Frame::data(Bytes::from("ab"))),
            Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
        ];
        let body: StreamBody<Frames> = StreamBody::new(futures_util::stream::iter(frames));
        Ok::<_, Infallible>(http::Response::new(body))
    }));
    let rsp = svc
        .oneshot(request(Method::GET, "/reset", None))
        .await
        .expect("rsp");
    assert!(rsp.into_body().collect().await.is_err());

    // The caller gives up before the response.
    let svc = layer.layer(service_fn(|_: http::Request<()>| {
        std::future::pending::<Result<http::Response<Empty<Bytes>>, Infallible>>()
    }));
    let waited = timeout(
        Duration::from_millis(5),
        svc.oneshot(request(Method::GET, "/hang", None)),
    )
    .await;
    assert!(waited.is_err());

    // The caller drops the body before its end; a trailers-only gRPC response has its status.
    let svc = layer.layer(service_fn(|req: http::Request<()>| async move {
        let rsp = match req.uri().path() {
            "/abandon" => http::Response::new(Full::new(Bytes::from("unread"))),
            _ => http::Response::builder()
                .header("content-type", "application/grpc")
                .header("grpc-status", "5")
                .body(Full::new(Bytes::new()))
                .expect("trailers-only"),
        };
        Ok::<_, Infallible>(rsp)
    }));
    drop(
        svc.clone()
            .oneshot(request(Method::GET, "/abandon", None))
            .await
            .expect("rsp"),
    );
    send(&svc, request(Method::POST, "/grpc.NotFound", None))
        .await
        .expect("grpc");

    let ends: Vec<String> = drain(&mut sub)
        .into_iter()
        .filter(|e| e.contains(" end "))
        .collect();
    assert_eq!(
        ends,
        [
            "0:0 end status=None grpc=None err=Some(Timeout) bytes=0 0ns/None",
            "0:1 end status=Some(200) grpc=None err=Some(Reset) bytes=2 0ns/Some(0ns)",
            "0:2 end status=None grpc=None err=Some(Reset) bytes=0 5ms/None",
            "0:3 end status=Some(200) grpc=None err=Some(Reset) bytes=0 0ns/Some(0ns)",
            "0:4 end status=Some(200) grpc=Some(5) err=None bytes=0 0ns/Some(0ns)",
        ]
    );
    assert_eq!(ErrorReason::Reset.as_str(), "reset");
}

#[test]
fn filters() {
    let meta = inbound_meta().with_route_label("route", "list");
    let req = |method: Method, uri: &str, peer: Option<&str>| request(method, uri, peer);
    let get = req(
        Method::GET,
        "http://web:8080/api/list",
        Some("10.0.0.7:40000"),
    );

    assert!(Filter::all_requests().matches(&get, &meta));
    assert!(!Filter::any([]).matches(&get, &meta));
    assert!(Filter::any([Filter::path("/nope"), Filter::path("/api/list")]).matches(&get, &meta));
    assert!(!(!Filter::path_prefix("/api")).matches(&get, &meta));
    assert!(Filter::authority("web:8080").matches(&get, &meta));
    assert!(Filter::authority_prefix("web").matches(&get, &meta));
    assert!(Filter::Scheme(http::uri::Scheme::HTTP).matches(&get, &meta));
    assert!(!Filter::Scheme(http::uri::Scheme::HTTPS).matches(&get, &meta));
    assert!(Filter::source_addr(addr("10.0.0.7:40000")).matches(&get, &meta));
    assert!(!Filter::source_addr(addr("10.0.0.7:40001")).matches(&get, &meta));
    assert!(Filter::destination_addr(addr("10.0.0.2:8080")).matches(&get, &meta));
    assert!(
        Filter::Destination(AddrMatch::Ports {
            min: 8000,
            max: 8999
        })
        .matches(&get, &meta)
    );
    assert!(Filter::destination_label("deployment", "web").matches(&get, &meta));
    assert!(!Filter::destination_label("deployment", "voting").matches(&get, &meta));
    assert!(Filter::route_label("route", "list").matches(&get, &meta));

    // The authority of an origin-form request is its Host header; no source, no source match.
    let mut origin = req(Method::GET, "/", None);
    origin.headers_mut().insert(
        http::header::HOST,
        http::HeaderValue::from_static("web:8080"),
    );
    assert!(Filter::authority("web:8080").matches(&origin, &meta));
    assert!(Filter::Scheme(http::uri::Scheme::HTTP).matches(&origin, &meta));
    let anywhere = Netmask::new("0.0.0.0".parse().expect("ip"), 0).expect("/0");
    assert!(!Filter::Source(AddrMatch::Net(anywhere)).matches(&origin, &meta));

    // Networks.
    let net = |s: &str, len| Netmask::new(s.parse().expect("ip"), len).expect("netmask");
    assert!(net("10.0.0.0", 8).contains("10.200.0.1".parse().expect("ip")));
    assert!(!net("10.0.0.0", 8).contains("11.0.0.1".parse().expect("ip")));
    assert!(net("10.0.0.0", 8).contains("::ffff:10.0.0.1".parse().expect("mapped")));
    assert!(net("fd00::", 8).contains("fd12::1".parse().expect("ip")));
    assert!(!net("fd00::", 8).contains("10.0.0.1".parse().expect("ip")));
    assert!(net("0.0.0.0", 0).contains("192.168.1.1".parse().expect("ip")));
    assert_eq!(net("10.0.0.0", 8).to_string(), "10.0.0.0/8");
    let err = Netmask::new("10.0.0.0".parse().expect("ip"), 33).expect_err("too long");
    assert_eq!(
        err.to_string(),
        "invalid tap filter: prefix length 33 is longer than 32 bits of 10.0.0.0"
    );
}

#[test]
fn services_are_send_sync_and_clone() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    fn assert_clone<T: Clone>() {}
    type Svc = TapService<
        tower::util::BoxCloneSyncService<http::Request<()>, http::Response<Full<Bytes>>, BoxError>,
    >;
    assert_send_sync::<Svc>();
    assert_clone::<Svc>();
    assert_send_sync::<TapBody<Full<Bytes>>>();
    assert_send_sync::<ResponseFuture<Pin<Box<dyn Future<Output = ()> + Send + Sync>>>>();
    assert_send_sync::<Tap>();
    assert_send_sync::<Subscription>();
    assert_send_sync::<TapEvent>();
}

/// The layer in a real stack: a hyper HTTP/1 server on loopback, the client's address put on
/// each request as a [`TapPeer`].
#[tokio::test]
async fn taps_a_hyper_server() -> Result<(), BoxError> {
    use hyper::body::Incoming;
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceBuilder;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let server_addr = listener.local_addr()?;
    let tap = Tap::with_base(3);
    let mut sub = tap.subscribe(Filter::path_prefix("/hello"), None, 64);
    let layer = TapLayer::new(
        tap.clone(),
        TapMeta::inbound()
            .with_destination_addr(server_addr)
            .with_destination_label("deployment", "web"),
    );

    let server = tokio::spawn(async move {
        let (io, remote) = listener.accept().await?;
        let svc = ServiceBuilder::new()
            .map_request(move |mut req: http::Request<Incoming>| {
                req.extensions_mut().insert(TapPeer::new(remote));
                req
            })
            .layer(layer)
            .service_fn(|req: http::Request<Incoming>| async move {
                let body = format!("hi from {}", req.uri().path());
                Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(body))))
            });
        hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(io), TowerToHyperService::new(svc))
            .await
            .map_err(BoxError::from)
    });

    let stream = tokio::net::TcpStream::connect(server_addr).await?;
    let client_addr = stream.local_addr()?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let conn = tokio::spawn(conn);
    for path in ["/hello/world", "/other"] {
        let req = http::Request::get(path)
            .header(http::header::HOST, "web.emojivoto:8080")
            .body(Empty::<Bytes>::new())?;
        let rsp = sender.send_request(req).await?;
        assert_eq!(rsp.status(), StatusCode::OK);
        let body = rsp.into_body().collect().await?.to_bytes();
        assert_eq!(body, format!("hi from {path}"));
    }
    drop(sender);

    let mut events = Vec::new();
    for _ in 0..3 {
        let event = timeout(Duration::from_secs(10), sub.next())
            .await?
            .ok_or("ended")?;
        events.push(event);
    }
    let req = events[0].request();
    assert_eq!(req.source_addr(), Some(client_addr));
    assert_eq!(req.destination_addr(), Some(server_addr));
    assert_eq!(
        req.authority().map(|a| a.as_str()),
        Some("web.emojivoto:8080")
    );
    assert_eq!((req.method(), req.path()), (&Method::GET, "/hello/world"));
    assert!(events.iter().all(|e| e.id() == events[0].id()));
    assert!(matches!(events[0].kind(), TapEventKind::RequestInit));
    assert!(
        matches!(events[1].kind(), TapEventKind::ResponseInit(i) if i.status == StatusCode::OK)
    );
    let TapEventKind::ResponseEnd(end) = events[2].kind() else {
        return Err("expected the response end".into());
    };
    assert_eq!(
        (end.response_bytes, end.error, end.grpc_status),
        (20, None, None)
    );
    assert!(sub.try_next().is_none(), "/other is not tapped");

    timeout(Duration::from_secs(10), server).await???;
    timeout(Duration::from_secs(10), conn).await???;
    Ok(())
}

#[cfg(feature = "proxy-api")]
mod proxy_api {
    use linkerd2_proxy_api::http_types;
    use linkerd2_proxy_api::net::TcpAddress;
    use linkerd2_proxy_api::tap::observe_request::r#match::{self as pb, http as pb_http, tcp};
    use linkerd2_proxy_api::tap::tap_event::{self, http::Event as HttpEvent};
    use linkerd2_proxy_api::tap::{self as api, eos};

    use super::*;

    async fn tap_events(meta: TapMeta, reqs: Vec<http::Request<()>>) -> Vec<api::TapEvent> {
        let tap = Tap::with_base(9);
        let mut sub = tap.subscribe(Filter::all_requests(), None, 64);
        let svc = TapLayer::new(tap, meta).layer(app());
        for req in reqs {
            let _ = send(&svc, req).await;
        }
        std::iter::from_fn(|| sub.try_next())
            .map(|e| api::TapEvent::from(&e))
            .collect()
    }

    fn http_event(event: &api::TapEvent) -> &HttpEvent {
        match &event.event {
            Some(tap_event::Event::Http(tap_event::Http { event: Some(e) })) => e,
            other => panic!("not an http event: {other:?}"),
        }
    }

    fn labels(meta: &Option<tap_event::EndpointMeta>) -> Vec<(String, String)> {
        let mut labels: Vec<_> = meta
            .as_ref()
            .map(|m| m.labels.clone().into_iter().collect())
            .unwrap_or_default();
        labels.sort();
        labels
    }

    fn pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn inbound_events_map_to_linkerd_tap_events() {
        let mut req = request(
            Method::POST,
            "http://voting.emojivoto:8080/grpc/unavailable",
            None,
        );
        req.extensions_mut().insert(
            TapPeer::new(addr("10.0.0.7:40000"))
                .with_identity("web.emojivoto.serviceaccount.identity.mesh.cluster.local")
                .with_tls(true),
        );
        let events = tap_events(inbound_meta(), vec![req]).await;
        assert_eq!(events.len(), 3);
        for e in &events {
            assert_eq!(
                e.proxy_direction,
                i32::from(tap_event::ProxyDirection::Inbound)
            );
            assert_eq!(e.source, Some(TcpAddress::from(addr("10.0.0.7:40000"))));
            assert_eq!(e.destination, Some(TcpAddress::from(addr("10.0.0.2:8080"))));
            assert_eq!(
                labels(&e.source_meta),
                pairs(&[
                    (
                        "client_id",
                        "web.emojivoto.serviceaccount.identity.mesh.cluster.local"
                    ),
                    ("tls", "true"),
                ])
            );
            assert_eq!(
                labels(&e.destination_meta),
                pairs(&[("deployment", "web"), ("tls", "loopback")])
            );
            assert_eq!(e.route_meta, None);
        }
        let id = Some(tap_event::http::StreamId { base: 9, stream: 0 });
        let HttpEvent::RequestInit(init) = http_event(&events[0]) else {
            panic!("request init")
        };
        assert_eq!(init.id, id);
        assert_eq!(
            init.method,
            Some(http_types::HttpMethod::from(Method::POST))
        );
        assert_eq!(init.scheme, Some(http_types::Scheme::from("http")));
        assert_eq!(
            (init.authority.as_str(), init.path.as_str()),
            ("voting.emojivoto:8080", "/grpc/unavailable")
        );
        assert_eq!(init.headers, None);
        let HttpEvent::ResponseInit(rsp) = http_event(&events[1]) else {
            panic!("response init")
        };
        assert_eq!((rsp.id, rsp.http_status), (id, 200));
        assert_eq!(rsp.since_request_init, Some(Default::default()));
        let HttpEvent::ResponseEnd(end) = http_event(&events[2]) else {
            panic!("response end")
        };
        assert_eq!((end.id, end.response_bytes), (id, 3));
        assert_eq!(
            end.eos,
            Some(api::Eos {
                end: Some(eos::End::GrpcStatusCode(14))
            })
        );
        assert!(end.since_response_init.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn outbound_events_and_errors_map_to_linkerd_tap_events() {
        let meta = TapMeta::outbound()
            .with_destination_addr(addr("10.1.0.5:8080"))
            .with_destination_identity("voting.ns.serviceaccount.identity.mesh.cluster.local")
            .with_route_label("route", "vote");
        let events = tap_events(
            meta.clone().with_tls(true),
            vec![
                request(Method::GET, "/api/x", None),
                request(Method::GET, "/refused", None),
            ],
        )
        .await;
        assert_eq!(events.len(), 5);
        let e = &events[0];
        assert_eq!(
            e.proxy_direction,
            i32::from(tap_event::ProxyDirection::Outbound)
        );
        assert_eq!(e.source, None);
        assert_eq!(labels(&e.source_meta), pairs(&[("tls", "loopback")]));
        assert_eq!(
            labels(&e.destination_meta),
            pairs(&[
                (
                    "server_id",
                    "voting.ns.serviceaccount.identity.mesh.cluster.local"
                ),
                ("tls", "true"),
            ])
        );
        assert_eq!(
            e.route_meta
                .as_ref()
                .map(|m| m.labels.get("route").cloned()),
            Some(Some("vote".to_owned()))
        );
        let HttpEvent::RequestInit(init) = http_event(e) else {
            panic!("request init")
        };
        assert_eq!((init.scheme.as_ref(), init.authority.as_str()), (None, ""));
        let HttpEvent::ResponseInit(rsp) = http_event(&events[1]) else {
            panic!("response init")
        };
        assert_eq!(
            rsp.since_request_init,
            Duration::from_millis(10).try_into().ok()
        );
        let HttpEvent::ResponseEnd(end) = http_event(&events[2]) else {
            panic!("response end")
        };
        assert_eq!(end.eos, Some(api::Eos { end: None }));
        let HttpEvent::ResponseEnd(end) = http_event(&events[4]) else {
            panic!("error end")
        };
        assert_eq!(
            end.eos,
            Some(api::Eos {
                end: Some(eos::End::ResetErrorCode(7))
            })
        );
        assert_eq!(end.since_response_init, None);

        let plain = tap_events(meta, vec![request(Method::GET, "/missing", None)]).await;
        assert_eq!(
            labels(&plain[0].destination_meta),
            pairs(&[
                (
                    "server_id",
                    "voting.ns.serviceaccount.identity.mesh.cluster.local"
                ),
                ("tls", "not_provided_by_service_discovery"),
            ])
        );
    }

    fn m(m: pb::Match) -> api::observe_request::Match {
        api::observe_request::Match { r#match: Some(m) }
    }

    fn http(m: pb_http::Match) -> api::observe_request::Match {
        self::m(pb::Match::Http(pb::Http { r#match: Some(m) }))
    }

    fn prefix(s: &str) -> pb_http::StringMatch {
        pb_http::StringMatch {
            r#match: Some(pb_http::string_match::Match::Prefix(s.to_owned())),
        }
    }

    fn netmask(ip: std::net::IpAddr, mask: u32) -> api::observe_request::Match {
        m(pb::Match::Source(pb::Tcp {
            r#match: Some(tcp::Match::Netmask(tcp::Netmask {
                ip: Some(ip.into()),
                mask,
            })),
        }))
    }

    fn ports(min: u32, max: u32) -> api::observe_request::Match {
        m(pb::Match::Destination(pb::Tcp {
            r#match: Some(tcp::Match::Ports(tcp::PortRange { min, max })),
        }))
    }

    #[test]
    fn observe_matches_map_to_filters() {
        // GET or POST under /api from 10.0.0.0/8 to port 8080, not for deployment=voting,
        // with an empty entry that is skipped as Linkerd skips it.
        let observe = m(pb::Match::All(pb::Seq {
            matches: vec![
                http(pb_http::Match::Path(prefix("/api"))),
                m(pb::Match::Any(pb::Seq {
                    matches: vec![
                        http(pb_http::Match::Method(Method::GET.into())),
                        http(pb_http::Match::Method(Method::POST.into())),
                    ],
                })),
                netmask("10.0.0.0".parse().expect("ip"), 8),
                ports(8080, 0),
                m(pb::Match::Not(Box::new(m(pb::Match::DestinationLabel(
                    pb::Label {
                        key: "deployment".into(),
                        value: "voting".into(),
                    },
                ))))),
                api::observe_request::Match { r#match: None },
            ],
        }));
        let filter = Filter::try_from(observe).expect("valid");
        let expected = Filter::all([
            Filter::path_prefix("/api"),
            Filter::any([Filter::method(Method::GET), Filter::method(Method::POST)]),
            Filter::Source(AddrMatch::Net(
                Netmask::new("10.0.0.0".parse().expect("ip"), 8).expect("net"),
            )),
            Filter::Destination(AddrMatch::port(8080)),
            !Filter::destination_label("deployment", "voting"),
        ]);
        assert_eq!(filter, expected);
        let meta = inbound_meta();
        assert!(filter.matches(&request(Method::GET, "/api/x", Some("10.1.2.3:1")), &meta));
        assert!(!filter.matches(&request(Method::PUT, "/api/x", Some("10.1.2.3:1")), &meta));
        assert!(!filter.matches(
            &request(Method::GET, "/api/x", Some("192.168.0.1:1")),
            &meta
        ));

        let scheme = http(pb_http::Match::Scheme(http_types::Scheme::from("https")));
        assert_eq!(
            Filter::try_from(scheme),
            Ok(Filter::Scheme(http::uri::Scheme::HTTPS))
        );
        let authority = http(pb_http::Match::Authority(pb_http::StringMatch {
            r#match: Some(pb_http::string_match::Match::Exact("web:8080".into())),
        }));
        assert_eq!(
            Filter::try_from(authority),
            Ok(Filter::authority("web:8080"))
        );
        let route = m(pb::Match::RouteLabel(pb::Label {
            key: "route".into(),
            value: "list".into(),
        }));
        assert_eq!(
            Filter::try_from(route),
            Ok(Filter::route_label("route", "list"))
        );
    }

    #[test]
    fn invalid_observe_matches_say_what_is_wrong() {
        let invalid =
            |m: api::observe_request::Match| Filter::try_from(m).expect_err("invalid").to_string();
        assert_eq!(
            invalid(api::observe_request::Match { r#match: None }),
            "invalid tap filter: a match has no `match` set"
        );
        assert!(
            invalid(netmask("10.0.0.0".parse().expect("ip"), 33)).contains("longer than 32 bits")
        );
        assert!(invalid(netmask("10.0.0.0".parse().expect("ip"), 0)).contains("netmask /0"));
        assert!(invalid(ports(70000, 0)).contains("port 70000"));
        assert!(invalid(ports(0, 0)).contains("port 0"));
        assert!(invalid(ports(9000, 8000)).contains("9000-8000 is empty"));
        assert!(
            invalid(m(pb::Match::DestinationLabel(pb::Label::default())))
                .contains("key and a value")
        );
        assert!(
            invalid(http(pb_http::Match::Path(pb_http::StringMatch {
                r#match: None
            })))
            .contains("http.path")
        );
        let bad_method = http_types::HttpMethod {
            r#type: Some(http_types::http_method::Type::Registered(42)),
        };
        assert!(invalid(http(pb_http::Match::Method(bad_method))).contains("http.method"));
        assert!(invalid(m(pb::Match::Http(pb::Http { r#match: None }))).contains("`http` has no"));
        assert!(invalid(m(pb::Match::Source(pb::Tcp { r#match: None }))).contains("`source`"));
    }
}
