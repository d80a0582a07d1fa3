//! mesh-control integration tests: a real control plane on 127.0.0.1, real TLS, real gRPC
//! clients from `linkerd2-proxy-api`.
#![allow(unreachable_pub)]

mod conformance;
mod identity;
mod lifecycle;
mod live_edit;
mod registration;
mod support;
