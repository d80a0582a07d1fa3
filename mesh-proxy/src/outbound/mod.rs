//! The outbound stack: from the app to the peer proxy that serves the destination.
//!
//! One file per stage, named in the order a request crosses them; each file's `push_*` adds its
//! stage on top of the ones below, and [`Outbound::server`] stacks them bottom-up:
//!
//! | file | stage | built per | what it does |
//! |---|---|---|---|
//! | `1_accept.rs` | accept | connection | listeners; what the connection is for (routed by `Host`, a fixed authority, an original destination); HTTP or opaque TCP |
//! | `2_http.rs` | HTTP server | connection | the app's HTTP/1 or HTTP/2; the destination's stack looked up once per connection |
//! | `3_logical.rs` | logical | destination | profile routes, rescue, metrics, timeout, retries; rebuilt when the profile changes |
//! | `4_split.rs` | split | destination | weighted backends (traffic splits) |
//! | `5_concrete.rs` | concrete | backend | a balancer: P2C over peak-EWMA, failfast, failure accrual |
//! | `6_endpoint.rs` | endpoint | endpoint | tap; one HTTP/2 connection to the peer proxy over mutual TLS |
//!
//! Beside them: [`opaque`] (TCP byte for byte), [`upgrade`] (WebSocket and `CONNECT`),
//! [`client`] (the endpoint's HTTP/2 client) and [`target`] (what each stage is built for).
//! Destinations' stacks and backends' balancers are cached and evicted when idle
//! (`mesh_core::stack::cache`).

#[path = "1_accept.rs"]
mod accept;
pub(crate) mod client;
#[path = "5_concrete.rs"]
mod concrete;
#[path = "6_endpoint.rs"]
mod endpoint;
#[path = "2_http.rs"]
mod http_server;
#[path = "3_logical.rs"]
mod logical;
pub(crate) mod opaque;
#[path = "4_split.rs"]
mod split;
pub(crate) mod target;
pub(crate) mod upgrade;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use mesh_core::BoxError;

pub(crate) use self::accept::Server;
use crate::discovery::Discover;
use crate::runtime::Runtime;

/// The response body every stack answers with.
pub(crate) type RspBody = UnsyncBoxBody<Bytes, BoxError>;

/// The outbound stack while it is being built: what every stage shares, and the stages pushed
/// so far (`S`, a `NewService` of the top stage's target).
pub(crate) struct Outbound<S> {
    rt: Runtime,
    discovery: Arc<dyn Discover>,
    stack: S,
}

impl Outbound<()> {
    /// The outbound side of a proxy, resolving destinations with `discovery`: every stage,
    /// pushed from the endpoint up, behind the listeners.
    pub(crate) fn server(rt: Runtime, discovery: Arc<dyn Discover>) -> Server {
        Self {
            rt,
            discovery,
            stack: (),
        }
        .push_endpoint()
        .push_concrete()
        .push_split()
        .push_logical()
        .push_http()
        .into_server()
    }
}

impl<S> Outbound<S> {
    /// Replaces the stack with `f(stack)`: what each `push_*` does.
    fn map_stack<T>(self, f: impl FnOnce(S) -> T) -> Outbound<T> {
        Outbound {
            rt: self.rt,
            discovery: self.discovery,
            stack: f(self.stack),
        }
    }
}

fn is_grpc<B>(req: &http::Request<B>) -> bool {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// A synthesized error response with the stack's body type.
pub(crate) fn error_response(
    error: &(dyn std::error::Error + 'static),
    grpc: bool,
) -> http::Response<RspBody> {
    mesh_core::rescue::error_response::<RspBody>(error, grpc)
        .map(|b| b.map_err(BoxError::from).boxed_unsync())
}
