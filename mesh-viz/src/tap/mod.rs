//! Tap through the control plane: `mesh tap` and `mesh top` see live requests of any workload
//! without ever talking to a proxy.
//!
//! Every proxy serves Linkerd's `io.linkerd.proxy.tap.Tap/Observe` on its tap listener, over
//! mutual TLS, and accepts exactly one caller: the identity it was started with
//! (`--tap-identity`, the control plane's). So tapping is the control plane's job:
//!
//! 1. **Which proxies.** A [`TapQuery`] names a resource (`deploy/web`, every workload of a
//!    namespace with `deploy`, or `ns/NAME`) and filters (`to`, `path` prefix, `method`,
//!    `authority`, `max_rps`, `limit`). The [`Tapper`] finds the matching workloads in
//!    `<state-dir>/workloads/*.json`, which `mesh run` writes for each workload it starts
//!    (name, namespace, identity, tap address).
//! 2. **The fan-out.** For each, a task connects to the tap address over mutual TLS, presenting
//!    the control plane's identity (a leaf its own CA issues, re-issued well before expiry) and
//!    expecting the workload's identity, and calls `Observe` with Linkerd's match tree built
//!    from the filters (`all` of: `any` of the `to` service's authorities, the path prefix,
//!    the method, the authority). Filtering on the proxy keeps unwanted events off the wire.
//! 3. **The merge.** Events from every proxy flow into one bounded channel; the [`MergedTap`]
//!    tags each with the workload whose proxy saw it, applies the request limit and the rate
//!    limit (per request, so a request's `req`, `rsp` and `end` are kept or skipped together),
//!    and reports each proxy's fate as a [`ProxyStatus`] line: tapping, ended, or failed with
//!    why (unreachable, wrong identity, refused). One proxy failing never ends the others.
//! 4. **Serving it.** [`api::router`] streams the merged lines as newline-delimited JSON on
//!    `GET /api/tap`; [`client::stream`] reads them back for the CLI; [`render`] prints them as
//!    `linkerd viz tap` does, and [`Top`] aggregates them into `linkerd viz top`'s table.
//!
//! Nothing here sits on the request path: a proxy pays for tap only while someone taps
//! (`mesh_core::tap`), and a slow reader makes proxies drop events rather than slow traffic.
//!
//! # Example
//!
//! ```no_run
//! use mesh_viz::tap::{self, TapLine, TapQuery, Tapper};
//! use mesh_control::{Config, ControlPlane};
//!
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! let cp = ControlPlane::start(Config::new("/var/lib/mesh")).await?;
//! let tapper = Tapper::for_control_plane(&cp)?;
//!
//! // In-process: the merged stream.
//! let mut taps = tapper.observe(&TapQuery::new("emojivoto", "deploy/web").limit(10))?;
//! while let Some(line) = taps.next().await {
//!     if let TapLine::Event(event) = line {
//!         println!("{}", tap::render::tap_line(&event));
//!     }
//! }
//!
//! // Over HTTP, for the CLI and the dashboard.
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! tokio::spawn(tap::api::serve(listener, tapper, std::future::pending()));
//! # Ok(()) }
//! ```

pub mod api;
pub mod client;
mod event;
mod fanout;
mod query;
pub mod render;
mod top;
mod workload;

pub use self::event::{
    Direction, Eos, Event, HttpEvent, ProxyState, ProxyStatus, StreamId, TapLine,
};
pub use self::fanout::{MergedTap, TapError, Tapper};
pub use self::query::{DEFAULT_MAX_RPS, TapQuery};
pub use self::top::{TOP_HEADERS, Top, TopRow, format_latency};
pub use crate::QueryError;
