//! The dashboard's live JSON: `GET /api/series` (a workload's golden metrics over time) and
//! `GET /api/top` (the live `top` of a tap query, as newline-delimited JSON snapshots).

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Shared, json, json_error};
use crate::metrics::{Direction, QueryError, SeriesQuery, parse_window};
use crate::tap::{MergedTap, ProxyState, TapError, TapLine, TapQuery, Top, TopRow};

/// How often `/api/top` sends a snapshot.
pub const TOP_INTERVAL: Duration = Duration::from_secs(1);

/// The most rows a `/api/top` snapshot carries (the busiest).
pub const TOP_ROWS: usize = 100;

/// The query string of `GET /api/series`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesParams {
    /// The workload's namespace.
    pub namespace: Option<String>,
    /// The workload.
    pub name: Option<String>,
    /// `inbound` or `outbound`; default is inbound, or outbound for a workload that only sends.
    pub direction: Option<String>,
    /// Default is `5m`.
    pub window: Option<String>,
    /// Default is `10s`.
    pub step: Option<String>,
}

impl SeriesParams {
    /// The query these parameters ask.
    pub fn to_query(&self) -> Result<SeriesQuery, QueryError> {
        let (Some(ns), Some(name)) = (
            self.namespace.as_deref().filter(|s| !s.is_empty()),
            self.name.as_deref().filter(|s| !s.is_empty()),
        ) else {
            return Err(QueryError::Invalid(
                "series needs a workload: ?namespace=NS&name=NAME".into(),
            ));
        };
        let mut q = SeriesQuery::new(ns, name);
        q.direction = match self.direction.as_deref() {
            None | Some("") => None,
            Some("inbound") => Some(Direction::Inbound),
            Some("outbound") => Some(Direction::Outbound),
            Some(other) => {
                return Err(QueryError::Invalid(format!(
                    "unknown direction {other:?}: use inbound or outbound"
                )));
            }
        };
        if let Some(w) = self.window.as_deref().filter(|s| !s.is_empty()) {
            q.window = parse_window(w)?;
        }
        if let Some(s) = self.step.as_deref().filter(|s| !s.is_empty()) {
            q.step = parse_window(s)?;
        }
        q.points()?;
        Ok(q)
    }
}

pub(crate) async fn series(
    State(d): State<Shared>,
    query: Result<Query<SeriesParams>, QueryRejection>,
) -> Response {
    let params = match query {
        Ok(Query(p)) => p,
        Err(r) => return json_error(StatusCode::BAD_REQUEST, &r.body_text()),
    };
    let result = match params.to_query() {
        Ok(q) => d.source.series(&q).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(s) => json(StatusCode::OK, &s),
        Err(e) => json_error(e.status(), &e.to_string()),
    }
}

/// One line of `GET /api/top`: the table now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopSnapshot {
    /// The busiest rows first, at most [`TOP_ROWS`].
    pub rows: Vec<TopRowJson>,
    /// Requests started and not yet ended.
    pub pending: usize,
    /// Proxies that could not be tapped, and why.
    pub errors: Vec<String>,
    /// Whether the tap ended (this is the last line).
    pub ended: bool,
}

/// A [`TopRow`] as JSON: the numbers, and the cells as `mesh top` prints them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopRowJson {
    /// Who sent the requests.
    pub source: String,
    /// Who received them.
    pub destination: String,
    /// The method.
    pub method: String,
    /// The path.
    pub path: String,
    /// How many ended.
    pub count: u64,
    /// Success rate in percent.
    pub success_rate: f32,
    /// The cells, in [`TOP_HEADERS`](crate::tap::TOP_HEADERS) order.
    pub cells: Vec<String>,
}

impl From<&TopRow> for TopRowJson {
    fn from(r: &TopRow) -> Self {
        Self {
            source: r.source.clone(),
            destination: r.destination.clone(),
            method: r.method.clone(),
            path: r.path.clone(),
            count: r.count,
            success_rate: r.success_rate(),
            cells: r.cells().to_vec(),
        }
    }
}

struct TopState {
    merged: MergedTap,
    top: Top,
    tick: tokio::time::Interval,
    errors: Vec<String>,
}

impl TopState {
    fn snapshot(&self, ended: bool) -> Bytes {
        let rows = self.top.rows();
        let snapshot = TopSnapshot {
            rows: rows.iter().take(TOP_ROWS).map(TopRowJson::from).collect(),
            pending: self.top.pending(),
            errors: self.errors.clone(),
            ended,
        };
        let mut line = serde_json::to_vec(&snapshot).unwrap_or_else(|e| {
            serde_json::json!({ "error": e.to_string() })
                .to_string()
                .into_bytes()
        });
        line.push(b'\n');
        Bytes::from(line)
    }
}

pub(crate) async fn top(
    State(d): State<Shared>,
    query: Result<Query<TapQuery>, QueryRejection>,
) -> Response {
    let query = match query {
        Ok(Query(q)) => q,
        Err(r) => return json_error(StatusCode::BAD_REQUEST, &r.body_text()),
    };
    let Some(tapper) = &d.tapper else {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this dashboard has no tapper: open the one the control plane serves",
        );
    };
    let merged = match tapper.observe(&query) {
        Ok(m) => m,
        Err(e) => {
            let status = match &e {
                TapError::Query(q) => q.status(),
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            return json_error(status, &e.to_string());
        }
    };
    let mut tick = tokio::time::interval(TOP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = TopState {
        merged,
        top: Top::new(),
        tick,
        errors: Vec::new(),
    };
    // A snapshot every tick; the stream ends with the tap (or when the client goes away, which
    // drops the tap and so unsubscribes from the proxies).
    let stream = futures_util::stream::unfold(Some(state), |state| async move {
        let mut st = state?;
        loop {
            tokio::select! {
                line = st.merged.next() => match line {
                    Some(line) => {
                        if let TapLine::Proxy(p) = &line
                            && p.state == ProxyState::Failed
                        {
                            st.errors.push(p.to_string());
                        }
                        st.top.insert_line(&line);
                    }
                    None => {
                        let last = st.snapshot(true);
                        return Some((Ok::<_, Infallible>(last), None));
                    }
                },
                _ = st.tick.tick() => {
                    let snap = st.snapshot(false);
                    return Some((Ok(snap), Some(st)));
                }
            }
        }
    });
    (
        [
            (header::CONTENT_TYPE, crate::tap::api::NDJSON),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_params_parse() {
        let p = SeriesParams {
            namespace: Some("emojivoto".into()),
            name: Some("web".into()),
            direction: Some("outbound".into()),
            window: Some("2m".into()),
            step: Some("5s".into()),
        };
        let q = p.to_query().expect("query");
        assert_eq!(q.direction, Some(Direction::Outbound));
        assert_eq!(q.window, Duration::from_secs(120));
        assert_eq!(q.step, Duration::from_secs(5));
        for bad in [
            SeriesParams::default(),
            SeriesParams {
                direction: Some("sideways".into()),
                ..p.clone()
            },
            SeriesParams {
                step: Some("1h".into()),
                ..p.clone()
            },
        ] {
            assert!(
                matches!(bad.to_query(), Err(QueryError::Invalid(_))),
                "{bad:?}"
            );
        }
    }
}
