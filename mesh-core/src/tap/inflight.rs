//! A tapped request on its way: the events it owes its subscribers.
//!
//! Everything a tapped request needs lives in one box, allocated when it matches and carried
//! from the response future into the response body, so that untapped requests pay one
//! pointer-sized `None` in each.

use std::error::Error as StdError;
use std::sync::Arc;

use http::StatusCode;
use tokio::time::Instant;

use super::TapEvent;
use super::event::{ResponseEnd, ResponseInit, TapEventKind, TapRequest};
use super::registry::Subscriber;
use crate::body::{End, Observer};
use crate::classify::{self, Classifier, Decision, ErrorReason};

/// A tapped request waiting for its response. Dropped without one (the caller gave up), it
/// ends the request's events with [`ErrorReason::Reset`].
pub(super) struct RequestTap(Option<Box<Tapped>>);

/// A tapped response streaming its body: the [`Observer`] of its
/// [`ObservedBody`](crate::body::ObservedBody).
pub(super) struct ResponseTap(Box<Tapped>);

struct Tapped {
    request: Arc<TapRequest>,
    subscribers: Vec<Arc<Subscriber>>,
    classifier: Classifier,
    request_init: Instant,
    response: Option<Responding>,
    bytes: u64,
}

struct Responding {
    response_init: Instant,
    status: StatusCode,
    decision: Decision,
}

// === impl RequestTap ===

impl RequestTap {
    /// Sends the request's `RequestInit` to `subscribers`.
    pub(super) fn start(
        request: Arc<TapRequest>,
        subscribers: Vec<Arc<Subscriber>>,
        classifier: Classifier,
    ) -> Self {
        let tapped = Tapped {
            request,
            subscribers,
            classifier,
            request_init: Instant::now(),
            response: None,
            bytes: 0,
        };
        tapped.send(TapEventKind::RequestInit);
        Self(Some(Box::new(tapped)))
    }

    /// The response head arrived: sends `ResponseInit`, and returns what watches the body.
    pub(super) fn response<B>(mut self, rsp: &http::Response<B>) -> Option<ResponseTap> {
        let mut tapped = self.0.take()?;
        let response_init = Instant::now();
        let status = rsp.status();
        tapped.send(TapEventKind::ResponseInit(ResponseInit {
            status,
            since_request_init: response_init.saturating_duration_since(tapped.request_init),
        }));
        tapped.response = Some(Responding {
            response_init,
            status,
            decision: tapped.classifier.classify_headers(status, rsp.headers()),
        });
        Some(ResponseTap(tapped))
    }

    /// The request failed without a response: sends `ResponseEnd` with the error's reason.
    pub(super) fn fail(mut self, error: &(dyn StdError + 'static)) {
        if let Some(tapped) = self.0.take() {
            tapped.end(None, Some(classify::error_reason(error)));
        }
    }
}

impl Drop for RequestTap {
    fn drop(&mut self) {
        if let Some(tapped) = self.0.take() {
            tapped.end(None, Some(ErrorReason::Reset));
        }
    }
}

// === impl ResponseTap ===

impl Observer for ResponseTap {
    fn on_data(&mut self, bytes: usize) {
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        self.0.bytes = self.0.bytes.saturating_add(bytes);
    }

    fn on_end(self, end: End<'_>) {
        let tapped = self.0;
        let Some(decision) = tapped.response.as_ref().map(|r| &r.decision) else {
            return;
        };
        let from_headers = match decision {
            Decision::Final(outcome) => outcome.grpc_status(),
            Decision::Pending(_) => None,
        };
        let (grpc_status, error) = match (end, decision) {
            (End::Complete(trailers), Decision::Pending(pending)) => {
                (pending.eos(trailers).grpc_status(), None)
            }
            (End::Complete(_), Decision::Final(_)) => (from_headers, None),
            (End::Error(e), _) => (from_headers, Some(classify::error_reason(e))),
            // The caller stopped reading: the stream was cancelled.
            (End::Dropped, _) => (from_headers, Some(ErrorReason::Reset)),
        };
        tapped.end(grpc_status, error);
    }
}

// === impl Tapped ===

impl Tapped {
    fn send(&self, kind: TapEventKind) {
        let event = TapEvent::new(self.request.clone(), kind);
        for sub in &self.subscribers {
            sub.send(event.clone());
        }
    }

    fn end(&self, grpc_status: Option<i32>, error: Option<ErrorReason>) {
        let now = Instant::now();
        self.send(TapEventKind::ResponseEnd(ResponseEnd {
            status: self.response.as_ref().map(|r| r.status),
            grpc_status,
            error,
            since_request_init: now.saturating_duration_since(self.request_init),
            since_response_init: self
                .response
                .as_ref()
                .map(|r| now.saturating_duration_since(r.response_init)),
            response_bytes: self.bytes,
        }));
    }
}
