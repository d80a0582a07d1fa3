//! Writing HTML safely: every name shown comes from a registration or the catalog, so every
//! piece of text goes through [`esc`] (text and attribute values) or [`segment`] (a path
//! segment of a link).

use std::fmt::{self, Write as _};

use crate::metrics::{format_latency, format_rps, format_success};

/// Text escaped for an HTML text node or a quoted attribute value.
///
/// ```
/// # use mesh_viz::dashboard::html::esc;
/// assert_eq!(esc(r#"<b a="1">&'"#).to_string(), "&lt;b a=&quot;1&quot;&gt;&amp;&#39;");
/// ```
pub fn esc(s: &str) -> Esc<'_> {
    Esc(s)
}

/// Displays as its text, escaped; see [`esc`].
#[derive(Clone, Copy, Debug)]
pub struct Esc<'a>(&'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// A path segment, percent-encoded (and so also safe in an attribute).
///
/// ```
/// # use mesh_viz::dashboard::html::segment;
/// assert_eq!(segment("a b/<c>"), "a%20b%2F%3Cc%3E");
/// ```
pub fn segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, crate::URL_COMPONENT).to_string()
}

/// The link to a namespace's page.
pub(crate) fn namespace_href(ns: &str) -> String {
    format!("/namespaces/{}", segment(ns))
}

/// The link to a workload's page.
pub(crate) fn workload_href(ns: &str, name: &str) -> String {
    format!("/namespaces/{}/workloads/{}", segment(ns), segment(name))
}

/// A table cell with a number the client can sort by: `data-value` holds the raw value
/// (empty when there is none), the text is formatted as the CLI formats it.
pub(crate) fn num_cell(out: &mut String, metric: &str, raw: Option<f64>, text: &str) {
    let value = raw.map(|v| v.to_string()).unwrap_or_default();
    let _ = write!(
        out,
        r#"<td class="num" data-metric="{}" data-value="{}">{}</td>"#,
        esc(metric),
        esc(&value),
        esc(text)
    );
}

/// The golden-metric cells of a row: success, RPS, p50, p95, p99.
pub(crate) fn golden_cells(
    out: &mut String,
    success: Option<f64>,
    rps: Option<f64>,
    latency: [Option<u64>; 3],
) {
    let class = success_class(success);
    let value = success.map(|v| v.to_string()).unwrap_or_default();
    let _ = write!(
        out,
        r#"<td class="num {class}" data-metric="success" data-value="{}">{}</td>"#,
        esc(&value),
        esc(&format_success(success))
    );
    num_cell(out, "rps", rps, &format_rps(rps));
    for (metric, v) in ["p50", "p95", "p99"].iter().zip(latency) {
        num_cell(out, metric, v.map(|v| v as f64), &format_latency(v));
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

/// A whole page: head, navigation, `body`. The script fetches the page's live parts (the
/// `data-live` attributes) again every `data-refresh-ms` of the body.
pub(crate) fn page(title: &str, nav: Nav, crumbs: &[(String, String)], body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 1024);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · mesh</title>\
         <link rel=\"icon\" href=\"data:,\">\
         <link rel=\"stylesheet\" href=\"{}\">\
         <script src=\"{}\" defer></script></head><body data-refresh-ms=\"{}\">",
        esc(title),
        super::STYLE_PATH,
        super::SCRIPT_PATH,
        super::REFRESH_MS,
    );
    let cur = |n: Nav| {
        if n == nav {
            " aria-current=\"page\""
        } else {
            ""
        }
    };
    let _ = write!(
        out,
        "<header><a class=\"brand\" href=\"/\">mesh</a><nav>\
         <a href=\"/\"{}>Overview</a><a href=\"/splits\"{}>Traffic splits</a></nav>\
         <span class=\"live-status\" id=\"live-status\">live updates need JavaScript</span></header>",
        cur(Nav::Overview),
        cur(Nav::Splits),
    );
    out.push_str("<main>");
    if !crumbs.is_empty() {
        out.push_str("<p class=\"crumbs\"><a href=\"/\">Overview</a>");
        for (href, text) in crumbs {
            if href.is_empty() {
                let _ = write!(out, " / <span>{}</span>", esc(text));
            } else {
                let _ = write!(out, " / <a href=\"{}\">{}</a>", esc(href), esc(text));
            }
        }
        out.push_str("</p>");
    }
    out.push_str(body);
    out.push_str("</main></body></html>\n");
    out
}

/// A live section: its id, the URL its content is fetched from again, and its content.
pub(crate) fn live_section(out: &mut String, id: &str, href: &str, content: &str) {
    let _ = write!(
        out,
        r#"<div class="live" id="{}" data-live="{}">{}</div>"#,
        esc(id),
        esc(href),
        content
    );
}

/// An error banner.
pub(crate) fn error_banner(out: &mut String, message: &str) {
    let _ = write!(out, r#"<p class="error" role="alert">{}</p>"#, esc(message));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_that_could_open_markup() {
        let evil = r#"</td><script>alert("x")</script>&'"#;
        let out = esc(evil).to_string();
        assert!(!out.contains('<') && !out.contains('>') && !out.contains('"'));
        assert!(!out.contains('\''));
        assert_eq!(esc("plain-name.ns").to_string(), "plain-name.ns");
        assert_eq!(esc("").to_string(), "");
        assert_eq!(esc("é<").to_string(), "é&lt;");
    }

    #[test]
    fn links_encode_names() {
        assert_eq!(
            workload_href("a/b", "w\"x"),
            "/namespaces/a%2Fb/workloads/w%22x"
        );
        assert_eq!(namespace_href("emojivoto"), "/namespaces/emojivoto");
    }

    #[test]
    fn golden_cells_carry_raw_values_and_cli_text() {
        let mut out = String::new();
        golden_cells(&mut out, Some(0.5), Some(2.0), [Some(1), None, Some(3)]);
        assert!(out.contains(r#"class="num bad" data-metric="success" data-value="0.5">50.00%"#));
        assert!(out.contains(r#"data-metric="rps" data-value="2">2.0rps"#));
        assert!(out.contains(r#"data-metric="p95" data-value="">-"#));
    }
}
