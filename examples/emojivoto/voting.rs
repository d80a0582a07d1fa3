//! `voting`: the tally service (`emojivoto.v1.VotingService`), votes kept in memory.
//!
//! **Known bug, kept on purpose:** a vote for [`DOUGHNUT`] always fails with gRPC status
//! `UNKNOWN` and the message `ERROR`, as Linkerd's emojivoto does. The web answers those votes
//! with a 500, so `web`, `voting` and `vote-bot` all show a success rate below 100% in
//! `mesh stat`, and `mesh tap deploy/web --path /api/vote` shows where the failures come from.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::net::TcpListener;
use tonic::Status;

use super::proto::{
    self, ResultsRequest, ResultsResponse, VoteRequest, VoteResponse, VotingResult,
};
use super::{BoxError, BoxFuture};

/// The shortcode whose votes always fail.
pub const DOUGHNUT: &str = ":doughnut:";

/// `mesh emojivoto voting` / `cargo run --example emojivoto -- voting`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Port to serve gRPC on (plain HTTP/2, no TLS).
    #[arg(long, env = "GRPC_PORT", default_value_t = 8082)]
    pub port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
}

/// Binds `--bind:--port` and serves until the process is stopped.
pub async fn run(args: Args) -> Result<(), BoxError> {
    let listener = super::bind("voting", args.bind, args.port).await?;
    serve(listener).await
}

/// Serves the voting service on an already-bound listener (tests bind `127.0.0.1:0`).
pub async fn serve(listener: TcpListener) -> Result<(), BoxError> {
    super::serve(listener, VotingServer::default()).await
}

// === impl VotingServer ===

/// The service as a tower `Service<http::Request<B>>`, routing by gRPC method path. Clones share
/// the tally.
#[derive(Clone, Debug, Default)]
pub struct VotingServer {
    votes: Arc<Mutex<HashMap<String, i32>>>,
}

impl VotingServer {
    /// Counts one vote for `shortcode`, or fails like the original for [`DOUGHNUT`].
    pub fn vote(&self, shortcode: &str) -> Result<(), Status> {
        if shortcode.is_empty() {
            return Err(Status::invalid_argument("no shortcode to vote for"));
        }
        if shortcode == DOUGHNUT {
            // KNOWN BUG, kept on purpose: the demo's failure to find with the mesh.
            return Err(Status::unknown("ERROR"));
        }
        let mut votes = self.votes.lock().unwrap_or_else(PoisonError::into_inner);
        let n = votes.entry(shortcode.to_owned()).or_default();
        *n = n.saturating_add(1);
        Ok(())
    }

    /// The tally, most votes first (ties by shortcode).
    pub fn results(&self) -> Vec<VotingResult> {
        let votes = self.votes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut results: Vec<VotingResult> = votes
            .iter()
            .map(|(shortcode, &votes)| VotingResult {
                shortcode: shortcode.clone(),
                votes,
            })
            .collect();
        drop(votes);
        results.sort_by(|a, b| {
            b.votes
                .cmp(&a.votes)
                .then_with(|| a.shortcode.cmp(&b.shortcode))
        });
        results
    }
}

impl<B> tower::Service<http::Request<B>> for VotingServer
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<BoxError> + Send,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            Ok(match req.uri().path() {
                proto::path::VOTE => {
                    proto::serve_unary(req, |r: VoteRequest| async move {
                        this.vote(&r.shortcode).map(|()| VoteResponse {})
                    })
                    .await
                }
                proto::path::RESULTS => {
                    proto::serve_unary(req, |_: ResultsRequest| async move {
                        Ok(ResultsResponse {
                            results: this.results(),
                        })
                    })
                    .await
                }
                other => proto::unimplemented(other),
            })
        })
    }
}
