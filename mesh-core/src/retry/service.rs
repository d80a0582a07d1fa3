use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::TryFutureExt;
use futures_util::future::{BoxFuture, Either, ErrInto};
use http_body::Body;
use http_body_util::BodyExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tower::ServiceExt;
use tower_service::Service;

use super::policy::HttpStatus;
use super::{ReplayBody, RetryPolicy, is_retryable};
use crate::BoxError;
use crate::metrics::Labels;

type Inner<S> = tower::retry::Retry<RetryPolicy, BoxErrors<S>>;

/// The service of [`RetryLayer`](super::RetryLayer).
#[derive(Clone, Debug)]
pub struct Retry<S> {
    inner: Inner<S>,
    max_body: usize,
    only_marked: bool,
    budget: super::RetryBudget,
    counters: Option<RetryCounters>,
}

/// The future of [`Retry`].
pub type ResponseFuture<S, B, Res> = Either<
    tower::retry::future::ResponseFuture<RetryPolicy, BoxErrors<S>, http::Request<ReplayBody<B>>>,
    BoxFuture<'static, Result<Res, BoxError>>,
>;

/// Widens an inner service's errors to [`BoxError`], which the retry policy inspects.
#[derive(Clone, Debug)]
pub struct BoxErrors<S>(S);

impl<S, R> Service<R> for BoxErrors<S>
where
    S: Service<R>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ErrInto<S::Future, BoxError>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: R) -> Self::Future {
        self.0.call(req).err_into()
    }
}

impl<S> Retry<S> {
    pub(super) fn new(inner: S, policy: RetryPolicy, max_body: usize, only_marked: bool) -> Self {
        let budget = policy.budget.clone();
        let counters = policy.metrics.clone();
        Self {
            inner: tower::retry::Retry::new(policy, BoxErrors(inner)),
            max_body,
            only_marked,
            budget,
            counters,
        }
    }
}

impl<S, B> Service<http::Request<B>> for Retry<S>
where
    S: Service<http::Request<ReplayBody<B>>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    S::Response: HttpStatus + Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, B, S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // Every original request earns the budget some retries.
        self.budget.deposit();
        let marked = req.extensions().get::<super::RetryableRoute>().is_some();
        let retryable = is_retryable(&req) && (marked || !self.only_marked);
        // A request that has already ended (a GET, say) is sent with an ended body of our own
        // whether or not it may be retried: nothing to buffer, and the peer sees END_STREAM on
        // the headers instead of waiting on a body that never sends a frame.
        if req.body().is_end_stream() {
            let empty = if retryable {
                ReplayBody::buffered(Vec::new(), None)
            } else {
                ReplayBody::ended()
            };
            return Either::Left(self.inner.call(req.map(|_| empty)));
        }
        if !retryable {
            return Either::Left(self.inner.call(req.map(ReplayBody::passthrough)));
        }
        // A body to buffer first: read it (up to the limit) before the first attempt.
        let svc = self.inner.clone();
        let max = self.max_body;
        let counters = self.counters.clone();
        Either::Right(Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = buffer(body, max).await?;
            if !body.is_replayable()
                && let Some(c) = &counters
            {
                c.skipped_body.inc();
            }
            svc.oneshot(http::Request::from_parts(parts, body)).await
        }))
    }
}

/// Reads `body` into memory if it fits in `max` bytes; otherwise returns what was read followed
/// by the rest of the stream.
async fn buffer<B>(mut body: B, max: usize) -> Result<ReplayBody<B>, BoxError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut chunks = Vec::new();
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(Into::into)?;
        match frame.into_data() {
            Ok(data) => {
                len += data.len();
                chunks.push(data);
                if len > max {
                    return Ok(ReplayBody::prefixed(chunks, body));
                }
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    return Ok(ReplayBody::buffered(chunks, Some(trailers)));
                }
            }
        }
    }
    Ok(ReplayBody::buffered(chunks, None))
}

/// Retry counters, registered once per registry: `retry_total` and
/// `retry_skipped_total{reason="budget"|"max_retries"|"body_too_large"}`.
#[derive(Clone, Debug)]
pub struct RetryMetrics {
    retries: Family<Labels, Counter>,
    skipped: Family<Labels, Counter>,
}

impl RetryMetrics {
    /// Registers the families in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            retries: Family::default(),
            skipped: Family::default(),
        };
        registry.register("retry", "Retries sent", m.retries.clone());
        registry.register(
            "retry_skipped",
            "Failures not retried, by reason",
            m.skipped.clone(),
        );
        m
    }

    /// The counters of one target.
    pub fn counters(&self, labels: &Labels) -> RetryCounters {
        let skipped = |reason| {
            self.skipped
                .get_or_create(&labels.clone().with("reason", reason))
                .clone()
        };
        RetryCounters {
            retries: self.retries.get_or_create(labels).clone(),
            skipped_budget: skipped("budget"),
            skipped_max: skipped("max_retries"),
            skipped_body: skipped("body_too_large"),
        }
    }
}

/// One target's retry counters. See [`RetryMetrics`].
#[derive(Clone, Debug)]
pub struct RetryCounters {
    pub(crate) retries: Counter,
    pub(crate) skipped_budget: Counter,
    pub(crate) skipped_max: Counter,
    pub(crate) skipped_body: Counter,
}
