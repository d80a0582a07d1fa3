//! Registration: a proxy's endpoint reaches `Get` subscribers within a second, leaves on
//! deregistration, and expires with its lease.

use std::time::Duration;

use linkerd2_proxy_api::destination::update::Update;
use linkerd2_proxy_api::net::TcpAddress;
use mesh_control_client::registration::{RegisterRequest, WireProtocolHint, keep_registered};
use tokio_util::sync::CancellationToken;
use tonic::Code;

use crate::support::*;

const WEB: &str = "web.emojivoto.svc.cluster.local:8080";

fn request(address: &str, lease: Duration) -> RegisterRequest {
    RegisterRequest {
        service: "web".into(),
        namespace: "emojivoto".into(),
        port: 8080,
        address: address.into(),
        protocol_hint: WireProtocolHint::Auto as i32,
        labels: [("pod".to_owned(), "web-0".to_owned())].into(),
        lease: Some(prost_types::Duration::try_from(lease).unwrap()),
        ..Default::default()
    }
}

fn tcp(s: &str) -> TcpAddress {
    TcpAddress::from(s.parse::<std::net::SocketAddr>().unwrap())
}

#[tokio::test]
async fn a_registered_endpoint_is_streamed_within_a_second_and_deregistration_removes_it() {
    let h = Harness::start(None).await;
    let mut updates = h.get(WEB).await;
    let first = next(&mut updates, "the unknown answer").await;
    assert_eq!(
        first.update,
        Some(Update::NoEndpoints(
            linkerd2_proxy_api::destination::NoEndpoints { exists: false }
        ))
    );

    // The proxy of `web` certifies, then registers its inbound endpoint over mutual TLS.
    let web = h.certified("web").await;
    let mut client = h.registration(&web);
    let lease = within(
        "register",
        client.register(request("127.0.0.1:4143", Duration::from_secs(30))),
    )
    .await
    .expect("registered");
    assert_eq!(lease, Duration::from_secs(30));

    let added = next_matching(&mut updates, Duration::from_secs(1), "the add", |u| {
        matches!(u.update, Some(Update::Add(_)))
    })
    .await;
    let Some(Update::Add(set)) = added.update else {
        unreachable!()
    };
    assert_eq!(set.addrs.len(), 1);
    let a = &set.addrs[0];
    assert_eq!(a.addr, Some(tcp("127.0.0.1:4143")));
    assert_eq!(a.metric_labels["pod"], "web-0");
    // The identity is the caller's, from its certificate.
    assert_eq!(
        a.tls_identity
            .as_ref()
            .and_then(|t| t.server_name.as_ref())
            .map(|n| n.name.as_str()),
        Some(web.identity().as_str())
    );

    let removed = within(
        "deregister",
        client.deregister(mesh_control_client::registration::DeregisterRequest {
            service: "web".into(),
            namespace: "emojivoto".into(),
            port: 8080,
            address: "127.0.0.1:4143".into(),
        }),
    )
    .await
    .expect("deregistered");
    assert!(removed);
    let gone = next_matching(&mut updates, Duration::from_secs(1), "the remove", |u| {
        matches!(u.update, Some(Update::Remove(_)))
    })
    .await;
    let Some(Update::Remove(set)) = gone.update else {
        unreachable!()
    };
    assert_eq!(set.addrs, vec![tcp("127.0.0.1:4143")]);
}

#[tokio::test]
async fn an_expired_lease_removes_the_endpoint() {
    let h = Harness::start(None).await;
    let web = h.certified("web").await;
    let mut updates = h.get(WEB).await;
    next(&mut updates, "unknown").await;
    let lease = within(
        "register",
        h.registration(&web)
            .register(request("127.0.0.1:4143", Duration::from_millis(300))),
    )
    .await
    .expect("registered");
    assert_eq!(lease, Duration::from_millis(300));
    next_matching(&mut updates, Duration::from_secs(1), "the add", |u| {
        matches!(u.update, Some(Update::Add(_)))
    })
    .await;
    // Nobody renews: the endpoint goes within the lease (plus scheduling slack).
    next_matching(&mut updates, Duration::from_secs(3), "the expiry", |u| {
        matches!(u.update, Some(Update::Remove(_)))
    })
    .await;
}

#[tokio::test]
async fn keep_registered_renews_and_deregisters_on_drain() {
    let h = Harness::start(None).await;
    let web = h.certified("web").await;
    let mut updates = h.get(WEB).await;
    next(&mut updates, "unknown").await;
    let drain = CancellationToken::new();
    let task = tokio::spawn(keep_registered(
        h.registration(&web),
        request("127.0.0.1:4143", Duration::from_secs(1)),
        drain.clone(),
    ));
    next_matching(&mut updates, Duration::from_secs(1), "the add", |u| {
        matches!(u.update, Some(Update::Add(_)))
    })
    .await;
    // Several leases long, the endpoint stays: renewals (every third of the lease) keep it.
    let quiet = tokio::time::timeout(Duration::from_millis(2500), updates.message()).await;
    assert!(quiet.is_err(), "the endpoint changed: {quiet:?}");
    drain.cancel();
    within("keep_registered ends", task)
        .await
        .expect("joined")
        .expect("deregistered");
    next_matching(&mut updates, Duration::from_secs(1), "the remove", |u| {
        matches!(u.update, Some(Update::Remove(_)))
    })
    .await;
}

#[tokio::test]
async fn a_proxy_registers_only_its_own_identity() {
    let h = Harness::start(None).await;
    let web = h.certified("web").await;
    let mut req = request("127.0.0.1:4143", Duration::from_secs(30));
    req.identity = h.id("voting").to_string();
    let err = within("register", h.registration(&web).register(req))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");

    // Without a certificate, nothing.
    let anon = h.creds("anonymous");
    let err = within(
        "register",
        h.registration(&anon)
            .register(request("127.0.0.1:4143", Duration::from_secs(30))),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");

    // Nor may another identity remove web's endpoint.
    within(
        "register",
        h.registration(&web)
            .register(request("127.0.0.1:4143", Duration::from_secs(30))),
    )
    .await
    .expect("registered");
    let voting = h.certified("voting").await;
    let err = within(
        "deregister",
        h.registration(&voting)
            .deregister(mesh_control_client::registration::DeregisterRequest {
                service: "web".into(),
                namespace: "emojivoto".into(),
                port: 8080,
                address: "127.0.0.1:4143".into(),
            }),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");

    // Bad input is refused with a reason.
    let mut bad = request("0.0.0.0:4143", Duration::from_secs(30));
    let err = within("register", h.registration(&web).register(bad.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("wildcard"), "{err}");
    bad.address = "127.0.0.1:4143".into();
    bad.service = "Web".into();
    let err = within("register", h.registration(&web).register(bad))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}
