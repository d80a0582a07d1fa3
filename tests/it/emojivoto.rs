//! emojivoto in-process: emoji, voting and web on port-0 listeners, asked by a blocking HTTP client
//! no one here wrote (`crate::http`) and by the vote-bot; and the `MESH_OUTBOUND_ADDR` contract
//! against a relay standing in for the sidecar.

#[path = "../../examples/emojivoto/mod.rs"]
pub(crate) mod app;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use app::client::Outbound;
use app::vote_bot::{self, Tally};
use app::web::{self, Listed, Ranked, Upstreams};
use app::{BoxError, emoji, voting};

/// Bounds every wait in these tests.
const PATIENCE: Duration = Duration::from_secs(30);

async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(PATIENCE, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer in {PATIENCE:?}"))
}

/// Server tasks, stopped when the test ends.
#[derive(Default)]
struct Servers(Vec<JoinHandle<()>>);

impl Drop for Servers {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

impl Servers {
    /// Binds 127.0.0.1:0 and serves on it; connections queue from the moment it returns.
    async fn start<F, Fut>(&mut self, name: &'static str, serve: F) -> SocketAddr
    where
        F: FnOnce(TcpListener) -> Fut,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        let listener = within("bind", TcpListener::bind("127.0.0.1:0"))
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        self.spawn(name, serve(listener));
        addr
    }

    fn spawn<Fut>(&mut self, name: &'static str, serving: Fut)
    where
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.0.push(tokio::spawn(async move {
            if let Err(e) = serving.await {
                panic!("{name} stopped: {e}");
            }
        }));
    }
}

/// emoji, voting, and web calling them directly; returns web's address.
async fn start_direct(servers: &mut Servers) -> SocketAddr {
    let emoji = servers.start("emoji", emoji::serve).await;
    let voting = servers.start("voting", voting::serve).await;
    let upstreams = Upstreams::new(Outbound::direct(), &emoji.to_string(), &voting.to_string())
        .expect("clients");
    servers
        .start("web", move |l| web::serve(l, upstreams))
        .await
}

/// GET with the blocking test client, on a blocking thread.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let path = path.to_owned();
    within(
        "GET",
        tokio::task::spawn_blocking(move || crate::http::get(addr, &path)),
    )
    .await
    .expect("client thread")
}

#[tokio::test]
async fn api_votes_leaderboard_and_the_known_bugs() {
    let mut servers = Servers::default();
    let web = start_direct(&mut servers).await;

    let (status, body) = get(web, "/api/list").await;
    assert_eq!(status, 200, "{body}");
    let list: Vec<Listed> = serde_json::from_str(&body).expect("a JSON list of emojis");
    assert_eq!(list.len(), emoji::EMOJIS.len());
    assert!(list.len() >= 30, "a realistic list: {}", list.len());
    assert_eq!(
        list[0],
        Listed {
            shortcode: ":joy:".into(),
            unicode: "😂".into()
        }
    );
    assert!(list.iter().any(|e| e.shortcode == ":doughnut:"));

    // The doughnut bug: voting fails, web answers 500 with a JSON error.
    let (status, body) = get(web, "/api/vote?choice=:doughnut:").await;
    assert_eq!(status, 500, "{body}");
    let err: serde_json::Value = serde_json::from_str(&body).expect("JSON error");
    let msg = err["error"].as_str().expect("an error message");
    assert!(msg.contains(":doughnut:") && msg.contains("ERROR"), "{msg}");

    for choice in [":joy:", "%3Ajoy%3A", ":sunglasses:"] {
        let (status, body) = get(web, &format!("/api/vote?choice={choice}")).await;
        assert_eq!(status, 200, "{choice}: {body}");
    }
    assert_eq!(get(web, "/api/vote?choice=:unicorn:").await.0, 404);
    assert_eq!(get(web, "/api/vote").await.0, 400);

    let (status, body) = get(web, "/api/leaderboard").await;
    assert_eq!(status, 200, "{body}");
    let board: Vec<Ranked> = serde_json::from_str(&body).expect("a JSON leaderboard");
    let board: Vec<(&str, &str, i32)> = board
        .iter()
        .map(|r| (r.shortcode.as_str(), r.unicode.as_str(), r.votes))
        .collect();
    assert_eq!(board, [(":joy:", "😂", 2), (":sunglasses:", "😎", 1)]);

    // The 404 bug: :rocket:'s detail page, and only it.
    assert_eq!(web::BROKEN_PAGE, ":rocket:");
    let (status, body) = get(web, "/emoji/:rocket:").await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains(":rockket:"),
        "the page names what it looked up: {body}"
    );
    let (status, body) = get(web, "/emoji/:joy:").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("😂"), "{body}");
    assert_eq!(get(web, "/emoji/:tada:").await.0, 200);

    let (status, body) = get(web, "/").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("href=\"/emoji/:rocket:\"") && body.contains("/api/vote?choice=:joy:"),
        "the page links details and votes: {body}"
    );
}

#[tokio::test]
async fn vote_bot_sees_successes_and_doughnut_failures() {
    let mut servers = Servers::default();
    let web = start_direct(&mut servers).await;

    let config = vote_bot::Config {
        web_authority: web.to_string(),
        outbound: Outbound::direct(),
        interval: Duration::from_millis(5),
        iterations: Some(40),
        seed: Some(7),
    };
    let tally: Tally = within("vote-bot", vote_bot::run_with(config))
        .await
        .expect("vote-bot runs");
    assert_eq!((tally.views_ok, tally.views_failed), (80, 0), "{tally}");
    assert_eq!(tally.votes_ok + tally.votes_failed, 40, "{tally}");
    assert!(tally.votes_ok > 0 && tally.votes_failed > 0, "{tally}");

    let (_, body) = get(web, "/api/leaderboard").await;
    let board: Vec<Ranked> = serde_json::from_str(&body).expect("a JSON leaderboard");
    let counted: i32 = board.iter().map(|r| r.votes).sum();
    assert_eq!(u64::try_from(counted).ok(), Some(tally.votes_ok), "{body}");
    assert!(board.iter().all(|r| r.shortcode != ":doughnut:"), "{body}");
}

// === the sidecar contract ===

/// A stand-in for the sidecar's outbound listener: records each request's authority (HTTP/1
/// `Host`, HTTP/2 `:authority`) and forwards it, in the same HTTP version, to the backend that
/// authority names.
#[derive(Clone)]
struct Relay {
    routes: Arc<HashMap<String, SocketAddr>>,
    seen: Arc<Mutex<Vec<(Version, String)>>>,
    h1: Client<HttpConnector, Incoming>,
    h2: Client<HttpConnector, Incoming>,
}

impl Relay {
    fn new(routes: HashMap<String, SocketAddr>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self {
            routes: Arc::new(routes),
            seen: Arc::default(),
            h1: Client::builder(TokioExecutor::new()).build(connector.clone()),
            h2: Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build(connector),
        }
    }

    async fn forward(
        self,
        mut req: http::Request<Incoming>,
    ) -> Result<http::Response<Incoming>, BoxError> {
        let version = req.version();
        let authority = if version == Version::HTTP_2 {
            req.uri().authority().map(ToString::to_string)
        } else {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        }
        .ok_or("request without an authority")?;
        // HTTP/1 clients leave the default port out of `Host`, as RFC 9110 allows.
        let authority = if authority.contains(':') {
            authority
        } else {
            format!("{authority}:80")
        };
        self.seen
            .lock()
            .expect("seen")
            .push((version, authority.clone()));
        let backend = self
            .routes
            .get(&authority)
            .ok_or_else(|| format!("no route for {authority}"))?;
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        *req.uri_mut() = Uri::builder()
            .scheme("http")
            .authority(backend.to_string())
            .path_and_query(path)
            .build()?;
        let client = if version == Version::HTTP_2 {
            &self.h2
        } else {
            &self.h1
        };
        Ok(client.request(req).await?)
    }

    fn seen(&self) -> Vec<(Version, String)> {
        self.seen.lock().expect("seen").clone()
    }
}

#[tokio::test]
async fn outbound_addr_gets_every_connection_and_requests_keep_their_authority() {
    const EMOJI: &str = "emoji-svc.emojivoto:8080";
    const VOTING: &str = "voting-svc.emojivoto:8080";
    const WEB: &str = "web-svc.emojivoto:80";

    let mut servers = Servers::default();
    let emoji = servers.start("emoji", emoji::serve).await;
    let voting = servers.start("voting", voting::serve).await;

    // The relay's address is known before web exists: bind it first, route to web afterwards.
    let relay_listener = within("bind", TcpListener::bind("127.0.0.1:0"))
        .await
        .expect("bind relay");
    let relay_addr = relay_listener.local_addr().expect("relay address");
    let via = Outbound::via(relay_addr);

    // None of these names resolve: every request reaches its server through the relay or fails.
    let upstreams = Upstreams::new(via, EMOJI, VOTING).expect("clients");
    let web = servers
        .start("web", move |l| web::serve(l, upstreams))
        .await;
    let relay = Relay::new(HashMap::from([
        (EMOJI.to_owned(), emoji),
        (VOTING.to_owned(), voting),
        (WEB.to_owned(), web),
    ]));
    let svc = {
        let relay = relay.clone();
        tower::service_fn(move |req| {
            let relay = relay.clone();
            async move {
                let forwarded = relay.forward(req).await;
                if let Err(e) = &forwarded {
                    eprintln!("relay: {e}");
                }
                forwarded
            }
        })
    };
    servers.spawn("relay", app::serve(relay_listener, svc));

    let config = vote_bot::Config {
        web_authority: WEB.to_owned(),
        outbound: via,
        interval: Duration::from_millis(5),
        iterations: Some(40),
        seed: Some(7),
    };
    let tally = within("vote-bot", vote_bot::run_with(config))
        .await
        .expect("vote-bot runs");
    assert_eq!(tally.views_failed, 0, "{tally}");
    assert!(tally.votes_ok > 0 && tally.votes_failed > 0, "{tally}");

    let seen = relay.seen();
    let count = |version: Version, authority: &str| {
        seen.iter()
            .filter(|(v, a)| *v == version && a == authority)
            .count()
    };
    // vote-bot -> web: HTTP/1.1 with Host; web -> emoji and voting: gRPC (HTTP/2) with :authority.
    assert_eq!(count(Version::HTTP_11, WEB), 120, "{seen:?}");
    // Per iteration: ListAll for `/` and for `/api/list`, FindByShortcode and Vote for the vote.
    assert_eq!(count(Version::HTTP_2, EMOJI), 120, "{seen:?}");
    assert_eq!(count(Version::HTTP_2, VOTING), 40, "{seen:?}");
    assert_eq!(seen.len(), 120 + 120 + 40, "{seen:?}");
}

// === small parts ===

#[test]
fn query_values_are_percent_decoded() {
    assert_eq!(
        web::query_param("a=1&choice=%3Ajoy%3A", "choice").as_deref(),
        Some(":joy:")
    );
    assert_eq!(
        web::query_param("choice=:joy:&choice=:x:", "choice").as_deref(),
        Some(":joy:")
    );
    assert_eq!(web::query_param("choice", "choice").as_deref(), Some(""));
    assert_eq!(web::query_param("x=1", "choice"), None);
    assert_eq!(
        web::query_param("choice=a+b%2", "choice").as_deref(),
        Some("a b%2")
    );
}

#[test]
fn only_rocket_has_a_broken_page() {
    for &(shortcode, _) in emoji::EMOJIS {
        let key = web::page_lookup_key(shortcode);
        let found = emoji::EMOJIS.iter().any(|&(s, _)| s == key);
        assert_eq!(found, shortcode != web::BROKEN_PAGE, "{shortcode} -> {key}");
    }
}
