//! Query math on synthetic snapshots: exact rates, success, quantiles, resets, filters, edges
//! and routes, and the text renderings.

use std::fmt::Write as _;
use std::time::Duration;

use tokio::time::Instant;

use super::*;

const NS: &str = "emojivoto";

fn identity(name: &str) -> String {
    format!("{name}.{NS}.serviceaccount.identity.mesh.cluster.local")
}

fn workload(name: &str, port: u16) -> Workload {
    Workload {
        name: name.into(),
        namespace: NS.into(),
        identity: identity(name),
        admin: format!("127.0.0.1:{port}").parse().expect("addr"),
        tap: Some(format!("127.0.0.1:{}", port + 1).parse().expect("addr")),
        inbound: Some(format!("127.0.0.1:{}", port + 2).parse().expect("addr")),
        pid: 1,
    }
}

/// Exposition text, built line by line.
#[derive(Default)]
struct Text(String);

impl Text {
    fn line(mut self, name: &str, labels: &str, value: f64) -> Self {
        let _ = writeln!(self.0, "{name}{{{labels}}} {value}");
        self
    }

    /// Inbound responses from `client` (over mTLS).
    fn inbound(self, client: &str, ok: u64, failed: u64) -> Self {
        let l = format!(
            r#"direction="inbound",tls="true",client_id="{}",target_addr="127.0.0.1:8080""#,
            identity(client)
        );
        self.line(
            "response_total",
            &format!(r#"{l},status_code="200",classification="success""#),
            ok as f64,
        )
        .line(
            "response_total",
            &format!(r#"{l},status_code="500",classification="failure""#),
            failed as f64,
        )
    }

    /// Outbound responses from `dst`, with `tls` as the label says.
    fn outbound(self, dst: &str, tls: &str, ok: u64, failed: u64) -> Self {
        let l = format!(
            r#"direction="outbound",authority="{dst}.{NS}.svc.cluster.local:80",dst_service="{dst}",dst_namespace="{NS}",tls="{tls}""#
        );
        self.line(
            "response_total",
            &format!(r#"{l},status_code="200",classification="success""#),
            ok as f64,
        )
        .line(
            "response_total",
            &format!(r#"{l},status_code="500",classification="failure""#),
            failed as f64,
        )
    }

    /// Cumulative inbound latency buckets (`le` in ms) and a `+Inf` bucket.
    fn latency(mut self, direction: &str, buckets: &[(f64, u64)]) -> Self {
        for (le, n) in buckets {
            let le = if le.is_infinite() {
                "+Inf".to_string()
            } else {
                format!("{le:.1}")
            };
            self = self.line(
                "response_latency_ms_bucket",
                &format!(r#"le="{le}",direction="{direction}",status_code="200""#),
                *n as f64,
            );
        }
        self
    }

    fn ready(mut self, ready: bool) -> Self {
        let _ = writeln!(self.0, "proxy_ready {}", u8::from(ready));
        self
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn stat(store: &Store, q: StatQuery, now: Instant) -> Vec<StatRow> {
    store.stat_at(&q, now).expect("stat")
}

fn deploys() -> StatQuery {
    StatQuery::new(Resource::all(ResourceKind::Deployment)).namespace(Some(NS.to_string()))
}

fn row<'a>(rows: &'a [StatRow], name: &str) -> &'a StatRow {
    rows.iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no row {name} in {rows:#?}"))
}

#[test]
fn success_rps_latency_and_connections_are_exact() {
    let store = Store::new();
    let web = workload("web", 4191);
    store.set_workloads(std::slice::from_ref(&web));
    let t0 = Instant::now();
    let inf = f64::INFINITY;
    store.ingest_at(
        &web,
        t0,
        &Text::default()
            .inbound("vote-bot", 100, 10)
            .latency("inbound", &[(1.0, 100), (2.0, 110), (inf, 110)])
            .0,
    );
    // 20 responses in 10 s: 15 succeeded; 10 took up to 1 ms, 10 up to 2 ms.
    let text = Text::default()
        .inbound("vote-bot", 115, 15)
        .latency("inbound", &[(1.0, 110), (2.0, 130), (inf, 140)])
        .line(
            "tcp_open_connections",
            r#"direction="inbound",peer="src",target_addr="127.0.0.1:4143""#,
            3.0,
        )
        .line(
            "tcp_open_connections",
            r#"direction="inbound",tls="true",target_addr="127.0.0.1:8080""#,
            2.0,
        )
        .line(
            "tcp_read_bytes_total",
            r#"direction="inbound",peer="src""#,
            1000.0,
        )
        .ready(true);
    store.ingest_at(&web, t0 + secs(10), &text.0);

    let rows = stat(&store, deploys(), t0 + secs(10));
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(
        r.meshed,
        Meshed {
            meshed: 1,
            total: 1
        }
    );
    assert_eq!(r.success, Some(0.75));
    assert_eq!(r.rps, Some(2.0));
    // 30 observations in the window (10 + 10 + 10 above 2 ms, counted in +Inf):
    // p50 at rank 15 is in (1, 2]: 1 + (15 - 10) / 10 = 1.5 -> 2 ms; p95 and p99 fall in
    // +Inf: the highest finite bound, 2 ms.
    assert_eq!(r.latency_ms_p50, Some(2));
    assert_eq!(r.latency_ms_p95, Some(2));
    assert_eq!(r.latency_ms_p99, Some(2));
    // Connections clients hold to the proxy (`peer="src"`), not the per-target ones again.
    assert_eq!(r.tcp_open_connections, Some(3));
    // 1000 bytes since a series new in this scrape: all of it is in the window.
    assert_eq!(r.tcp_read_bytes_rate, Some(100.0));
    assert_eq!(r.direction, Some(Direction::Inbound));
}

#[test]
fn the_window_starts_at_the_last_snapshot_before_it() {
    let store = Store::new();
    let web = workload("web", 4191);
    let t0 = Instant::now();
    for (t, ok) in [(0, 0), (30, 30), (60, 60), (90, 180)] {
        store.ingest_at(&web, t0 + secs(t), &Text::default().inbound("a", ok, 0).0);
    }
    let now = t0 + secs(90);
    let rps = |w| stat(&store, deploys().window(secs(w)), now)[0].rps;
    assert_eq!(rps(30), Some(4.0)); // (180 - 60) / 30
    assert_eq!(rps(60), Some(2.5)); // (180 - 30) / 60
    assert_eq!(rps(600), Some(2.0)); // (180 - 0) / 90: all there is
    // Later than the newest snapshot by more than the window: nothing in it.
    assert_eq!(
        stat(
            &store,
            deploys().window(secs(30)).include_unmeshed(true),
            now + secs(31)
        )[0]
        .rps,
        None
    );
}

#[test]
fn counter_resets_and_restarted_proxies_count_the_new_values() {
    let store = Store::new();
    let web = workload("web", 4191);
    let t0 = Instant::now();
    let text = |ok| Text::default().inbound("a", ok, 0).0;
    store.ingest_at(&web, t0, &text(100));
    store.ingest_at(&web, t0 + secs(10), &text(110));
    // The counter went down: a reset; all 5 are new.
    store.ingest_at(&web, t0 + secs(20), &text(5));
    let rows = stat(&store, deploys(), t0 + secs(20));
    assert_eq!(rows[0].rps, Some(0.75)); // (10 + 5) / 20

    // Another process (a new pid) with a higher count than before: still a restart.
    let store = Store::new();
    store.ingest_at(&web, t0, &text(100));
    store.ingest_at(&web, t0 + secs(10), &text(110));
    let restarted = Workload {
        pid: 2,
        ..web.clone()
    };
    store.ingest_at(&restarted, t0 + secs(20), &text(120));
    let rows = stat(&store, deploys(), t0 + secs(20));
    assert_eq!(rows[0].rps, Some(6.5)); // (10 + 120) / 20
}

#[test]
fn a_client_without_inbound_traffic_shows_its_outbound_numbers() {
    let store = Store::new();
    let bot = Workload {
        inbound: None,
        ..workload("vote-bot", 4200)
    };
    let t0 = Instant::now();
    store.ingest_at(&bot, t0, &Text::default().outbound("web", "true", 0, 0).0);
    store.ingest_at(
        &bot,
        t0 + secs(10),
        &Text::default().outbound("web", "true", 8, 2).0,
    );
    let rows = stat(&store, deploys(), t0 + secs(10));
    assert_eq!(rows[0].success, Some(0.8));
    assert_eq!(rows[0].rps, Some(1.0));
    assert_eq!(rows[0].direction, Some(Direction::Outbound));
    // No latency histogram: no percentiles, but the row has traffic.
    assert_eq!(rows[0].latency_ms_p50, None);
}

#[test]
fn no_traffic_is_a_dash_and_unready_proxies_are_not_meshed() {
    let store = Store::new();
    let (web, emoji, voting) = (
        workload("web", 4191),
        workload("emoji", 4200),
        workload("voting", 4210),
    );
    store.set_workloads(&[web.clone(), emoji.clone(), voting.clone()]);
    let t0 = Instant::now();
    // One scrape only: no rates yet.
    store.ingest_at(&web, t0, &Text::default().inbound("a", 5, 0).ready(true).0);
    // A proxy that says it is not ready.
    store.ingest_at(&emoji, t0, &Text::default().ready(false).0);
    // A proxy that cannot be scraped (the failure is recorded at the store's own time).
    store.record_failure(&voting, "connection refused");

    let rows = stat(&store, deploys(), t0);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0].name, "web");
    assert!(!rows[0].has_traffic());
    assert_eq!(
        render_stat(&rows, Output::Table),
        "NAME   MESHED   SUCCESS   RPS   LATENCY_P50   LATENCY_P95   LATENCY_P99   TCP_CONN\n\
         web       1/1         -     -             -             -             -          -\n"
    );

    let rows = stat(&store, deploys().include_unmeshed(true), t0);
    let meshed: Vec<String> = rows
        .iter()
        .map(|r| format!("{}={}", r.name, r.meshed))
        .collect();
    assert_eq!(meshed, ["emoji=0/1", "voting=0/1", "web=1/1"]);

    let ns = StatQuery::new(Resource::all(ResourceKind::Namespace));
    let rows = stat(&store, ns, t0);
    assert_eq!(rows[0].name, NS);
    assert_eq!(
        rows[0].meshed,
        Meshed {
            meshed: 1,
            total: 3
        }
    );

    // Stale: scraped long ago.
    assert!(stat(&store, deploys(), t0 + secs(60)).is_empty());
}

#[test]
fn to_and_from_read_the_clients_outbound_metrics() {
    let store = Store::new();
    let (web, bot, emoji, voting) = (
        workload("web", 4191),
        workload("vote-bot", 4200),
        workload("emoji", 4210),
        workload("voting", 4220),
    );
    store.set_workloads(&[web.clone(), bot.clone(), emoji.clone(), voting.clone()]);
    let t0 = Instant::now();
    let web_text = |n| {
        Text::default()
            .outbound("voting", "true", n, n)
            .outbound("emoji", "true", 2 * n, 0)
            .0
    };
    store.ingest_at(&web, t0, &web_text(0));
    store.ingest_at(&web, t0 + secs(10), &web_text(10));
    for w in [&bot, &emoji, &voting] {
        store.ingest_at(w, t0, &Text::default().outbound("web", "true", 0, 0).0);
        store.ingest_at(
            w,
            t0 + secs(10),
            &Text::default().outbound("web", "true", 5, 0).0,
        );
    }
    let now = t0 + secs(10);

    let to = Target::new(Resource::deploy("voting"));
    let rows = stat(&store, deploys().to(to), now);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!((rows[0].name.as_str(), rows[0].rps), ("web", Some(2.0)));
    assert_eq!(rows[0].success, Some(0.5));

    let from = Target::new(Resource::deploy("web"));
    let rows = stat(&store, deploys().from(from), now);
    let got: Vec<_> = rows.iter().map(|r| (r.name.as_str(), r.rps)).collect();
    assert_eq!(got, [("emoji", Some(2.0)), ("voting", Some(2.0))]);

    // To a namespace: everything web sent into it.
    let to_ns = Target::new(Resource::named(ResourceKind::Namespace, NS));
    let rows = stat(&store, deploys().to(to_ns), now);
    assert_eq!(row(&rows, "web").rps, Some(4.0));
    assert_eq!(row(&rows, "vote-bot").rps, Some(0.5));

    let both = deploys()
        .to(Target::new(Resource::deploy("a")))
        .from(Target::new(Resource::deploy("b")));
    assert!(matches!(
        store.stat_at(&both, now),
        Err(QueryError::Invalid(_))
    ));
}

#[test]
fn edges_name_both_ends_and_say_whether_mtls_was_used() {
    let store = Store::new();
    let (web, bot, voting) = (
        workload("web", 4191),
        workload("vote-bot", 4200),
        workload("voting", 4220),
    );
    store.set_workloads(&[web.clone(), bot.clone(), voting.clone()]);
    let t0 = Instant::now();
    let web_text = |n| {
        Text::default()
            .inbound("vote-bot", n, n)
            .outbound("voting", "true", n, 0)
            // emoji has no identity in discovery: plaintext.
            .outbound("emoji", "no_identity", n, 0)
            .0
    };
    store.ingest_at(&web, t0, &web_text(0));
    store.ingest_at(&web, t0 + secs(10), &web_text(10));
    let voting_text = |n| Text::default().inbound("web", n, 0).0;
    store.ingest_at(&voting, t0, &voting_text(0));
    store.ingest_at(&voting, t0 + secs(10), &voting_text(10));
    store.ingest_at(
        &bot,
        t0 + secs(10),
        &Text::default().outbound("web", "true", 20, 20).0,
    );

    let rows = store
        .edges_at(&EdgesQuery::new(Some(NS.to_string())), t0 + secs(10))
        .expect("edges");
    let got: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r.src.as_str(),
                r.dst.as_str(),
                r.secured,
                r.client_id.as_str(),
                r.server_id.as_str(),
            )
        })
        .collect();
    let (bot_id, web_id, voting_id) = (identity("vote-bot"), identity("web"), identity("voting"));
    assert_eq!(
        got,
        [
            ("vote-bot", "web", true, bot_id.as_str(), web_id.as_str()),
            ("web", "emoji", false, "", ""),
            ("web", "voting", true, web_id.as_str(), voting_id.as_str()),
        ]
    );
    // The server's view of the rates: 20 responses in 10 s, half failed.
    assert_eq!(rows[0].rps, Some(2.0));
    assert_eq!(rows[0].success, Some(0.5));
    assert_eq!(rows[1].no_tls_reason, "no_identity");

    assert_eq!(
        render_edges(&rows, Output::Table),
        "SRC        DST      SRC_NS      DST_NS      SECURED                          \n\
         vote-bot   web      emojivoto   emojivoto   √                                \n\
         web        emoji    emojivoto   emojivoto   Not Provided By Service Discovery\n\
         web        voting   emojivoto   emojivoto   √                                \n"
    );
    let wide = render_edges(&rows, Output::Wide);
    assert!(
        wide.lines()
            .nth(1)
            .is_some_and(|l| l.contains("vote-bot.emojivoto   web.emojivoto")),
        "{wide}"
    );
    assert!(
        store
            .edges_at(&EdgesQuery::new(Some("other".to_string())), t0 + secs(10))
            .expect("edges")
            .is_empty()
    );
}

#[test]
fn routes_group_by_route_label_and_compare_effective_with_actual() {
    let store = Store::new();
    let (web, bot) = (workload("web", 4191), workload("vote-bot", 4200));
    store.set_workloads(&[web.clone(), bot.clone()]);
    let t0 = Instant::now();
    let web_text = |n: u64| {
        Text::default()
            .inbound("vote-bot", n, 0)
            .line(
                "response_total",
                r#"direction="inbound",route="/api/vote",classification="failure""#,
                n as f64,
            )
            .0
    };
    store.ingest_at(&web, t0, &web_text(0));
    store.ingest_at(&web, t0 + secs(10), &web_text(10));
    let bot_text = |n: u64| {
        let l = format!(r#"direction="outbound",dst_service="web",dst_namespace="{NS}""#);
        Text::default()
            .line(
                "response_total",
                &format!(r#"{l},classification="success""#),
                n as f64,
            )
            .line(
                "actual_response_total",
                &format!(r#"{l},classification="success""#),
                n as f64,
            )
            .line(
                "actual_response_total",
                &format!(r#"{l},classification="failure""#),
                (n / 2) as f64,
            )
            .0
    };
    store.ingest_at(&bot, t0, &bot_text(0));
    store.ingest_at(&bot, t0 + secs(10), &bot_text(20));

    let rows = store
        .routes_at(&RoutesQuery::new("web", NS), t0 + secs(10))
        .expect("routes");
    let got: Vec<_> = rows
        .iter()
        .map(|r| (r.route.as_str(), r.success, r.rps))
        .collect();
    assert_eq!(
        got,
        [
            ("/api/vote", Some(0.0), Some(1.0)),
            (DEFAULT_ROUTE, Some(1.0), Some(1.0)),
        ]
    );
    let default = &rows[1];
    assert_eq!(default.effective_success, Some(1.0));
    assert_eq!(default.effective_rps, Some(2.0));
    assert_eq!(default.actual_rps, Some(3.0));
    assert_eq!(default.actual_success, Some(0.666_666_667));
    assert_eq!(
        render_routes(&rows, Output::Wide),
        "ROUTE       SERVICE   EFFECTIVE_SUCCESS   EFFECTIVE_RPS   ACTUAL_SUCCESS   ACTUAL_RPS   LATENCY_P50   LATENCY_P95   LATENCY_P99\n\
         /api/vote       web                   -               -                -            -             -             -             -\n\
         [DEFAULT]       web             100.00%          2.0rps           66.67%       3.0rps             -             -             -\n"
    );
    assert!(matches!(
        store.routes_at(&RoutesQuery::new("nope", NS), t0),
        Err(QueryError::NotFound(_))
    ));

    // With `--to`: web's calls to voting (none here): a `[DEFAULT]` row of dashes.
    let q = RoutesQuery::new("web", NS).to(Target::new(Resource::deploy("voting")));
    let rows = store.routes_at(&q, t0 + secs(10)).expect("routes");
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].service.as_str(), rows[0].rps), ("voting", None));
}

#[test]
fn stat_text_json_and_wide_renderings() {
    let mut a = StatRow::new(
        ResourceKind::Deployment,
        NS,
        "vote-bot",
        Meshed {
            meshed: 1,
            total: 1,
        },
    );
    a.fill(
        &rows::Golden {
            success_rps: 1.5,
            failure_rps: 0.5,
            p50: Some(1.4),
            p95: Some(95.0),
            p99: Some(1234.5),
            tcp_open: Some(2.0),
            read_bps: 10.0,
            write_bps: 20.25,
        },
        Direction::Outbound,
    );
    let b = StatRow::new(
        ResourceKind::Deployment,
        "other",
        "web",
        Meshed {
            meshed: 0,
            total: 1,
        },
    );
    let rows = [a, b];
    assert_eq!(
        render_stat(&rows, Output::Wide),
        "NAMESPACE   NAME       MESHED   SUCCESS      RPS   LATENCY_P50   LATENCY_P95   LATENCY_P99   TCP_CONN   READ_BYTES/SEC   WRITE_BYTES/SEC\n\
         emojivoto   vote-bot      1/1    75.00%   2.0rps           1ms          95ms        1235ms          2          10.0B/s           20.2B/s\n\
         other       web           0/1         -        -             -             -             -          -                -                 -\n"
    );
    let json = render_stat(&rows, Output::Json);
    let back: Vec<StatRow> = serde_json::from_str(&json).expect("json");
    assert_eq!(back, rows);
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v[0]["meshed"], "1/1");
    assert_eq!(v[0]["kind"], "deployment");
    assert_eq!(v[0]["direction"], "outbound");
    assert_eq!(v[0]["latency_ms_p99"], 1235);
    assert!(v[1]["success"].is_null());
    assert_eq!(render_stat(&[], Output::Table), "");
    assert_eq!(render_stat(&[], Output::Json), "[]\n");
}

#[test]
fn workloads_that_stop_leave_the_rows_and_age_out() {
    let store = Store::new().retention(secs(60));
    let (web, gone) = (workload("web", 4191), workload("gone", 4200));
    let t0 = Instant::now();
    store.ingest_at(&web, t0, &Text::default().inbound("gone", 0, 0).0);
    store.ingest_at(&gone, t0, &Text::default().0);
    store.set_workloads(std::slice::from_ref(&web));
    let rows = stat(&store, deploys().include_unmeshed(true), t0);
    assert_eq!(rows.len(), 1);
    assert_eq!(store.workloads_at(t0).len(), 1);
    // Its data stays for the retention (traffic it sent still counts on the other side)...
    assert!(store.read(|d| d.workloads.len()) == 2);
    // ...and then goes.
    let later = Store::new().retention(Duration::ZERO);
    later.ingest_at(&gone, Instant::now() - secs(1), "");
    later.set_workloads(&[]);
    assert_eq!(later.read(|d| d.workloads.len()), 0);
}

#[test]
fn retention_drops_old_snapshots_but_keeps_a_base() {
    let store = Store::new().retention(secs(60));
    let web = workload("web", 4191);
    let t0 = Instant::now();
    for i in 0..100 {
        store.ingest_at(
            &web,
            t0 + secs(i * 10),
            &Text::default().inbound("a", i, 0).0,
        );
    }
    let kept = store.read(|d| d.workloads.values().next().map_or(0, |w| w.snapshots.len()));
    // 60 s at one snapshot per 10 s, plus the one at the window's start.
    assert_eq!(kept, 7);
    let rows = stat(&store, deploys().window(secs(60)), t0 + secs(990));
    assert_eq!(rows[0].rps, Some(0.1));
}
