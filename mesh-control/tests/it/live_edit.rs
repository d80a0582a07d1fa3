//! Editing `mesh.yaml` reaches `GetProfile` and outbound-policy watchers without a restart; a
//! broken edit changes nothing.

use std::time::Duration;

use linkerd2_proxy_api::outbound::{
    self as outbound, TrafficSpec, outbound_policies_client::OutboundPoliciesClient,
};

use crate::conformance::split_weights;
use crate::support::*;

fn catalog(timeout: &str, v1: u32, v2: u32) -> String {
    format!(
        r#"
services:
  - name: web
    namespace: emojivoto
    ports: [{{port: 8080, protocol: http1}}]
    profile:
      routes:
        - name: list
          condition: {{method: GET, pathRegex: /api/list}}
          timeout: {timeout}
    split:
      - {{service: web-v1, weight: {v1}}}
      - {{service: web-v2, weight: {v2}}}
  - name: web-v1
    namespace: emojivoto
    ports: [{{port: 8080, protocol: http1}}]
  - name: web-v2
    namespace: emojivoto
    ports: [{{port: 8080, protocol: http1}}]
"#
    )
}

fn pd(d: Duration) -> prost_types::Duration {
    prost_types::Duration::try_from(d).unwrap()
}

fn http1(p: &outbound::OutboundPolicy) -> outbound::proxy_protocol::Http1 {
    match p.protocol.as_ref().and_then(|p| p.kind.clone()) {
        Some(outbound::proxy_protocol::Kind::Http1(h)) => h,
        other => panic!("expected http1, got {other:?}"),
    }
}

#[tokio::test]
async fn edits_stream_to_profile_and_policy_watchers() {
    let h = Harness::start(Some(&catalog("1s", 100, 0))).await;
    let mut profiles = h.get_profile("web.emojivoto.svc.cluster.local:8080").await;
    let mut policies = within(
        "Watch",
        OutboundPoliciesClient::new(h.anonymous()).watch(TrafficSpec {
            source_workload: "emojivoto:vote-bot".into(),
            target: Some(outbound::traffic_spec::Target::Authority(
                "web.emojivoto.svc.cluster.local:8080".into(),
            )),
        }),
    )
    .await
    .expect("Watch")
    .into_inner();

    let p = next(&mut profiles, "the first profile").await;
    assert_eq!(p.routes[0].timeout, Some(pd(Duration::from_secs(1))));
    assert_eq!(
        p.dst_overrides.iter().map(|d| d.weight).collect::<Vec<_>>(),
        [100, 0]
    );
    let policy = next(&mut policies, "the first policy").await;
    let routes = http1(&policy).routes;
    assert_eq!(
        routes[0].rules[0].timeouts.as_ref().and_then(|t| t.request),
        Some(pd(Duration::from_secs(1)))
    );
    assert_eq!(
        split_weights(&routes[0]),
        [
            ("web-v1.emojivoto.svc.cluster.local:8080".to_owned(), 100),
            ("web-v2.emojivoto.svc.cluster.local:8080".to_owned(), 0)
        ]
    );

    // A new route timeout.
    h.edit_yaml(&catalog("250ms", 100, 0));
    let p = next(&mut profiles, "the new timeout").await;
    assert_eq!(p.routes[0].timeout, Some(pd(Duration::from_millis(250))));
    let policy = next(&mut policies, "the new timeout").await;
    assert_eq!(
        http1(&policy).routes[0].rules[0]
            .timeouts
            .as_ref()
            .and_then(|t| t.request),
        Some(pd(Duration::from_millis(250)))
    );

    // The split goes 50/50.
    h.edit_yaml(&catalog("250ms", 50, 50));
    let p = next(&mut profiles, "the 50/50 split").await;
    assert_eq!(
        p.dst_overrides.iter().map(|d| d.weight).collect::<Vec<_>>(),
        [50, 50]
    );
    let policy = next(&mut policies, "the 50/50 split").await;
    let routes = http1(&policy).routes;
    for route in &routes {
        assert_eq!(
            split_weights(route)
                .iter()
                .map(|(_, w)| *w)
                .collect::<Vec<_>>(),
            [50, 50],
            "every route splits"
        );
    }
}

#[tokio::test]
async fn a_broken_edit_keeps_the_previous_catalog() {
    let h = Harness::start(Some(&catalog("1s", 100, 0))).await;
    let local = h.cp.local_catalog().expect("local catalog");
    let mut reloads = local.reloads();
    let before = local.snapshot();

    h.edit_yaml("services:\n  - name: web\n    ports: [{port: 8080, protocol: htp1}]\n");
    let status = within("the failed reload", reloads.wait_for(|s| s.failures == 1))
        .await
        .expect("reload status")
        .clone();
    let error = status.last_error.expect("the error");
    assert!(error.contains("mesh.yaml:3:"), "{error}");
    assert!(error.contains("htp1"), "{error}");
    assert_eq!(*local.snapshot(), *before, "the previous catalog stays");

    // Clients still get the previous answers.
    let mut profiles = h.get_profile("web.emojivoto:8080").await;
    let p = next(&mut profiles, "the profile").await;
    assert_eq!(p.routes[0].timeout, Some(pd(Duration::from_secs(1))));

    // Fixing the file applies it.
    h.edit_yaml(&catalog("2s", 100, 0));
    let p = next(&mut profiles, "the fixed profile").await;
    assert_eq!(p.routes[0].timeout, Some(pd(Duration::from_secs(2))));
    let status = reloads.borrow().clone();
    assert_eq!(status.last_error, None);
    assert_eq!(status.loads, 2);
}
