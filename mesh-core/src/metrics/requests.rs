use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use super::cache::HandleCache;
use super::labels::{LatencyLabels, OutcomeKey, ResponseLabels};
use super::{Labels, LatencyHistogram, RouteLabel};
use crate::BoxError;
use crate::body::{End, ObservedBody, Observer};
use crate::classify::{Classifier, Decision, ErrorReason, Outcome, error_reason};

/// Linkerd's HTTP golden metrics, registered once per registry: `request_total`,
/// `response_total` (with `status_code`, `classification`, `grpc_status`, `error`),
/// `response_latency_ms` (time to the response head, Linkerd's buckets) and `timeout_total`.
///
/// Register under a prefix for per-route metrics (`route_request_total`, …) or per-attempt ones
/// under a retry layer (`route_actual_request_total`, …), as Linkerd does.
#[derive(Clone, Debug)]
pub struct HttpMetrics {
    families: Arc<Families>,
}

#[derive(Debug)]
struct Families {
    requests: Family<Labels, Counter>,
    responses: Family<ResponseLabels, Counter>,
    latency: Family<LatencyLabels, LatencyHistogram>,
    timeouts: Family<Labels, Counter>,
}

impl HttpMetrics {
    /// Registers the families in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let families = Families {
            requests: Family::default(),
            responses: Family::default(),
            latency: Family::default(),
            timeouts: Family::default(),
        };
        registry.register("request", "Requests received", families.requests.clone());
        registry.register(
            "response",
            "Responses, by status and classification, counted at the end of the stream",
            families.responses.clone(),
        );
        registry.register(
            "response_latency_ms",
            "Time from request to response head, in milliseconds",
            families.latency.clone(),
        );
        registry.register(
            "timeout",
            "Requests that timed out",
            families.timeouts.clone(),
        );
        Self {
            families: Arc::new(families),
        }
    }

    /// A layer recording into the families with `labels`, classifying with the default
    /// classifier. Build one per target: the label set is resolved here, once.
    pub fn layer(&self, labels: Labels) -> HttpMetricsLayer {
        self.layer_with(labels, Classifier::default())
    }

    /// A layer with a specific classifier (a service profile's response classes).
    pub fn layer_with(&self, labels: Labels, classifier: Classifier) -> HttpMetricsLayer {
        HttpMetricsLayer {
            handles: Arc::new(Handles::new(self.families.clone(), labels, classifier)),
        }
    }
}

/// The handles of one target, resolved once.
#[derive(Debug)]
struct Handles {
    families: Arc<Families>,
    labels: Labels,
    requests: Counter,
    timeouts: Counter,
    responses: HandleCache<OutcomeKey, Counter>,
    latency: HandleCache<Option<u16>, LatencyHistogram>,
    /// The handles of each route seen (a [`RouteLabel`] on the request), resolved on first use.
    routes: HandleCache<RouteLabel, Arc<Handles>>,
    classifier: Classifier,
}

impl Handles {
    fn new(families: Arc<Families>, labels: Labels, classifier: Classifier) -> Self {
        let requests = families.requests.get_or_create(&labels).clone();
        let timeouts = families.timeouts.get_or_create(&labels).clone();
        Self {
            families,
            labels,
            requests,
            timeouts,
            responses: HandleCache::new(),
            latency: HandleCache::new(),
            routes: HandleCache::new(),
            classifier,
        }
    }

    /// The handles of `route`: this target's labels plus `route`.
    fn route(&self, route: &RouteLabel) -> Arc<Handles> {
        self.routes.get_or_insert_with(route, || {
            Arc::new(Handles::new(
                self.families.clone(),
                self.labels.clone().with("route", route.as_str()),
                self.classifier.clone(),
            ))
        })
    }

    fn record(&self, outcome: &Outcome) {
        let key = OutcomeKey::from(outcome);
        self.responses
            .get_or_insert_with(&key, || {
                self.families
                    .responses
                    .get_or_create(&ResponseLabels {
                        target: self.labels.clone(),
                        outcome: key,
                    })
                    .clone()
            })
            .inc();
        if outcome.error() == Some(ErrorReason::Timeout) {
            self.timeouts.inc();
        }
    }

    fn latency(&self, status: Option<u16>) -> LatencyHistogram {
        self.latency.get_or_insert_with(&status, || {
            self.families
                .latency
                .get_or_create(&LatencyLabels {
                    target: self.labels.clone(),
                    status,
                })
                .clone()
        })
    }
}

/// Records golden metrics for the requests of one target. Made by [`HttpMetrics::layer`].
#[derive(Clone, Debug)]
pub struct HttpMetricsLayer {
    handles: Arc<Handles>,
}

impl<S> Layer<S> for HttpMetricsLayer {
    type Service = RecordHttp<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RecordHttp {
            inner,
            handles: self.handles.clone(),
        }
    }
}

/// The service of [`HttpMetricsLayer`].
#[derive(Clone, Debug)]
pub struct RecordHttp<S> {
    inner: S,
    handles: Arc<Handles>,
}

impl<S, B, RB> Service<http::Request<B>> for RecordHttp<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Error: Into<BoxError>,
    RB: http_body::Body,
{
    type Response = http::Response<ObservedBody<RB, ResponseEnd>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let handles = match req.extensions().get::<RouteLabel>() {
            Some(route) => self.handles.route(route),
            None => self.handles.clone(),
        };
        handles.requests.inc();
        ResponseFuture {
            inner: self.inner.call(req),
            handles: Some(handles),
            start: Instant::now(),
        }
    }
}

pin_project! {
    /// Records the response head's latency and wraps its body.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        handles: Option<Arc<Handles>>,
        start: Instant,
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
    E: Into<BoxError>,
    RB: http_body::Body,
{
    type Output = Result<http::Response<ObservedBody<RB, ResponseEnd>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = ready!(this.inner.poll(cx));
        let handles = this.handles.take().expect("polled after completion");
        match res {
            Ok(mut rsp) => {
                let status = rsp.status();
                handles
                    .latency(Some(status.as_u16()))
                    .observe(this.start.elapsed());
                let decision = handles.classifier.classify_response(&mut rsp);
                Poll::Ready(Ok(rsp.map(|body| {
                    ObservedBody::new(body, ResponseEnd { handles, decision })
                })))
            }
            Err(e) => {
                let e = e.into();
                handles.latency(None).observe(this.start.elapsed());
                handles.record(&handles.classifier.classify_error(&*e));
                Poll::Ready(Err(e))
            }
        }
    }
}

/// Counts the response at the end of its stream.
#[derive(Debug)]
pub struct ResponseEnd {
    handles: Arc<Handles>,
    decision: Decision,
}

impl Observer for ResponseEnd {
    fn on_end(self, end: End<'_>) {
        let outcome = match (&self.decision, end) {
            (Decision::Final(o), End::Complete(_) | End::Dropped) => *o,
            (Decision::Final(o), End::Error(e)) => match o.status() {
                // The head said success but the stream broke.
                Some(_) if !o.is_failure() => Outcome::from_error(error_reason(e)),
                _ => *o,
            },
            (Decision::Pending(p), End::Complete(trailers)) => p.eos(trailers),
            (Decision::Pending(p), End::Error(e)) => p.error(error_reason(e)),
            (Decision::Pending(p), End::Dropped) => p.error(ErrorReason::Reset),
        };
        self.handles.record(&outcome);
    }
}
