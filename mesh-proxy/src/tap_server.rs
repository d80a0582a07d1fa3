//! The tap server: Linkerd's `io.linkerd.proxy.tap.Tap/Observe` over mutual TLS.
//!
//! Only one caller is accepted: the configured tap identity (the control plane's tap service,
//! which fans requests out to proxies and merges the streams for `mesh tap` and the dashboard).
//! Any other client — unauthenticated, or another workload — is refused during the connection,
//! before a request is read, and counted.

use std::convert::Infallible;
use std::pin::Pin;

use futures_util::{Stream, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use linkerd2_proxy_api::tap as api;
use linkerd2_proxy_api::tap::tap_server::{Tap as TapApi, TapServer};
use mesh_core::tap::{Filter, Tap};
use mesh_tls::server::{ClientAuth, ServerTlsStream};
use mesh_tls::{ServiceIdentity, TlsServerLayer};
use tokio::net::{TcpListener, TcpStream};
use tonic::{Request, Response, Status};
use tower::{Layer, ServiceExt};

use crate::runtime::Runtime;

/// Events buffered per subscriber before the slowest one starts losing events.
const CAPACITY: usize = 1024;

struct Observe {
    tap: Tap,
}

type Events = Pin<Box<dyn Stream<Item = Result<api::TapEvent, Status>> + Send>>;

#[tonic::async_trait]
impl TapApi for Observe {
    type ObserveStream = Events;

    async fn observe(&self, req: Request<api::ObserveRequest>) -> Result<Response<Events>, Status> {
        let req = req.into_inner();
        let filter = match req.r#match {
            Some(m) => Filter::try_from(m).map_err(|e| Status::invalid_argument(e.to_string()))?,
            None => Filter::all([]),
        };
        let limit = match req.limit {
            0 => None,
            n => Some(n as usize),
        };
        let sub = self.tap.subscribe(filter, limit, CAPACITY);
        let events = sub.map(|ev| Ok(api::TapEvent::from(ev)));
        Ok(Response::new(Box::pin(events)))
    }
}

/// Serves tap on `listener`, accepting only `allowed`.
pub(crate) async fn serve(listener: TcpListener, rt: Runtime, allowed: ServiceIdentity) {
    let api = TapServer::new(Observe {
        tap: rt.tap.clone(),
    });
    let layer = TlsServerLayer::new(&rt.creds)
        .client_auth(ClientAuth::Required)
        .alpn_protocols(vec![b"h2".to_vec()]);
    loop {
        let accepted = tokio::select! {
            _ = rt.drain.signaled() => return,
            a = listener.accept() => a,
        };
        let Ok((tcp, peer)) = accepted else { continue };
        let api = api.clone();
        let allowed = allowed.clone();
        let rt2 = rt.clone();
        let conn = layer.layer(tower::service_fn(move |tls: ServerTlsStream<TcpStream>| {
            let api = api.clone();
            let allowed = allowed.clone();
            let rt = rt2.clone();
            async move {
                if tls.client_identity() != Some(&allowed) {
                    tracing::info!(
                        %peer,
                        client = ?tls.client_identity(),
                        %allowed,
                        "tap refused: only the tap identity may observe"
                    );
                    rt.metrics.conn_error("tap", "unauthorized");
                    return Ok::<_, Infallible>(());
                }
                let svc = hyper_util::service::TowerToHyperService::new(api);
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .http2_only()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
                Ok(())
            }
        }));
        let rt = rt.clone();
        tokio::spawn(async move {
            if let Err(error) = conn.oneshot(tcp).await {
                tracing::info!(%error, %peer, "tap connection failed");
                rt.metrics.conn_error("tap", "tls_handshake");
            }
        });
    }
}
