//! The mesh control plane: the catalog, and Linkerd's proxy API (destination, identity, policy)
//! served from it, plus tap aggregation, metrics queries and the dashboard.
//!
//! Status: not implemented yet (issue "mesh-control: destination, identity and policy over
//! Linkerd's proxy API"). The certificate authority it will serve already exists:
//! `mesh_tls::CertificateAuthority`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
