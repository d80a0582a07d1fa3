//! The P2C set of endpoints itself, without a queue in front: [`Pool`].

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;
use http::{Request, Response};
use mesh_core::BoxError;
use mesh_core::body::ObservedBody;
use pin_project_lite::pin_project;
use tower::balance::p2c::Balance;
use tower::discover::{Change, Discover};
use tower_service::Service;

use crate::accrual::{self, Accrual, EosClassify};
use crate::renew::{self, Renew};
use crate::state::TargetState;
use mesh_core::stack::NewService;

use crate::{Backoff, Endpoint, TargetStats};

/// The P2C-EWMA set of a target's endpoints, as a service with no queue in front.
///
/// `poll_ready` pends while no endpoint is ready, for as long as that lasts, and the pool is not
/// `Clone`: most users want [`Balancer`](crate::Balancer), which puts a bounded queue with a
/// failfast timeout in front of it. Build one with
/// [`Builder::build_pool`](crate::Builder::build_pool).
///
/// The pick is tower's [`p2c::Balance`](tower::balance::p2c::Balance). Each endpoint discovery
/// reports becomes, outermost first:
/// 1. the endpoint's load and failure accrual ([`accrual`]): the load P2C compares (peak-EWMA
///    latency to response headers, times requests in flight, as tower's `PeakEwma` computes it
///    but lock-free and readable in [`TargetStats`]); the ejection gate; the classification of
///    every response;
/// 2. a renewal guard: when the endpoint's service fails to become ready, it is rebuilt after a
///    backoff instead of being dropped by the balancer forever;
/// 3. the service the endpoint factory builds.
pub struct Pool<D, N, B>
where
    D: Discover<Key = SocketAddr, Service = Endpoint>,
    D::Error: Into<BoxError>,
    N: NewService<Endpoint> + Clone,
{
    balance: Balance<Endpoints<D, N>, Request<B>>,
    stats: TargetStats,
}

type EndpointService<N> = Accrual<Renew<N>>;

type EndpointFuture<F> = accrual::ResponseFuture<renew::ResponseFuture<F>>;

pin_project! {
    /// The response of a [`Pool`] (and, through it, of a [`Balancer`](crate::Balancer)).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: futures_util::future::MapErr<EndpointFuture<F>, fn(BoxError) -> BoxError>,
    }
}

pin_project! {
    /// Turns discovered [`Endpoint`]s into endpoint services.
    pub(crate) struct Endpoints<D, N> {
        #[pin]
        discover: D,
        done: bool,
        new: N,
        target: Arc<TargetState>,
        renew: Backoff,
    }
}

pub(crate) struct EndpointConfig {
    pub(crate) renew: Backoff,
}

// === impl Pool ===

impl<D, N, B> Pool<D, N, B>
where
    D: Discover<Key = SocketAddr, Service = Endpoint>,
    D::Error: Into<BoxError>,
    N: NewService<Endpoint> + Clone,
{
    pub(crate) fn new<RB>(
        discover: D,
        new: N,
        target: Arc<TargetState>,
        config: EndpointConfig,
    ) -> Self
    where
        N::Service: Service<Request<B>, Response = Response<RB>>,
        <N::Service as Service<Request<B>>>::Error: Into<BoxError>,
        RB: http_body::Body,
    {
        let stats = TargetStats(target.clone());
        let endpoints = Endpoints {
            discover,
            done: false,
            new,
            target,
            renew: config.renew,
        };
        Self {
            balance: Balance::new(endpoints),
            stats,
        }
    }

    /// The live view of the endpoints.
    pub fn stats(&self) -> &TargetStats {
        &self.stats
    }
}

impl<D, N, B, RB> Service<Request<B>> for Pool<D, N, B>
where
    D: Discover<Key = SocketAddr, Service = Endpoint> + Unpin,
    D::Error: Into<BoxError>,
    N: NewService<Endpoint> + Clone + Unpin,
    N::Service: Service<Request<B>, Response = Response<RB>>,
    RB: http_body::Body,
    <N::Service as Service<Request<B>>>::Error: Into<BoxError>,
{
    type Response = Response<ObservedBody<RB, EosClassify>>;
    type Error = BoxError;
    type Future = ResponseFuture<<N::Service as Service<Request<B>>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.balance.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        ResponseFuture {
            inner: self.balance.call(req),
        }
    }
}

impl<D, N, B> fmt::Debug for Pool<D, N, B>
where
    D: Discover<Key = SocketAddr, Service = Endpoint>,
    D::Error: Into<BoxError>,
    N: NewService<Endpoint> + Clone,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("endpoints", &self.stats.len())
            .field("stats", &self.stats)
            .finish()
    }
}

// === impl ResponseFuture ===

impl<F, T> Future for ResponseFuture<F>
where
    futures_util::future::MapErr<EndpointFuture<F>, fn(BoxError) -> BoxError>:
        Future<Output = Result<T, BoxError>>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

// === impl Endpoints ===

impl<D, N> Stream for Endpoints<D, N>
where
    D: Discover<Key = SocketAddr, Service = Endpoint>,
    D::Error: Into<BoxError>,
    N: NewService<Endpoint> + Clone,
{
    type Item = Result<Change<SocketAddr, EndpointService<N>>, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        if *this.done {
            return Poll::Pending;
        }
        let change = match this.discover.poll_discover(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(Ok(change))) => change,
            Poll::Ready(Some(Err(e))) => {
                let error: BoxError = e.into();
                tracing::warn!(target = %this.target.name(), %error, "discovery failed; keeping the endpoints known so far");
                *this.done = true;
                return Poll::Pending;
            }
            Poll::Ready(None) => {
                // The balancer keeps polling; a finished stream must not be polled again.
                *this.done = true;
                return Poll::Pending;
            }
        };
        Poll::Ready(Some(Ok(match change {
            Change::Remove(addr) => {
                tracing::debug!(target = %this.target.name(), endpoint = %addr, "removing endpoint");
                Change::Remove(addr)
            }
            Change::Insert(addr, endpoint) => {
                tracing::debug!(target = %this.target.name(), ?endpoint, "adding endpoint");
                let shared = this.target.join(addr);
                let svc = Renew::new(this.new.clone(), endpoint, *this.renew);
                Change::Insert(addr, Accrual::new(svc, shared))
            }
        })))
    }
}
