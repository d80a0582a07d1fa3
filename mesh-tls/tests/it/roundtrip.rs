use crate::support::*;
use mesh_tls::TlsServerLayer;
use mesh_tls::server::ClientAuth;

#[tokio::test]
async fn http1_and_http2_over_mtls_see_the_client_identity() {
    let ca = ca();
    let (web, voting) = (certified(&ca, "web"), certified(&ca, "voting"));
    let server = serve(TlsServerLayer::new(&voting)).await;

    let tls = connect(&web, server.addr, voting.identity(), &[b"http/1.1"])
        .await
        .expect("connect h1");
    assert_eq!(tls.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(tls.server_identity(), voting.identity());
    let mut h1 = Http::h1(tls).await;
    let body = h1.get().await.expect("h1 request");
    assert_eq!(body, format!("hello {} over HTTP/1.1", web.identity()));
    // Keep-alive: a second request on the same connection.
    assert_eq!(h1.get().await.expect("second h1 request"), body);

    let tls = connect(&web, server.addr, voting.identity(), &[b"h2"])
        .await
        .expect("connect h2");
    assert_eq!(tls.alpn_protocol(), Some(&b"h2"[..]));
    let mut h2 = Http::h2(tls).await;
    let body = h2.get().await.expect("h2 request");
    assert_eq!(body, format!("hello {} over HTTP/2.0", web.identity()));
}

#[tokio::test]
async fn optional_client_auth_serves_anonymous_clients() {
    let ca = ca();
    let voting = certified(&ca, "voting");
    let server = serve(TlsServerLayer::new(&voting).client_auth(ClientAuth::Optional)).await;
    raw_handshake(raw_client(&ca, None), server.addr, voting.identity())
        .await
        .expect("anonymous client accepted when auth is optional");
    // A client that does present a certificate is still identified.
    let web = certified(&ca, "web");
    let tls = connect(&web, server.addr, voting.identity(), &[b"h2"])
        .await
        .expect("connect");
    let body = Http::h2(tls).await.get().await.expect("request");
    assert!(
        body.starts_with(&format!("hello {}", web.identity())),
        "{body}"
    );
}

#[tokio::test]
async fn spiffe_identities_are_checked_too() {
    let ca = ca();
    let (web, voting) = (certified(&ca, "web"), certified(&ca, "voting"));
    let server = serve(TlsServerLayer::new(&voting)).await;
    // The CA put the SPIFFE ID beside the DNS name; a client may expect either.
    let spiffe = ca
        .domain()
        .spiffe_id_of(voting.identity())
        .expect("spiffe id");
    let tls = connect(&web, server.addr, &spiffe, &[b"h2"])
        .await
        .expect("connect expecting the SPIFFE ID");
    assert_eq!(tls.server_identity(), &spiffe);
}
