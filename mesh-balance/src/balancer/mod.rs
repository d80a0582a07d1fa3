//! A target's balancer: a bounded queue with failfast in front of the P2C-EWMA [`Pool`].
//!
//! ```text
//! Balancer (Clone, one per caller)          -- sheds with QueueFull when the queue is full
//!   └─ tower Buffer (capacity, one worker task per target)
//!        └─ failfast (timeout)              -- no endpoint ready for too long: Unavailable
//!             └─ Pool: tower p2c::Balance over peak-EWMA endpoints with failure accrual
//! ```
//!
//! The queue lets many connections share one balancer and bounds how many requests may wait for
//! an endpoint; the failfast timeout bounds how long they wait. Either way a request that cannot
//! be served fails with [`Unavailable`](crate::Unavailable), which a proxy answers with a 503,
//! rather than hanging.
//!
//! [`Pool`]: crate::Pool

mod builder;
mod future;
mod service;

pub use self::builder::Builder;
pub use self::future::ResponseFuture;
pub use self::service::Balancer;
