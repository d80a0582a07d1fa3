use std::time::Duration;

use super::*;
use crate::catalog::{
    Authorization, DEFAULT_ENDPOINT_WEIGHT, DefaultPolicy, Protocol, ProtocolHint, ResponseClass,
    ServiceRef, SplitBackend,
};

fn domain() -> IdentityDomain {
    IdentityDomain::default()
}

fn err(text: &str) -> CatalogError {
    parse(text, Some(Path::new("mesh.yaml")), &domain()).unwrap_err()
}

#[test]
fn the_example_means_what_it_says() {
    let snap = parse(EXAMPLE, None, &domain()).unwrap();
    assert_eq!(snap.default_policy, DefaultPolicy::AllUnauthenticated);
    assert_eq!(snap.cluster_networks.len(), 3);

    let web = snap.service(&ServiceRef::new("web", "emojivoto")).unwrap();
    let port = &web.ports[&8080];
    assert_eq!(port.protocol, Protocol::Http1);
    assert_eq!(port.target_port, 8080);
    let Some(Authorization::Clients(clients)) = &port.authorization else {
        panic!("expected explicit clients: {:?}", port.authorization);
    };
    assert_eq!(
        clients.identities[0].as_str(),
        "vote-bot.emojivoto.serviceaccount.identity.mesh.cluster.local"
    );
    assert!(!clients.unauthenticated);

    assert_eq!(web.endpoints.len(), 1);
    let ep = &web.endpoints[0];
    assert_eq!(ep.addr, "127.0.0.1:4143".parse().unwrap());
    assert_eq!(
        ep.identity.as_ref().unwrap().as_str(),
        "web.emojivoto.serviceaccount.identity.mesh.cluster.local"
    );
    assert_eq!(ep.labels["pod"], "web-0");
    assert_eq!(ep.protocol_hint, ProtocolHint::Auto);
    assert_eq!(ep.weight, DEFAULT_ENDPOINT_WEIGHT);

    let routes = &web.profile.routes;
    assert_eq!(routes.len(), 2);
    assert_eq!(routes[0].name, "list");
    assert_eq!(routes[0].method, Some(http::Method::GET));
    assert_eq!(routes[0].path_regex.as_deref(), Some("/api/list"));
    assert!(routes[0].is_retryable);
    assert_eq!(routes[0].timeout, Some(Duration::from_millis(500)));
    assert_eq!(routes[0].max_retries, 2);
    assert_eq!(routes[0].retry_timeout, Some(Duration::from_millis(150)));
    assert_eq!(routes[0].retry_statuses, vec![500..=599, 429..=429]);
    assert_eq!(routes[1].timeout, Some(Duration::from_secs(1)));
    assert_eq!(
        routes[1].response_classes,
        vec![ResponseClass {
            status: 500..=599,
            is_failure: true
        }]
    );
    assert_eq!(
        web.profile.retry_budget,
        crate::catalog::RetryBudget::default()
    );
    let fa = web.failure_accrual.unwrap();
    assert_eq!(fa.consecutive_failures, 7);
    assert_eq!(fa.backoff.max, Duration::from_secs(60));

    let voting = snap
        .service(&ServiceRef::new("voting", "emojivoto"))
        .unwrap();
    assert_eq!(
        voting.ports[&8080].authorization,
        Some(Authorization::Policy(DefaultPolicy::AllAuthenticated))
    );

    let emoji = snap
        .service(&ServiceRef::new("emoji", "emojivoto"))
        .unwrap();
    assert_eq!(
        emoji.split,
        vec![
            SplitBackend {
                service: ServiceRef::new("emoji-v1", "emojivoto"),
                port: None,
                weight: 100
            },
            SplitBackend {
                service: ServiceRef::new("emoji-v2", "emojivoto"),
                port: None,
                weight: 0
            },
        ]
    );
}

#[test]
fn an_empty_file_is_an_empty_catalog() {
    let snap = parse("", None, &domain()).unwrap();
    assert!(snap.services.is_empty());
    let snap = parse("# nothing yet\n", None, &domain()).unwrap();
    assert!(snap.services.is_empty());
}

#[test]
fn syntax_errors_name_file_line_and_field() {
    let e = err("services:\n  - name: web\n    ports:\n      - port: 80\n        protocol: htp1\n");
    let s = e.to_string();
    assert!(s.starts_with("mesh.yaml:5:"), "{s}");
    assert_eq!(e.field(), Some("protocol"));
    assert!(s.contains("htp1") && s.contains("http1"), "{s}");

    let e = err("services:\n  - name: web\n    porst: []\n");
    assert!(e.to_string().contains("unknown field `porst`"), "{e}");
    assert_eq!(e.line(), Some(3));

    let e = err("services:\n  - name: web\n    ports:\n      - port: nope\n");
    assert_eq!(e.field(), Some("port"));
    assert_eq!(e.line(), Some(4));

    let e = err("services: [\n");
    assert!(e.line().is_some(), "{e}");
}

#[test]
fn semantic_errors_name_the_field() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "services:\n  - name: web\n    profile:\n      routes:\n        - name: a\n          condition: {pathRegex: '('}\n",
            "profile.routes[0].condition.pathRegex",
            "invalid regex",
        ),
        (
            "services:\n  - name: web\n  - name: web\n",
            "services[1]",
            "listed twice",
        ),
        (
            "services:\n  - name: Web\n",
            "services[0].name",
            "DNS label",
        ),
        (
            "services:\n  - name: web\n    split: [{service: a, weight: 0}]\n",
            ".split",
            "weight 0",
        ),
        (
            "services:\n  - name: web\n    ports: [{port: 80}]\n    endpoints: [{address: '127.0.0.1:1', ports: [81]}]\n",
            "endpoints[0].ports",
            "port 81",
        ),
        (
            "services:\n  - name: web\n    endpoints: [{address: 'localhost:1'}]\n",
            "endpoints[0].address",
            "ip:port",
        ),
        (
            "services:\n  - name: web\n    endpoints: [{address: '127.0.0.1:1', identity: a.b, serviceAccount: a}]\n",
            "endpoints[0]",
            "not both",
        ),
        (
            "services:\n  - name: web\n    ports: [{port: 80, authorization: {policy: deny, unauthenticated: true}}]\n",
            "ports[0].authorization",
            "not both",
        ),
        (
            "services:\n  - name: web\n    ports: [{port: 80, authorization: {policy: nobody}}]\n",
            "authorization.policy",
            "all-authenticated",
        ),
        (
            "services:\n  - name: web\n    profile: {routes: [{name: a, timeout: 10}]}\n",
            "routes[0].timeout",
            "500ms",
        ),
        (
            "services:\n  - name: web\n    profile: {routes: [{name: a, responseClasses: [{condition: {status: {min: 600}}}]}]}\n",
            "responseClasses[0].condition.status",
            "100 to 599",
        ),
        (
            "services:\n  - name: web\n    profile: {routes: [{name: a}, {name: a}]}\n",
            "routes[1].name",
            "used twice",
        ),
        ("defaultPolicy: allow\n", "defaultPolicy", "deny"),
        (
            "clusterNetworks: [10/8]\n",
            "clusterNetworks",
            "not a network",
        ),
        (
            "services:\n  - name: web\n    failureAccrual: {consecutiveFailures: 0}\n",
            "failureAccrual.consecutiveFailures",
            "at least 1",
        ),
        (
            "services:\n  - name: web\n    ports: [{port: 80, protocol: grpc, routes: [{name: a, condition: {pathPrefix: /x}}]}]\n",
            "ports[0].routes[0].condition",
            "grpcService",
        ),
        (
            "services:\n  - name: web\n    ports: [{port: 80, routes: [{name: a, condition: {grpcService: s}}]}]\n",
            "ports[0].routes[0].condition",
            "protocol: grpc",
        ),
        (
            "services:\n  - name: web\n    ports: [{port: 80, routes: [{name: a, condition: {path: x}}]}]\n",
            "routes[0].condition.path",
            "starts with '/'",
        ),
        (
            "services:\n  - name: web\n    ports: [{port: 80, routes: [{name: a}, {name: a}]}]\n",
            "ports[0].routes[1]",
            "listed twice",
        ),
        (
            "services:\n  - name: web\n    ports: [{port: 80, authorization: {unauthenticated: true, networks: [{cidr: 10.0.0.0/8, except: [192.168.0.0/16]}]}}]\n",
            "authorization.networks",
            "not inside it",
        ),
        (
            "namespaces: [{name: a, defaultPolicy: open}]\n",
            "namespaces[0].defaultPolicy",
            "all-authenticated",
        ),
        (
            "workloads: [{name: a, defaultPolicy: deny}, {name: a, defaultPolicy: deny}]\n",
            "workloads[1]",
            "listed twice",
        ),
    ];
    for (text, field, message) in cases {
        let e = err(text);
        let shown = e.to_string();
        assert!(
            e.field().is_some_and(|f| f.contains(field)),
            "field {field:?} not in {shown}"
        );
        assert!(shown.contains(message), "{message:?} not in {shown}");
        assert!(shown.starts_with("mesh.yaml:"), "{shown}");
    }
}

#[test]
fn semantic_errors_carry_the_line() {
    let text = "services:\n  - name: web\n    profile:\n      routes:\n        - name: ok\n        - name: bad\n          timeout: soon\n";
    let e = err(text);
    assert_eq!(e.line(), Some(6), "{e}");
}

#[test]
fn defaults_fill_in() {
    let snap = parse(
        "services:\n  - name: db\n    ports: [{port: 5432, targetPort: 15432, protocol: opaque}]\n    endpoints: [{address: '[::1]:5432'}]\n",
        None,
        &domain(),
    )
    .unwrap();
    let db = snap.service(&ServiceRef::new("db", "default")).unwrap();
    assert_eq!(db.ports[&5432].target_port, 15432);
    assert_eq!(db.ports[&5432].protocol, Protocol::Opaque);
    assert_eq!(db.endpoints[0].identity, None);
    assert!(db.workloads.contains("db"));
    assert_eq!(
        db.endpoints[0].effective_hint(Protocol::Opaque),
        ProtocolHint::None,
        "an unmeshed endpoint gets no hint"
    );
}
