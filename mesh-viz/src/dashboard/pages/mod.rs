//! The pages, one module each. Each is a handler that asks the API's query functions for its
//! data and renders its sections; `?fragment=ID` renders one section alone, which is what the
//! script fetches to refresh it. Rendering is pure (`render_*`, returning [`Markup`]), so the
//! tests check the HTML from rows.

mod namespace;
mod overview;
mod splits;
mod tap;
mod workload;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use super::html::segment;
use crate::metrics::QueryError;

pub(crate) use self::namespace::namespace;
pub(crate) use self::overview::overview;
pub(crate) use self::splits::splits;
pub(crate) use self::workload::workload;

/// What a query for a section's rows answered.
type Rows<T> = Result<Vec<T>, QueryError>;

/// An HTML answer, never cached: every page shows live numbers.
fn respond(status: StatusCode, body: Markup) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.into_string(),
    )
        .into_response()
}

fn no_such_fragment(id: &str) -> Response {
    respond(
        StatusCode::NOT_FOUND,
        html! { p.error { "no section " (id) " on this page" } },
    )
}

/// `path?fragment=id` plus `extra` pairs, for a live section's `data-live`.
fn fragment_href(path: &str, id: &str, extra: &[(&str, &str)]) -> String {
    let mut href = format!("{path}?fragment={}", segment(id));
    for (k, v) in extra {
        href.push_str(&format!("&{k}={}", segment(v)));
    }
    href
}
