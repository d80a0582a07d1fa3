//! The emojivoto gRPC API without protoc: prost messages and tonic glue written by hand.
//!
//! `emojivoto.proto` beside this file is the reference; each message here carries the same field
//! tags, so any gRPC client generated from that file (grpcurl, Python, Go) talks to these servers.
//! The glue is what tonic-build would generate, reduced to what the demo needs:
//!
//! - clients ([`EmojiClient`], [`VotingClient`]) call `tonic::client::Grpc::unary` with a method path
//!   and a `ProstCodec`;
//! - servers are plain tower services over `http::Request` that match the path and hand the request
//!   to [`serve_unary`], which decodes, runs the handler and encodes the reply or the status.

use std::future::Future;

use http::uri::PathAndQuery;
use tonic::Status;
use tonic_prost::ProstCodec;

use super::BoxError;
use super::client::{GrpcChannel, error_chain};

/// Method paths, `/<package>.<Service>/<Method>`.
pub mod path {
    /// `emojivoto.v1.EmojiService/ListAll`.
    pub const LIST_ALL: &str = "/emojivoto.v1.EmojiService/ListAll";
    /// `emojivoto.v1.EmojiService/FindByShortcode`.
    pub const FIND_BY_SHORTCODE: &str = "/emojivoto.v1.EmojiService/FindByShortcode";
    /// `emojivoto.v1.VotingService/Vote`.
    pub const VOTE: &str = "/emojivoto.v1.VotingService/Vote";
    /// `emojivoto.v1.VotingService/Results`.
    pub const RESULTS: &str = "/emojivoto.v1.VotingService/Results";
}

// === messages (prost derives Debug) ===

/// An emoji: its character(s) and its `:shortcode:`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Emoji {
    #[prost(string, tag = "1")]
    pub unicode: String,
    #[prost(string, tag = "2")]
    pub shortcode: String,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ListAllEmojiRequest {}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ListAllEmojiResponse {
    #[prost(message, repeated, tag = "1")]
    pub list: Vec<Emoji>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct FindByShortcodeRequest {
    #[prost(string, tag = "1")]
    pub shortcode: String,
}

/// `emoji` is `None` when no emoji has the shortcode (not an error, as in the original).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct FindByShortcodeResponse {
    #[prost(message, optional, tag = "1")]
    pub emoji: Option<Emoji>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct VoteRequest {
    #[prost(string, tag = "1")]
    pub shortcode: String,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct VoteResponse {}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ResultsRequest {}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ResultsResponse {
    #[prost(message, repeated, tag = "1")]
    pub results: Vec<VotingResult>,
}

/// Votes for one shortcode.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct VotingResult {
    #[prost(string, tag = "1")]
    pub shortcode: String,
    #[prost(int32, tag = "2")]
    pub votes: i32,
}

// === clients ===

/// A client of `emojivoto.v1.EmojiService`.
#[derive(Clone, Debug)]
pub struct EmojiClient {
    channel: GrpcChannel,
}

impl EmojiClient {
    pub fn new(channel: GrpcChannel) -> Self {
        Self { channel }
    }

    /// Every emoji, in catalogue order.
    pub async fn list_all(&self) -> Result<Vec<Emoji>, Status> {
        let rsp: ListAllEmojiResponse =
            unary(&self.channel, path::LIST_ALL, ListAllEmojiRequest {}).await?;
        Ok(rsp.list)
    }

    /// The emoji with `shortcode`, or `None`.
    pub async fn find_by_shortcode(&self, shortcode: &str) -> Result<Option<Emoji>, Status> {
        let req = FindByShortcodeRequest {
            shortcode: shortcode.to_owned(),
        };
        let rsp: FindByShortcodeResponse =
            unary(&self.channel, path::FIND_BY_SHORTCODE, req).await?;
        Ok(rsp.emoji)
    }
}

/// A client of `emojivoto.v1.VotingService`.
#[derive(Clone, Debug)]
pub struct VotingClient {
    channel: GrpcChannel,
}

impl VotingClient {
    pub fn new(channel: GrpcChannel) -> Self {
        Self { channel }
    }

    /// One vote for `shortcode`. Fails for `:doughnut:`, always.
    pub async fn vote(&self, shortcode: &str) -> Result<(), Status> {
        let req = VoteRequest {
            shortcode: shortcode.to_owned(),
        };
        let _: VoteResponse = unary(&self.channel, path::VOTE, req).await?;
        Ok(())
    }

    /// The tally, most votes first.
    pub async fn results(&self) -> Result<Vec<VotingResult>, Status> {
        let rsp: ResultsResponse = unary(&self.channel, path::RESULTS, ResultsRequest {}).await?;
        Ok(rsp.results)
    }
}

/// One unary call on a clone of `channel` (clones share the connection pool).
async fn unary<Req, Rsp>(channel: &GrpcChannel, path: &'static str, req: Req) -> Result<Rsp, Status>
where
    Req: prost::Message + Send + Sync + 'static,
    Rsp: prost::Message + Default + Send + Sync + 'static,
{
    let mut grpc = channel.clone();
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("{path}: not ready: {}", error_chain(&e))))?;
    let codec = ProstCodec::<Req, Rsp>::default();
    let rsp = grpc
        .unary(
            tonic::Request::new(req),
            PathAndQuery::from_static(path),
            codec,
        )
        .await
        .map_err(explain)?;
    Ok(rsp.into_inner())
}

/// A status made from a transport error says only "client error (Connect)"; add the causes.
fn explain(status: Status) -> Status {
    match std::error::Error::source(&status) {
        Some(cause) => Status::new(status.code(), error_chain(cause)),
        None => status,
    }
}

// === servers ===

/// Serves one unary call: decodes a `Req` from `req`, runs `handler` on it, and answers with the
/// encoded `Rsp` or the handler's status (in trailers, as gRPC does).
pub async fn serve_unary<Req, Rsp, B, F, Fut>(
    req: http::Request<B>,
    handler: F,
) -> http::Response<tonic::body::Body>
where
    Req: prost::Message + Default + Send + 'static,
    Rsp: prost::Message + Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Error: Into<BoxError> + Send,
    F: FnOnce(Req) -> Fut + Send,
    Fut: Future<Output = Result<Rsp, Status>> + Send,
{
    // tonic drives a `UnaryService`, which may be called repeatedly; this one is called once.
    let mut handler = Some(handler);
    let method = tower::service_fn(move |r: tonic::Request<Req>| {
        let handler = handler.take();
        async move {
            let handler = handler.ok_or_else(|| Status::internal("handler called twice"))?;
            handler(r.into_inner()).await.map(tonic::Response::new)
        }
    });
    tonic::server::Grpc::new(ProstCodec::<Rsp, Req>::default())
        .unary(method, req)
        .await
}

/// The answer to a path no service here knows: `UNIMPLEMENTED`, as generated servers answer.
pub fn unimplemented(path: &str) -> http::Response<tonic::body::Body> {
    Status::unimplemented(format!("no method {path}")).into_http()
}
