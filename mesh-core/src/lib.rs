//! The cross-cutting pieces of the mesh, usable in any tower stack.
//!
//! `mesh-core` owns what every other mesh crate shares and what a Rust service can embed on its
//! own: the vocabulary for building stacks over *targets* ([`stack::Param`]), protocol detection
//! ([`detect`]), response classification ([`classify`]), body observation ([`body`]), timeouts,
//! retries with budgets, golden metrics and tap. It owns no sockets, no TLS and no discovery:
//! those live in `mesh-tls`, `mesh-proxy` and `mesh-balance`.
//!
//! # Example
//!
//! A stack asks its target only for the parameter it needs:
//!
//! ```
//! use mesh_core::stack::Param;
//!
//! #[derive(Clone, Copy, PartialEq, Debug)]
//! struct Port(u16);
//!
//! struct Endpoint { port: u16 }
//!
//! impl Param<Port> for Endpoint {
//!     fn param(&self) -> Port { Port(self.port) }
//! }
//!
//! fn port_of<T: Param<Port>>(target: &T) -> Port { target.param() }
//! assert_eq!(port_of(&Endpoint { port: 4143 }), Port(4143));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backoff;
pub mod body;
pub mod classify;
pub mod detect;
pub mod duration;
pub mod error;
pub mod metrics;
pub mod rescue;
pub mod retry;
pub mod signal;
pub mod stack;
pub mod tap;
pub mod timeout;

/// The error type layers widen their errors to, as tower does.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
