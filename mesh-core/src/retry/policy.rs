use std::future::{Ready, ready};

use tower::retry::Policy;

use super::{ReplayBody, RetryBudget};
use crate::BoxError;
use crate::classify::{Classifier, Decision, ErrorReason, error_reason};

/// The `tower::retry::Policy` of [`RetryLayer`](super::RetryLayer): which outcomes to retry,
/// within the budget.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub(crate) budget: RetryBudget,
    pub(crate) classifier: Classifier,
    pub(crate) max_retries: Option<u32>,
    pub(crate) retries: u32,
    pub(crate) metrics: Option<super::RetryCounters>,
}

impl RetryPolicy {
    fn should_retry<Res: HttpStatus>(
        &self,
        route: Option<&super::RetryableRoute>,
        result: &Result<Res, BoxError>,
    ) -> bool {
        match result {
            Ok(rsp) if route.is_some_and(|r| r.has_conditions()) => {
                // The route's own conditions: statuses, and a trailers-only gRPC status.
                let grpc = rsp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse().ok());
                route.is_some_and(|r| r.retries_status(rsp.status(), grpc))
            }
            Ok(rsp) => {
                match self
                    .classifier
                    .decision_on(rsp.status(), rsp.headers(), rsp.extensions())
                {
                    Decision::Final(o) => o.is_failure(),
                    // The status is in the trailers; the response is already streaming.
                    Decision::Pending(_) => false,
                }
            }
            Err(e) => matches!(
                error_reason(&**e),
                // Fail-fast (Unavailable) is not retried: the balancer just said nothing is
                // ready, and asking again at once only adds load.
                ErrorReason::ConnectRefused | ErrorReason::Reset | ErrorReason::Timeout
            ),
        }
    }
}

/// Lets the policy read a response head (and the decision a layer below made on it) without
/// knowing its body type.
pub trait HttpStatus {
    /// The status.
    fn status(&self) -> http::StatusCode;
    /// The headers.
    fn headers(&self) -> &http::HeaderMap;
    /// The extensions (where a layer below left its [`Classification`](crate::classify::Classification)).
    fn extensions(&self) -> &http::Extensions;
}

impl<B> HttpStatus for http::Response<B> {
    fn status(&self) -> http::StatusCode {
        http::Response::status(self)
    }
    fn headers(&self) -> &http::HeaderMap {
        http::Response::headers(self)
    }
    fn extensions(&self) -> &http::Extensions {
        http::Response::extensions(self)
    }
}

impl<B, Res> Policy<http::Request<ReplayBody<B>>, Res, BoxError> for RetryPolicy
where
    Res: HttpStatus,
{
    type Future = Ready<()>;

    fn retry(
        &mut self,
        req: &mut http::Request<ReplayBody<B>>,
        result: &mut Result<Res, BoxError>,
    ) -> Option<Self::Future> {
        let route = req.extensions().get::<super::RetryableRoute>();
        if !self.should_retry(route, result) {
            return None;
        }
        let max = route.and_then(|r| r.max_retries()).or(self.max_retries);
        if max.is_some_and(|max| self.retries >= max) {
            if let Some(m) = &self.metrics {
                m.skipped_max.inc();
            }
            return None;
        }
        if !self.budget.withdraw() {
            if let Some(m) = &self.metrics {
                m.skipped_budget.inc();
            }
            tracing::debug!("retry budget exhausted; returning the failure");
            return None;
        }
        self.retries += 1;
        if let Some(m) = &self.metrics {
            m.retries.inc();
        }
        Some(ready(()))
    }

    fn clone_request(
        &mut self,
        req: &http::Request<ReplayBody<B>>,
    ) -> Option<http::Request<ReplayBody<B>>> {
        let body = req.body().try_clone()?;
        let mut clone = http::Request::new(body);
        *clone.method_mut() = req.method().clone();
        *clone.uri_mut() = req.uri().clone();
        *clone.version_mut() = req.version();
        *clone.headers_mut() = req.headers().clone();
        // Extensions are not Clone; keep the ones the mesh itself relies on.
        if let Some(t) = req.extensions().get::<crate::timeout::RouteTimeout>() {
            clone.extensions_mut().insert(*t);
        }
        if let Some(r) = req.extensions().get::<super::RetryableRoute>() {
            clone.extensions_mut().insert(r.clone());
        }
        if let Some(t) = req.extensions().get::<crate::timeout::AttemptTimeout>() {
            clone.extensions_mut().insert(*t);
        }
        if let Some(r) = req.extensions().get::<crate::metrics::RouteLabel>() {
            clone.extensions_mut().insert(r.clone());
        }
        if let Some(p) = req.extensions().get::<crate::tap::TapPeer>() {
            clone.extensions_mut().insert(p.clone());
        }
        Some(clone)
    }
}
