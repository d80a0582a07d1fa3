//! The live sections of the workload page: `top` of its paths and tap of its requests, with
//! the filters as a form. The script fills them from `/api/top` and `/api/tap`; without it they
//! say which `mesh` command shows the same.

use maud::{Markup, html};

use crate::dashboard::PageParams;
use crate::dashboard::html::{segment, workload_href};

/// The methods the tap form offers.
const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// The `mesh tap` command line equivalent to the filters.
pub(crate) fn tap_command(ns: &str, name: &str, p: &PageParams) -> String {
    let quote = |s: &str| {
        if s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.:".contains(&b))
        {
            s.to_string()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    };
    let mut cmd = format!("mesh tap deploy/{} -n {}", quote(name), quote(ns));
    for (flag, v) in [
        ("--path", &p.path),
        ("--method", &p.method),
        ("--authority", &p.authority),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            cmd.push_str(&format!(" {flag} {}", quote(v)));
        }
    }
    cmd
}

/// The live `top` and tap sections: filled by the script from the streams.
pub(crate) fn render_top_and_tap(ns: &str, name: &str, p: &PageParams) -> Markup {
    let resource = format!("deploy/{name}");
    let top = format!(
        "/api/top?namespace={}&resource={}",
        segment(ns),
        segment(&resource)
    );
    let method = p.method.as_deref().unwrap_or_default().to_ascii_uppercase();
    html! {
        section.card {
            h2 { "Top paths " small { "live" } }
            div #top data-top=(top) {
                p.empty {
                    "The live top needs JavaScript; or run "
                    code { "mesh top deploy/" (name) " -n " (ns) } "."
                }
            }
        }
        section.card #tap-section {
            h2 { "Tap " small { "live requests" } }
            form #tap-form .filters method="get" action=(workload_href(ns, name))
                data-namespace=(ns) data-resource=(resource) {
                label {
                    "Path prefix "
                    input name="path" id="tap-path" value=(p.path.as_deref().unwrap_or_default())
                        placeholder="/api/vote";
                }
                label {
                    "Method "
                    select name="method" id="tap-method" {
                        option value="" { "any" }
                        @for m in METHODS {
                            option selected[m == method] { (m) }
                        }
                    }
                }
                label {
                    "Authority "
                    input name="authority" id="tap-authority"
                        value=(p.authority.as_deref().unwrap_or_default())
                        placeholder="web.emojivoto:8080";
                }
                button type="submit" id="tap-start" { "Start" }
                button type="button" id="tap-stop" disabled { "Stop" }
            }
            p.hint {
                "Shows each request's method, authority, path, status and timing as the \
                 workload's proxy sees them; click a row for its details. Never bodies. The same \
                 from a terminal: "
                code #tap-cli { (tap_command(ns, name, p)) }
            }
            p #tap-status .hint role="status" { "Live tap needs JavaScript." }
            table.tap #tap-table {
                thead {
                    tr {
                        th { "Time" } th { "Direction" } th { "Peer" } th { "Method" }
                        th { "Authority" } th { "Path" } th { "Status" } th { "Latency" }
                        th { "gRPC" }
                    }
                }
                tbody {}
            }
        }
    }
}
