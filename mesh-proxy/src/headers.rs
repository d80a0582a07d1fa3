//! Header hygiene between app, proxy and peer proxy.
//!
//! - Hop-by-hop headers (RFC 9110 §7.6.1: `Connection` and what it lists, `Keep-Alive`,
//!   `Proxy-Connection`, `Transfer-Encoding`, `TE` other than `trailers`, `Upgrade`) are
//!   connection-scoped and never forwarded.
//! - Between proxies an HTTP/1 request travels over HTTP/2 with `l5d-orig-proto` naming its
//!   version, so the inbound proxy hands the app the HTTP/1 request it was sent.
//! - Mesh headers are the mesh's: a client cannot inject `l5d-client-id` or `l5d-orig-proto`;
//!   the inbound proxy sets `l5d-client-id` to the verified client identity for the app.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Uri, Version};

/// The original HTTP version of a request carried over HTTP/2 between proxies.
pub const L5D_ORIG_PROTO: HeaderName = HeaderName::from_static("l5d-orig-proto");
/// The verified identity of the calling workload, as the inbound proxy tells the app.
pub const L5D_CLIENT_ID: HeaderName = HeaderName::from_static("l5d-client-id");

/// Removes connection-scoped headers.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most requests carry none: one pass over the names instead of a hashed removal per name.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    // Remove only what is there: the hop-by-hop names present, and those `Connection` lists
    // (a response's `Connection: keep-alive` is the common case).
    let mut remove: Vec<HeaderName> = headers
        .keys()
        .filter(|k| is_hop_by_hop(k) && *k != header::TE)
        .cloned()
        .collect();
    remove.extend(
        headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .filter(|n| *n != header::TE && headers.contains_key(n)),
    );
    for name in remove {
        headers.remove(name);
    }
    if let Some(te) = headers.get(header::TE) {
        let trailers = te.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
        headers.remove(header::TE);
        if trailers {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
    }
}

/// Whether `name` is one of the always-hop-by-hop headers (those a `Connection` header lists
/// are only present with a `Connection` header).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == header::TE
        || name == header::UPGRADE
        || name == header::PROXY_AUTHENTICATE
        || name == header::PROXY_AUTHORIZATION
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

/// Removes the headers only the mesh may set.
pub fn strip_mesh_headers(headers: &mut HeaderMap) {
    if !headers.keys().any(|k| k.as_str().starts_with("l5d-")) {
        return;
    }
    headers.remove(L5D_ORIG_PROTO);
    headers.remove(L5D_CLIENT_ID);
}

/// The authority of a request: the URI's, else the `Host` header.
pub fn authority_of<B>(req: &Request<B>) -> Option<String> {
    if let Some(a) = req.uri().authority() {
        return Some(a.as_str().to_string());
    }
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
}

/// Turns an app's request into the HTTP/2 request sent to a peer proxy: absolute URI,
/// `l5d-orig-proto` for HTTP/1, no hop-by-hop or mesh headers.
pub fn to_peer<B>(req: &mut Request<B>, authority: &Authority) -> Result<(), http::Error> {
    let orig = req.version();
    strip_hop_by_hop(req.headers_mut());
    strip_mesh_headers(req.headers_mut());
    if orig == Version::HTTP_11 || orig == Version::HTTP_10 {
        let v = if orig == Version::HTTP_10 {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        };
        req.headers_mut()
            .insert(L5D_ORIG_PROTO, HeaderValue::from_static(v));
        // HTTP/2 carries the authority in :authority.
        req.headers_mut().remove(header::HOST);
    }
    // The parsed parts are reused: no string is built or parsed again.
    let mut parts = std::mem::take(req.uri_mut()).into_parts();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(authority.clone());
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    *req.uri_mut() = Uri::from_parts(parts)?;
    *req.version_mut() = Version::HTTP_2;
    Ok(())
}

/// Turns a request received from a peer (or a plaintext client) into the one for the app:
/// restores the original version, sets `Host`, and says who called.
pub fn to_app<B>(req: &mut Request<B>, client: Option<&str>) {
    let orig = req
        .headers_mut()
        .remove(L5D_ORIG_PROTO)
        .and_then(|v| v.to_str().ok().map(str::to_string));
    strip_hop_by_hop(req.headers_mut());
    req.headers_mut().remove(L5D_CLIENT_ID);
    if let Some(id) = client.and_then(|c| HeaderValue::from_str(c).ok()) {
        req.headers_mut().insert(L5D_CLIENT_ID, id);
    }
    match orig.as_deref() {
        Some("HTTP/1.0") => *req.version_mut() = Version::HTTP_10,
        Some(_) => *req.version_mut() = Version::HTTP_11,
        None => {}
    }
    if req.version() != Version::HTTP_2
        && !req.headers().contains_key(header::HOST)
        && let Some(a) = req.uri().authority().cloned()
        && let Ok(v) = HeaderValue::from_str(a.as_str())
    {
        req.headers_mut().insert(header::HOST, v);
    }
}

/// Whether the request asks for a protocol upgrade (WebSocket) or a tunnel (`CONNECT`).
pub fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.method() == http::Method::CONNECT
        || req
            .headers()
            .get(header::CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http1_round_trip_through_the_mesh() {
        let mut req = Request::get("/api/list?x=1")
            .header("host", "web.emojivoto:8080")
            .header("connection", "keep-alive, x-secret")
            .header("x-secret", "hop")
            .header("keep-alive", "timeout=5")
            .header("te", "gzip, trailers")
            .header("l5d-client-id", "forged")
            .body(())
            .unwrap();
        to_peer(&mut req, &Authority::from_static("web.emojivoto:8080")).unwrap();
        assert_eq!(req.version(), Version::HTTP_2);
        assert_eq!(req.uri(), "http://web.emojivoto:8080/api/list?x=1");
        assert_eq!(req.headers()[L5D_ORIG_PROTO], "HTTP/1.1");
        assert_eq!(req.headers()[header::TE], "trailers");
        for h in [
            "connection",
            "x-secret",
            "keep-alive",
            "host",
            "l5d-client-id",
        ] {
            assert!(!req.headers().contains_key(h), "{h} leaked");
        }
        to_app(
            &mut req,
            Some("web.emojivoto.serviceaccount.identity.mesh.cluster.local"),
        );
        assert_eq!(req.version(), Version::HTTP_11);
        assert_eq!(req.headers()[header::HOST], "web.emojivoto:8080");
        assert!(!req.headers().contains_key(L5D_ORIG_PROTO));
        assert_eq!(
            req.headers()[L5D_CLIENT_ID],
            "web.emojivoto.serviceaccount.identity.mesh.cluster.local"
        );
    }

    #[test]
    fn hop_by_hop_headers_go_and_the_rest_stay() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("keep-alive"));
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");

        let mut h = HeaderMap::new();
        h.append("connection", HeaderValue::from_static("x-a, TE"));
        h.append("connection", HeaderValue::from_static("x-b"));
        for name in [
            "x-a",
            "x-b",
            "x-c",
            "upgrade",
            "transfer-encoding",
            "proxy-connection",
        ] {
            h.insert(HeaderName::from_static(name), HeaderValue::from_static("v"));
        }
        h.insert("te", HeaderValue::from_static("gzip"));
        strip_hop_by_hop(&mut h);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-c"]);

        // Nothing to remove: the map is left as it is.
        let mut h = HeaderMap::new();
        h.insert("x-c", HeaderValue::from_static("v"));
        let before = h.clone();
        strip_hop_by_hop(&mut h);
        assert_eq!(h, before);
    }

    #[test]
    fn grpc_stays_http2() {
        let mut req = Request::post("http://emoji:8080/emojivoto.v1.EmojiService/ListAll")
            .version(Version::HTTP_2)
            .body(())
            .unwrap();
        to_peer(&mut req, &Authority::from_static("emoji:8080")).unwrap();
        assert!(!req.headers().contains_key(L5D_ORIG_PROTO));
        to_app(&mut req, None);
        assert_eq!(req.version(), Version::HTTP_2);
        assert!(!req.headers().contains_key(L5D_CLIENT_ID));
    }

    #[test]
    fn upgrades_are_recognised() {
        let ws = Request::get("/ws")
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .body(())
            .unwrap();
        assert!(is_upgrade(&ws));
        let connect = Request::connect("db:5432").body(()).unwrap();
        assert!(is_upgrade(&connect));
        assert!(!is_upgrade(&Request::get("/").body(()).unwrap()));
    }
}
