//! The markup every page shares, written with [`maud`]'s `html!` templates: the page layout
//! and navigation, live sections, error banners, golden-metric cells and links.
//!
//! Every name shown comes from a registration or the catalog. Templates escape every spliced
//! value (`(x)`) for text and double-quoted attributes; only [`Markup`] (already rendered by a
//! template) is spliced as it is. Names in links go through [`segment`] first.

use maud::{DOCTYPE, Markup, html};
use percent_encoding::utf8_percent_encode;

use crate::metrics::{format_latency, format_rps, format_success};

/// A path segment, percent-encoded (and so also safe in an attribute).
///
/// ```
/// # use mesh_viz::dashboard::html::segment;
/// assert_eq!(segment("a b/<c>"), "a%20b%2F%3Cc%3E");
/// ```
pub fn segment(s: &str) -> String {
    utf8_percent_encode(s, crate::URL_COMPONENT).to_string()
}

/// The link to a namespace's page.
pub(crate) fn namespace_href(ns: &str) -> String {
    format!("/namespaces/{}", segment(ns))
}

/// The link to a workload's page.
pub(crate) fn workload_href(ns: &str, name: &str) -> String {
    format!("/namespaces/{}/workloads/{}", segment(ns), segment(name))
}

/// A raw value for a `data-value` attribute: empty when there is none.
pub(crate) fn raw(value: Option<impl ToString>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

/// A table cell with a number the client can sort by: `data-value` holds the raw value
/// (empty when there is none), the text is formatted as the CLI formats it.
pub(crate) fn num_cell(metric: &str, value: Option<f64>, text: &str) -> Markup {
    html! {
        td.num data-metric=(metric) data-value=(raw(value)) { (text) }
    }
}

/// The golden-metric cells of a row: success, RPS, p50, p95, p99.
pub(crate) fn golden_cells(
    success: Option<f64>,
    rps: Option<f64>,
    latency: [Option<u64>; 3],
) -> Markup {
    html! {
        td.num.(success_class(success)) data-metric="success" data-value=(raw(success)) {
            (format_success(success))
        }
        (num_cell("rps", rps, &format_rps(rps)))
        @for (metric, v) in ["p50", "p95", "p99"].into_iter().zip(latency) {
            (num_cell(metric, v.map(|v| v as f64), &format_latency(v)))
        }
    }
}

/// `good`, `warn` or `bad` by success rate (none without traffic).
pub(crate) fn success_class(success: Option<f64>) -> &'static str {
    match success {
        Some(s) if s >= 0.99 => "good",
        Some(s) if s >= 0.9 => "warn",
        Some(_) => "bad",
        None => "none",
    }
}

/// Which page the navigation marks as current.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Nav {
    Overview,
    Namespace,
    Splits,
}

/// A link of the breadcrumbs: where it goes (`None` for the current page) and its text.
pub(crate) type Crumb = (Option<String>, String);

/// A whole page: head, navigation, `body`. The script fetches the page's live parts (the
/// `data-live` attributes) again every `data-refresh-ms` of the body.
pub(crate) fn page(title: &str, nav: Nav, crumbs: &[Crumb], body: Markup) -> Markup {
    let current = |n: Nav| (n == nav).then_some("page");
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · mesh" }
                link rel="icon" href="data:,";
                link rel="stylesheet" href=(super::STYLE_PATH);
                script src=(super::SCRIPT_PATH) defer {}
            }
            body data-refresh-ms=(super::REFRESH_MS) {
                header {
                    a.brand href="/" { "mesh" }
                    nav {
                        a href="/" aria-current=[current(Nav::Overview)] { "Overview" }
                        a href="/splits" aria-current=[current(Nav::Splits)] { "Traffic splits" }
                    }
                    span.live-status #live-status { "live updates need JavaScript" }
                }
                main {
                    @if !crumbs.is_empty() {
                        p.crumbs {
                            a href="/" { "Overview" }
                            @for (href, text) in crumbs {
                                " / "
                                @if let Some(href) = href {
                                    a href=(href) { (text) }
                                } @else {
                                    span { (text) }
                                }
                            }
                        }
                    }
                    (body)
                }
            }
        }
    }
}

/// A live section: its id, the URL its content is fetched from again, and its content.
pub(crate) fn live_section(id: &str, href: &str, content: Markup) -> Markup {
    html! {
        div.live id=(id) data-live=(href) { (content) }
    }
}

/// An error banner.
pub(crate) fn error_banner(message: &str) -> Markup {
    html! {
        p.error role="alert" { (message) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_encode_names() {
        assert_eq!(
            workload_href("a/b", "w\"x"),
            "/namespaces/a%2Fb/workloads/w%22x"
        );
        assert_eq!(namespace_href("emojivoto"), "/namespaces/emojivoto");
        assert_eq!(segment("é~-._"), "%C3%A9~-._");
    }

    #[test]
    fn golden_cells_carry_raw_values_and_cli_text() {
        let out = golden_cells(Some(0.5), Some(2.0), [Some(1), None, Some(3)]).into_string();
        assert!(out.contains(r#"class="num bad" data-metric="success" data-value="0.5">50.00%"#));
        assert!(out.contains(r#"data-metric="rps" data-value="2">2.0rps"#));
        assert!(out.contains(r#"data-metric="p95" data-value="">-"#));
    }

    #[test]
    fn templates_escape_everything_that_could_open_markup() {
        let evil = r#"</td><script>alert("x")</script>&'"#;
        let out = error_banner(evil).into_string();
        let text = out
            .strip_prefix(r#"<p class="error" role="alert">"#)
            .and_then(|s| s.strip_suffix("</p>"))
            .unwrap_or_else(|| panic!("{out}"));
        assert!(!text.contains('<') && !text.contains('>') && !text.contains('"'));
        let cell = num_cell(evil, None, "").into_string();
        assert_eq!(cell.matches('"').count(), 6, "{cell}");
    }
}
