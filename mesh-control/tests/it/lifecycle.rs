//! Start, stop, restart: the trust anchor survives restarts, a broken catalog stops the start,
//! unknown names are answered at once, streams end when the control plane stops.

use std::time::Duration;

use linkerd2_proxy_api::destination::{
    GetDestination, NoEndpoints, destination_client::DestinationClient, update::Update,
};
use mesh_control::{Config, ControlPlane, StartError, state};
use mesh_control_client::registration::{RegisterRequest, RegistrationClient};

use crate::support::*;

#[tokio::test]
async fn a_restart_keeps_the_trust_anchor_and_old_certificates_verify() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    let config = || {
        Config::new(&state_dir)
            .listen("127.0.0.1:0".parse().unwrap())
            .drain_timeout(Duration::from_secs(1))
    };

    let first = within("start", ControlPlane::start(config()))
        .await
        .expect("starts");
    let anchor = first.trust_bundle().to_pem();
    let h = Probe(&first);
    let web = h.certified("web").await;
    assert_eq!(state::read_control_addr(&state_dir).unwrap(), first.addr());
    assert_eq!(
        state::read_control_identity(&state_dir).unwrap(),
        *first.identity()
    );
    assert_eq!(
        first.identity().as_str(),
        "controller.mesh-system.serviceaccount.identity.mesh.cluster.local"
    );
    // web's proxy registered its endpoint before the restart.
    let mut registration = RegistrationClient::new(h.channel(&web));
    within(
        "register",
        registration.register(RegisterRequest {
            service: "web".into(),
            namespace: "emojivoto".into(),
            port: 8080,
            address: "127.0.0.1:4143".into(),
            ..Default::default()
        }),
    )
    .await
    .expect("registered");
    let web_svc = mesh_control::catalog::ServiceRef::new("web", "emojivoto");
    within(
        "the registration is in the catalog",
        first
            .snapshots()
            .wait_for(|s| s.service(&web_svc).is_some()),
    )
    .await
    .expect("snapshot");
    within("shutdown", first.shutdown()).await;
    assert!(
        state::read_control_addr(&state_dir).is_err(),
        "control.addr is removed on shutdown"
    );

    // Keys are private.
    use std::os::unix::fs::PermissionsExt;
    for key in ["issuer.key", "trust-anchor.key"] {
        let mode = std::fs::metadata(state_dir.join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }

    let second = within("restart", ControlPlane::start(config()))
        .await
        .expect("restarts");
    assert_eq!(second.trust_bundle().to_pem(), anchor, "the same anchor");
    assert_eq!(
        state::read_trust_bundle(&state_dir).unwrap().to_pem(),
        anchor
    );
    // web's certificate from before the restart verifies against the restarted control plane:
    // it proves web over mutual TLS, which lets web renew without a token.
    let h = Probe(&second);
    let renewed = certify(&h.channel(&web), &web, b"")
        .await
        .expect("the old certificate authenticates the renewal");
    web.set_certificate(renewed).expect("installs");

    // The restarted control plane serves the registered endpoint at once, before web's proxy
    // renews: a client resyncing after the restart does not lose it.
    let mut updates = within(
        "Get",
        DestinationClient::new(h.channel(&web)).get(GetDestination {
            path: "web.emojivoto.svc.cluster.local:8080".into(),
            ..Default::default()
        }),
    )
    .await
    .expect("Get")
    .into_inner();
    let first_update = next(&mut updates, "the restored endpoint").await;
    assert!(
        matches!(first_update.update, Some(Update::Add(ref set)) if set.addrs.len() == 1),
        "{first_update:?}"
    );
    within("shutdown", second.shutdown()).await;
}

/// Harness-like helpers over a control plane started by hand.
struct Probe<'a>(&'a ControlPlane);

impl Probe<'_> {
    fn channel(&self, creds: &mesh_tls::Credentials) -> tonic::transport::Channel {
        mesh_control_client::transport::channel(
            self.0.addr(),
            mesh_control_client::transport::Tls::new(creds.clone(), self.0.identity().clone()),
        )
    }

    async fn certified(&self, sa: &str) -> mesh_tls::Credentials {
        let id = self.0.ca().domain().workload(sa, "emojivoto").unwrap();
        let creds = mesh_tls::Credentials::generate(id.clone(), self.0.trust_bundle()).unwrap();
        let token = self.0.issue_token(&id, Duration::from_secs(60)).unwrap();
        let issued = certify(&self.channel(&creds), &creds, token.as_bytes())
            .await
            .unwrap();
        creds.set_certificate(issued).unwrap();
        creds
    }
}

#[tokio::test]
async fn a_user_s_own_ca_is_used_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let own = mesh_tls::CertificateAuthority::builder()
        .generate()
        .unwrap();
    own.save(&dir.path().join("own")).unwrap();
    let own_dir = dir.path().join("own");
    let state_dir = dir.path().join("state");
    let cp = within(
        "start",
        ControlPlane::start(
            Config::new(&state_dir)
                .listen("127.0.0.1:0".parse().unwrap())
                .own_ca(
                    own_dir.join("trust-anchors.pem"),
                    own_dir.join("issuer.pem"),
                    own_dir.join("issuer.key"),
                ),
        ),
    )
    .await
    .expect("starts with the user's CA");
    assert_eq!(cp.trust_bundle().to_pem(), own.trust_bundle().to_pem());
    within("shutdown", cp.shutdown()).await;
    // A later start without the flags keeps using it.
    let cp = within(
        "restart",
        ControlPlane::start(Config::new(&state_dir).listen("127.0.0.1:0".parse().unwrap())),
    )
    .await
    .expect("restarts");
    assert_eq!(cp.trust_bundle().to_pem(), own.trust_bundle().to_pem());
    within("shutdown", cp.shutdown()).await;
}

#[tokio::test]
async fn a_broken_catalog_at_start_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mesh.yaml");
    std::fs::write(
        &file,
        "services:\n  - name: web\n    profile:\n      routes:\n        - name: list\n          timeout: fast\n",
    )
    .unwrap();
    let err = within(
        "start",
        ControlPlane::start(
            Config::new(dir.path().join("state"))
                .listen("127.0.0.1:0".parse().unwrap())
                .catalog_file(file.clone()),
        ),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, StartError::Catalog(_)), "{err:?}");
    let shown = err.to_string();
    assert!(shown.contains(&format!("{}:5", file.display())), "{shown}");
    assert!(shown.contains("routes[0].timeout"), "{shown}");
    assert!(shown.contains("\"fast\""), "{shown}");

    // A missing file too.
    let err = within(
        "start",
        ControlPlane::start(
            Config::new(dir.path().join("state"))
                .listen("127.0.0.1:0".parse().unwrap())
                .catalog_file(dir.path().join("nope.yaml")),
        ),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("nope.yaml"), "{err}");
}

#[tokio::test]
async fn unknown_names_are_answered_at_once() {
    let h = Harness::start(None).await;
    for path in [
        "nope.emojivoto.svc.cluster.local:80",
        "nope.emojivoto:80",
        "api.example.com:443",
        "10.1.2.3:80",
    ] {
        let mut s = h.get(path).await;
        let m = within_for(Duration::from_secs(1), path, s.message())
            .await
            .expect("a message")
            .expect("not the end");
        assert_eq!(
            m.update,
            Some(Update::NoEndpoints(NoEndpoints { exists: false })),
            "{path}"
        );
        let mut p = h.get_profile(path).await;
        let profile = within_for(Duration::from_secs(1), path, p.message())
            .await
            .expect("a message")
            .expect("not the end");
        assert_eq!(profile, Default::default(), "{path}: an empty profile");
    }
    // A name that cannot be parsed is an invalid argument.
    let err = within(
        "Get",
        linkerd2_proxy_api::destination::destination_client::DestinationClient::new(h.anonymous())
            .get(linkerd2_proxy_api::destination::GetDestination {
                path: "bad name:80".into(),
                ..Default::default()
            }),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn streams_end_with_unavailable_when_the_control_plane_stops() {
    let h = Harness::start(None).await;
    let mut s = h.get("web.emojivoto:8080").await;
    next(&mut s, "unknown").await;
    let Harness { cp, dir: _dir } = h;
    within("shutdown", cp.shutdown()).await;
    let end = within("the stream ends", s.message()).await;
    match end {
        Err(status) => assert_eq!(status.code(), tonic::Code::Unavailable, "{status}"),
        Ok(m) => panic!("expected UNAVAILABLE, got {m:?}"),
    }
}

#[tokio::test]
async fn a_plaintext_control_plane_serves_the_same_apis() {
    let h = Harness::start_with(None, |c| c.plaintext(true)).await;
    let channel = mesh_control_client::transport::channel_plaintext(h.cp.addr());
    // Registrations are trusted as given: there is no client certificate to check.
    within(
        "register",
        RegistrationClient::new(channel.clone()).register(RegisterRequest {
            service: "web".into(),
            namespace: "emojivoto".into(),
            port: 8080,
            address: "127.0.0.1:4143".into(),
            identity: "web.emojivoto.serviceaccount.identity.mesh.cluster.local".into(),
            ..Default::default()
        }),
    )
    .await
    .expect("registered");
    let mut updates = within(
        "Get",
        DestinationClient::new(channel).get(GetDestination {
            path: "web.emojivoto:8080".into(),
            ..Default::default()
        }),
    )
    .await
    .expect("Get")
    .into_inner();
    let m = next(&mut updates, "the endpoint").await;
    assert!(matches!(m.update, Some(Update::Add(_))), "{m:?}");
    // A TLS client cannot talk to it.
    let creds = h.creds("web");
    let tls = mesh_control_client::transport::Tls::new(creds, h.cp.identity().clone());
    assert!(
        within(
            "connect",
            mesh_control_client::transport::connect(h.cp.addr(), tls)
        )
        .await
        .is_err()
    );
}
