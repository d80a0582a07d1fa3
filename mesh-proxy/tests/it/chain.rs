//! Requests through outbound proxy -> mTLS -> inbound proxy -> backend.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_http1_and_h2c_through_the_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = ca_dir(dir.path());
    let app = backend().await;
    let inbound = inbound(&ca, "backend", app, &[]).await;
    let dst = destination(
        "backend.test:8080",
        inbound.inbound_addr().expect("inbound"),
        "backend",
    );
    let outbound = outbound(&ca, "web", dir.path(), &[dst], &[]).await;
    let out = outbound.outbound_addr().expect("outbound").to_string();

    let h1 = tokio::task::spawn_blocking({
        let out = out.clone();
        move || {
            run(
                "curl",
                &[
                    "-sS",
                    "--http1.1",
                    "-H",
                    "Host: backend.test:8080",
                    &format!("http://{out}/hello"),
                ],
            )
        }
    })
    .await
    .expect("curl");
    assert!(
        h1.status.success(),
        "{}",
        String::from_utf8_lossy(&h1.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&h1.stdout),
        format!(
            "GET /hello HTTP/1.1 client={} host=backend.test:8080\n",
            identity("web")
        )
    );

    let h2 = tokio::task::spawn_blocking({
        let out = out.clone();
        move || {
            run(
                "curl",
                &[
                    "-sS",
                    "--http2-prior-knowledge",
                    "-H",
                    "Host: backend.test:8080",
                    "-d",
                    "ping",
                    &format!("http://{out}/h2"),
                ],
            )
        }
    })
    .await
    .expect("curl");
    assert!(
        h2.status.success(),
        "{}",
        String::from_utf8_lossy(&h2.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&h2.stdout),
        format!(
            "POST /h2 HTTP/2.0 client={} host=backend.test:8080\nping",
            identity("web")
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_authorities_get_a_503_naming_the_cause() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = ca_dir(dir.path());
    let outbound = outbound(&ca, "web", dir.path(), &[], &[]).await;
    let (status, body) = get(
        outbound.outbound_addr().expect("outbound"),
        "/",
        &[("host", "nowhere.test:80")],
    )
    .await
    .expect("request");
    assert_eq!(status, 503);
    assert!(
        body.contains("no destination named nowhere.test:80"),
        "{body}"
    );
}
