//! The crate graph keeps the shape docs/architecture.md draws: every dependency (dev ones too)
//! points down the layers (`cargo metadata`), and the sidecar links no control plane, no web
//! framework and no YAML parser (`cargo tree -p mesh-proxy`). A new `[dependencies]` line that
//! breaks either fails here.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// The layers of docs/architecture.md: a crate may depend only on crates of lower layers.
const LAYERS: &[(&str, u8)] = &[
    ("meshkit-core", 0),
    ("mesh-tls", 1),
    ("mesh-balance", 1),
    ("mesh-control-client", 2),
    ("mesh-proxy", 3),
    ("mesh-control", 3),
    ("mesh-viz", 4),
    ("mesh", 5),
];

fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON")
}

/// Package id -> name.
type Names = BTreeMap<String, String>;
/// Package id -> its dependencies' ids (normal, build and dev).
type Edges = BTreeMap<String, Vec<String>>;

fn graph(meta: &Value) -> (Names, Edges) {
    let names = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            let id = p["id"].as_str().expect("id").to_owned();
            (id, p["name"].as_str().expect("name").to_owned())
        })
        .collect();
    let edges = meta["resolve"]["nodes"]
        .as_array()
        .expect("resolve nodes")
        .iter()
        .map(|n| {
            let deps: Vec<String> = n["deps"]
                .as_array()
                .expect("deps")
                .iter()
                .map(|d| d["pkg"].as_str().expect("pkg").to_owned())
                .collect();
            (n["id"].as_str().expect("id").to_owned(), deps)
        })
        .collect();
    (names, edges)
}

#[test]
fn every_dependency_points_down_the_layers() {
    let meta = metadata();
    let (names, edges) = graph(&meta);
    let layer: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let members: Vec<&str> = meta["workspace_members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut checked = 0;
    for id in members {
        let name = names[id].as_str();
        let Some(&own) = layer.get(name) else {
            panic!(
                "{name} is a workspace member with no layer: place it in docs/architecture.md and LAYERS"
            );
        };
        for dep in &edges[id] {
            if let Some(&theirs) = layer.get(names[dep].as_str()) {
                assert!(
                    theirs < own,
                    "{name} (layer {own}) depends on {} (layer {theirs}): dependencies point down",
                    names[dep]
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 15, "only {checked} edges between mesh crates");
}

#[test]
fn the_sidecar_links_no_control_plane_web_framework_or_yaml_parser() {
    // `cargo tree` resolves features for mesh-proxy alone, as a build of the sidecar does
    // (`cargo metadata` would unify them with the rest of the workspace).
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "--locked",
            "-p",
            "mesh-proxy",
            "-e",
            "normal",
        ])
        .args(["--prefix", "none", "--format", "{p}"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let linked: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(linked.contains("mesh-control-client"), "{linked:?}");
    assert!(linked.contains("hyper"), "{linked:?}");
    for banned in [
        "mesh-control",
        "mesh-viz",
        "axum",
        "maud",
        "serde-saphyr",
        "serde_yaml",
    ] {
        assert!(
            !linked.contains(banned),
            "mesh-proxy links {banned}; the sidecar must not link the control plane, \
             observability, a web framework or a YAML parser"
        );
    }
    assert!(
        !linked.iter().any(|n| n.contains("yaml")),
        "a YAML crate in mesh-proxy's tree: {linked:?}"
    );
}
