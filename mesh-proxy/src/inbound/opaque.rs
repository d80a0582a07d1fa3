//! Opaque TCP to the app: a meshed peer's `mesh.opaque/1` connection, an unmeshed client on a
//! server-speaks-first port, or bytes no protocol was detected in; forwarded as they are.

use std::sync::Arc;

use mesh_core::metrics::Labels;
use tokio::io::{AsyncRead, AsyncWrite};

use super::app::App;
use super::target::Tls;
use crate::runtime::Runtime;

/// Forwards opaque connections to the app. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Opaque {
    rt: Runtime,
    app: Arc<App>,
}

impl Opaque {
    pub(crate) fn new(rt: Runtime, app: Arc<App>) -> Self {
        Self { rt, app }
    }

    /// Forwards `io` to the app until either side closes, counting its bytes under `labels`.
    pub(crate) async fn serve<IO>(&self, io: IO, target: &Tls, labels: Labels)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut client = self.rt.metrics.tcp.sensor(&labels).wrap(io);
        let mut app = match self.app.connect().await {
            Ok(app) => app,
            Err(error) => {
                tracing::info!(%error, peer = %target.accept.peer, "cannot connect to the app");
                self.rt.metrics.conn_error("inbound", "app_connect");
                return;
            }
        };
        if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut app).await {
            tracing::debug!(%error, "opaque connection ended");
        }
    }
}
