use std::time::Duration;

use mesh_tls::{PemFiles, TlsServerLayer};
use tokio::time::Instant;

use crate::support::*;

fn write(files: &PemFiles, ca: &mesh_tls::CertificateAuthority, leaf: &mesh_tls::LeafCredentials) {
    std::fs::write(&files.trust_anchors, ca.trust_bundle().to_pem()).expect("write");
    std::fs::write(&files.certificate, leaf.chain_pem()).expect("write");
    std::fs::write(&files.private_key, leaf.key_pem()).expect("write");
}

#[tokio::test]
async fn static_files_serve_and_reload_on_change() {
    let ca = ca();
    let dir = tempfile::tempdir().expect("tempdir");
    let files = PemFiles {
        trust_anchors: dir.path().join("ca.pem"),
        certificate: dir.path().join("tls.crt"),
        private_key: dir.path().join("tls.key"),
    };
    let voting = id(&ca, "voting");
    write(&files, &ca, &ca.issue(&voting).expect("issue"));
    let creds = files.load().expect("load");
    assert_eq!(creds.identity(), &voting);
    assert!(creds.is_ready());
    assert!(creds.csr().is_err(), "static credentials have no CSR");

    let server = serve(TlsServerLayer::new(&creds)).await;
    let web = certified(&ca, "web");
    let tls = connect(&web, server.addr, &voting, &[b"h2"])
        .await
        .expect("connect");
    Http::h2(tls).await.get().await.expect("request");

    tokio::spawn(
        files
            .clone()
            .watch(creds.clone(), Duration::from_millis(20)),
    );
    let before = creds.leaf_certificate().expect("cert");

    // A half-written key file is reported and the current certificate keeps serving.
    std::fs::write(&files.private_key, "-----BEGIN PRIVATE KEY-----\ngarbage").expect("write");
    let err = files.reload(&creds).expect_err("broken key refused");
    assert!(err.to_string().contains("tls.key"), "{err}");
    assert_eq!(creds.leaf_certificate().as_ref(), Some(&before));

    // A certificate for another identity is refused too.
    write(&files, &ca, &ca.issue(&id(&ca, "emoji")).expect("issue"));
    let err = files.reload(&creds).expect_err("other identity refused");
    assert!(err.to_string().contains("emoji"), "{err}");

    // A new certificate for the same identity is picked up by the watcher.
    write(&files, &ca, &ca.issue(&voting).expect("issue"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while creds.leaf_certificate().as_ref() == Some(&before) {
        assert!(
            Instant::now() < deadline,
            "watcher never reloaded the files"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = creds.leaf_certificate().expect("cert");
    let tls = connect(&web, server.addr, &voting, &[b"h2"])
        .await
        .expect("connect");
    assert_eq!(tls.server_certificate(), Some(&after));
}

#[test]
fn missing_or_wrong_files_name_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = PemFiles {
        trust_anchors: dir.path().join("ca.pem"),
        certificate: dir.path().join("tls.crt"),
        private_key: dir.path().join("tls.key"),
    };
    let err = files.load().expect_err("missing");
    assert!(err.to_string().contains("ca.pem"), "{err}");
    std::fs::write(&files.trust_anchors, "not pem").expect("write");
    std::fs::write(&files.certificate, "").expect("write");
    std::fs::write(&files.private_key, "").expect("write");
    let err = files.load().expect_err("bad");
    assert!(
        err.to_string().contains("ca.pem") && err.to_string().contains("CERTIFICATE"),
        "{err}"
    );
}
