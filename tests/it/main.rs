//! Integration tests of the `mesh` package: its examples and CLI, driven by clients no one here
//! wrote.
#![allow(unreachable_pub)]

mod architecture;
mod authorization;
mod control;
mod dashboard;
mod demo;
mod embed_layers;
mod emojivoto;
mod example;
mod http;
mod local;
mod meshed;
mod mtls_echo;
mod prometheus;
mod reliability;
mod wait;

/// The sidecar's own test support (a backend, proxies, an HTTP client), shared with mesh-proxy's
/// tests so the control-plane tests here drive proxies the same way.
#[allow(dead_code)]
#[path = "../../mesh-proxy/tests/it/support.rs"]
mod proxy_support;
