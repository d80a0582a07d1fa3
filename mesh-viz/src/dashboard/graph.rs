//! The topology graph of a namespace, as inline SVG rendered on the server: it shows without
//! JavaScript, and a refresh is one fetch of the same markup.
//!
//! Nodes are the namespace's workloads (and the peers in other namespaces they talk to);
//! edges are the rows of `edges`, each labelled with its RPS and success rate and a lock when
//! every request on it went over mutual TLS. The layout is layered, left to right: a workload
//! sits one column right of the furthest caller that reaches it (so load generators are on the
//! left and leaves on the right); within a column, nodes are ordered by the mean row of their
//! callers to keep edges short, then by name. Every edge element carries `data-src`,
//! `data-dst`, `data-src-ns`, `data-dst-ns`, `data-secured`, `data-rps` and `data-success` for
//! scripts and tests.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::html::{esc, success_class, workload_href};
use crate::metrics::{EdgeRow, format_rps, format_success};

const NODE_W: f64 = 180.0;
const NODE_H: f64 = 54.0;
const COL: f64 = 390.0;
const ROW: f64 = 96.0;
const MARGIN: f64 = 24.0;

/// A workload drawn as a node.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) success: Option<f64>,
    pub(crate) rps: Option<f64>,
    /// Whether its proxy is ready (known only for the namespace's own workloads).
    pub(crate) meshed: Option<bool>,
}

type Key = (String, String);

/// The graph of `namespace`: `nodes` (its workloads) and `edges` (with an end in it).
pub(crate) fn render(namespace: &str, nodes: &[Node], edges: &[EdgeRow]) -> String {
    // Every node, with the peers that only edges name.
    let mut all: BTreeMap<Key, Node> = nodes
        .iter()
        .map(|n| ((n.namespace.clone(), n.name.clone()), n.clone()))
        .collect();
    for e in edges {
        for (ns, name) in [(&e.src_namespace, &e.src), (&e.dst_namespace, &e.dst)] {
            all.entry((ns.clone(), name.clone()))
                .or_insert_with(|| Node {
                    namespace: ns.clone(),
                    name: name.clone(),
                    success: None,
                    rps: None,
                    meshed: None,
                });
        }
    }
    if all.is_empty() {
        return String::from(r#"<p class="empty">No workloads in this namespace yet.</p>"#);
    }
    let keys: Vec<Key> = all.keys().cloned().collect();
    let index: BTreeMap<&Key, usize> = keys.iter().enumerate().map(|(i, k)| (k, i)).collect();
    let ends = |e: &EdgeRow| -> Option<(usize, usize)> {
        let s = index.get(&(e.src_namespace.clone(), e.src.clone()))?;
        let d = index.get(&(e.dst_namespace.clone(), e.dst.clone()))?;
        Some((*s, *d))
    };
    let pairs: Vec<(usize, usize)> = edges.iter().filter_map(ends).collect();
    let pos = layout(keys.len(), &pairs);

    let cols = pos.iter().map(|p| p.0).max().unwrap_or(0) + 1;
    let rows = pos.iter().map(|p| p.1).max().unwrap_or(0) + 1;
    let width = MARGIN * 2.0 + (cols - 1) as f64 * COL + NODE_W;
    let height = MARGIN * 2.0 + (rows - 1) as f64 * ROW + NODE_H;
    let xy = |i: usize| {
        let (c, r) = pos[i];
        (MARGIN + c as f64 * COL, MARGIN + r as f64 * ROW)
    };

    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="topology" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="Topology of namespace {}">"#,
        esc(namespace)
    );
    out.push_str(
        r#"<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>"#,
    );

    // Wires first, then nodes over their ends, then the labels over everything.
    let mut labels = String::new();
    for e in edges {
        let Some((s, d)) = ends(e) else { continue };
        let (sx, sy) = xy(s);
        let (dx, dy) = xy(d);
        let (x1, y1, x2, y2) = if pos[d].0 > pos[s].0 {
            (sx + NODE_W, sy + NODE_H / 2.0, dx, dy + NODE_H / 2.0)
        } else {
            // A call back or within a column: from the bottom of one to the bottom of the other.
            (
                sx + NODE_W / 2.0,
                sy + NODE_H,
                dx + NODE_W / 2.0 + 12.0,
                dy + NODE_H,
            )
        };
        let bend = if pos[d].0 > pos[s].0 {
            ((x2 - x1) / 2.0).max(40.0)
        } else {
            0.0
        };
        let path = if bend > 0.0 {
            format!(
                "M{x1},{y1} C{},{y1} {},{y2} {x2},{y2}",
                x1 + bend,
                x2 - bend
            )
        } else {
            let dip = y1.max(y2) + ROW / 2.0;
            format!("M{x1},{y1} C{x1},{dip} {x2},{dip} {x2},{y2}")
        };
        let (lx, ly) = if bend > 0.0 {
            ((x1 + x2) / 2.0, (y1 + y2) / 2.0)
        } else {
            ((x1 + x2) / 2.0, y1.max(y2) + ROW * 0.375)
        };
        let label = format!("{} · {}", format_rps(e.rps), format_success(e.success));
        let class = success_class(e.success);
        let secured = if e.secured { "secured" } else { "plain" };
        let _ = write!(
            out,
            r#"<g class="edge {secured} {class}" data-src="{}" data-dst="{}" data-src-ns="{}" data-dst-ns="{}" data-secured="{}" data-rps="{}" data-success="{}">"#,
            esc(&e.src),
            esc(&e.dst),
            esc(&e.src_namespace),
            esc(&e.dst_namespace),
            e.secured,
            e.rps.map(|v| v.to_string()).unwrap_or_default(),
            e.success.map(|v| v.to_string()).unwrap_or_default(),
        );
        let tls = if e.secured {
            format!("mTLS, client {}", e.client_id)
        } else if e.no_tls_reason.is_empty() {
            "not mTLS".to_string()
        } else {
            format!("not mTLS: {}", e.no_tls_reason)
        };
        let _ = write!(
            out,
            r#"<title>{} → {}: {} ({})</title><path class="wire" d="{path}" marker-end="url(#arrow)"/></g>"#,
            esc(&e.src),
            esc(&e.dst),
            esc(&label),
            esc(&tls),
        );
        let _ = write!(
            labels,
            r#"<g class="edge-label {secured} {class}" data-src="{}" data-dst="{}"><title>{} → {}: {} ({})</title>"#,
            esc(&e.src),
            esc(&e.dst),
            esc(&e.src),
            esc(&e.dst),
            esc(&label),
            esc(&tls),
        );
        let lock_w = if e.secured { 14.0 } else { 0.0 };
        let text_w = label.chars().count() as f64 * 6.6;
        let w = text_w + lock_w + 10.0;
        let _ = write!(
            labels,
            r#"<rect class="label-bg" x="{}" y="{}" width="{w}" height="18" rx="4"/>"#,
            lx - w / 2.0,
            ly - 9.0
        );
        if e.secured {
            // A padlock: shackle and body.
            let (px, py) = (lx - w / 2.0 + 5.0, ly - 6.0);
            let _ = write!(
                labels,
                r#"<g class="lock" aria-label="mTLS"><path d="M{},{} v-2.5 a3,3 0 0 1 6,0 v2.5" fill="none"/><rect x="{px}" y="{}" width="9" height="7" rx="1"/></g>"#,
                px + 1.5,
                py + 4.0,
                py + 4.0,
            );
        }
        let _ = write!(
            labels,
            r#"<text class="label" x="{}" y="{}">{}</text></g>"#,
            lx - w / 2.0 + 5.0 + lock_w,
            ly + 4.0,
            esc(&label)
        );
    }

    for (i, key) in keys.iter().enumerate() {
        let n = &all[key];
        let (x, y) = xy(i);
        let title = if n.namespace == namespace {
            n.name.clone()
        } else {
            format!("{}.{}", n.name, n.namespace)
        };
        let mut class = format!("node {}", success_class(n.success));
        if n.namespace != namespace {
            class.push_str(" external");
        }
        if n.meshed == Some(false) {
            class.push_str(" unmeshed");
        }
        let _ = write!(
            out,
            r#"<a href="{}"><g class="{class}" data-name="{}" data-namespace="{}"><rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="8"/><text class="name" x="{}" y="{}">{}</text><text class="sub" x="{}" y="{}">{} · {}</text></g></a>"#,
            esc(&workload_href(&n.namespace, &n.name)),
            esc(&n.name),
            esc(&n.namespace),
            x + 12.0,
            y + 22.0,
            esc(&title),
            x + 12.0,
            y + 42.0,
            esc(&format_success(n.success)),
            esc(&format_rps(n.rps)),
        );
    }
    out.push_str(&labels);
    out.push_str("</svg>");
    if edges.is_empty() {
        out.push_str(r#"<p class="empty">No traffic between workloads yet.</p>"#);
    }
    out
}

/// `(column, row)` of each of `n` nodes given the edges between them.
fn layout(n: usize, edges: &[(usize, usize)]) -> Vec<(usize, usize)> {
    // Longest path from a node nobody calls, bounded so that cycles end.
    let mut col = vec![0usize; n];
    for _ in 0..n {
        let mut changed = false;
        for &(s, d) in edges {
            if s != d && col[d] < col[s] + 1 && col[s] + 1 < n {
                col[d] = col[s] + 1;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let cols = col.iter().copied().max().unwrap_or(0) + 1;
    let mut row = vec![0usize; n];
    for c in 0..cols {
        let mut members: Vec<usize> = (0..n).filter(|&i| col[i] == c).collect();
        // The mean row of the callers in earlier columns; nodes without one keep name order.
        let weight = |i: usize| -> f64 {
            let callers: Vec<usize> = edges
                .iter()
                .filter(|&&(s, d)| d == i && col[s] < c)
                .map(|&(s, _)| row[s])
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            if callers.is_empty() {
                f64::MAX
            } else {
                callers.iter().sum::<usize>() as f64 / callers.len() as f64
            }
        };
        members.sort_by(|&a, &b| weight(a).total_cmp(&weight(b)).then(a.cmp(&b)));
        for (r, i) in members.into_iter().enumerate() {
            row[i] = r;
        }
    }
    col.into_iter().zip(row).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> Node {
        Node {
            namespace: "emojivoto".into(),
            name: name.into(),
            success: Some(1.0),
            rps: Some(1.0),
            meshed: Some(true),
        }
    }

    fn edge(src: &str, dst: &str, secured: bool) -> EdgeRow {
        EdgeRow {
            src: src.into(),
            src_namespace: "emojivoto".into(),
            dst: dst.into(),
            dst_namespace: "emojivoto".into(),
            client_id: format!("{src}.emojivoto.serviceaccount.identity.mesh.cluster.local"),
            server_id: String::new(),
            secured,
            no_tls_reason: String::new(),
            rps: Some(2.5),
            success: Some(0.9),
        }
    }

    #[test]
    fn layers_callers_left_of_callees() {
        // vote-bot -> web -> {emoji, voting}
        let pos = layout(4, &[(3, 2), (2, 0), (2, 1)]);
        assert_eq!(pos[3].0, 0);
        assert_eq!(pos[2].0, 1);
        assert_eq!((pos[0].0, pos[1].0), (2, 2));
        assert_ne!(pos[0].1, pos[1].1);
        // Cycles end.
        let pos = layout(2, &[(0, 1), (1, 0)]);
        assert!(pos.iter().all(|p| p.0 < 2));
    }

    #[test]
    fn edges_carry_machine_readable_attributes_and_locks() {
        let nodes = ["emoji", "voting", "web", "vote-bot"].map(node);
        let edges = [
            edge("vote-bot", "web", true),
            edge("web", "emoji", true),
            edge("web", "voting", false),
        ];
        let svg = render("emojivoto", &nodes, &edges);
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains(r#"data-src="web" data-dst="voting""#), "{svg}");
        assert!(svg.contains(r#"data-src="web" data-dst="emoji""#));
        assert!(svg.contains(r#"data-src="vote-bot" data-dst="web""#));
        assert_eq!(svg.matches(r#"class="lock""#).count(), 2);
        assert!(svg.contains(r#"data-secured="false""#));
        assert!(svg.contains("2.5rps · 90.00%"));
        assert!(svg.contains(r#"href="/namespaces/emojivoto/workloads/web""#));
        assert!(!svg.contains("No traffic"));
    }

    #[test]
    fn names_are_escaped_and_peers_elsewhere_are_drawn() {
        let mut e = edge("<script>", "db", true);
        e.dst_namespace = "other\"ns".into();
        let svg = render("emojivoto", &[node("<script>")], &[e]);
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;"));
        assert!(svg.contains(r#"data-dst-ns="other&quot;ns""#));
        assert!(svg.contains("db.other&quot;ns"));
        assert!(svg.contains("external"));
    }

    #[test]
    fn empty_namespaces_say_so() {
        assert!(render("x", &[], &[]).contains("No workloads"));
        let svg = render("emojivoto", &[node("web")], &[]);
        assert!(svg.contains("<svg") && svg.contains("No traffic between workloads yet"));
    }
}
