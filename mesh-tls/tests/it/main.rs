//! mesh-tls integration tests: real TLS over loopback sockets, no mocks of TLS.
#![allow(unreachable_pub)]

mod files;
mod refresh;
mod refused;
mod rotation;
mod roundtrip;
mod support;
