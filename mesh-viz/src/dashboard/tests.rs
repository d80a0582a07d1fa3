//! The dashboard's routes, driven with `oneshot` over a store holding synthetic scrapes.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tokio::time::Instant;
use tower::ServiceExt;

use super::*;
use crate::metrics::{Store, Workload};
use mesh_control::catalog::{Service, ServiceRef, SplitBackend as CatalogBackend};

const NS: &str = "emojivoto";

fn identity(name: &str, ns: &str) -> String {
    format!("{name}.{ns}.serviceaccount.identity.mesh.cluster.local")
}

fn workload(name: &str, ns: &str, port: u16) -> Workload {
    Workload {
        name: name.into(),
        namespace: ns.into(),
        identity: identity(name, ns),
        admin: format!("127.0.0.1:{port}").parse().expect("addr"),
        tap: Some(format!("127.0.0.1:{}", port + 1).parse().expect("addr")),
        inbound: Some(format!("127.0.0.1:{}", port + 2).parse().expect("addr")),
        pid: 1,
    }
}

/// A scrape: inbound responses from `client`, and latency buckets.
fn inbound(client: &str, ok: u64, failed: u64) -> String {
    let l = format!(
        r#"direction="inbound",tls="true",client_id="{}""#,
        identity(client, NS)
    );
    let all = ok + failed;
    format!(
        "proxy_ready 1\n\
         response_total{{{l},classification=\"success\"}} {ok}\n\
         response_total{{{l},classification=\"failure\"}} {failed}\n\
         response_latency_ms_bucket{{direction=\"inbound\",le=\"10.0\"}} {all}\n\
         response_latency_ms_bucket{{direction=\"inbound\",le=\"+Inf\"}} {all}\n"
    )
}

fn outbound(dst: &str, ok: u64) -> String {
    format!(
        "proxy_ready 1\n\
         response_total{{direction=\"outbound\",tls=\"true\",dst_service=\"{dst}\",dst_namespace=\"{NS}\",classification=\"success\"}} {ok}\n"
    )
}

/// web serves vote-bot (3 in 4 succeed) and calls voting; voting serves web. The store's clock
/// stands 20 s after the first scrape.
fn demo_store() -> Store {
    let t0 = Instant::now();
    let now = t0 + Duration::from_secs(20);
    let store = Store::new().with_clock(move || now);
    let (web, voting, bot) = (
        workload("web", NS, 4000),
        workload("voting", NS, 4010),
        workload("vote-bot", NS, 4020),
    );
    store.set_workloads(&[web.clone(), voting.clone(), bot.clone()]);
    for (i, at) in [t0 + Duration::from_secs(10), now].into_iter().enumerate() {
        let n = i as u64 * 20;
        store.ingest_at(
            &web,
            at,
            &format!(
                "{}{}",
                inbound("vote-bot", n * 3 / 4, n / 4),
                outbound("voting", n)
            ),
        );
        store.ingest_at(&voting, at, &inbound("web", n, 0));
        store.ingest_at(&bot, at, &outbound("web", n));
    }
    store
}

async fn get(app: &Router, uri: &str) -> (StatusCode, http::HeaderMap, String) {
    let req = Request::get(uri)
        .header(header::HOST, "127.0.0.1:1234")
        .body(Body::empty())
        .expect("request");
    let rsp = app.clone().oneshot(req).await.expect("response");
    let status = rsp.status();
    let headers = rsp.headers().clone();
    let body = rsp.into_body().collect().await.expect("body").to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn json_of(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test]
async fn an_empty_mesh_shows_how_to_start() {
    let app = Dashboard::new(Store::new()).router();
    let (status, headers, body) = get(&app, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap_or("")
            .starts_with("text/html")
    );
    assert!(body.contains("Nothing is meshed yet"), "{body}");
    assert!(body.contains("mesh run --name web -n shop --port 8080 -- ./web"));
    assert!(body.contains(SCRIPT_PATH) && body.contains(STYLE_PATH));
    assert!(!body.contains("<table class=\"metrics\" id=\"namespaces-table\""));
}

#[tokio::test]
async fn the_overview_lists_namespaces_with_meshed_counts() {
    let app = Dashboard::new(demo_store()).router();
    let (status, _, body) = get(&app, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains(r#"<tr data-namespace="emojivoto">"#),
        "{body}"
    );
    assert!(body.contains(r#"data-meshed="3/3""#), "{body}");
    assert!(!body.contains("Nothing is meshed yet"));
    // The health section: without a control plane, the metrics component alone is fine.
    assert!(
        body.contains(r#"data-component="metrics" data-status="ok""#),
        "{body}"
    );
    assert!(body.contains("scraping 3 proxies, 3 ready"));

    // The fragment the script refreshes is the section alone.
    let (status, _, frag) = get(&app, "/?fragment=namespaces").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        frag.starts_with("<table") && !frag.contains("<html"),
        "{frag}"
    );
    let (status, _, _) = get(&app, "/?fragment=nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_namespace_page_draws_the_graph_and_sorts_the_table() {
    let app = Dashboard::new(demo_store()).router();
    let (status, _, body) = get(&app, "/namespaces/emojivoto").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains(r#"data-src="vote-bot" data-dst="web""#),
        "{body}"
    );
    assert!(
        body.contains(r#"data-src="web" data-dst="voting""#),
        "{body}"
    );
    assert!(body.contains(r#"class="lock""#));
    assert!(body.contains(r#"data-live="/namespaces/emojivoto?fragment=graph""#));
    // Sorted by name by default; by success (lowest first) when asked.
    let order = |html: &str| -> Vec<String> {
        html.split(r#"<tr data-name=""#)
            .skip(1)
            .filter_map(|s| s.split('"').next().map(str::to_string))
            .collect()
    };
    assert_eq!(order(&body), ["vote-bot", "voting", "web"]);
    let (_, _, frag) = get(
        &app,
        "/namespaces/emojivoto?fragment=workloads&sort=success&dir=asc",
    )
    .await;
    assert_eq!(order(&frag), ["web", "vote-bot", "voting"], "{frag}");
    assert!(frag.contains(r#"data-sort="success" data-dir="asc""#));

    let (status, _, body) = get(&app, "/namespaces/nowhere").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("No workloads in namespace nowhere"));
}

#[tokio::test]
async fn the_workload_page_shows_inbound_and_outbound_numbers() {
    let app = Dashboard::new(demo_store()).router();
    let (status, _, body) = get(&app, "/namespaces/emojivoto/workloads/web").await;
    assert_eq!(status, StatusCode::OK);
    let inbound = body
        .split(r#"<dl class="golden" id="inbound">"#)
        .nth(1)
        .unwrap_or_else(|| panic!("no inbound numbers: {body}"));
    assert!(
        inbound.contains(r#"data-metric="success" data-value="0.75">75.00%"#),
        "{inbound}"
    );
    assert!(
        body.contains(r#"data-peer="vote-bot""#),
        "the caller: {body}"
    );
    assert!(body.contains(r#"data-peer="voting""#), "the callee: {body}");
    assert!(body.contains(r#"<svg class="chart""#));
    assert!(body.contains(r#"id="routes-table""#));
    assert!(body.contains(r#"data-top="/api/top?namespace=emojivoto&amp;resource=deploy%2Fweb""#));
    assert!(body.contains(r#"id="tap-form""#));
    assert!(body.contains("mesh tap deploy/web -n emojivoto"));

    // Filters come back in the form and the command line, escaped.
    let (_, _, body) = get(
        &app,
        "/namespaces/emojivoto/workloads/web?path=/api/vote%22%3E&method=post",
    )
    .await;
    assert!(body.contains(r#"value="/api/vote&quot;&gt;""#), "{body}");
    assert!(body.contains("<option selected>POST</option>"));
    assert!(body.contains("--path '/api/vote&quot;&gt;' --method post"));

    let (status, _, body) = get(&app, "/namespaces/emojivoto/workloads/ghost").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("No workload ghost"));
}

#[tokio::test]
async fn names_from_registrations_are_escaped_everywhere() {
    let t0 = Instant::now();
    let store = Store::new().with_clock(move || t0 + Duration::from_secs(1));
    let evil = workload(
        "<img src=x onerror=alert(1)>",
        "ns\"><script>x</script>",
        4000,
    );
    store.set_workloads(std::slice::from_ref(&evil));
    store.ingest_at(&evil, t0, "proxy_ready 1\n");
    let app = Dashboard::new(store).router();
    for uri in [
        "/".to_string(),
        format!("/namespaces/{}", html::segment(&evil.namespace)),
        format!(
            "/namespaces/{}/workloads/{}",
            html::segment(&evil.namespace),
            html::segment(&evil.name)
        ),
    ] {
        let (status, _, body) = get(&app, &uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        assert!(!body.contains("<img"), "{uri}: {body}");
        assert!(!body.contains("<script>x"), "{uri}: {body}");
        assert!(
            body.contains("&lt;img src=x onerror=alert(1)&gt;") || uri == "/",
            "{uri}"
        );
    }
}

#[tokio::test]
async fn splits_show_weights_and_backend_numbers() {
    let mut snap = mesh_control::catalog::Snapshot::default();
    let mut web = Service::new(ServiceRef::new("web", NS));
    web.split = vec![
        CatalogBackend {
            service: ServiceRef::new("voting", NS),
            port: None,
            weight: 3,
        },
        CatalogBackend {
            service: ServiceRef::new("web-v2", NS),
            port: None,
            weight: 1,
        },
    ];
    snap.services.insert(web.name.clone(), web);
    let (_tx, rx) = watch::channel(Arc::new(snap));
    let app = Dashboard::new(demo_store()).catalog(rx).router();
    let (status, _, body) = get(&app, "/api/splits").await;
    assert_eq!(status, StatusCode::OK);
    let v = json_of(&body);
    assert_eq!(v[0]["service"], "web");
    assert_eq!(v[0]["backends"][0]["service"], "voting");
    assert_eq!(v[0]["backends"][0]["share"], 0.75);
    assert_eq!(v[0]["backends"][0]["success"], 1.0);
    assert_eq!(v[0]["backends"][1]["meshed"], "0/0");
    let (_, _, page) = get(&app, "/splits").await;
    assert!(
        page.contains(r#"data-service="web""#) && page.contains("75.0%"),
        "{page}"
    );

    // Without a catalog there is nothing to split.
    let app = Dashboard::new(demo_store()).router();
    let (_, _, body) = get(&app, "/api/splits").await;
    assert_eq!(json_of(&body), serde_json::json!([]));
    let (_, _, page) = get(&app, "/splits").await;
    assert!(page.contains("No traffic splits"));
}

#[tokio::test]
async fn health_reports_components_and_certificates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Arc::new(CertificateAuthority::builder().generate().expect("ca"));
    let id = ca
        .domain()
        .workload("controller", "mesh-system")
        .expect("id");
    // A listener nobody serves: the probe connects, so the gRPC components are up.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let tapper = crate::tap::Tapper::new(ca.clone(), id.clone(), dir.path()).expect("tapper");
    let app = Dashboard::new(demo_store())
        .control_plane(addr, id, ca)
        .tapper(tapper)
        .router();
    let (status, _, body) = get(&app, "/api/health").await;
    assert_eq!(status, StatusCode::OK);
    let h: Health = serde_json::from_str(&body).expect("health");
    let names: Vec<&str> = h.components.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["destination", "identity", "policy", "tap", "metrics"]
    );
    assert!(h.components.iter().all(|c| c.status == Status::Ok), "{h:?}");
    assert_eq!(h.status, Status::Ok);
    let certs: Vec<&str> = h.certificates.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(certs, ["trust anchor", "issuer"]);

    // Nobody listens any more: the gRPC components fail, and say what to do.
    drop(listener);
    let (_, _, body) = get(&app, "/api/health").await;
    let h: Health = serde_json::from_str(&body).expect("health");
    assert_eq!(h.status, Status::Fail);
    assert!(
        h.components[0].detail.contains("restart `mesh control`"),
        "{h:?}"
    );
    let (_, _, page) = get(&app, "/?fragment=health").await;
    assert!(page.contains(r#"data-component="destination" data-status="fail""#));
    assert!(page.contains(r#"data-certificate="issuer" data-status="ok""#));
}

#[tokio::test]
async fn series_and_top_answer_json_errors_too() {
    let app = Dashboard::new(demo_store()).router();
    let (status, _, body) = get(
        &app,
        "/api/series?namespace=emojivoto&name=web&window=20s&step=10s",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v = json_of(&body);
    assert_eq!(v["direction"], "inbound");
    assert_eq!(v["points"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["points"][1]["success"], 0.75);
    let (status, _, body) = get(&app, "/api/series?namespace=emojivoto").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        json_of(&body)["error"]
            .as_str()
            .is_some_and(|e| e.contains("name="))
    );
    let (status, _, _) = get(&app, "/api/series?namespace=emojivoto&name=ghost").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, body) = get(&app, "/api/top?namespace=emojivoto&resource=deploy/web").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(json_of(&body)["error"].is_string());
}

#[tokio::test]
async fn only_get_and_only_local_hosts() {
    let app = Dashboard::new(Store::new()).router();
    for method in ["POST", "PUT", "DELETE"] {
        let req = Request::builder()
            .method(method)
            .uri("/")
            .header(header::HOST, "127.0.0.1")
            .body(Body::empty())
            .expect("request");
        let rsp = app.clone().oneshot(req).await.expect("response");
        assert_eq!(rsp.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }
    let req = Request::get("/")
        .header(header::HOST, "evil.example:8080")
        .body(Body::empty())
        .expect("request");
    let rsp = app.clone().oneshot(req).await.expect("response");
    assert_eq!(rsp.status(), StatusCode::FORBIDDEN);
    assert!(rsp.headers().contains_key(header::CONTENT_SECURITY_POLICY));

    for host in [
        "127.0.0.1:80",
        "localhost:1",
        "[::1]:9",
        "::1",
        "app.localhost",
        "10.1.2.3",
    ] {
        assert!(host_allowed(host), "{host}");
    }
    for host in [
        "evil.example",
        "localhost.evil.example:80",
        "127.0.0.1.nip.io",
    ] {
        assert!(!host_allowed(host), "{host}");
    }
    let (_, headers, _) = get(&app, "/").await;
    assert_eq!(headers[header::CONTENT_SECURITY_POLICY], CSP);
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
}

#[tokio::test]
async fn assets_are_embedded_small_and_cacheable() {
    let app = Dashboard::new(Store::new()).router();
    let (status, headers, js) = get(&app, SCRIPT_PATH).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap_or("")
            .starts_with("text/javascript")
    );
    assert_eq!(js, APP_JS);
    let (status, headers, css) = get(&app, STYLE_PATH).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap_or("")
            .starts_with("text/css")
    );
    assert_eq!(css, STYLE_CSS);
    assert!(
        APP_JS.len() + STYLE_CSS.len() < 64 * 1024,
        "assets grew past 64 KiB"
    );
    // Nothing is fetched from anywhere else.
    for asset in [APP_JS, STYLE_CSS] {
        assert!(!asset.contains("http://") && !asset.contains("https://"));
    }

    let tag = headers[header::ETAG].clone();
    let req = Request::get(STYLE_PATH)
        .header(header::HOST, "127.0.0.1")
        .header(header::IF_NONE_MATCH, tag)
        .body(Body::empty())
        .expect("request");
    let rsp = app.clone().oneshot(req).await.expect("response");
    assert_eq!(rsp.status(), StatusCode::NOT_MODIFIED);
}
