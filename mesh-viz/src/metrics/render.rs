//! Text and JSON renderings of the rows, in Linkerd's formats, so the CLI is a thin call.
//!
//! Tables are laid out as Linkerd's `tabwriter` does: three spaces between columns, the
//! first column left-aligned and the numbers right-aligned (`stat`, `routes`), or every column
//! left-aligned (`edges`). Numbers are written `100.00%`, `2.0rps`, `1ms`; `-` when there was
//! no traffic. JSON is an indented array of the rows, as the HTTP API serves them.

use std::str::FromStr;

use super::query::ResourceKind;
use super::rows::{EdgeRow, RouteRow, StatRow};
use crate::QueryError;

/// What Linkerd prints (to stderr) when `stat` or `routes` has no rows.
pub const NO_TRAFFIC: &str = "No traffic found.";
/// What Linkerd prints (to stderr) when `edges` has no rows.
pub const NO_EDGES: &str = "No edges found.";

/// An output format: `-o table` (the default), `-o wide`, `-o json`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    /// Linkerd's default columns.
    #[default]
    Table,
    /// More columns (`stat`: bytes per second; `edges`: identities; `routes`: effective and
    /// actual success and RPS).
    Wide,
    /// The rows as JSON.
    Json,
}

impl FromStr for Output {
    type Err = QueryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" | "table" => Ok(Self::Table),
            "wide" => Ok(Self::Wide),
            "json" => Ok(Self::Json),
            other => Err(QueryError::Invalid(format!(
                "unknown output {other:?}: use table, wide or json"
            ))),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

/// Lays out a table: each column as wide as its widest cell, three spaces between columns.
fn table(headers: &[(&str, Align)], rows: &[Vec<String>], pad_last: bool) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|(h, _)| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|(h, _)| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, ((_, align), width))) in
            row.iter().zip(headers.iter().zip(&widths)).enumerate()
        {
            if i > 0 {
                line.push_str("   ");
            }
            let fill = width.saturating_sub(cell.chars().count());
            let last = i + 1 == headers.len();
            match align {
                Align::Right => {
                    line.extend(std::iter::repeat_n(' ', fill));
                    line.push_str(cell);
                }
                Align::Left => {
                    line.push_str(cell);
                    if !last || pad_last {
                        line.extend(std::iter::repeat_n(' ', fill));
                    }
                }
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn json<T: serde::Serialize>(rows: &T) -> String {
    // Rows are plain data: serializing them cannot fail.
    let mut s = serde_json::to_string_pretty(rows).unwrap_or_else(|_| "[]".into());
    s.push('\n');
    s
}

/// `100.00%`, or `-`.
pub fn format_success(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{:.2}%", v * 100.0))
}

/// `2.0rps`, or `-`.
pub fn format_rps(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.1}rps"))
}

/// `12ms`, or `-`.
pub fn format_latency(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v}ms"))
}

fn format_bytes(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.1}B/s"))
}

/// `stat` rows as `mesh stat` prints them. A `NAMESPACE` column comes first when the rows
/// span several namespaces. Empty rows render as an empty string: print [`NO_TRAFFIC`] to
/// stderr instead.
///
/// ```
/// use mesh_viz::metrics::{render_stat, Output, StatRow};
///
/// let rows: Vec<StatRow> = serde_json::from_str(r#"[{
///     "namespace": "emojivoto", "kind": "deployment", "name": "emoji", "meshed": "1/1",
///     "success": 1.0, "rps": 2.05, "latency_ms_p50": 1, "latency_ms_p95": 2,
///     "latency_ms_p99": 3, "tcp_open_connections": 1, "tcp_read_bytes_rate": 10.0,
///     "tcp_write_bytes_rate": 20.0, "direction": "inbound"}]"#).unwrap();
/// assert_eq!(
///     render_stat(&rows, Output::Table),
///     "NAME    MESHED   SUCCESS      RPS   LATENCY_P50   LATENCY_P95   LATENCY_P99   TCP_CONN\n\
///      emoji      1/1   100.00%   2.0rps           1ms           2ms           3ms          1\n"
/// );
/// ```
pub fn render_stat(rows: &[StatRow], output: Output) -> String {
    if output == Output::Json {
        return json(&rows);
    }
    if rows.is_empty() {
        return String::new();
    }
    let first = &rows[0].namespace;
    let with_ns = rows.iter().any(|r| &r.namespace != first)
        && rows.iter().all(|r| r.kind == ResourceKind::Deployment);
    let wide = output == Output::Wide;
    let mut headers = Vec::new();
    if with_ns {
        headers.push(("NAMESPACE", Align::Left));
    }
    headers.extend([
        ("NAME", Align::Left),
        ("MESHED", Align::Right),
        ("SUCCESS", Align::Right),
        ("RPS", Align::Right),
        ("LATENCY_P50", Align::Right),
        ("LATENCY_P95", Align::Right),
        ("LATENCY_P99", Align::Right),
        ("TCP_CONN", Align::Right),
    ]);
    if wide {
        headers.push(("READ_BYTES/SEC", Align::Right));
        headers.push(("WRITE_BYTES/SEC", Align::Right));
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut c = Vec::new();
            if with_ns {
                c.push(r.namespace.clone());
            }
            c.push(r.name.clone());
            c.push(r.meshed.to_string());
            if r.has_traffic() {
                c.push(format_success(r.success));
                c.push(format_rps(r.rps));
                c.push(format_latency(r.latency_ms_p50));
                c.push(format_latency(r.latency_ms_p95));
                c.push(format_latency(r.latency_ms_p99));
                c.push(
                    r.tcp_open_connections
                        .map_or_else(|| "-".into(), |v| v.to_string()),
                );
                if wide {
                    c.push(format_bytes(r.tcp_read_bytes_rate));
                    c.push(format_bytes(r.tcp_write_bytes_rate));
                }
            } else {
                let n = if wide { 8 } else { 6 };
                c.extend(std::iter::repeat_n("-".to_string(), n));
            }
            c
        })
        .collect();
    table(&headers, &cells, false)
}

/// `<name>.<namespace>` of an identity, as Linkerd's `edges` shows it.
fn short_identity(id: &str) -> String {
    let mut parts = id.split('.');
    match (parts.next(), parts.next()) {
        (Some(a), Some(b)) => format!("{a}.{b}"),
        _ => id.to_string(),
    }
}

/// How `edges` words a reason for no mTLS.
fn no_tls_message(reason: &str) -> String {
    match reason {
        "disabled" => "Disabled".into(),
        "loopback" => "Loopback".into(),
        "no_authority_in_http_request" => "No Authority In HTTP Request".into(),
        "not_http" => "Not HTTP".into(),
        "not_provided_by_remote" => "Not Provided By Remote".into(),
        "not_provided_by_service_discovery" | "no_identity" => {
            "Not Provided By Service Discovery".into()
        }
        other => other
            .split('_')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// `edges` rows as `mesh edges` prints them: `SRC DST SRC_NS DST_NS SECURED`, with
/// `CLIENT_ID SERVER_ID` (shortened to `name.namespace`) before `SECURED` in wide output.
/// JSON keeps the full identities. Empty rows render as an empty string: print [`NO_EDGES`].
pub fn render_edges(rows: &[EdgeRow], output: Output) -> String {
    if output == Output::Json {
        return json(&rows);
    }
    if rows.is_empty() {
        return String::new();
    }
    let wide = output == Output::Wide;
    let mut headers = vec![
        ("SRC", Align::Left),
        ("DST", Align::Left),
        ("SRC_NS", Align::Left),
        ("DST_NS", Align::Left),
    ];
    if wide {
        headers.push(("CLIENT_ID", Align::Left));
        headers.push(("SERVER_ID", Align::Left));
    }
    headers.push(("SECURED", Align::Left));
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut c = vec![
                r.src.clone(),
                r.dst.clone(),
                r.src_namespace.clone(),
                r.dst_namespace.clone(),
            ];
            if wide {
                c.push(short_identity(&r.client_id));
                c.push(short_identity(&r.server_id));
            }
            c.push(if r.secured {
                "√".into()
            } else {
                no_tls_message(&r.no_tls_reason)
            });
            c
        })
        .collect();
    table(&headers, &cells, true)
}

/// `routes` rows as `mesh routes` prints them: `ROUTE SERVICE SUCCESS RPS LATENCY_P50
/// LATENCY_P95 LATENCY_P99`; wide output replaces `SUCCESS RPS` with `EFFECTIVE_SUCCESS
/// EFFECTIVE_RPS ACTUAL_SUCCESS ACTUAL_RPS`.
pub fn render_routes(rows: &[RouteRow], output: Output) -> String {
    if output == Output::Json {
        return json(&rows);
    }
    if rows.is_empty() {
        return String::new();
    }
    let wide = output == Output::Wide;
    let mut headers = vec![("ROUTE", Align::Left), ("SERVICE", Align::Right)];
    if wide {
        headers.extend([
            ("EFFECTIVE_SUCCESS", Align::Right),
            ("EFFECTIVE_RPS", Align::Right),
            ("ACTUAL_SUCCESS", Align::Right),
            ("ACTUAL_RPS", Align::Right),
        ]);
    } else {
        headers.extend([("SUCCESS", Align::Right), ("RPS", Align::Right)]);
    }
    headers.extend([
        ("LATENCY_P50", Align::Right),
        ("LATENCY_P95", Align::Right),
        ("LATENCY_P99", Align::Right),
    ]);
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut c = vec![r.route.clone(), r.service.clone()];
            if wide {
                c.push(format_success(r.effective_success));
                c.push(format_rps(r.effective_rps));
                c.push(format_success(r.actual_success));
                c.push(format_rps(r.actual_rps));
            } else {
                c.push(format_success(r.success));
                c.push(format_rps(r.rps));
            }
            c.push(format_latency(r.latency_ms_p50));
            c.push(format_latency(r.latency_ms_p95));
            c.push(format_latency(r.latency_ms_p99));
            c
        })
        .collect();
    table(&headers, &cells, false)
}
