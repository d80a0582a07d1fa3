//! Tap: a live view of requests for whoever watches, free when nobody does.
//!
//! `linkerd viz tap` shows requests as they pass a proxy: `req`, `rsp` and `end` lines with the
//! method, authority, path, status, gRPC status, latency and byte count of each. Here a [`Tap`]
//! registry is where subscribers register ([`Tap::subscribe`], with a [`Filter`], an optional
//! limit of requests and a queue capacity) and a [`TapLayer`] per target reports the requests
//! it carries as [`TapEvent`]s: [`RequestInit`](TapEventKind::RequestInit), then
//! [`ResponseInit`](TapEventKind::ResponseInit) (unless the request failed without a response),
//! then [`ResponseEnd`](TapEventKind::ResponseEnd). Each event carries what Linkerd's
//! `io.linkerd.proxy.tap.TapEvent` does; with the `proxy-api` feature they convert to it, and
//! `ObserveRequest` matches convert to [`Filter`]s, for the tap gRPC server.
//!
//! # Free when nobody taps
//!
//! Nearly all of the time nobody taps, and the request path pays one relaxed atomic load of
//! the subscriber count: no lock, no allocation, no filter, no id, no clock read. The response
//! body is handed back in [`TapBody::passthrough`], an enum variant that forwards every call to
//! the inner body (there is no observer and no box; [`TapBody::into_untapped`] gives the body
//! back). Only when somebody subscribes does a request take the slow path: a lock-free read of
//! the subscriber list (an `arc-swap`, replaced whole when subscribers come and go), the
//! filters (which allocate nothing), and, for a request that matches, one `Arc` of the
//! request's head shared by its three events, one box of in-flight state (so untapped futures
//! and bodies carry only an empty pointer for it), and an
//! [`ObservedBody`](crate::body::ObservedBody) that counts bytes and reads the gRPC status
//! from the trailers (through [`crate::classify`], as metrics do).
//!
//! # Per-target metadata, resolved once
//!
//! What a target's stack knows about its requests (direction, source and destination addresses
//! and identities, TLS, the destination's labels) is a [`TapMeta`] given to [`TapLayer::new`]
//! when the stack is built and shared by an `Arc`: the request path gets a ready handle rather
//! than building labels per request. What only the connection knows (the client of a listener
//! shared by many clients) travels as a [`TapPeer`] request extension that overrides the
//! target's source address, identity and TLS; it is read only for requests somebody might see.
//!
//! # Drop, never block
//!
//! A tap is a debugging aid: traffic must not wait for an observer. Each subscription has a
//! bounded queue, filled with `try_send`; a subscriber that does not keep up loses events,
//! which are counted for it ([`Subscription::dropped`]) and in total ([`Tap::dropped_total`])
//! so a client can say how much it missed. Nothing on the request path awaits a subscriber.
//!
//! # Limits, ids, unsubscribing
//!
//! A subscription may ask for at most N requests (Linkerd's `ObserveRequest.limit`): after its
//! N-th match it leaves the registry, and its stream ends once those requests have ended.
//! Dropping a [`Subscription`] unsubscribes; when the last one goes, the request path is back to
//! its one load. A request that some subscriber takes gets a [`TapId`] `base:stream`, the same
//! for every subscriber, numbered in one sequence per registry (requests nobody takes use no
//! number).
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use mesh_core::tap::{Filter, Tap, TapEventKind, TapLayer, TapMeta};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), mesh_core::BoxError> {
//! let tap = Tap::new();
//! let layer = TapLayer::new(tap.clone(), TapMeta::inbound().with_tls(true));
//! let svc = layer.layer(service_fn(|_req: http::Request<()>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from("hello"))))
//! }));
//!
//! // Watch the next two requests under /api.
//! let mut watch = tap.subscribe(Filter::path_prefix("/api"), 2, 64);
//!
//! let req = http::Request::get("http://web.emojivoto:8080/api/list").body(())?;
//! let rsp = svc.clone().oneshot(req).await?;
//! assert!(rsp.body().is_tapped());
//! rsp.into_body().collect().await?;
//!
//! // Not under /api: the body passes through untouched.
//! let req = http::Request::get("http://web.emojivoto:8080/").body(())?;
//! assert!(!svc.oneshot(req).await?.body().is_tapped());
//!
//! let req = watch.next().await.expect("request");
//! assert_eq!(req.request().path(), "/api/list");
//! assert!(matches!(req.kind(), TapEventKind::RequestInit));
//! let TapEventKind::ResponseInit(head) = watch.next().await.expect("response").kind().clone() else {
//!     panic!("expected a response head")
//! };
//! assert_eq!(head.status, http::StatusCode::OK);
//! let Some(end) = watch.next().await else { panic!("expected the end") };
//! let TapEventKind::ResponseEnd(end_info) = end.kind() else { panic!("expected the end") };
//! assert_eq!((end.id(), end_info.response_bytes), (req.id(), 5));
//! # Ok(()) }
//! ```

mod body;
mod event;
mod filter;
mod future;
mod inflight;
mod layer;
mod meta;
#[cfg(feature = "proxy-api")]
mod proxy_api;
mod registry;
mod service;

pub use self::body::TapBody;
pub use self::event::{ResponseEnd, ResponseInit, TapEvent, TapEventKind, TapId, TapRequest};
pub use self::filter::{AddrMatch, Filter, InvalidFilter, Netmask, StringMatch};
pub use self::future::ResponseFuture;
pub use self::layer::TapLayer;
pub use self::meta::{Direction, IdentityName, TapMeta, TapPeer};
pub use self::registry::{Subscription, Tap};
pub use self::service::TapService;

#[cfg(test)]
mod tests;
