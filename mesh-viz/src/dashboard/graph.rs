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

use maud::{Markup, html};

use super::html::{raw, success_class, workload_href};
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
pub(crate) fn render(namespace: &str, nodes: &[Node], edges: &[EdgeRow]) -> Markup {
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
        return html! { p.empty { "No workloads in this namespace yet." } };
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

    let drawn: Vec<(Markup, Markup)> = edges
        .iter()
        .filter_map(|e| Some((e, ends(e)?)))
        .map(|(e, (s, d))| {
            let wire = Wire::between(xy(s), xy(d), pos[d].0 > pos[s].0);
            render_edge(e, &wire)
        })
        .collect();
    html! {
        svg.topology viewBox={ "0 0 " (width) " " (height) } width=(width) height=(height)
            role="img" aria-label={ "Topology of namespace " (namespace) } {
            defs {
                marker #arrow viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8"
                    markerHeight="8" orient="auto-start-reverse" {
                    path d="M0,0 L10,5 L0,10 z" {}
                }
            }
            // Wires first, then nodes over their ends, then the labels over everything.
            @for (wire, _) in &drawn { (wire) }
            @for (i, key) in keys.iter().enumerate() {
                (render_node(namespace, &all[key], xy(i)))
            }
            @for (_, label) in &drawn { (label) }
        }
        @if edges.is_empty() {
            p.empty { "No traffic between workloads yet." }
        }
    }
}

/// Where an edge's wire runs and its label sits.
struct Wire {
    path: String,
    label: (f64, f64),
}

impl Wire {
    /// From the node at `(sx, sy)` to the node at `(dx, dy)`: left to right when `forward`
    /// (the callee is in a later column), else a dip under both.
    fn between((sx, sy): (f64, f64), (dx, dy): (f64, f64), forward: bool) -> Self {
        if forward {
            let (x1, y1, x2, y2) = (sx + NODE_W, sy + NODE_H / 2.0, dx, dy + NODE_H / 2.0);
            let bend = ((x2 - x1) / 2.0).max(40.0);
            Self {
                path: format!(
                    "M{x1},{y1} C{},{y1} {},{y2} {x2},{y2}",
                    x1 + bend,
                    x2 - bend
                ),
                label: ((x1 + x2) / 2.0, (y1 + y2) / 2.0),
            }
        } else {
            // A call back or within a column: from the bottom of one to the bottom of the other.
            let (x1, y1) = (sx + NODE_W / 2.0, sy + NODE_H);
            let (x2, y2) = (dx + NODE_W / 2.0 + 12.0, dy + NODE_H);
            let dip = y1.max(y2) + ROW / 2.0;
            Self {
                path: format!("M{x1},{y1} C{x1},{dip} {x2},{dip} {x2},{y2}"),
                label: ((x1 + x2) / 2.0, y1.max(y2) + ROW * 0.375),
            }
        }
    }
}

/// An edge: its wire, and its label (drawn later, over the nodes).
fn render_edge(e: &EdgeRow, wire: &Wire) -> (Markup, Markup) {
    let label = format!("{} · {}", format_rps(e.rps), format_success(e.success));
    let class = success_class(e.success);
    let secured = if e.secured { "secured" } else { "plain" };
    let tls = if e.secured {
        format!("mTLS, client {}", e.client_id)
    } else if e.no_tls_reason.is_empty() {
        "not mTLS".to_string()
    } else {
        format!("not mTLS: {}", e.no_tls_reason)
    };
    let title = html! {
        title { (e.src) " → " (e.dst) ": " (label) " (" (tls) ")" }
    };
    let edge = html! {
        g.edge.(secured).(class) data-src=(e.src) data-dst=(e.dst) data-src-ns=(e.src_namespace)
            data-dst-ns=(e.dst_namespace) data-secured=(e.secured) data-rps=(raw(e.rps))
            data-success=(raw(e.success)) {
            (title)
            path.wire d=(wire.path) marker-end="url(#arrow)" {}
        }
    };
    let (lx, ly) = wire.label;
    let lock_w = if e.secured { 14.0 } else { 0.0 };
    let text_w = label.chars().count() as f64 * 6.6;
    let w = text_w + lock_w + 10.0;
    // A padlock: shackle and body.
    let (px, py) = (lx - w / 2.0 + 5.0, ly - 6.0);
    let label = html! {
        g.edge-label.(secured).(class) data-src=(e.src) data-dst=(e.dst) {
            (title)
            rect.label-bg x=(lx - w / 2.0) y=(ly - 9.0) width=(w) height="18" rx="4" {}
            @if e.secured {
                g.lock aria-label="mTLS" {
                    path d={ "M" (px + 1.5) "," (py + 4.0) " v-2.5 a3,3 0 0 1 6,0 v2.5" }
                        fill="none" {}
                    rect x=(px) y=(py + 4.0) width="9" height="7" rx="1" {}
                }
            }
            text.label x=(lx - w / 2.0 + 5.0 + lock_w) y=(ly + 4.0) { (label) }
        }
    };
    (edge, label)
}

/// A workload's box, linking to its page.
fn render_node(namespace: &str, n: &Node, (x, y): (f64, f64)) -> Markup {
    let external = n.namespace != namespace;
    html! {
        a href=(workload_href(&n.namespace, &n.name)) {
            g.node.(success_class(n.success)).external[external].unmeshed[n.meshed == Some(false)]
                data-name=(n.name) data-namespace=(n.namespace) {
                rect x=(x) y=(y) width=(NODE_W) height=(NODE_H) rx="8" {}
                text.name x=(x + 12.0) y=(y + 22.0) {
                    (n.name)
                    @if external { "." (n.namespace) }
                }
                text.sub x=(x + 12.0) y=(y + 42.0) {
                    (format_success(n.success)) " · " (format_rps(n.rps))
                }
            }
        }
    }
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
        let svg = render("emojivoto", &nodes, &edges).into_string();
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
        let svg = render("emojivoto", &[node("<script>")], &[e]).into_string();
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;"));
        assert!(svg.contains(r#"data-dst-ns="other&quot;ns""#));
        assert!(svg.contains("db.other&quot;ns"));
        assert!(svg.contains("external"));
    }

    #[test]
    fn empty_namespaces_say_so() {
        assert!(render("x", &[], &[]).into_string().contains("No workloads"));
        let svg = render("emojivoto", &[node("web")], &[]).into_string();
        assert!(svg.contains("<svg") && svg.contains("No traffic between workloads yet"));
    }
}
