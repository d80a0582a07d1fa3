//! Stage 1, per connection: the inbound listener. Every connection is counted and tracked for
//! drain ([`serve::accept_loop`]), then detected (stage 2).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use super::Inbound;
use super::detect::Detect;
use super::target::Accept;
use crate::runtime::Runtime;
use crate::serve;

/// The inbound side of a proxy, forwarding to one app. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Server {
    inner: Arc<Listener>,
}

#[derive(Debug)]
struct Listener {
    rt: Runtime,
    app: SocketAddr,
    detect: Detect,
}

impl Inbound<Detect> {
    /// The finished stack, behind its listener, for the app at `app`.
    pub(crate) fn into_server(self, app: SocketAddr) -> Server {
        Server {
            inner: Arc::new(Listener {
                rt: self.rt,
                app,
                detect: self.stack,
            }),
        }
    }
}

impl Server {
    /// Serves connections on `listener`.
    pub(crate) async fn serve(self, listener: TcpListener) {
        let rt = self.inner.rt.clone();
        serve::accept_loop(listener, rt, "inbound", move |tcp, peer| {
            let this = self.clone();
            async move {
                let accept = Accept {
                    peer,
                    app: this.inner.app,
                };
                this.inner.detect.serve(tcp, accept).await;
            }
        })
        .await;
    }
}
