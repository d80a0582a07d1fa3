use std::time::Duration;

use super::*;
use crate::catalog::{Registration, Registry, ServiceRef};

use api::update::Update as U;

fn web() -> ServiceRef {
    ServiceRef::new("web", "emojivoto")
}

fn name() -> DstName {
    DstName::Service {
        service: web(),
        port: 8080,
    }
}

fn with(regs: &[(&str, Option<&str>)]) -> Snapshot {
    let registry = Registry::new();
    for (addr, id) in regs {
        let mut r = Registration::new(web(), 8080, addr.parse().unwrap());
        r.identity = id.map(|i| i.parse().unwrap());
        registry.register(r, Duration::from_secs(60));
    }
    let mut snap = Snapshot::default();
    registry.apply(&mut snap);
    snap
}

fn kinds(updates: &[api::Update]) -> Vec<&'static str> {
    updates
        .iter()
        .map(|u| match &u.update {
            Some(U::Add(_)) => "add",
            Some(U::Remove(_)) => "remove",
            Some(U::NoEndpoints(n)) if n.exists => "empty",
            Some(U::NoEndpoints(_)) => "unknown",
            None => "none",
        })
        .collect()
}

#[tokio::test]
async fn a_resolution_streams_differences() {
    let id = "web.emojivoto.serviceaccount.identity.mesh.cluster.local";
    let mut r = Resolution::new(name());

    // Unknown, then unknown again: said once.
    assert_eq!(kinds(&r.step(&Snapshot::default())), ["unknown"]);
    assert!(r.step(&Snapshot::default()).is_empty());

    // It appears with one endpoint.
    let one = with(&[("127.0.0.1:1", Some(id))]);
    let ups = r.step(&one);
    assert_eq!(kinds(&ups), ["add"]);
    let Some(U::Add(set)) = &ups[0].update else {
        unreachable!()
    };
    assert_eq!(set.metric_labels["service"], "web");
    assert_eq!(set.metric_labels["namespace"], "emojivoto");
    let addr = &set.addrs[0];
    assert_eq!(addr.weight, 10_000);
    assert_eq!(addr.metric_labels["serviceaccount"], "web");
    let tls = addr.tls_identity.as_ref().unwrap();
    assert_eq!(tls.server_name.as_ref().unwrap().name, id);
    assert!(matches!(
        &tls.strategy,
        Some(api::tls_identity::Strategy::DnsLikeIdentity(d)) if d.name == id
    ));
    assert!(matches!(
        addr.protocol_hint
            .as_ref()
            .and_then(|h| h.protocol.as_ref()),
        Some(api::protocol_hint::Protocol::H2(_))
    ));

    // No change, no message.
    assert!(r.step(&one).is_empty());

    // A second endpoint: only it is added.
    let two = with(&[("127.0.0.1:1", Some(id)), ("127.0.0.1:2", None)]);
    let ups = r.step(&two);
    assert_eq!(kinds(&ups), ["add"]);
    let Some(U::Add(set)) = &ups[0].update else {
        unreachable!()
    };
    assert_eq!(set.addrs.len(), 1);
    assert!(
        set.addrs[0].tls_identity.is_none(),
        "an unmeshed endpoint has no identity"
    );
    assert!(set.addrs[0].protocol_hint.is_none());

    // The first goes away.
    let ups = r.step(&with(&[("127.0.0.1:2", None)]));
    assert_eq!(kinds(&ups), ["remove"]);
    let Some(U::Remove(set)) = &ups[0].update else {
        unreachable!()
    };
    assert_eq!(
        set.addrs,
        vec![TcpAddress::from(
            "127.0.0.1:1".parse::<SocketAddr>().unwrap()
        )]
    );

    // The service goes away entirely.
    assert_eq!(kinds(&r.step(&Snapshot::default())), ["remove", "unknown"]);
}

#[test]
fn a_known_service_without_endpoints_exists() {
    let mut snap = Snapshot::default();
    let mut svc = crate::catalog::Service::new(web());
    svc.ports.insert(
        8080,
        crate::catalog::Port {
            port: 8080,
            target_port: 8080,
            protocol: Protocol::Http1,
            authorization: None,
            routes: Vec::new(),
        },
    );
    snap.services.insert(web(), svc);
    let mut r = Resolution::new(name());
    assert_eq!(kinds(&r.step(&snap)), ["empty"]);
    // A port the service does not have does not exist.
    let mut other = Resolution::new(DstName::Service {
        service: web(),
        port: 9999,
    });
    assert_eq!(kinds(&other.step(&snap)), ["unknown"]);
}

#[test]
fn routes_translate_to_profile_conditions() {
    let r = Route {
        name: "vote".into(),
        method: Some(http::Method::POST),
        path_regex: Some("/api/vote.*".into()),
        is_retryable: true,
        max_retries: 3,
        timeout: Some(Duration::from_millis(250)),
        response_classes: vec![crate::catalog::ResponseClass {
            status: 500..=504,
            is_failure: true,
        }],
        retry_timeout: None,
        retry_statuses: Vec::new(),
        retry_grpc: Vec::new(),
    };
    let p = route(&r);
    assert!(p.is_retryable);
    assert_eq!(p.timeout, Some(duration(Duration::from_millis(250))));
    assert_eq!(p.metrics_labels["route"], "vote");
    let Some(api::request_match::Match::All(seq)) = p.condition.unwrap().r#match else {
        panic!("expected all(method, path)")
    };
    assert_eq!(seq.matches.len(), 2);
    assert_eq!(p.response_classes.len(), 1);
    assert!(p.response_classes[0].is_failure);
}
