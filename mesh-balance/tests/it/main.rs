//! mesh-balance integration tests: real loopback HTTP servers (hyper) where latency and failures
//! matter, in-process services and paused time where exact timing does.
#![allow(unreachable_pub)]

mod accrual;
mod cache;
mod drain;
mod failfast;
mod latency;
mod split;
mod support;

/// The types a proxy shares across tasks are `Send + Sync`.
#[test]
fn shared_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    type Ep = support::Conn;
    send_sync::<mesh_balance::Balancer<Ep, support::Body>>();
    send_sync::<mesh_balance::Split<mesh_balance::Balancer<Ep, support::Body>>>();
    send_sync::<mesh_core::stack::cache::Cached<mesh_balance::Balancer<Ep, support::Body>>>();
    send_sync::<mesh_balance::TargetStats>();
    send_sync::<mesh_balance::discover::EndpointSet>();
    send_sync::<mesh_balance::discover::Subscription>();
    send_sync::<mesh_balance::BalanceMetrics>();
    // Discovery streams are polled by one balancer's worker: `Send` is what they need.
    fn send<T: Send>() {}
    send::<mesh_balance::discover::Dns>();
    send::<mesh_balance::discover::Fixed>();
}
