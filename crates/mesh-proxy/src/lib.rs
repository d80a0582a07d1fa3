//! The mesh sidecar: inbound and outbound stacks composed from `mesh-core`, `mesh-tls` and
//! `mesh-balance`, an admin server, and the `mesh-proxy` binary.
//!
//! Status: not implemented yet (issue "mesh-proxy: the sidecar data plane"). Until then the
//! mutual TLS layers can be embedded directly: see `mesh_tls` and `examples/mtls_echo.rs`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
