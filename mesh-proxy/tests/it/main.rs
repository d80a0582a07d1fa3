//! mesh-proxy integration tests: two real proxies (outbound and inbound, mTLS between them) and a
//! real backend on loopback, driven by clients no one here wrote where one exists.
#![allow(unreachable_pub)]

mod apps;
mod bad_input;
mod chain;
mod drain;
mod failfast;
mod grpc;
mod opaque;
mod orig_dst;
mod streaming;
mod support;
mod tap;
mod upgrade;
