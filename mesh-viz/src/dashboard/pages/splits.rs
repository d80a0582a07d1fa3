//! `/splits`: each traffic split of the catalog with its weights and each backend's numbers
//! (rendered by [`crate::dashboard::splits`]).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use super::{fragment_href, no_such_fragment, respond};
use crate::dashboard::html::{Nav, error_banner, live_section, page};
use crate::dashboard::{PageQuery, Shared, splits};

pub(crate) async fn splits(State(d): State<Shared>, query: PageQuery) -> Response {
    let p = query.0;
    let section = match &d.splits().await {
        Ok(s) => splits::render(s),
        Err(e) => error_banner(&format!("cannot read the metrics: {e}")),
    };
    match p.fragment.as_deref() {
        Some("splits") => respond(StatusCode::OK, section),
        Some(other) => no_such_fragment(other),
        None => {
            let body = html! {
                h1 { "Traffic splits" }
                (live_section("splits", &fragment_href("/splits", "splits", &[]), section))
            };
            respond(
                StatusCode::OK,
                page("Traffic splits", Nav::Splits, &[], body),
            )
        }
    }
}
