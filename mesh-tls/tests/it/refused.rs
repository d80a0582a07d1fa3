use std::time::{Duration, SystemTime};

use mesh_tls::{HandshakeError, TlsServerLayer, Validity};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::*;

fn handshake_error(e: &mesh_tls::BoxError) -> &HandshakeError {
    e.downcast_ref::<HandshakeError>()
        .unwrap_or_else(|| panic!("not a handshake error: {e}"))
}

/// After a refusal the server must keep serving good clients.
async fn still_serves(server: &TestServer, ca: &mesh_tls::CertificateAuthority) {
    let web = certified(ca, "web");
    let expected = id(ca, "voting");
    let tls = connect(&web, server.addr, &expected, &[b"h2"])
        .await
        .expect("a good client still connects");
    Http::h2(tls).await.get().await.expect("and is served");
}

#[tokio::test]
async fn client_without_certificate() {
    let ca = ca();
    let voting = certified(&ca, "voting");
    let mut server = serve(TlsServerLayer::new(&voting)).await;
    let client_err = raw_handshake(raw_client(&ca, None), server.addr, voting.identity())
        .await
        .expect_err("refused");
    assert!(
        client_err.to_string().contains("CertificateRequired"),
        "{client_err}"
    );
    let err = server.next_error().await;
    let e = handshake_error(&err);
    assert!(e.is_no_client_certificate(), "{e}");
    assert!(e.to_string().contains("presented no certificate"), "{e}");
    still_serves(&server, &ca).await;
}

#[tokio::test]
async fn certificate_from_another_trust_anchor() {
    let (ca, rogue) = (ca(), ca());
    let voting = certified(&ca, "voting");
    let mut server = serve(TlsServerLayer::new(&voting)).await;
    // The rogue CA issues the right name, but nobody trusts it.
    let rogue_leaf = rogue.issue(&id(&ca, "web")).expect("issue");
    let client_err = raw_handshake(
        raw_client(&ca, Some(&rogue_leaf)),
        server.addr,
        voting.identity(),
    )
    .await
    .expect_err("refused");
    assert!(client_err.to_string().contains("alert"), "{client_err}");
    let err = server.next_error().await;
    let e = handshake_error(&err);
    assert!(e.is_untrusted(), "{e}");
    assert!(e.to_string().contains("not trusted"), "{e}");
    assert!(!e.is_expired() && !e.is_no_client_certificate());

    // And the other way round: a client of the rogue mesh does not trust our server.
    let rogue_web = certified(&rogue, "web");
    let err = connect(&rogue_web, server.addr, voting.identity(), &[])
        .await
        .expect_err("our server is not trusted by the rogue client");
    assert!(handshake_error(&err).is_untrusted(), "{err}");
    still_serves(&server, &ca).await;
}

#[tokio::test]
async fn expired_certificate() {
    let ca = ca();
    let voting = certified(&ca, "voting");
    let mut server = serve(TlsServerLayer::new(&voting)).await;
    let day = Duration::from_secs(24 * 3600);
    let now = SystemTime::now();
    let expired = ca
        .issue_with_validity(
            &id(&ca, "web"),
            Validity {
                not_before: now - 2 * day,
                not_after: now - day,
            },
        )
        .expect("issue");
    raw_handshake(
        raw_client(&ca, Some(&expired)),
        server.addr,
        voting.identity(),
    )
    .await
    .expect_err("refused");
    let err = server.next_error().await;
    let e = handshake_error(&err);
    assert!(e.is_expired(), "{e}");
    assert!(e.to_string().contains("expired"), "{e}");
    // Credentials refuse to install an expired certificate in the first place.
    let creds_err = mesh_tls::Credentials::from_certified_key(
        ca.trust_bundle(),
        vec![
            expired.certificate.leaf.clone(),
            expired.certificate.intermediates[0].clone(),
        ],
        &expired.key_der(),
    )
    .expect_err("expired certificate refused");
    assert!(creds_err.to_string().contains("expired"), "{creds_err}");
    still_serves(&server, &ca).await;
}

#[tokio::test]
async fn server_identity_differs_from_the_expected_one() {
    let ca = ca();
    let (web, emoji) = (certified(&ca, "web"), certified(&ca, "emoji"));
    let server = serve(TlsServerLayer::new(&emoji)).await;
    let voting = id(&ca, "voting");
    let err = connect(&web, server.addr, &voting, &[b"h2"])
        .await
        .expect_err("mismatch refused");
    let e = handshake_error(&err);
    assert!(e.is_identity_mismatch(), "{e}");
    let m = e.identity_mismatch().expect("details");
    assert_eq!(m.expected, voting);
    assert!(m.presented.contains(emoji.identity()));
    let text = e.to_string();
    assert!(
        text.contains(voting.as_str()) && text.contains(emoji.identity().as_str()),
        "{text}"
    );
}

#[tokio::test]
async fn csr_for_an_identity_the_caller_did_not_prove() {
    let ca = ca();
    let web = id(&ca, "web");
    let creds = mesh_tls::Credentials::generate(web.clone(), ca.trust_bundle()).expect("generate");
    let voting = id(&ca, "voting");
    let err = ca
        .sign(creds.csr().expect("csr"), &voting)
        .expect_err("refused");
    assert!(err.is_identity_mismatch(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(web.as_str()) && text.contains(voting.as_str()),
        "{text}"
    );
    // Garbage is not a CSR.
    let garbage = rustls_pki_types::CertificateSigningRequestDer::from(vec![0x30, 0x03, 1, 2, 3]);
    let err = ca.sign(&garbage, &web).expect_err("garbage refused");
    assert!(err.to_string().contains("malformed"), "{err}");
    // A certificate issued for someone else's key is not installed.
    let other = mesh_tls::Credentials::generate(web.clone(), ca.trust_bundle()).expect("generate");
    let issued = ca.sign(other.csr().expect("csr"), &web).expect("sign");
    let err = creds.set_certificate(issued).expect_err("key mismatch");
    assert!(
        matches!(err, mesh_tls::CredentialsError::KeyMismatch),
        "{err}"
    );
    assert!(!creds.is_ready());
}

#[tokio::test]
async fn garbage_and_truncated_bytes() {
    let ca = ca();
    let voting = certified(&ca, "voting");
    let mut server = serve(TlsServerLayer::new(&voting)).await;

    let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: plaintext\r\n\r\n")
        .await
        .expect("write");
    let err = server.next_error().await;
    let e = handshake_error(&err);
    assert!(e.is_not_tls(), "{e}");
    assert!(e.to_string().contains("did not speak TLS"), "{e}");

    // The start of a TLS record, then the client goes away.
    let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
    tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])
        .await
        .expect("write");
    drop(tcp);
    let err = server.next_error().await;
    let e = handshake_error(&err);
    assert!(!e.is_not_tls() && !e.is_timeout(), "{e}");
    assert!(e.to_string().contains("TLS handshake failed"), "{e}");

    still_serves(&server, &ca).await;
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_the_handshake_timeout() {
    let ca = ca();
    let voting = certified(&ca, "voting");
    let mut server =
        serve(TlsServerLayer::new(&voting).handshake_timeout(Duration::from_millis(200))).await;
    let _silent = TcpStream::connect(server.addr).await.expect("connect");
    let err = server.next_error().await;
    assert!(handshake_error(&err).is_timeout(), "{err}");
    still_serves(&server, &ca).await;
}

#[tokio::test]
async fn a_server_without_a_certificate_refuses_handshakes() {
    let ca = ca();
    let voting_id = id(&ca, "voting");
    let uncertified =
        mesh_tls::Credentials::generate(voting_id.clone(), ca.trust_bundle()).expect("generate");
    assert!(!uncertified.is_ready());
    let mut server = serve(TlsServerLayer::new(&uncertified)).await;
    let web = certified(&ca, "web");
    connect(&web, server.addr, &voting_id, &[])
        .await
        .expect_err("refused");
    let err = server.next_error().await;
    assert!(handshake_error(&err).is_not_ready(), "{err}");
}
