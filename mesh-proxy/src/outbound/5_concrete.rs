//! Stage 5, per backend: a balancer over the backend's endpoints (P2C over peak-EWMA, a bounded
//! queue with a failfast timeout, failure accrual), from `mesh-balance`.
//!
//! Balancers are cached by backend ([`Concrete`]): a destination whose profile changes (a new
//! route timeout, new split weights) is rebuilt over the same balancers, keeping their
//! connections and latency estimates; a balancer no destination uses is dropped after the idle
//! timeout, and with it its discovery stream and its endpoints' connections.

use mesh_balance::{Balancer, Builder, TlsIdentity};
use mesh_core::stack::NewService;
use mesh_core::stack::cache::{Cache, Cached};
use mesh_tls::ServiceIdentity;

use super::Outbound;
use super::client::ReqBody;
use super::endpoint::{EndpointStack, NewEndpoint};
use super::target::{Concrete, Endpoint};
use crate::runtime::Runtime;

/// A backend's balancer, shared by every destination stack that sends to it.
pub(crate) type ConcreteStack = Cached<Balancer<EndpointStack, ReqBody>>;

/// Hands out each backend's balancer, building it on first use. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct NewConcrete {
    cache: Cache<Concrete, NewBalancer>,
}

/// Builds a backend's balancer.
#[derive(Clone, Debug)]
pub(crate) struct NewBalancer {
    rt: Runtime,
    endpoint: NewEndpoint,
}

/// Builds the endpoint stacks of one balancer: its endpoints as discovery reports them, with
/// the destination's metadata.
#[derive(Clone, Debug)]
struct NewConcreteEndpoint {
    concrete: Concrete,
    endpoint: NewEndpoint,
}

impl Outbound<NewEndpoint> {
    /// Balancers over the endpoint stacks, one per backend, cached.
    pub(crate) fn push_concrete(self) -> Outbound<NewConcrete> {
        let rt = self.rt.clone();
        let idle = self.rt.config.idle_timeout;
        self.map_stack(|endpoint| NewConcrete {
            cache: Cache::new(NewBalancer { rt, endpoint }, idle),
        })
    }
}

impl NewService<Concrete> for NewConcrete {
    type Service = ConcreteStack;

    fn new_service(&self, target: Concrete) -> ConcreteStack {
        self.cache.get(target)
    }
}

impl NewService<Concrete> for NewBalancer {
    type Service = Balancer<EndpointStack, ReqBody>;

    fn new_service(&self, target: Concrete) -> Self::Service {
        let cfg = &self.rt.config;
        let updates = target.endpoints.subscribe();
        Builder::new(target.name())
            .failfast_timeout(cfg.failfast_timeout)
            // Failure accrual is opt-in, as Linkerd's is: a destination's policy turns it on.
            .failure_accrual(target.accrual)
            .metrics(&self.rt.metrics.balance)
            .build(
                updates,
                NewConcreteEndpoint {
                    concrete: target,
                    endpoint: self.endpoint.clone(),
                },
            )
    }
}

impl NewService<mesh_balance::Endpoint> for NewConcreteEndpoint {
    type Service = EndpointStack;

    fn new_service(&self, ep: mesh_balance::Endpoint) -> EndpointStack {
        let identity = ep
            .identity()
            .map(TlsIdentity::as_str)
            .and_then(|i| ServiceIdentity::parse(i).ok());
        self.endpoint.new_service(Endpoint {
            addr: ep.addr(),
            identity,
            meta: self.concrete.meta.clone(),
        })
    }
}
