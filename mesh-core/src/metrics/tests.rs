use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::{Layer, ServiceExt, service_fn};

use super::*;
use crate::timeout::TimeoutLayer;

/// Parses OpenMetrics text into `name{labels}` -> value, checking its shape as it goes.
pub(crate) fn parse(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.starts_with('#') {
            assert!(
                line.starts_with("# HELP ")
                    || line.starts_with("# TYPE ")
                    || line.starts_with("# UNIT ")
                    || line == "# EOF",
                "bad comment line {line:?}"
            );
            if line == "# EOF" {
                assert!(lines.peek().is_none(), "text after # EOF");
            }
            continue;
        }
        let (key, value) = line.rsplit_once(' ').expect("sample line has a value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        assert!(
            out.insert(key.to_string(), value).is_none(),
            "duplicate sample {key}"
        );
    }
    assert!(text.ends_with("# EOF\n"), "missing # EOF");
    out
}

fn labels() -> Labels {
    Labels::new()
        .with("direction", "inbound")
        .with("authority", "web:80")
}

#[tokio::test]
async fn counts_requests_responses_and_latency_exactly() {
    let mut registry = Registry::default();
    let http = HttpMetrics::register(&mut registry);
    let svc = http
        .layer(labels())
        .layer(service_fn(|req: http::Request<()>| async move {
            let status: u16 = req.uri().path()[1..].parse().unwrap();
            let mut rsp = http::Response::new(Full::new(Bytes::from_static(b"hello")));
            *rsp.status_mut() = http::StatusCode::from_u16(status).unwrap();
            Ok::<_, Infallible>(rsp)
        }));
    for path in ["/200", "/200", "/404", "/503"] {
        let rsp = svc
            .clone()
            .oneshot(http::Request::get(path).body(()).unwrap())
            .await
            .unwrap();
        rsp.into_body().collect().await.unwrap();
    }
    let m = parse(&encode(&registry));
    let l = r#"direction="inbound",authority="web:80""#;
    assert_eq!(m[&format!("request_total{{{l}}}")], 4.0);
    assert_eq!(
        m[&format!(r#"response_total{{{l},status_code="200",classification="success"}}"#)],
        2.0
    );
    assert_eq!(
        m[&format!(r#"response_total{{{l},status_code="404",classification="success"}}"#)],
        1.0
    );
    assert_eq!(
        m[&format!(r#"response_total{{{l},status_code="503",classification="failure"}}"#)],
        1.0
    );
    assert_eq!(
        m[&format!(r#"response_latency_ms_count{{{l},status_code="200"}}"#)],
        2.0
    );
    assert_eq!(
        m[&format!(r#"response_latency_ms_bucket{{le="+Inf",{l},status_code="200"}}"#)],
        2.0
    );
    assert_eq!(m[&format!("timeout_total{{{l}}}")], 0.0);
}

#[tokio::test]
async fn grpc_status_in_trailers_classifies_at_the_end_of_the_stream() {
    let mut registry = Registry::default();
    let http = HttpMetrics::register(&mut registry);
    let svc = http
        .layer(labels())
        .layer(service_fn(|req: http::Request<()>| async move {
            let code = req.uri().path()[1..].to_string();
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", code.parse().unwrap());
            let frames = vec![
                Ok::<_, Infallible>(http_body::Frame::data(Bytes::from_static(b"\0\0\0\0\0"))),
                Ok(http_body::Frame::trailers(trailers)),
            ];
            let mut rsp = http::Response::new(StreamBody::new(futures_util::stream::iter(frames)));
            rsp.headers_mut()
                .insert("content-type", "application/grpc".parse().unwrap());
            Ok::<_, Infallible>(rsp)
        }));
    let rsp = svc
        .clone()
        .oneshot(http::Request::get("/0").body(()).unwrap())
        .await
        .unwrap();
    // Not counted until the stream ends.
    assert!(!encode(&registry).contains("response_total{"));
    rsp.into_body().collect().await.unwrap();
    let rsp = svc
        .oneshot(http::Request::get("/14").body(()).unwrap())
        .await
        .unwrap();
    rsp.into_body().collect().await.unwrap();
    let m = parse(&encode(&registry));
    let l = r#"direction="inbound",authority="web:80""#;
    assert_eq!(
        m[&format!(
            r#"response_total{{{l},status_code="200",classification="success",grpc_status="0"}}"#
        )],
        1.0
    );
    assert_eq!(
        m[&format!(
            r#"response_total{{{l},status_code="200",classification="failure",grpc_status="14"}}"#
        )],
        1.0
    );
}

#[tokio::test(start_paused = true)]
async fn errors_and_timeouts_are_counted_with_their_reason() {
    let mut registry = Registry::default();
    let http = HttpMetrics::register(&mut registry);
    let slow = service_fn(|_req: http::Request<()>| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new())))
    });
    let svc = http
        .layer(labels())
        .layer(TimeoutLayer::new(Duration::from_secs(1)).layer(slow));
    svc.oneshot(http::Request::new(())).await.unwrap_err();
    let m = parse(&encode(&registry));
    let l = r#"direction="inbound",authority="web:80""#;
    assert_eq!(
        m[&format!(r#"response_total{{{l},classification="failure",error="timeout"}}"#)],
        1.0
    );
    assert_eq!(m[&format!("timeout_total{{{l}}}")], 1.0);
    // Latency of the failed request lands in the bucket of its 1 s.
    assert_eq!(
        m[&format!(r#"response_latency_ms_bucket{{le="1000.0",{l}}}"#)],
        1.0
    );
    assert_eq!(
        m[&format!(r#"response_latency_ms_bucket{{le="500.0",{l}}}"#)],
        0.0
    );
}

#[tokio::test]
async fn tcp_sensor_counts_connections_and_bytes() {
    let mut registry = Registry::default();
    let tcp = TcpMetrics::register(&mut registry);
    let sensor = tcp.sensor(&labels());
    let (a, mut b) = tokio::io::duplex(64);
    let mut a = sensor.wrap(a);
    a.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 5];
    b.read_exact(&mut buf).await.unwrap();
    b.write_all(b"hi!").await.unwrap();
    let mut buf = [0u8; 3];
    a.read_exact(&mut buf).await.unwrap();
    let m = parse(&encode(&registry));
    let l = r#"direction="inbound",authority="web:80""#;
    assert_eq!(m[&format!("tcp_open_total{{{l}}}")], 1.0);
    assert_eq!(m[&format!("tcp_open_connections{{{l}}}")], 1.0);
    assert_eq!(m[&format!("tcp_write_bytes_total{{{l}}}")], 5.0);
    assert_eq!(m[&format!("tcp_read_bytes_total{{{l}}}")], 3.0);
    drop(a);
    let m = parse(&encode(&registry));
    assert_eq!(m[&format!("tcp_open_connections{{{l}}}")], 0.0);
    assert_eq!(
        m[&format!(r#"tcp_close_total{{{l},classification="success"}}"#)],
        1.0
    );
}

#[test]
fn hostile_label_values_do_not_break_the_exposition() {
    let mut registry = Registry::default();
    let http = HttpMetrics::register(&mut registry);
    let _layer = http.layer(Labels::new().with("authority", "evil\"}\n# EOF\\"));
    let text = encode(&registry);
    parse(&text);
    assert!(text.contains(r#"authority="evil_}_# EOF_""#), "{text}");
}
