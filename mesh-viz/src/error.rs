//! The error vocabulary of mesh-viz's queries: what `stat`, `edges`, `routes`, the latency
//! series and tap answer when they cannot answer, whichever source of numbers (or tap) was
//! asked. The HTTP APIs answer each kind with its status ([`QueryError::status`]) and the
//! message, which says what to do.

use http::StatusCode;
use mesh_core::BoxError;
use mesh_core::duration::InvalidDuration;

/// Why a query could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query is malformed (a bad resource, method, rate or combination of flags): the
    /// message says what is wrong and how to write it.
    #[error("{0}")]
    Invalid(String),
    /// A window or step that is not a duration (`30s`, `1m`, `1m30s`).
    #[error(transparent)]
    Window(#[from] InvalidDuration),
    /// A request that cannot be made to this URL (a malformed `--prometheus` address).
    #[error("bad URL {url:?}: {source}")]
    Url {
        /// The URL.
        url: String,
        /// Why it is not one.
        source: http::Error,
    },
    /// What the query names does not exist, or runs nowhere.
    #[error("{0}")]
    NotFound(String),
    /// The source of the numbers cannot answer this (it keeps no history, it said the query
    /// failed, it did not answer in time): what is missing, and what to do.
    #[error("{0}")]
    Unavailable(String),
    /// The source of the numbers (the control plane's metrics API, Prometheus, the workloads
    /// directory) could not be asked, or its answer could not be read.
    #[error("{what}: {source}")]
    Unreachable {
        /// Who was asked, and what to do.
        what: String,
        /// The cause.
        source: BoxError,
    },
}

impl QueryError {
    /// The HTTP status the APIs answer it with: 400 for a malformed query, 404 when it names
    /// nothing, 503 when the source of the numbers cannot answer.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Invalid(_) | Self::Window(_) | Self::Url { .. } => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Unavailable(_) | Self::Unreachable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Whether the query is well formed but names nothing that exists or runs.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound(_))
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Self::Invalid(msg.into())
    }

    pub(crate) fn not_found(msg: impl Into<String>) -> Self {
        Self::NotFound(msg.into())
    }

    pub(crate) fn unavailable(msg: impl Into<String>) -> Self {
        Self::Unavailable(msg.into())
    }

    pub(crate) fn unreachable(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Unreachable {
            what: what.into(),
            source: source.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_status_and_keeps_its_cause() {
        let window = crate::metrics::parse_window("soon").expect_err("not a duration");
        assert!(matches!(window, QueryError::Window(_)));
        assert_eq!(window.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            QueryError::not_found("no such workload").status(),
            StatusCode::NOT_FOUND
        );
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = QueryError::unreachable("Prometheus at http://127.0.0.1:9", io);
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.to_string(), "Prometheus at http://127.0.0.1:9: refused");
        let source = std::error::Error::source(&e).expect("a source");
        assert_eq!(source.to_string(), "refused");
    }
}
