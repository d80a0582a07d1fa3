//! Where endpoints come from: `Discover` streams of [`Endpoint`]s keyed by address.
//!
//! Every source here is a [`tower::discover::Discover`] stream of
//! `Change::Insert(addr, Endpoint)` / `Change::Remove(addr)` that never fails, so any of them
//! (or your own) feeds a balancer:
//!
//! - [`fixed`]: a static list, for a service that knows its peers;
//! - [`EndpointSet`]: a set a handle edits (add, remove, reset) and any number of balancers
//!   [`subscribe`](EndpointSet::subscribe) to; the control plane's `Get` stream feeds one;
//! - [`Dns`]: a name resolved again and again, the fallback for names the mesh does not know.
//!
//! A balancer removes an endpoint when its `Remove` arrives: requests already sent to it finish,
//! new ones go elsewhere. An `Insert` for an address already present replaces its endpoint (for
//! instance when its identity or labels change).
//!
//! ```
//! use futures_util::StreamExt;
//! use mesh_balance::discover::EndpointSet;
//! use mesh_balance::Endpoint;
//! use tower::discover::Change;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let set = EndpointSet::new();
//! let mut updates = set.subscribe();
//! set.add([Endpoint::new(([10, 0, 0, 1], 80).into())]);
//! let Some(Ok(Change::Insert(addr, _))) = updates.next().await else { panic!() };
//! assert_eq!(addr.to_string(), "10.0.0.1:80");
//! # }
//! ```

mod dns;
mod fixed;
mod set;

pub use self::dns::Dns;
pub use self::fixed::{Fixed, fixed};
pub use self::set::{EndpointSet, Subscription};

use std::net::SocketAddr;
use tower::discover::Change;

use crate::Endpoint;

/// What every discovery source here yields.
pub type Update = Change<SocketAddr, Endpoint>;
