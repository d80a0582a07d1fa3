//! emojivoto in Rust: Linkerd's demo application, four small apps to put in a mesh.
//!
//! ```text
//!  vote-bot ──HTTP──▶ web ──gRPC──▶ emoji   (emojivoto.v1.EmojiService: ListAll, FindByShortcode)
//!                        └──gRPC──▶ voting  (emojivoto.v1.VotingService: Vote, Results)
//! ```
//!
//! Run them by hand, each in its own terminal (the defaults fit together), then open
//! <http://127.0.0.1:8080>:
//!
//! ```text
//! cargo run --example emojivoto -- emoji      # gRPC on 127.0.0.1:8081
//! cargo run --example emojivoto -- voting     # gRPC on 127.0.0.1:8082
//! cargo run --example emojivoto -- web        # HTTP on 127.0.0.1:8080, calls the two above
//! cargo run --example emojivoto -- vote-bot   # a vote a second on 127.0.0.1:8080
//! ```
//!
//! or all in a mesh with `mesh demo`, which runs the same code as `mesh emojivoto <app>`, each app
//! behind its own sidecar through `mesh run`.
//!
//! | app | flag | env | default |
//! |---|---|---|---|
//! | `emoji` | `--port` | `GRPC_PORT` | 8081 |
//! | `voting` | `--port` | `GRPC_PORT` | 8082 |
//! | `web` | `--port` | `WEB_PORT` | 8080 |
//! | `web` | `--emoji-authority` | `EMOJISVC_HOST` | `127.0.0.1:8081` |
//! | `web` | `--voting-authority` | `VOTINGSVC_HOST` | `127.0.0.1:8082` |
//! | `vote-bot` | `--web-authority` | `WEB_HOST` | `127.0.0.1:8080` |
//! | `vote-bot` | `--interval`, `--iterations`, `--seed` | | `1s`, forever, random |
//! | servers | `--bind` | | `127.0.0.1` |
//! | clients | `--outbound-addr` | `MESH_OUTBOUND_ADDR` | unset: connect to the authority |
//!
//! The apps speak plain HTTP/1.1, HTTP/2 and gRPC and know nothing of the mesh: the one seam is
//! [`client`], where `MESH_OUTBOUND_ADDR` sends every connection to the sidecar while requests keep
//! their authority. Servers stop cleanly (exit 0) on SIGTERM or Ctrl-C.
//!
//! **Known bugs, kept on purpose**, so the mesh has something to find:
//! - a vote for `:doughnut:` always fails: `voting` answers gRPC `UNKNOWN` "ERROR" and `web`
//!   answers `/api/vote?choice=:doughnut:` with a 500 ([`voting::DOUGHNUT`]); `vote-bot` picks it
//!   15% of the time;
//! - the detail page of `:rocket:` always answers 404: `web` looks it up under a misspelled
//!   shortcode ([`web::BROKEN_PAGE`], [`web::PAGE_ALIASES`]).
//!
//! The gRPC API is in `emojivoto.proto`; [`proto`] implements it by hand, without protoc.
//!
//! This module tree is compiled into three crates: the `emojivoto` example (`main.rs`), the `mesh`
//! binary (`mesh emojivoto <app>`), and the `mesh` package's integration tests (which start the
//! apps in-process on port 0). Each uses a different part of it, hence the two `allow`s below.
#![allow(dead_code, unreachable_pub)]

pub mod client;
pub mod emoji;
pub mod proto;
pub mod vote_bot;
pub mod voting;
pub mod web;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// The apps' error type.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A boxed, sendable future (what hand-written tower services return).
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The four apps, as subcommands: `emojivoto <app> [flags]`, `mesh emojivoto <app> [flags]`.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum App {
    /// The emoji catalogue (gRPC).
    Emoji(emoji::Args),
    /// The vote tally (gRPC); votes for :doughnut: fail.
    Voting(voting::Args),
    /// The web page and JSON API (HTTP), calling emoji and voting.
    Web(web::Args),
    /// Load: a page view and a vote every --interval.
    VoteBot(vote_bot::Args),
}

/// The command line of the `emojivoto` example.
#[derive(clap::Parser, Debug)]
#[command(name = "emojivoto", about = "Linkerd's emojivoto demo, in Rust")]
pub struct Cli {
    #[command(subcommand)]
    pub app: App,
}

/// Where clients connect: the sidecar when `mesh run` set `MESH_OUTBOUND_ADDR`.
#[derive(clap::Args, Debug, Clone, Copy, Default)]
pub struct OutboundArgs {
    /// Send every outgoing connection to this address (the mesh sidecar); requests keep their
    /// authority. Unset: connect to each authority directly.
    #[arg(long, env = "MESH_OUTBOUND_ADDR", value_name = "IP:PORT")]
    pub outbound_addr: Option<SocketAddr>,
}

/// Runs `app` until it ends (vote-bot with `--iterations`) or SIGTERM/Ctrl-C.
pub async fn run(app: App) -> Result<(), BoxError> {
    let name = match &app {
        App::Emoji(_) => "emoji",
        App::Voting(_) => "voting",
        App::Web(_) => "web",
        App::VoteBot(_) => "vote-bot",
    };
    let app = async move {
        match app {
            App::Emoji(args) => emoji::run(args).await,
            App::Voting(args) => voting::run(args).await,
            App::Web(args) => web::run(args).await,
            App::VoteBot(args) => vote_bot::run(args).await,
        }
    };
    tokio::select! {
        result = app => result,
        () = mesh_core::signal::shutdown() => {
            println!("{name}: stopping");
            Ok(())
        }
    }
}

/// Binds `ip:port` for `app` and says so on stdout.
pub async fn bind(app: &str, ip: IpAddr, port: u16) -> Result<TcpListener, BoxError> {
    let addr = SocketAddr::new(ip, port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("{app}: cannot listen on {addr}: {e}"))?;
    println!("{app}: listening on {}", listener.local_addr()?);
    Ok(listener)
}

/// Serves `svc` on every connection `listener` accepts, HTTP/1.1 or HTTP/2 (prior knowledge, as
/// gRPC clients and the mesh's sidecar use), until the future is dropped.
pub async fn serve<S, B>(listener: TcpListener, svc: S) -> Result<(), BoxError>
where
    S: tower::Service<http::Request<Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: say so, back off, keep serving.
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let svc = TowerToHyperService::new(svc.clone());
        tokio::spawn(async move {
            // A peer that goes away mid-request is routine for a server; nothing to report.
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
