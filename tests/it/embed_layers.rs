//! The embedding example over real sockets: retries, timeouts and the metrics they leave.

use std::net::SocketAddr;
use std::time::Duration;

use crate::example::Running;
use crate::http::get;

pub fn start() -> (Running, SocketAddr) {
    let mut app = Running::start("embed_layers", &["--listen", "127.0.0.1:0"]);
    let line = app.wait_for_line("listening on http://", Duration::from_secs(30));
    let addr = line
        .rsplit("http://")
        .next()
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (app, addr)
}

fn sample(metrics: &str, key: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {key} in\n{metrics}"))
}

#[test]
fn retries_timeouts_and_their_metrics() {
    let (_app, addr) = start();

    // /flaky fails every other call; through the retrying client the caller sees success.
    let (status, body) = get(addr, "/via-retries");
    assert_eq!((status, body.as_str()), (200, "upstream said: lucky\n"));

    // /slow outlives its 1 s timeout: 504 naming the cause.
    let (status, body) = get(addr, "/slow");
    assert_eq!(status, 504);
    assert_eq!(body, "request timed out after 1s\n");

    let (_, m) = get(addr, "/metrics");
    let out = format!(r#"direction="outbound",authority="{addr}""#);
    // One request as the caller saw it, two attempts on the wire, one retry.
    assert_eq!(sample(&m, &format!("outbound_request_total{{{out}}}")), 1.0);
    assert_eq!(
        sample(&m, &format!("outbound_actual_request_total{{{out}}}")),
        2.0
    );
    assert_eq!(sample(&m, &format!("outbound_retry_total{{{out}}}")), 1.0);
    assert_eq!(
        sample(
            &m,
            &format!(
                r#"outbound_actual_response_total{{{out},status_code="503",classification="failure"}}"#
            )
        ),
        1.0
    );
    let slow = r#"direction="inbound",route="/slow""#;
    assert_eq!(
        sample(
            &m,
            &format!(r#"response_total{{{slow},classification="failure",error="timeout"}}"#)
        ),
        1.0
    );
    assert_eq!(sample(&m, &format!("timeout_total{{{slow}}}")), 1.0);
}
