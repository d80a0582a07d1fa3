//! Stage 2, per connection: the app's HTTP server (HTTP/1 or HTTP/2, as the app speaks), sending
//! each request to its destination's logical stack (stage 3).
//!
//! The destination's stack is looked up once per connection: a connection with a fixed
//! destination (a per-upstream listener, an original destination) holds its stack from the
//! start; on the authority-routed listener the first request's destination is kept for the
//! connection, so only a request to another authority goes back to the cache. Upgrades
//! (WebSocket, `CONNECT`) leave the stack for a connection of their own ([`upgrade`](super::upgrade)).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use futures_util::future::{BoxFuture, Either};
use hyper::body::Incoming;
use mesh_core::error::{Reason, Unavailable};
use mesh_core::stack::NewService;
use mesh_core::tap::TapPeer;
use tokio::io::{AsyncRead, AsyncWrite};

use super::logical::{LogicalStack, NewLogical};
use super::target::{Accept, AcceptDst, Logical};
use super::upgrade::Upgrades;
use super::{Outbound, RspBody, error_response};
use crate::discovery::normalize_authority;
use crate::runtime::Runtime;
use crate::{headers, serve};

/// Serves the app's HTTP connections. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct NewHttp {
    rt: Runtime,
    logical: NewLogical,
    upgrades: Arc<Upgrades>,
}

/// One connection's service: its destination's stack, and where to find others.
#[derive(Clone)]
struct HttpConnection {
    peer: SocketAddr,
    dst: ConnectionDst,
    logical: NewLogical,
    upgrades: Arc<Upgrades>,
}

#[derive(Clone)]
enum ConnectionDst {
    Fixed(Arc<str>, LogicalStack),
    /// The first request's destination, kept for the connection.
    Routed(Arc<OnceLock<(Arc<str>, LogicalStack)>>),
}

impl Outbound<NewLogical> {
    /// An HTTP server per connection over the destinations' logical stacks.
    pub(crate) fn push_http(self) -> Outbound<NewHttp> {
        let rt = self.rt.clone();
        let upgrades = Arc::new(Upgrades::new(
            self.discovery.clone(),
            crate::connect::Connector::new(self.rt.creds.clone(), self.rt.config.connect_timeout),
        ));
        self.map_stack(|logical| NewHttp {
            rt,
            logical,
            upgrades,
        })
    }
}

impl NewHttp {
    /// Serves HTTP on the app's connection `io` until it ends or drain finishes it.
    pub(crate) async fn serve<IO>(&self, io: IO, accept: Accept)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        self.serve_as(io, accept, None).await
    }

    /// As [`serve`](Self::serve), for a connection whose HTTP version was already detected.
    pub(crate) async fn serve_as<IO>(
        &self,
        io: IO,
        accept: Accept,
        version: Option<mesh_core::detect::Protocol>,
    ) where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let dst = match accept.dst {
            AcceptDst::Fixed(authority) => {
                let stack = self.logical.new_service(Logical {
                    authority: authority.clone(),
                });
                ConnectionDst::Fixed(authority, stack)
            }
            AcceptDst::Routed => ConnectionDst::Routed(Arc::default()),
        };
        let svc = HttpConnection {
            peer: accept.peer,
            dst,
            logical: self.logical.clone(),
            upgrades: self.upgrades.clone(),
        };
        serve::http_auto(io, svc, &self.rt, "outbound", version).await;
    }
}

impl HttpConnection {
    /// The stack for `req`'s destination, and the destination's authority.
    fn stack(
        &self,
        req: &http::Request<Incoming>,
    ) -> Result<(Arc<str>, LogicalStack), Unavailable> {
        let routed = match &self.dst {
            ConnectionDst::Fixed(authority, stack) => {
                return Ok((authority.clone(), stack.clone()));
            }
            ConnectionDst::Routed(first) => first,
        };
        let Some(authority) = headers::authority_of(req) else {
            return Err(Unavailable::new("", Reason::NoAuthority));
        };
        let authority = normalize_authority(&authority);
        if let Some((a, stack)) = routed.get()
            && **a == *authority
        {
            return Ok((a.clone(), stack.clone()));
        }
        let authority: Arc<str> = authority.into();
        let stack = self.logical.new_service(Logical {
            authority: authority.clone(),
        });
        let _ = routed.set((authority.clone(), stack.clone()));
        Ok((authority, stack))
    }
}

impl hyper::service::Service<http::Request<Incoming>> for HttpConnection {
    type Response = http::Response<RspBody>;
    type Error = Infallible;
    type Future = Either<
        BoxFuture<'static, Result<http::Response<RspBody>, Infallible>>,
        std::future::Ready<Result<http::Response<RspBody>, Infallible>>,
    >;

    fn call(&self, mut req: http::Request<Incoming>) -> Self::Future {
        let (authority, stack) = match self.stack(&req) {
            Ok(found) => found,
            Err(error) => {
                let rsp = error_response(&error, super::is_grpc(&req));
                return Either::Right(std::future::ready(Ok(rsp)));
            }
        };
        req.extensions_mut().insert(TapPeer::new(self.peer));
        if headers::is_upgrade(&req) {
            let upgrades = self.upgrades.clone();
            return Either::Left(Box::pin(async move {
                Ok(upgrades.proxy(req, &authority).await)
            }));
        }
        // A destination's stack answers every request (errors become responses) and is always
        // ready: no readiness to wait for here.
        let mut stack = stack;
        Either::Left(tower_service::Service::call(&mut stack, req))
    }
}
