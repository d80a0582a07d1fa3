//! `Identity.Certify`: tokens are one-use, bound to one identity and expire; renewals go over
//! mutual TLS.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mesh_control::token::TokenStore;
use tonic::Code;

use crate::support::*;

#[tokio::test]
async fn a_valid_token_certifies_exactly_its_identity() {
    let h = Harness::start(None).await;
    let web = h.creds("web");
    let token =
        h.cp.issue_token(web.identity(), Duration::from_secs(60))
            .unwrap();
    let issued = certify(&h.channel(&web), &web, token.as_bytes())
        .await
        .expect("certified");
    assert_eq!(
        sans(&issued.leaf),
        [
            "dns:web.emojivoto.serviceaccount.identity.mesh.cluster.local",
            "uri:spiffe://cluster.local/ns/emojivoto/sa/web"
        ]
    );
    web.set_certificate(issued).expect("installs for this key");
    assert!(web.is_ready());

    // A PEM CSR works too.
    let voting = h.creds("voting");
    let token =
        h.cp.issue_token(voting.identity(), Duration::from_secs(60))
            .unwrap();
    let pem = pem_csr(voting.csr().unwrap());
    let rsp = within(
        "Certify PEM",
        linkerd2_proxy_api::identity::identity_client::IdentityClient::new(h.anonymous()).certify(
            linkerd2_proxy_api::identity::CertifyRequest {
                identity: voting.identity().to_string(),
                token: token.into_bytes(),
                certificate_signing_request: pem.into_bytes(),
            },
        ),
    )
    .await
    .expect("certified");
    assert!(!rsp.into_inner().leaf_certificate.is_empty());
}

fn pem_csr(der: &[u8]) -> String {
    // Base64 by hand: the CSR is small and this keeps the test free of another crate.
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let body: Vec<String> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        body.join("\n")
    )
}

#[tokio::test]
async fn a_stolen_token_does_not_certify_another_identity() {
    let h = Harness::start(None).await;
    let web = h.creds("web");
    let token =
        h.cp.issue_token(web.identity(), Duration::from_secs(60))
            .unwrap();

    // The thief asks for its own identity with web's token.
    let thief = h.creds("thief");
    let err = certify(&h.anonymous(), &thief, token.as_bytes())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    assert!(
        err.message()
            .contains("issued for web.emojivoto.serviceaccount.identity.mesh.cluster.local"),
        "{err}"
    );

    // Or claims web's identity with the token but sends its own CSR (for its own name and key):
    // the CA signs a CSR only for the identity the token proved.
    let err = certify_as(&h.anonymous(), &thief, web.identity(), token.as_bytes())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    assert!(
        err.message().contains("may only certify its own identity"),
        "{err}"
    );

    // Neither attempt burned the token: the rightful owner still certifies with it.
    certify(&h.anonymous(), &web, token.as_bytes())
        .await
        .expect("the owner certifies");
}

#[tokio::test]
async fn a_reused_token_is_refused() {
    let h = Harness::start(None).await;
    let web = h.creds("web");
    let token =
        h.cp.issue_token(web.identity(), Duration::from_secs(60))
            .unwrap();
    certify(&h.anonymous(), &web, token.as_bytes())
        .await
        .expect("first use");
    let err = certify(&h.anonymous(), &web, token.as_bytes())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    assert!(err.message().contains("already used"), "{err}");
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let now = Arc::new(AtomicU64::new(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    ));
    let clock = {
        let now = now.clone();
        move || UNIX_EPOCH + Duration::from_secs(now.load(Ordering::SeqCst))
    };
    let tokens = TokenStore::in_memory().with_clock(clock);
    let h = Harness::start_with(None, |c| c.tokens(tokens.clone())).await;
    let web = h.creds("web");
    let token = tokens
        .issue(web.identity(), Duration::from_secs(5))
        .unwrap();
    now.fetch_add(6, Ordering::SeqCst);
    let err = certify(&h.anonymous(), &web, token.as_bytes())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    assert!(err.message().contains("expired at"), "{err}");
}

#[tokio::test]
async fn garbage_and_missing_tokens_are_refused() {
    let h = Harness::start(None).await;
    let web = h.creds("web");
    for (token, code, says) in [
        (&b""[..], Code::Unauthenticated, "no bootstrap token"),
        (b"letmein", Code::Unauthenticated, "malformed"),
        (
            b"mesh1.0123456789abcdef.0000000000000000000000000000000000000000000000000000000000000000",
            Code::Unauthenticated,
            "not valid",
        ),
    ] {
        let err = certify(&h.anonymous(), &web, token).await.unwrap_err();
        assert_eq!(err.code(), code, "{err}");
        assert!(err.message().contains(says), "{says}: {err}");
    }
    // A malformed CSR.
    let token =
        h.cp.issue_token(web.identity(), Duration::from_secs(60))
            .unwrap();
    let err = within(
        "Certify garbage CSR",
        linkerd2_proxy_api::identity::identity_client::IdentityClient::new(h.anonymous()).certify(
            linkerd2_proxy_api::identity::CertifyRequest {
                identity: web.identity().to_string(),
                token: token.clone().into_bytes(),
                certificate_signing_request: b"not a csr".to_vec(),
            },
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    // ... which did not spend the token.
    certify(&h.anonymous(), &web, token.as_bytes())
        .await
        .expect("the token still works");
}

#[tokio::test]
async fn renewal_is_authenticated_by_the_current_certificate() {
    let h = Harness::start(None).await;
    let web = h.certified("web").await;
    // A new connection presents web's certificate: no token needed.
    let renewed = certify(&h.channel(&web), &web, b"").await.expect("renewed");
    web.set_certificate(renewed).expect("installs");
    // But web's certificate does not let it certify as someone else.
    let voting = h.creds("voting");
    let err = certify_as(&h.channel(&web), &voting, voting.identity(), b"")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");

    // The refresh loop, driven by the crate's client, keeps credentials certified.
    let fresh = h.creds("emoji");
    let token =
        h.cp.issue_token(fresh.identity(), Duration::from_secs(60))
            .unwrap();
    let certify = mesh_control_client::RemoteCertify::new(
        h.cp.addr(),
        mesh_control_client::transport::Tls::new(fresh.clone(), h.cp.identity().clone()),
        Some(token),
    );
    let task = tokio::spawn(mesh_tls::certify::refresh(
        fresh.clone(),
        certify,
        mesh_tls::certify::RefreshPolicy::default(),
    ));
    within("refresh certifies", fresh.ready()).await;
    task.abort();
}

#[tokio::test]
async fn a_client_must_see_the_control_plane_s_identity() {
    let h = Harness::start(None).await;
    // Expecting another identity than the control plane's fails the TLS handshake.
    let creds = h.creds("web");
    let wrong = mesh_control_client::transport::Tls::new(creds.clone(), h.id("impostor"));
    let err = within(
        "connect",
        mesh_control_client::transport::connect(h.cp.addr(), wrong),
    )
    .await
    .unwrap_err();
    let chain = format!("{err:?}");
    assert!(
        chain.contains("identity mismatch") || chain.contains("impostor"),
        "{chain}"
    );
}
