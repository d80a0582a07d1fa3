use std::sync::Arc;

use tower_layer::Layer;

use super::{Tap, TapMeta, TapService};
use crate::classify::Classifier;

/// Reports a target's requests to a [`Tap`]'s subscribers: build one per target, when its stack
/// is built, with what is known about the target.
///
/// ```
/// use mesh_core::tap::{Tap, TapLayer, TapMeta};
/// use tower::{Layer, service_fn};
///
/// let tap = Tap::new();
/// let meta = TapMeta::inbound()
///     .with_destination_addr("127.0.0.1:8080".parse::<std::net::SocketAddr>()?)
///     .with_tls(true);
/// let svc = TapLayer::new(tap.clone(), meta).layer(service_fn(|_req: http::Request<()>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
/// }));
/// assert!(svc.meta().tls());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct TapLayer {
    tap: Tap,
    meta: Arc<TapMeta>,
    classifier: Classifier,
}

impl TapLayer {
    /// Reports to `tap`'s subscribers requests of the target described by `meta`.
    pub fn new(tap: Tap, meta: TapMeta) -> Self {
        Self {
            tap,
            meta: Arc::new(meta),
            // Only read for the gRPC status, which no failure range changes.
            classifier: Classifier::default(),
        }
    }
}

impl<S> Layer<S> for TapLayer {
    type Service = TapService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TapService::new(
            inner,
            self.tap.clone(),
            self.meta.clone(),
            self.classifier.clone(),
        )
    }
}
