//! The backend both paths end at: one listener on 127.0.0.1 answering HTTP/1.1 and HTTP/2 (h2c
//! with prior knowledge) with a small fixed body, and gRPC unary calls with emojivoto's
//! `EmojiService` (tonic's server glue, the same code `mesh demo` runs).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tower::Service;

use crate::emojivoto::BoxError;
use crate::emojivoto::emoji::EmojiServer;

/// The body of every plain HTTP answer.
pub(crate) const BODY: &[u8] = b"hello from the e2e backend\n";

/// gRPC requests are told apart by their path.
const GRPC_PREFIX: &str = "/emojivoto.v1.EmojiService/";

/// Binds 127.0.0.1:0 on the current runtime and serves there until the runtime stops.
pub(crate) async fn start() -> Result<SocketAddr, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let emoji = EmojiServer::new();
    let svc = tower::service_fn(move |req: http::Request<Incoming>| {
        let mut emoji = emoji.clone();
        async move {
            if req.uri().path().starts_with(GRPC_PREFIX) {
                let rsp = emoji.call(req).await?;
                Ok::<_, Infallible>(rsp.map(Either::Right))
            } else {
                Ok(http::Response::new(Either::Left(Full::new(
                    Bytes::from_static(BODY),
                ))))
            }
        }
    });
    tokio::spawn(async move {
        if let Err(e) = crate::emojivoto::serve(listener, svc).await {
            eprintln!("e2e: backend stopped: {e}");
        }
    });
    Ok(addr)
}
