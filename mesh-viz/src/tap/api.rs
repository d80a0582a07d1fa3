//! `GET /api/tap`: the merged tap stream as newline-delimited JSON, for the CLI and the
//! dashboard.
//!
//! The query string is a [`TapQuery`]:
//!
//! ```text
//! GET /api/tap?namespace=emojivoto&resource=deploy/web&path=/api/vote&method=GET&to=deploy/voting&max_rps=100&limit=10
//! ```
//!
//! The answer streams `application/x-ndjson`, one [`TapLine`] per line, until the limit is
//! reached, every proxy's stream has ended, or the client goes away (then the proxies
//! unsubscribe). A query that cannot be served is answered at once with a JSON
//! `{"error": "..."}`: 400 when it is malformed, 404 when it matches no running workload, 500
//! when the state directory cannot be read.
//!
//! Mount [`router`] into the control plane's API server (`.merge(tap::api::router(tapper))`),
//! or run it alone with [`serve`].

use std::convert::Infallible;
use std::future::Future;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::net::TcpListener;

use super::event::TapLine;
use super::fanout::{TapError, Tapper};
use super::query::TapQuery;

/// The path of the tap stream.
pub const TAP_PATH: &str = "/api/tap";

/// The media type of the stream.
pub const NDJSON: &str = "application/x-ndjson";

/// The tap API's routes (`GET /api/tap`), to merge into the control plane's API router.
pub fn router(tapper: Tapper) -> Router {
    Router::new().route(TAP_PATH, get(tap)).with_state(tapper)
}

/// Serves [`router`] alone on `listener` until `shutdown` completes; then every tap stream ends
/// (so their responses finish) and the server drains.
pub async fn serve(
    listener: TcpListener,
    tapper: Tapper,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let closer = tapper.clone();
    axum::serve(listener, router(tapper))
        .with_graceful_shutdown(async move {
            shutdown.await;
            closer.close();
        })
        .await
}

async fn tap(
    State(tapper): State<Tapper>,
    query: Result<Query<TapQuery>, QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(q) => q,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    let merged = match tapper.observe(&query) {
        Ok(merged) => merged,
        Err(e) => {
            let status = match &e {
                TapError::Query(q) => q.status(),
                TapError::Workloads { .. } | TapError::Credentials(_) | TapError::Certify(_) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            };
            return error(status, e.to_string());
        }
    };
    let body = Body::from_stream(merged.map(|line| Ok::<_, Infallible>(ndjson(&line))));
    (
        [
            (header::CONTENT_TYPE, NDJSON),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// A line of the stream: the JSON and a newline.
fn ndjson(line: &TapLine) -> Bytes {
    let mut json = serde_json::to_vec(line).unwrap_or_else(|e| {
        serde_json::to_vec(&serde_json::json!({ "error": e.to_string() })).unwrap_or_default()
    });
    json.push(b'\n');
    Bytes::from(json)
}

fn error(status: StatusCode, message: String) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}
