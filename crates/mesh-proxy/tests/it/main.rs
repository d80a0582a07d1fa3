//! mesh-proxy integration tests: two real proxies (outbound and inbound, mTLS between them) and a
//! real backend on loopback, driven by clients no one here wrote where one exists.
#![allow(unreachable_pub)]

mod chain;
mod support;
