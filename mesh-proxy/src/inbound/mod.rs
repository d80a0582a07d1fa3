//! The inbound stack: from a peer proxy (or an unmeshed client) to the app on 127.0.0.1.
//!
//! One file per stage, named in the order a connection crosses them; each file's `push_*` adds
//! its stage on top of the ones below, and [`Inbound::server`] stacks them bottom-up:
//!
//! | file | stage | built per | what it does |
//! |---|---|---|---|
//! | `1_accept.rs` | accept | connection | the listener; drain tracking |
//! | `2_detect.rs` | detect | connection | TLS, HTTP/1, HTTP/2 or opaque, from the first bytes (peeked once) |
//! | `3_tls.rs` | TLS | connection | mutual TLS; the client's identity; ALPN as the protocol |
//! | `4_authorize.rs` | authorize | connection, then request | the port's policy (`policy.rs`): a closed connection, or a 403 per request, when refused |
//! | `5_http.rs` | HTTP server | connection, then request | routes, rescue, metrics, tap |
//! | `6_app.rs` | app | proxy | pooled connections to the app; mesh headers restored |
//!
//! Beside them: [`opaque`] (TCP to the app), [`policy`] (who may call, kept current from the
//! control plane) and [`target`] (what each stage is built for).

#[path = "1_accept.rs"]
mod accept;
#[path = "6_app.rs"]
mod app;
#[path = "4_authorize.rs"]
mod authorize;
#[path = "2_detect.rs"]
mod detect;
#[path = "5_http.rs"]
mod http_server;
mod opaque;
pub(crate) mod policy;
mod target;
#[path = "3_tls.rs"]
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

pub(crate) use self::accept::Server;
pub use self::authorize::{DefaultPolicy, UnknownPolicy};
use self::policy::PolicyHandle;
use crate::discovery::Destination;
use crate::runtime::Runtime;

/// The inbound stack while it is being built: what every stage shares, and the stages pushed
/// so far (`S`).
pub(crate) struct Inbound<S> {
    rt: Runtime,
    stack: S,
}

impl Inbound<()> {
    /// The inbound side of a proxy, forwarding to the app at `app` under the port's `policy`;
    /// `profile` is that of the workload's own service, whose routes label the requests'
    /// metrics (as Linkerd's inbound side does with the server's service profile).
    pub(crate) fn server(
        rt: Runtime,
        app: SocketAddr,
        policy: PolicyHandle,
        profile: Option<watch::Receiver<Arc<Destination>>>,
    ) -> Server {
        Self { rt, stack: () }
            .push_app(app)
            .push_http(profile)
            .push_authorize(policy)
            .push_tls()
            .push_detect()
            .into_server(app)
    }
}

impl<S> Inbound<S> {
    /// Replaces the stack with `f(stack)`: what each `push_*` does.
    fn map_stack<T>(self, f: impl FnOnce(S) -> T) -> Inbound<T> {
        Inbound {
            rt: self.rt,
            stack: f(self.stack),
        }
    }
}
