//! How a request picks an endpoint: discovery, latency-aware balancing, failure accrual, splits.
//!
//! `mesh-balance` will own endpoint sets and `Discover` streams (static, control-plane, DNS),
//! power-of-two-choices over peak-EWMA latency (built on tower's `balance` and `load`), failure
//! accrual that ejects and probes endpoints, weighted traffic splits, and a per-target balancer
//! cache with idle eviction. It is usable without any proxy: a Rust service can balance its own
//! outbound calls.
//!
//! Status: not implemented yet (issue "mesh-balance: discovery, latency-aware balancing, failure
//! accrual and traffic splits"); this crate exists so the workspace has its final shape.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
