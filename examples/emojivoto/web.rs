//! `web`: the page and JSON API people (and `vote-bot`) use, calling `emoji` and `voting` over gRPC.
//!
//! | route | answers |
//! |---|---|
//! | `GET /` | an HTML page listing every emoji, each linking its detail page and a vote |
//! | `GET /emoji/{shortcode}` | an emoji's detail page (`/emoji/:joy:`) |
//! | `GET /api/list` | `[{"shortcode": ":joy:", "unicode": "😂"}, ...]` (emoji `ListAll`) |
//! | `GET`/`POST /api/vote?choice=:joy:` | `{"shortcode", "unicode"}` of the vote counted; 400 without `choice`; 404 for an unknown emoji (`FindByShortcode`); 500 and `{"error"}` when voting fails |
//! | `GET /api/leaderboard` | `[{"shortcode", "unicode", "votes"}, ...]`, most votes first (voting `Results` joined with `ListAll`) |
//!
//! **Known bugs, kept on purpose** (they are what the demo teaches you to find with the mesh):
//! - `/api/vote?choice=:doughnut:` always answers 500: `voting` fails those votes.
//! - `/emoji/:rocket:` ([`BROKEN_PAGE`]) always answers 404: the detail pages look shortcodes up
//!   through an alias table ([`PAGE_ALIASES`]) whose `:rocket:` entry is misspelled `:rockket:`.

use std::fmt::Write as _;
use std::net::IpAddr;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tonic::Status;

use super::BoxError;
use super::OutboundArgs;
use super::client::Outbound;
use super::proto::{Emoji, EmojiClient, VotingClient};

/// The emoji whose detail page always answers 404.
pub const BROKEN_PAGE: &str = ":rocket:";

/// Shortcodes the detail pages look up under another name, for links from an older version of
/// the site. KNOWN BUG, kept on purpose: the `:rocket:` entry was "fixed" into a misspelling, so
/// `/emoji/:rocket:` looks up `:rockket:`, which no emoji has, and answers 404.
pub const PAGE_ALIASES: &[(&str, &str)] = &[
    (":thumbs_up:", ":thumbsup:"),
    (":party_popper:", ":tada:"),
    (":rocket:", ":rockket:"),
];

/// `mesh emojivoto web` / `cargo run --example emojivoto -- web`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Port to serve HTTP on (HTTP/1.1 and HTTP/2, no TLS).
    #[arg(long, env = "WEB_PORT", default_value_t = 8080)]
    pub port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Authority (host:port) of the emoji service.
    #[arg(long, env = "EMOJISVC_HOST", default_value = "127.0.0.1:8081")]
    pub emoji_authority: String,
    /// Authority (host:port) of the voting service.
    #[arg(long, env = "VOTINGSVC_HOST", default_value = "127.0.0.1:8082")]
    pub voting_authority: String,
    #[command(flatten)]
    pub outbound: OutboundArgs,
}

/// Binds `--bind:--port` and serves until the process is stopped.
pub async fn run(args: Args) -> Result<(), BoxError> {
    let upstreams = Upstreams::new(
        Outbound::new(args.outbound.outbound_addr),
        &args.emoji_authority,
        &args.voting_authority,
    )?;
    let listener = super::bind("web", args.bind, args.port).await?;
    serve(listener, upstreams).await
}

/// Serves the web app on an already-bound listener (tests bind `127.0.0.1:0`).
pub async fn serve(listener: TcpListener, upstreams: Upstreams) -> Result<(), BoxError> {
    super::serve(listener, router(upstreams)).await
}

/// The web app's routes, for serving or for driving with `oneshot` in a test.
pub fn router(upstreams: Upstreams) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/emoji/{shortcode}", get(detail))
        .route("/api/list", get(list))
        .route("/api/vote", get(vote).post(vote))
        .route("/api/leaderboard", get(leaderboard))
        .fallback(not_found)
        .with_state(upstreams)
}

/// The gRPC clients web calls.
#[derive(Clone, Debug)]
pub struct Upstreams {
    pub emoji: EmojiClient,
    pub voting: VotingClient,
}

impl Upstreams {
    /// Clients for the services at these authorities, connecting as `outbound` says.
    pub fn new(
        outbound: Outbound,
        emoji_authority: &str,
        voting_authority: &str,
    ) -> Result<Self, BoxError> {
        Ok(Self {
            emoji: EmojiClient::new(outbound.grpc(emoji_authority)?),
            voting: VotingClient::new(outbound.grpc(voting_authority)?),
        })
    }
}

/// An entry of `/api/list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    pub shortcode: String,
    pub unicode: String,
}

impl From<Emoji> for Listed {
    fn from(e: Emoji) -> Self {
        Self {
            shortcode: e.shortcode,
            unicode: e.unicode,
        }
    }
}

/// An entry of `/api/leaderboard`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ranked {
    pub shortcode: String,
    pub unicode: String,
    pub votes: i32,
}

// === handlers ===

async fn index(State(up): State<Upstreams>) -> Response {
    let emojis = match up.emoji.list_all().await {
        Ok(list) => list,
        Err(s) => {
            return page_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "/",
                &upstream("emoji", &s),
            );
        }
    };
    let mut html = String::from(HEAD);
    html.push_str(
        "<h1>emojivoto</h1>\n<p>Vote for your favourite emoji. \
         <a href=\"/api/leaderboard\">Leaderboard</a> (JSON)</p>\n<ul>\n",
    );
    for e in &emojis {
        let (sc, uni) = (escape(&e.shortcode), escape(&e.unicode));
        let _ = writeln!(
            html,
            "<li><a class=\"e\" href=\"/emoji/{sc}\" title=\"{sc}\">{uni}</a><br>\
             <a href=\"/api/vote?choice={sc}\">vote</a></li>"
        );
    }
    html.push_str("</ul>\n</body></html>\n");
    Html(html).into_response()
}

async fn detail(State(up): State<Upstreams>, Path(shortcode): Path<String>) -> Response {
    let key = page_lookup_key(&shortcode);
    let path = format!("/emoji/{shortcode}");
    match up.emoji.find_by_shortcode(key).await {
        Ok(Some(e)) => {
            let (sc, uni) = (escape(&e.shortcode), escape(&e.unicode));
            let mut html = String::from(HEAD);
            let _ = write!(
                html,
                "<p class=\"big\">{uni}</p>\n<h1>{sc}</h1>\n\
                 <p><a href=\"/api/vote?choice={sc}\">vote for {sc}</a> · \
                 <a href=\"/\">all emojis</a></p>\n</body></html>\n"
            );
            Html(html).into_response()
        }
        Ok(None) => page_error(
            StatusCode::NOT_FOUND,
            &path,
            &format!("no emoji with shortcode {key}"),
        ),
        Err(s) => page_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &path,
            &upstream("emoji", &s),
        ),
    }
}

async fn list(State(up): State<Upstreams>) -> Response {
    match up.emoji.list_all().await {
        Ok(list) => json(
            StatusCode::OK,
            &list.into_iter().map(Listed::from).collect::<Vec<_>>(),
        ),
        Err(s) => api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "/api/list",
            &upstream("emoji", &s),
        ),
    }
}

async fn vote(State(up): State<Upstreams>, RawQuery(query): RawQuery) -> Response {
    const PATH: &str = "/api/vote";
    let choice = query
        .as_deref()
        .and_then(|q| query_param(q, "choice"))
        .filter(|c| !c.is_empty());
    let Some(choice) = choice else {
        return api_error(StatusCode::BAD_REQUEST, PATH, "missing ?choice=:shortcode:");
    };
    let emoji = match up.emoji.find_by_shortcode(&choice).await {
        Ok(Some(emoji)) => emoji,
        Ok(None) => {
            let msg = format!("no emoji with shortcode {choice}");
            return api_error(StatusCode::NOT_FOUND, PATH, &msg);
        }
        Err(s) => {
            return api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                PATH,
                &upstream("emoji", &s),
            );
        }
    };
    match up.voting.vote(&emoji.shortcode).await {
        Ok(()) => json(StatusCode::OK, &Listed::from(emoji)),
        Err(s) => {
            let msg = format!(
                "voting for {} failed: {}",
                emoji.shortcode,
                upstream("voting", &s)
            );
            api_error(StatusCode::INTERNAL_SERVER_ERROR, PATH, &msg)
        }
    }
}

async fn leaderboard(State(up): State<Upstreams>) -> Response {
    const PATH: &str = "/api/leaderboard";
    let (results, emojis) = tokio::join!(up.voting.results(), up.emoji.list_all());
    let results = match results {
        Ok(r) => r,
        Err(s) => {
            return api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                PATH,
                &upstream("voting", &s),
            );
        }
    };
    let emojis = match emojis {
        Ok(e) => e,
        Err(s) => {
            return api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                PATH,
                &upstream("emoji", &s),
            );
        }
    };
    // Results arrive ranked; keep that order, and only shortcodes the catalogue knows.
    let ranked: Vec<Ranked> = results
        .into_iter()
        .filter_map(|r| {
            let e = emojis.iter().find(|e| e.shortcode == r.shortcode)?;
            Some(Ranked {
                shortcode: r.shortcode,
                unicode: e.unicode.clone(),
                votes: r.votes,
            })
        })
        .collect();
    json(StatusCode::OK, &ranked)
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

// === helpers ===

/// The shortcode a detail page looks up for `shortcode` (see [`PAGE_ALIASES`]).
pub fn page_lookup_key(shortcode: &str) -> &str {
    PAGE_ALIASES
        .iter()
        .find(|(from, _)| *from == shortcode)
        .map_or(shortcode, |(_, to)| to)
}

/// The first value of `name` in a query string, percent-decoded (`+` is a space).
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| percent_decode(v))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn upstream(service: &str, status: &Status) -> String {
    format!(
        "{service} service answered {:?}: {}",
        status.code(),
        status.message()
    )
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_string(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding JSON: {e}\n"),
        )
            .into_response(),
    }
}

/// A JSON `{"error": ...}` answer, logged.
fn api_error(status: StatusCode, path: &str, message: &str) -> Response {
    eprintln!("web: {path}: {}: {message}", status.as_u16());
    json(status, &serde_json::json!({ "error": message }))
}

/// An HTML error page, logged.
fn page_error(status: StatusCode, path: &str, message: &str) -> Response {
    eprintln!("web: {path}: {}: {message}", status.as_u16());
    let mut html = String::from(HEAD);
    let _ = write!(
        html,
        "<h1>{} {}</h1>\n<p>{}</p>\n<p><a href=\"/\">all emojis</a></p>\n</body></html>\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        escape(message)
    );
    (status, Html(html)).into_response()
}

const HEAD: &str = "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>emojivoto</title>\
<style>body{font-family:sans-serif;max-width:48em;margin:2em auto}\
ul{padding:0}li{display:inline-block;margin:.4em;text-align:center}\
a{text-decoration:none}.e{font-size:2em}.big{font-size:6em;margin:0}</style></head>\n<body>\n";

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
