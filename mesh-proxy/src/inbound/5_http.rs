//! Stage 5, per connection: the HTTP server (HTTP/1 or HTTP/2, as ALPN or detection already
//! said, so nothing is peeked twice), and per request, outermost first:
//!
//! 1. **route** — the request's route in this workload's own service profile labels its metrics
//!    (as Linkerd's inbound side does with the server's profile), and the client's address,
//!    identity and TLS go in its extensions for tap;
//! 2. **rescue** — errors below become responses naming the cause (502 when the app cannot be
//!    reached, 504 on a timeout);
//! 3. **metrics** — Linkerd's inbound labels (`tls`, `client_id`, `target_addr`);
//! 4. **tap**;
//! 5. **authorize** — the request's route must admit the client (stage 4's
//!    [`AuthorizeLayer`](super::authorize::AuthorizeLayer)); a refusal is answered here, and the
//!    layers above count it and show it in tap;
//!
//! then stage 6, the app.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use mesh_core::BoxError;
use mesh_core::metrics::Labels;
use mesh_core::rescue::RescueLayer;
use mesh_core::tap::{TapLayer, TapMeta, TapPeer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tower::util::BoxCloneService;
use tower::{ServiceBuilder, ServiceExt};

use super::Inbound;
use super::app::App;
use super::authorize::AuthorizeLayer;
use super::target::Http;
use crate::discovery::Destination;
use crate::outbound::RspBody;
use crate::runtime::Runtime;
use crate::serve;

/// The service an inbound HTTP connection is served with.
pub(crate) type HttpStack =
    BoxCloneService<http::Request<Incoming>, http::Response<RspBody>, Infallible>;

/// Serves HTTP connections to the app. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct NewHttp {
    rt: Runtime,
    app: Arc<App>,
    /// The profile of this workload's own service: its routes label the requests' metrics.
    profile: Option<watch::Receiver<Arc<Destination>>>,
}

impl Inbound<App> {
    /// The HTTP server over the app, labelling requests with `profile`'s routes.
    pub(crate) fn push_http(
        self,
        profile: Option<watch::Receiver<Arc<Destination>>>,
    ) -> Inbound<NewHttp> {
        let rt = self.rt.clone();
        self.map_stack(|app| NewHttp {
            rt,
            app: Arc::new(app),
            profile,
        })
    }
}

impl NewHttp {
    /// The app, for the stages beside this one (opaque TCP).
    pub(crate) fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// The labels of the connection's metrics: Linkerd's inbound set.
    pub(crate) fn labels(&self, target: &super::target::Tls) -> Labels {
        let mut labels = Labels::new()
            .with("direction", "inbound")
            .with(
                "tls",
                if target.client.is_some() {
                    "true"
                } else {
                    "no_identity"
                },
            )
            .with("target_addr", self.app.addr().to_string());
        if let Some(c) = &target.client {
            labels = labels.with("client_id", c.as_str());
        }
        labels
    }

    /// Serves the connection's requests to the app, each authorized by `authorize`.
    pub(crate) async fn serve<IO>(&self, io: IO, target: Http, authorize: AuthorizeLayer)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let version = target.version.clone();
        let stack = self.stack(&target, authorize);
        let svc = hyper_util::service::TowerToHyperService::new(stack);
        serve::http_auto(io, svc, &self.rt, "inbound", version).await;
    }

    /// The per-request stack of a connection.
    fn stack(&self, target: &Http, authorize: AuthorizeLayer) -> HttpStack {
        let tls = &target.tls;
        let meshed = tls.client.is_some();
        let mut tap_peer = TapPeer::new(tls.accept.peer).with_tls(meshed);
        if let Some(c) = &tls.client {
            tap_peer = tap_peer.with_identity(c.as_str().to_owned());
        }
        let tap_meta = TapMeta::inbound()
            .with_destination_addr(self.app.addr())
            .with_destination_identity(self.rt.creds.identity().as_str().to_owned())
            .with_tls(meshed);
        let profile = self.profile.clone();
        let app = self.app.clone();
        let client_id: Option<Arc<str>> = tls.client.as_ref().map(|c| c.as_str().into());
        let forward = tower::service_fn(move |req: http::Request<Incoming>| {
            let app = app.clone();
            let client_id = client_id.clone();
            async move { app.forward(req, client_id.as_deref()).await }
        });
        BoxCloneService::new(
            ServiceBuilder::new()
                .map_request(move |mut req: http::Request<Incoming>| {
                    req.extensions_mut().insert(tap_peer.clone());
                    if let Some(profile) = &profile {
                        let route = profile
                            .borrow()
                            .routes
                            .iter()
                            .find(|r| r.matches(&req))
                            .map(|r| r.name.clone());
                        if let Some(route) = route {
                            req.extensions_mut().insert(route);
                        }
                    }
                    req
                })
                .layer(RescueLayer::new())
                .layer(self.rt.metrics.http.layer(self.labels(tls)))
                .layer(TapLayer::new(self.rt.tap.clone(), tap_meta))
                .layer(authorize)
                .service(forward)
                .map_response(|rsp: http::Response<_>| {
                    rsp.map(|b| b.map_err(BoxError::from).boxed_unsync())
                }),
        )
    }
}
