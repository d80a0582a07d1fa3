use mesh_tls::{CertificateAuthority, Credentials, TlsServerLayer, TrustBundle};

use crate::support::*;

#[tokio::test]
async fn refresh_keeps_old_connections_and_new_ones_see_the_new_certificate() {
    let ca = ca();
    let (web, voting) = (certified(&ca, "web"), certified(&ca, "voting"));
    let server = serve(TlsServerLayer::new(&voting)).await;

    let before = voting.leaf_certificate().expect("certified");
    let tls = connect(&web, server.addr, voting.identity(), &[b"h2"])
        .await
        .expect("connect");
    assert_eq!(tls.server_certificate(), Some(&before));
    let mut old = Http::h2(tls).await;
    old.get().await.expect("request before refresh");

    // Refresh: a new certificate for the same key.
    let issued = ca
        .sign(voting.csr().expect("csr"), voting.identity())
        .expect("sign");
    voting.set_certificate(issued).expect("install");
    let after = voting.leaf_certificate().expect("certified");
    assert_ne!(before, after);

    // The connection opened before the refresh keeps working.
    old.get()
        .await
        .expect("request on the old connection after refresh");
    // A new connection presents the new certificate.
    let tls = connect(&web, server.addr, voting.identity(), &[b"h2"])
        .await
        .expect("connect");
    assert_eq!(tls.server_certificate(), Some(&after));
    Http::h2(tls)
        .await
        .get()
        .await
        .expect("request on a new connection");
}

#[tokio::test]
async fn anchor_rotation_with_a_two_anchor_bundle() {
    let (old_ca, new_ca) = (ca(), ca());
    let both = old_ca.trust_bundle().merge(&new_ca.trust_bundle());
    assert_eq!(both.len(), 2);

    // A server still on the old anchor, a client already on the new one; both trust both.
    let certified_with = |ca: &CertificateAuthority, sa: &str, bundle: &TrustBundle| {
        let id = id(ca, sa);
        let creds = Credentials::generate(id.clone(), bundle.clone()).expect("generate");
        creds
            .set_certificate(ca.sign(creds.csr().expect("csr"), &id).expect("sign"))
            .expect("install");
        creds
    };
    let old_server = certified_with(&old_ca, "voting", &both);
    let new_server = certified_with(&new_ca, "voting", &both);
    let old_client = certified_with(&old_ca, "web", &both);
    let new_client = certified_with(&new_ca, "web", &both);
    let expected = old_server.identity().clone();
    for (server_creds, client_creds, what) in [
        (&old_server, &new_client, "old server, new client"),
        (&new_server, &old_client, "new server, old client"),
        (&new_server, &new_client, "new server, new client"),
        (&old_server, &old_client, "old server, old client"),
    ] {
        let server = serve(TlsServerLayer::new(server_creds)).await;
        let tls = connect(client_creds, server.addr, &expected, &[b"h2"])
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let body = Http::h2(tls)
            .await
            .get()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            body.contains(client_creds.identity().as_str()),
            "{what}: {body}"
        );
    }

    // Dropping the old anchor from the client's bundle ends trust in old certificates.
    let server = serve(TlsServerLayer::new(&old_server)).await;
    new_client.set_trust_bundle(new_ca.trust_bundle());
    let err = connect(&new_client, server.addr, &expected, &[])
        .await
        .expect_err("untrusted");
    assert!(err.to_string().contains("not trusted"), "{err}");
}
