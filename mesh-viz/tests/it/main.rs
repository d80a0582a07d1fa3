//! mesh-viz integration tests: a real control plane and its observability on 127.0.0.1, proxies'
//! tap servers over real mutual TLS, the JSON API over real HTTP.
#![allow(unreachable_pub)]

mod metrics;
mod support;
mod tap;
