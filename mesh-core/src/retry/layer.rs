use tower_layer::Layer;

use super::{Retry, RetryBudget, RetryCounters, RetryPolicy};
use crate::classify::Classifier;

/// Retries failed requests that are safe to repeat, within a budget. See the
/// [module docs](super).
#[derive(Clone, Debug)]
pub struct RetryLayer {
    policy: RetryPolicy,
    max_body: usize,
    only_marked: bool,
}

impl RetryLayer {
    /// Retries within `budget`, classifying with the default classifier, buffering bodies up to
    /// 64 KiB, with no cap on retries per request beyond the budget.
    pub fn new(budget: RetryBudget) -> Self {
        Self {
            policy: RetryPolicy {
                budget,
                classifier: Classifier::default(),
                max_retries: None,
                retries: 0,
                metrics: None,
            },
            max_body: 64 * 1024,
            only_marked: false,
        }
    }

    /// The classifier that decides which responses failed. Default is 5xx.
    pub fn classifier(mut self, classifier: Classifier) -> Self {
        self.policy.classifier = classifier;
        self
    }

    /// Largest request body buffered for replay; larger bodies are sent once. Default is 64 KiB.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// At most this many retries per request (as HTTPRoute retry policies say). Default is no
    /// cap beyond the budget.
    pub fn max_retries(mut self, max: impl Into<Option<u32>>) -> Self {
        self.policy.max_retries = max.into();
        self
    }

    /// Retries only requests a router marked with [`RetryableRoute`](super::RetryableRoute)
    /// (Linkerd's behaviour: a service profile's `isRetryable` routes), not every idempotent
    /// request. Default is off (idempotent methods are retryable too).
    pub fn only_marked_routes(mut self, only: bool) -> Self {
        self.only_marked = only;
        self
    }

    /// Counts retries and skipped retries.
    pub fn counters(mut self, counters: RetryCounters) -> Self {
        self.policy.metrics = Some(counters);
        self
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::new(inner, self.policy.clone(), self.max_body, self.only_marked)
    }
}
