//! `vote-bot`: steady load on `web`, like a visitor who never leaves.
//!
//! Every `--interval` (default 1 s) it views the page (`GET /`), fetches the list
//! (`GET /api/list`) and votes (`GET /api/vote?choice=...`) for a random emoji: `:doughnut:` with
//! probability [`DOUGHNUT_PROBABILITY`], otherwise any emoji of the list, so within a minute the
//! doughnut votes' 500s put web's success rate clearly below 100%. It prints one line per request
//! and runs until stopped (or for `--iterations`). Errors (web not up yet, a 500) are logged and
//! counted, never fatal.

use std::fmt::{self, Write as _};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Authority;
use http::{StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use tokio::time::{Instant, timeout};

use super::BoxError;
use super::OutboundArgs;
use super::client::{HttpClient, Outbound, error_chain};
use super::voting::DOUGHNUT;
use super::web::Listed;

/// How often a vote goes to `:doughnut:` (and fails): about 9 failed votes a minute at 1/s.
pub const DOUGHNUT_PROBABILITY: f64 = 0.15;

/// How long one request may take before the bot gives up on it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// `mesh emojivoto vote-bot` / `cargo run --example emojivoto -- vote-bot`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Authority (host:port) of the web app.
    #[arg(long, env = "WEB_HOST", default_value = "127.0.0.1:8080")]
    pub web_authority: String,
    /// Pause between iterations (`1s`, `250ms`).
    #[arg(long, default_value = "1s", value_parser = mesh_core::duration::parse)]
    pub interval: Duration,
    /// Stop after this many iterations (default: run until stopped).
    #[arg(long)]
    pub iterations: Option<u64>,
    /// Seed for the choice of emojis, to replay a run.
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub outbound: OutboundArgs,
}

/// What the bot is told to do.
#[derive(Clone, Debug)]
pub struct Config {
    pub web_authority: String,
    pub outbound: Outbound,
    pub interval: Duration,
    pub iterations: Option<u64>,
    pub seed: Option<u64>,
}

impl From<Args> for Config {
    fn from(a: Args) -> Self {
        Self {
            web_authority: a.web_authority,
            outbound: Outbound::new(a.outbound.outbound_addr),
            interval: a.interval,
            iterations: a.iterations,
            seed: a.seed,
        }
    }
}

/// What the bot saw: page views (`/`, `/api/list`) and votes, by outcome (2xx or not).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub views_ok: u64,
    pub views_failed: u64,
    pub votes_ok: u64,
    pub votes_failed: u64,
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "views {} ok, {} failed; votes {} ok, {} failed",
            self.views_ok, self.views_failed, self.votes_ok, self.votes_failed
        )
    }
}

/// Runs until stopped or for `--iterations`.
pub async fn run(args: Args) -> Result<(), BoxError> {
    let tally = run_with(args.into()).await?;
    println!("vote-bot: done: {tally}");
    Ok(())
}

/// Runs the bot as configured; returns what it saw when `iterations` is set.
pub async fn run_with(config: Config) -> Result<Tally, BoxError> {
    let base: Authority = config.web_authority.parse().map_err(|e| {
        format!(
            "{:?} is not an authority (host:port): {e}",
            config.web_authority
        )
    })?;
    let client: HttpClient<Empty<Bytes>> = config.outbound.http1();
    let mut rng = match config.seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::from_os_rng(),
    };
    let via = config
        .outbound
        .via_addr()
        .map(|a| format!(" via {a}"))
        .unwrap_or_default();
    println!(
        "vote-bot: voting on http://{}{via} every {:?}",
        config.web_authority, config.interval
    );

    let mut tally = Tally::default();
    let mut n = 0u64;
    loop {
        if config.iterations.is_some_and(|max| n >= max) {
            return Ok(tally);
        }
        if n > 0 {
            tokio::time::sleep(config.interval).await;
        }
        n += 1;

        let ok = get(&client, &base, "/").await.is_some();
        count(&mut tally.views_ok, &mut tally.views_failed, ok);

        let list = get(&client, &base, "/api/list").await;
        count(&mut tally.views_ok, &mut tally.views_failed, list.is_some());
        let emojis: Vec<Listed> = match list.map(|body| serde_json::from_slice(&body)) {
            Some(Ok(list)) => list,
            Some(Err(e)) => {
                println!("vote-bot: /api/list: not a list of emojis: {e}");
                continue;
            }
            None => continue,
        };

        let choice = if rng.random_bool(DOUGHNUT_PROBABILITY) {
            DOUGHNUT
        } else {
            match emojis.choose(&mut rng) {
                Some(e) => e.shortcode.as_str(),
                None => continue,
            }
        };
        let ok = get(
            &client,
            &base,
            &format!("/api/vote?choice={}", encode(choice)),
        )
        .await
        .is_some();
        count(&mut tally.votes_ok, &mut tally.votes_failed, ok);
    }
}

fn count(ok: &mut u64, failed: &mut u64, success: bool) {
    *if success { ok } else { failed } += 1;
}

/// GETs `path` from web and logs one line; the body when the answer is a 2xx.
async fn get(client: &HttpClient<Empty<Bytes>>, base: &Authority, path: &str) -> Option<Bytes> {
    let start = Instant::now();
    let result = timeout(REQUEST_TIMEOUT, fetch(client, base, path)).await;
    let took = start.elapsed();
    match result {
        Ok(Ok((status, body))) if status.is_success() => {
            println!("vote-bot: GET {path} -> {} in {took:.1?}", status.as_u16());
            Some(body)
        }
        Ok(Ok((status, body))) => {
            let body = String::from_utf8_lossy(&body);
            println!(
                "vote-bot: GET {path} -> {} in {took:.1?}: {}",
                status.as_u16(),
                body.trim()
            );
            None
        }
        Ok(Err(e)) => {
            println!(
                "vote-bot: GET {path} -> error in {took:.1?}: {}",
                error_chain(&*e)
            );
            None
        }
        Err(_) => {
            println!("vote-bot: GET {path} -> no answer in {REQUEST_TIMEOUT:?}");
            None
        }
    }
}

async fn fetch(
    client: &HttpClient<Empty<Bytes>>,
    base: &Authority,
    path: &str,
) -> Result<(StatusCode, Bytes), BoxError> {
    let uri = Uri::builder()
        .scheme("http")
        .authority(base.clone())
        .path_and_query(path)
        .build()?;
    let req = http::Request::get(uri).body(Empty::new())?;
    let rsp = client.request(req).await?;
    let status = rsp.status();
    let body = rsp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// Percent-encodes a query value (shortcodes are mostly safe; `+` and `&` are not).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}
