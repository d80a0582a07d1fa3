use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::Response;
use mesh_core::BoxError;
use mesh_core::body::{End, ObservedBody, Observer};
use mesh_core::classify::{Class, Decision, Pending};
use pin_project_lite::pin_project;
use tokio::time::Instant;

use crate::state::EndpointShared;

pin_project! {
    /// Times and classifies the response (or error) of one request to an endpoint.
    pub(crate) struct ResponseFuture<F> {
        #[pin]
        inner: F,
        // `Some` until the response headers (or an error) arrive.
        recorder: Option<Recorder>,
        sent_at: Instant,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            // Dropped before the response (a per-try timeout, a client gone): no longer in
            // flight, and no outcome (the recorder's own drop says so). The time it waited is a
            // latency the endpoint has at least, as tower's `PeakEwma` counts it: an endpoint
            // that never answers must not look like one that was never tried.
            let this = this.project();
            if let Some(shared) = this.recorder.as_ref().and_then(|r| r.shared.as_ref()) {
                let now = Instant::now();
                shared.complete(now.saturating_duration_since(*this.sent_at), now);
            }
        }
    }
}

/// Watches a gRPC response body to its trailers and classifies it there; passes any other body
/// through untouched. The body type of every balancer response is
/// [`ObservedBody<B, EosClassify>`](ObservedBody).
pub struct EosClassify(Option<(Pending, Recorder)>);

/// Reports one request's outcome to its endpoint, exactly once; dropped unreported, it tells the
/// endpoint the request was abandoned (which matters for a probe).
pub(crate) struct Recorder {
    shared: Option<Arc<EndpointShared>>,
    probe: bool,
}

// === impl ResponseFuture ===

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, shared: Arc<EndpointShared>, probe: bool) -> Self {
        Self {
            inner,
            recorder: Some(Recorder {
                shared: Some(shared),
                probe,
            }),
            sent_at: Instant::now(),
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: http_body::Body,
{
    type Output = Result<Response<ObservedBody<B, EosClassify>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let Some(recorder) = this.recorder.take() else {
            return Poll::Ready(Err("accrual future polled after completion".into()));
        };
        let mut result = result.map_err(Into::<BoxError>::into);
        let decision = match recorder.shared.as_deref() {
            Some(shared) => {
                let now = Instant::now();
                shared.complete(now.saturating_duration_since(*this.sent_at), now);
                let classifier = &shared.target().classifier;
                match &mut result {
                    Ok(rsp) => Ok(classifier.classify_response(rsp)),
                    Err(e) => Err(classifier.classify_error(&**e).class()),
                }
            }
            None => Err(Class::Failure),
        };
        Poll::Ready(match (result, decision) {
            (Ok(rsp), Ok(Decision::Pending(pending))) => {
                Ok(rsp.map(|b| ObservedBody::new(b, EosClassify(Some((pending, recorder))))))
            }
            (Ok(rsp), Ok(Decision::Final(outcome))) => {
                recorder.finish(outcome.class());
                Ok(rsp.map(|b| ObservedBody::new(b, EosClassify(None))))
            }
            (result, Err(class)) => {
                recorder.finish(class);
                result.map(|rsp| rsp.map(|b| ObservedBody::new(b, EosClassify(None))))
            }
            // Not reached: an error is always classified as one.
            (Err(e), Ok(_)) => {
                recorder.finish(Class::Failure);
                Err(e)
            }
        })
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

// === impl Recorder ===

impl Recorder {
    fn finish(mut self, class: Class) {
        if let Some(shared) = self.shared.take() {
            shared.record(class, self.probe);
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            shared.abandon(self.probe);
        }
    }
}

// === impl EosClassify ===

impl Observer for EosClassify {
    fn on_end(self, end: End<'_>) {
        let Some((pending, recorder)) = self.0 else {
            return;
        };
        match end {
            End::Complete(trailers) => recorder.finish(pending.eos(trailers).class()),
            End::Error(_) => recorder.finish(Class::Failure),
            // Nobody read to the end: no outcome (the recorder's drop says so).
            End::Dropped => drop(recorder),
        }
    }
}

impl fmt::Debug for EosClassify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EosClassify")
            .field("pending", &self.0.is_some())
            .finish()
    }
}
