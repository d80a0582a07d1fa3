use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};

use crate::classify::{Class, ErrorReason, Outcome};

/// The labels of one target (a stack's `direction`, `authority`, `tls`, `client_id`,
/// `dst_service`, `route`, ...), resolved once when the target's stack is built.
///
/// Cheap to clone. Values are sanitized so they can always be exported. Keep label values
/// bounded: a `route` label comes from configured routes, never from raw paths.
///
/// ```
/// use mesh_core::metrics::Labels;
///
/// let labels = Labels::new()
///     .with("direction", "inbound")
///     .with("authority", "web.emojivoto.svc.cluster.local:80")
///     .with("tls", "true");
/// assert_eq!(labels.get("direction"), Some("inbound"));
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels(Arc<[(Cow<'static, str>, String)]>);

impl Labels {
    /// No labels.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a label.
    pub fn with(self, key: impl Into<Cow<'static, str>>, value: impl AsRef<str>) -> Self {
        let key = key.into();
        let value = sanitize(value.as_ref());
        let mut v: Vec<_> = self.0.iter().filter(|(k, _)| *k != key).cloned().collect();
        v.push((key, value));
        Self(v.into())
    }

    /// The value of a label.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All labels, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v.as_str()))
    }
}

/// Label values must not break the exposition format: no quotes, backslashes or control
/// characters, and a bounded length.
fn sanitize(v: &str) -> String {
    v.chars()
        .take(256)
        .map(|c| {
            if c == '"' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl EncodeLabelSet for Labels {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), fmt::Error> {
        use prometheus_client::encoding::EncodeLabel;
        for (k, v) in self.iter() {
            (k, v).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

/// Target labels plus what a response adds (`status_code`, `classification`, `grpc_status`,
/// `error`), Linkerd's `response_total` label set.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ResponseLabels {
    pub(crate) target: Labels,
    pub(crate) outcome: OutcomeKey,
}

/// The part of an [`Outcome`] that labels a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct OutcomeKey {
    pub(crate) status: Option<u16>,
    pub(crate) class: Class,
    pub(crate) grpc_status: Option<i32>,
    pub(crate) error: Option<ErrorReason>,
}

impl From<&Outcome> for OutcomeKey {
    fn from(o: &Outcome) -> Self {
        Self {
            status: o.status().map(|s| s.as_u16()),
            class: o.class(),
            grpc_status: o.grpc_status(),
            error: o.error(),
        }
    }
}

impl EncodeLabelSet for ResponseLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), fmt::Error> {
        use prometheus_client::encoding::EncodeLabel;
        self.target.encode(encoder)?;
        let o = &self.outcome;
        if let Some(s) = o.status {
            ("status_code", itoa(s as i64).as_str()).encode(encoder.encode_label())?;
        }
        ("classification", o.class.as_str()).encode(encoder.encode_label())?;
        if let Some(g) = o.grpc_status {
            ("grpc_status", itoa(g as i64).as_str()).encode(encoder.encode_label())?;
        }
        if let Some(e) = o.error {
            ("error", e.as_str()).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

/// Target labels plus `status_code`: the `response_latency_ms` label set.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct LatencyLabels {
    pub(crate) target: Labels,
    pub(crate) status: Option<u16>,
}

impl EncodeLabelSet for LatencyLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), fmt::Error> {
        use prometheus_client::encoding::EncodeLabel;
        self.target.encode(encoder)?;
        if let Some(s) = self.status {
            ("status_code", itoa(s as i64).as_str()).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

/// Target labels plus `classification`: the `tcp_close_total` label set.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct CloseLabels {
    pub(crate) target: Labels,
    pub(crate) class: Class,
}

impl EncodeLabelSet for CloseLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), fmt::Error> {
        use prometheus_client::encoding::EncodeLabel;
        self.target.encode(encoder)?;
        ("classification", self.class.as_str()).encode(encoder.encode_label())
    }
}

fn itoa(v: i64) -> String {
    v.to_string()
}
