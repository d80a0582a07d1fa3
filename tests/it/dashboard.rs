//! The web dashboard in a real browser: Debian's headless Chromium, driven over WebDriver by
//! `fantoccini` through Debian's chromedriver, with `mesh demo` running. Each page is checked
//! for what a person would look for, its load time printed, its assets weighed, and a
//! screenshot of it written under `target/dashboard-screenshots/`.
//!
//! The namespace page's screenshot is also the README's `docs/dashboard-namespace.png`: run with
//! `MESH_UPDATE_DOCS=1` to refresh it.
//!
//! Without `chromium` and `chromedriver` (`.ci/run` installs them; or set `MESH_CHROMIUM` and
//! `MESH_CHROMEDRIVER`) the browser part says so loudly and skips.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::demo::Demo;
use crate::http::get;
use crate::prometheus::free_port;
use crate::wait::{eventually, until};

const MESH: &str = env!("CARGO_BIN_EXE_mesh");

/// Every page must come with less than this in document and assets.
const MAX_PAGE_BYTES: f64 = 1024.0 * 1024.0;

/// `mesh demo`, stopped as Ctrl-C stops it.
/// A process leading its own process group (chromedriver, and the Chromium it starts), killed
/// as a group: no browser outlives the test, even when it fails.
struct Group(Child);

impl Group {
    fn spawn(cmd: &mut Command) -> Self {
        use std::os::unix::process::CommandExt;
        Self(cmd.process_group(0).spawn().expect("spawn"))
    }

    fn running(&self) -> bool {
        Command::new("pgrep")
            .args(["-g", &self.0.id().to_string()])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let pgid = self.0.id().to_string();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .status();
        let _ = self.0.wait();
        // Chromium's processes are reparented when chromedriver dies: wait until they are gone.
        crate::wait::try_until(Duration::from_secs(10), Duration::from_millis(100), || {
            (!self.running()).then_some(())
        });
    }
}

/// `$var`, or `name` on the PATH.
fn program(var: &str, name: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        return Some(PathBuf::from(p));
    }
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!path.is_empty()).then(|| PathBuf::from(path))
}

/// `target/` (the parent of Cargo's temporary directory for integration tests).
fn target_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).to_path_buf()
}

fn mesh(state: &Path, args: &[&str]) -> std::process::Output {
    Command::new("timeout")
        .arg("30")
        .arg(MESH)
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .expect("mesh")
}

/// Starts the demo and waits until all four workloads are meshed and web fails some votes.
fn start_demo(state: &Path) -> (Demo, SocketAddr) {
    let demo = Demo::start(state, "100ms");
    let api = until(Duration::from_secs(60), "the control plane's API", || {
        mesh_viz::metrics::api::read_addr(state).ok()
    });
    until(
        Duration::from_secs(90),
        "four meshed workloads with traffic",
        || {
            let (status, body) = get(api, "/api/stat?resource=deploy&namespace=emojivoto");
            let rows: Value = serde_json::from_str(&body).ok().filter(|_| status == 200)?;
            let rows = rows.as_array()?;
            let meshed = rows
                .iter()
                .filter(|r| r["meshed"] == "1/1" && r["rps"].is_f64())
                .count();
            let web_fails = rows
                .iter()
                .any(|r| r["name"] == "web" && r["success"].as_f64().is_some_and(|s| s < 1.0));
            (meshed == 4 && web_fails).then_some(())
        },
    );
    (demo, api)
}

/// Runs `script` in the page; `None` when it failed or answered `null`.
async fn js(c: &Client, script: &str) -> Option<Value> {
    c.execute(script, Vec::new())
        .await
        .ok()
        .filter(|v| !v.is_null())
}

/// Waits for the page to finish loading, prints its load time (Navigation Timing) and checks
/// the weight of its document and assets. Returns the load time in ms.
async fn loaded(c: &Client, page: &str, path: &str) -> f64 {
    let t = eventually(Duration::from_secs(30), "the page to load", || async {
        js(
            c,
            &format!(
                r#"if (location.pathname !== {path:?}) return null;
               const n = performance.getEntriesByType("navigation")[0];
               if (!n || document.readyState !== "complete" || n.loadEventEnd <= 0) return null;
               const assets = performance.getEntriesByType("resource")
                 .filter(r => ["script", "link", "css", "img"].includes(r.initiatorType));
               // Cached assets report no size: weigh each by fetching it again.
               return Promise.all(assets.map(r => fetch(r.name, {{ cache: "no-store" }})
                   .then(x => x.arrayBuffer()).then(b => b.byteLength)))
                 .then(sizes => ({{
                   load: n.loadEventEnd - n.startTime,
                   dcl: n.domContentLoadedEventEnd - n.startTime,
                   document: n.decodedBodySize,
                   assets: sizes.reduce((sum, size) => sum + size, 0),
                   count: assets.length,
                 }}));"#
            ),
        )
        .await
    })
    .await;
    let f = |k: &str| t[k].as_f64().unwrap_or(f64::NAN);
    let bytes = f("document") + f("assets");
    println!(
        "dashboard: {page} loaded in {:.0} ms (DOMContentLoaded {:.0} ms); {:.1} KiB: document {:.1} KiB + {} assets {:.1} KiB",
        f("load"),
        f("dcl"),
        bytes / 1024.0,
        f("document") / 1024.0,
        f("count"),
        f("assets") / 1024.0,
    );
    assert!(
        bytes < MAX_PAGE_BYTES,
        "{page}: {bytes} bytes of document and assets"
    );
    f("load")
}

async fn screenshot(c: &Client, name: &str) -> PathBuf {
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let dir = target_dir().join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, png).expect("write screenshot");
    println!("dashboard: screenshot {}", path.display());
    path
}

/// The pages, as a person would check them.
async fn browse(c: Client, api: SocketAddr) {
    let base = format!("http://{api}");
    c.set_window_size(1280, 1000).await.expect("window size");

    // Overview: emojivoto, 4/4 meshed; the control plane healthy.
    c.goto(&format!("{base}/")).await.expect("overview");
    loaded(&c, "overview", "/").await;
    eventually(Duration::from_secs(30), "emojivoto 4/4 meshed", || async {
        let meshed = js(
            &c,
            r#"const td = document.querySelector('tr[data-namespace="emojivoto"] [data-meshed]');
               return td && td.textContent.trim();"#,
        )
        .await?;
        (meshed == "4/4").then_some(())
    })
    .await;
    let health = js(
        &c,
        r#"return document.querySelector("p.summary").dataset.status;"#,
    )
    .await;
    assert_eq!(health, Some(json!("ok")), "the control plane's health");
    screenshot(&c, "overview").await;

    // Namespace: the graph has web -> voting and web -> emoji, locked (mTLS).
    c.find(Locator::Css(r#"a[href="/namespaces/emojivoto"]"#))
        .await
        .expect("link to the namespace")
        .click()
        .await
        .expect("click");
    loaded(&c, "namespace", "/namespaces/emojivoto").await;
    for dst in ["voting", "emoji"] {
        let edge = eventually(Duration::from_secs(30), "the web edges", || async {
            js(
                &c,
                &format!(
                    r#"const e = document.querySelector('svg.topology g.edge[data-src="web"][data-dst="{dst}"]');
                       return e && e.dataset.secured;"#
                ),
            )
            .await
        })
        .await;
        assert_eq!(edge, json!("true"), "web -> {dst} over mTLS");
    }
    let rows = js(
        &c,
        r#"return Array.from(document.querySelectorAll('#workloads-table tbody tr')).map(r => r.dataset.name);"#,
    )
    .await;
    assert_eq!(rows, Some(json!(["emoji", "vote-bot", "voting", "web"])));
    let shot = screenshot(&c, "namespace").await;
    // The README's picture: refreshed when asked (or missing), so a test run leaves the work
    // tree clean.
    let readme_shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/dashboard-namespace.png");
    if std::env::var_os("MESH_UPDATE_DOCS").is_some() || !readme_shot.exists() {
        if let Some(docs) = readme_shot.parent() {
            std::fs::create_dir_all(docs).expect("docs");
        }
        std::fs::copy(&shot, &readme_shot).expect("copy the screenshot");
        println!("dashboard: updated {}", readme_shot.display());
    }

    // Sorting by success, in the browser: web (below 100%) comes before emoji (100%).
    c.find(Locator::Css(
        r##"#workloads-table th a[data-sort="success"]"##,
    ))
    .await
    .expect("success header")
    .click()
    .await
    .expect("click");
    eventually(
        Duration::from_secs(10),
        "rows sorted by success",
        || async {
            let order = js(
                &c,
                r#"const t = document.getElementById("workloads-table");
               if (t.dataset.sort !== "success") return null;
               return Array.from(t.querySelectorAll("tbody tr")).map(r => r.dataset.name);"#,
            )
            .await?;
            let order: Vec<String> = serde_json::from_value(order).ok()?;
            let pos = |n: &str| order.iter().position(|o| o == n);
            (pos("emoji")? < pos("voting")?).then_some(())
        },
    )
    .await;

    // Workload web: inbound success below 100%.
    c.goto(&format!("{base}/namespaces/emojivoto/workloads/web"))
        .await
        .expect("workload page");
    loaded(&c, "workload web", "/namespaces/emojivoto/workloads/web").await;
    let success = js(
        &c,
        r#"return document.querySelector('#inbound [data-metric="success"]').dataset.value;"#,
    )
    .await
    .and_then(|v| v.as_str()?.parse::<f64>().ok())
    .expect("web's inbound success rate");
    assert!(success < 1.0, "web's success rate is {success}");
    eventually(
        Duration::from_secs(20),
        "the live top to show /api/vote",
        || async {
            js(
                &c,
                r#"return document.querySelector('#top tr[data-path="/api/vote"]') ? true : null;"#,
            )
            .await
        },
    )
    .await;
    screenshot(&c, "workload").await;

    // Tap, filtered to /api/vote: a failing doughnut vote (500) within 10 s, expandable.
    let path = c.find(Locator::Id("tap-path")).await.expect("path filter");
    path.clear().await.expect("clear");
    path.send_keys("/api/vote").await.expect("type");
    c.find(Locator::Id("tap-start"))
        .await
        .expect("start")
        .click()
        .await
        .expect("click start");
    let failed = eventually(Duration::from_secs(10), "a failed vote in tap", || async {
        let row = c
            .find(Locator::Css(
                r##"#tap-table tr.tap-row.failed[data-status="500"]"##,
            ))
            .await
            .ok()?;
        let path = row.attr("data-path").await.ok()??;
        row.click().await.ok()?;
        Some(path)
    })
    .await;
    assert!(failed.starts_with("/api/vote"), "{failed}");
    let detail = js(
        &c,
        r#"const open = document.querySelector('#tap-table tr.tap-row.open');
           return open && !open.nextElementSibling.hidden && open.nextElementSibling.textContent;"#,
    )
    .await
    .expect("the expanded request");
    let detail = detail.as_str().unwrap_or_default().to_string();
    assert!(
        detail.contains("inbound") && detail.contains("tls"),
        "{detail}"
    );
    let others = js(
        &c,
        r#"return Array.from(document.querySelectorAll('#tap-table tr.tap-row')).filter(r => !r.dataset.path.startsWith("/api/vote")).length;"#,
    )
    .await;
    assert_eq!(others, Some(json!(0)), "the path filter");
    js(
        &c,
        r#"document.getElementById("tap-section").scrollIntoView(); return true;"#,
    )
    .await;
    screenshot(&c, "tap").await;
    c.find(Locator::Id("tap-stop"))
        .await
        .expect("stop")
        .click()
        .await
        .expect("click stop");

    // Traffic splits: the demo has none, and the page says how to add one.
    c.goto(&format!("{base}/splits"))
        .await
        .expect("splits page");
    loaded(&c, "splits", "/splits").await;
    let text = c
        .find(Locator::Css("main"))
        .await
        .expect("main")
        .text()
        .await
        .expect("text");
    assert!(text.contains("No traffic splits"), "{text}");
    screenshot(&c, "splits").await;
}

#[test]
fn the_dashboard_shows_the_demo_in_a_browser() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let (_demo, api) = start_demo(&state);

    // Readable without JavaScript: the graph and tables are in the HTML itself.
    let (status, html) = get(api, "/namespaces/emojivoto");
    assert_eq!(status, 200);
    assert!(
        html.contains(r#"data-src="web" data-dst="voting""#),
        "{html}"
    );
    assert!(html.contains(r#"data-src="web" data-dst="emoji""#));
    assert!(html.contains(r#"<tr data-name="web">"#));

    // `mesh dashboard` finds it; serving it elsewhere needs consent; the forwarder forwards.
    let out = mesh(&state, &["dashboard", "--no-browser"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains(&format!("http://{api}/")), "{stdout}");
    let out = mesh(&state, &["dashboard", "--address", "0.0.0.0:0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--allow-external"), "{stderr}");
    let front: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let _forwarder = Group::spawn(
        Command::new(MESH)
            .args(["dashboard", "--no-browser", "--address", &front.to_string()])
            .arg("--state-dir")
            .arg(&state)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    until(
        Duration::from_secs(20),
        "the page through the forwarder",
        || {
            std::net::TcpStream::connect(front).ok()?;
            let (status, body) = get(front, "/namespaces/emojivoto");
            (status == 200 && body.contains(r#"data-src="web""#)).then_some(())
        },
    );

    let (Some(chromium), Some(chromedriver)) = (
        program("MESH_CHROMIUM", "chromium"),
        program("MESH_CHROMEDRIVER", "chromedriver"),
    ) else {
        eprintln!(
            "\n*** SKIPPED the browser: no chromium/chromedriver (set MESH_CHROMIUM and \
             MESH_CHROMEDRIVER; .ci/run installs Debian's) ***\n"
        );
        return;
    };
    let port = free_port();
    let driver = Group::spawn(
        Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let webdriver: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    // Listening is ready enough: the session request below waits for the browser.
    until(Duration::from_secs(20), "chromedriver", || {
        std::net::TcpStream::connect(webdriver).ok().map(drop)
    });

    let profile = tempfile::tempdir().expect("profile dir");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://{webdriver}"))
            .await
            .expect("a WebDriver session");
        // Run the checks in a task, so the session is closed (and Chromium quits) whatever
        // happens; then fail with the checks' panic, if any.
        let outcome = tokio::spawn(browse(client.clone(), api)).await;
        let _ = client.close().await;
        if let Err(e) = outcome {
            match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(e) => panic!("the browser checks did not finish: {e}"),
            }
        }
    });
    drop(driver);
}
