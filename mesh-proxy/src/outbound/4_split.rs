//! Stage 4, per destination: a weighted split over the destination's backends (a traffic split),
//! each backend a balancer from stage 5. A destination with one backend is a split of one.

use mesh_balance::discover::EndpointSet;
use mesh_balance::{Endpoint as BalanceEndpoint, Split, TlsIdentity};
use mesh_core::stack::NewService;

use super::Outbound;
use super::concrete::{ConcreteStack, NewConcrete};
use super::target::{Backend, Concrete, Profiled};

/// A destination's split over its backends' balancers.
pub(crate) type SplitStack = Split<ConcreteStack>;

/// Builds a destination's split. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct NewSplit {
    concrete: NewConcrete,
}

impl Outbound<NewConcrete> {
    /// A split over the balancers of each destination's backends.
    pub(crate) fn push_split(self) -> Outbound<NewSplit> {
        self.map_stack(|concrete| NewSplit { concrete })
    }
}

impl NewService<Profiled> for NewSplit {
    type Service = SplitStack;

    fn new_service(&self, target: Profiled) -> SplitStack {
        let backends = target.dest.backends.iter().enumerate().map(|(i, b)| {
            // One kind of discovery stream for both: a live set (from the control plane), or a
            // set holding the fixed endpoints of a static destination.
            let (backend, endpoints) = match &b.live {
                Some((authority, set)) => {
                    (Backend::Discovered(authority.as_str().into()), set.clone())
                }
                None => {
                    let set = EndpointSet::new();
                    set.reset(b.endpoints.iter().map(|e| {
                        BalanceEndpoint::new(e.addr).with_identity(
                            e.identity
                                .as_ref()
                                .map(|id| TlsIdentity::new(id.as_str().to_owned())),
                        )
                    }));
                    (Backend::Fixed(i, b.endpoints.clone().into()), set)
                }
            };
            let concrete = Concrete {
                logical: target.logical.clone(),
                backend,
                endpoints,
                meta: target.meta.clone(),
                accrual: target.dest.failure_accrual,
            };
            let name = concrete.name();
            (name, b.weight, self.concrete.new_service(concrete))
        });
        let (split, _weights) = Split::new(target.logical.authority.clone(), backends);
        split
    }
}
