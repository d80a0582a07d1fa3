//! `SO_ORIGINAL_DST`: where a connection redirected by iptables was going.
//!
//! The `getsockopt` call is socket2's (`original_dst_v4`/`_v6`), so this crate stays free of
//! `unsafe`.

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpStream;

/// The destination a redirected connection was addressed to, before `REDIRECT` rewrote it.
pub(crate) fn original_dst(tcp: &TcpStream) -> io::Result<SocketAddr> {
    let sock = socket2::SockRef::from(tcp);
    let addr = match tcp.local_addr()? {
        SocketAddr::V4(_) => sock.original_dst_v4()?,
        SocketAddr::V6(_) => sock.original_dst_v6()?,
    };
    addr.as_socket()
        .ok_or_else(|| io::Error::other("the original destination is not an IP socket address"))
}
