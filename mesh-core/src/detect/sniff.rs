//! What the first bytes of a connection say, decided as early as they allow.
//!
//! [`Sniffer::sniff`] is called with the whole buffer each time more bytes arrive and answers
//! either with a [`Protocol`] or "not yet" (the bytes are a prefix of something it recognises);
//! [`Sniffer::settle`] answers when no more bytes will come (timeout, end of stream, full
//! buffer). The matchers look at each byte once or a few times, so a client that dribbles its
//! bytes one at a time costs linear work, not quadratic.

use super::Protocol;
use super::client_hello;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
pub(super) const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The methods of RFC 9110 §9.3 and PATCH (RFC 5789), each with the space that ends it.
///
/// No method is a prefix of another, so at most one can match.
const HTTP1_METHODS: [&[u8]; 9] = [
    b"GET ",
    b"HEAD ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"CONNECT ",
    b"OPTIONS ",
    b"TRACE ",
    b"PATCH ",
];

/// What follows the request target: ` HTTP/1.x\r\n` without its space; `x` at [`HTTP1_MINOR`].
const HTTP1_VERSION: &[u8; 10] = b"HTTP/1.x\r\n";
const HTTP1_MINOR: usize = 7;

/// A TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;
/// The longest TLSPlaintext fragment (RFC 8446 §5.1).
const TLS_MAX_RECORD: usize = 1 << 14;
/// The record header: content type, legacy version, length.
const TLS_HEADER_LEN: usize = 5;

/// How far a matcher got.
#[derive(Debug, PartialEq, Eq)]
enum Match {
    /// The bytes are this protocol.
    Yes(Protocol),
    /// The bytes can never be this protocol.
    No,
    /// The bytes so far are a prefix of this protocol.
    Partial,
}

/// The decision over a growing buffer. One per connection.
#[derive(Debug, Default)]
pub(super) struct Sniffer {
    /// How far into the buffer the HTTP/1 request target has been checked, so a dribbled
    /// request line is scanned once.
    target_checked: usize,
}

impl Sniffer {
    /// The protocol, if the bytes so far decide it. `buf` must extend the buffer of the previous
    /// call.
    pub(super) fn sniff(&mut self, buf: &[u8]) -> Option<Protocol> {
        let first = *buf.first()?;
        if first == TLS_HANDSHAKE {
            return match tls(buf) {
                Match::Yes(protocol) => Some(protocol),
                Match::No => Some(Protocol::Opaque),
                Match::Partial => None,
            };
        }
        match (h2(buf), self.http1(buf)) {
            (Match::Yes(p), _) | (_, Match::Yes(p)) => Some(p),
            (Match::No, Match::No) => Some(Protocol::Opaque),
            _ => None,
        }
    }

    /// The protocol when no more bytes will come and [`sniff`](Self::sniff) has not decided:
    /// TLS once a record header has been seen (with the name, if the bytes there are hold it),
    /// opaque otherwise.
    pub(super) fn settle(buf: &[u8]) -> Protocol {
        match tls_header(buf) {
            Some(len) => Protocol::Tls {
                sni: buf
                    .get(TLS_HEADER_LEN..)
                    .map(|payload| &payload[..len.min(payload.len())])
                    .and_then(client_hello::server_name),
            },
            None => Protocol::Opaque,
        }
    }

    /// `METHOD SP request-target SP HTTP/1.x CRLF` (RFC 9112 §3).
    fn http1(&mut self, buf: &[u8]) -> Match {
        let mut method = None;
        for m in HTTP1_METHODS {
            if buf.starts_with(m) {
                method = Some(m);
                break;
            }
            if m.starts_with(buf) {
                return Match::Partial;
            }
        }
        let Some(method) = method else {
            return Match::No;
        };

        // The request target: one or more visible bytes (obs-text included), up to a space.
        let start = method.len();
        let mut target_end = None;
        for (i, b) in buf.iter().enumerate().skip(start.max(self.target_checked)) {
            match b {
                b' ' if i > start => {
                    target_end = Some(i);
                    break;
                }
                0x21..=0x7e | 0x80..=0xff => {}
                _ => return Match::No,
            }
        }
        let Some(target_end) = target_end else {
            self.target_checked = buf.len();
            return Match::Partial;
        };

        let version = buf.get(target_end + 1..).unwrap_or_default();
        for (i, (got, want)) in version.iter().zip(HTTP1_VERSION).enumerate() {
            let ok = if i == HTTP1_MINOR {
                matches!(got, b'0' | b'1')
            } else {
                got == want
            };
            if !ok {
                return Match::No;
            }
        }
        if version.len() >= HTTP1_VERSION.len() {
            Match::Yes(Protocol::Http1)
        } else {
            Match::Partial
        }
    }
}

/// The HTTP/2 preface, which a client with prior knowledge sends first (RFC 9113 §3.3).
fn h2(buf: &[u8]) -> Match {
    if buf.starts_with(H2_PREFACE) {
        Match::Yes(Protocol::Http2)
    } else if H2_PREFACE.starts_with(buf) {
        Match::Partial
    } else {
        Match::No
    }
}

/// A handshake record: `0x16 0x03 0x00..=0x04`, a length, and (for the name) the whole
/// record. Whatever follows a valid header is TLS, with a name only if it parses.
fn tls(buf: &[u8]) -> Match {
    let is_header_prefix = match buf {
        [] | [TLS_HANDSHAKE] | [TLS_HANDSHAKE, 0x03] => return Match::Partial,
        [TLS_HANDSHAKE, 0x03, minor, ..] => *minor <= 0x04,
        _ => false,
    };
    if !is_header_prefix {
        return Match::No;
    }
    let Some(len) = tls_header(buf) else {
        // Part of a header: the length is still to come.
        return Match::Partial;
    };
    let payload = buf.get(TLS_HEADER_LEN..).unwrap_or_default();
    let malformed = len == 0 || len > TLS_MAX_RECORD || payload.first().is_some_and(|t| *t != 0x01);
    if malformed {
        return Match::Yes(Protocol::Tls { sni: None });
    }
    match payload.get(..len) {
        Some(record) => Match::Yes(Protocol::Tls {
            sni: client_hello::server_name(record),
        }),
        None => Match::Partial,
    }
}

/// The record length, once a valid handshake record header is complete.
fn tls_header(buf: &[u8]) -> Option<usize> {
    match buf {
        [TLS_HANDSHAKE, 0x03, minor, hi, lo, ..] if *minor <= 0x04 => {
            Some(usize::from(u16::from_be_bytes([*hi, *lo])))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::tests::rustls_client_hello;

    /// Feeds `bytes` one at a time; returns the decision and how many bytes it took.
    fn dribble(bytes: &[u8]) -> Option<(Protocol, usize)> {
        let mut s = Sniffer::default();
        (1..=bytes.len()).find_map(|end| s.sniff(&bytes[..end]).map(|p| (p, end)))
    }

    fn whole(bytes: &[u8]) -> Option<Protocol> {
        Sniffer::default().sniff(bytes)
    }

    #[test]
    fn http1_request_lines() {
        for line in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"HEAD /x HTTP/1.0\r\n",
            b"POST /a?b=c HTTP/1.1\r\n",
            b"PUT /p HTTP/1.1\r\n",
            b"DELETE /d HTTP/1.1\r\n",
            b"CONNECT web.emojivoto:8080 HTTP/1.1\r\n",
            b"OPTIONS * HTTP/1.1\r\n",
            b"TRACE / HTTP/1.1\r\n",
            b"PATCH /p HTTP/1.1\r\n",
            b"GET http://web.emojivoto/caf\xc3\xa9 HTTP/1.1\r\n",
        ] {
            // Decided exactly at the line's end, whichever way the bytes come.
            assert_eq!(
                dribble(line),
                Some((Protocol::Http1, line.len())),
                "{line:?}"
            );
            let mut more = line.to_vec();
            more.extend(b"host: web\r\n\r\n");
            assert_eq!(whole(&more), Some(Protocol::Http1));
        }
    }

    #[test]
    fn not_http1() {
        for (bytes, decided_at) in [
            (&b"get / HTTP/1.1\r\n"[..], 1), // methods are case-sensitive
            (b"GETS / HTTP/1.1\r\n", 4),     // not a method we know
            (b"PROPFIND / HTTP/1.1\r\n", 3), // an extension method: opaque
            (b"GET  / HTTP/1.1\r\n", 5),     // empty target
            (b"GET /\r\n", 6),               // HTTP/0.9: no version
            (b"GET / HTTP/2.0\r\n", 12),     // wrong version
            (b"GET / HTTP/1.2\r\n", 14),     // no such minor
            (b"GET / HTTP/1.1\n", 15),       // a bare LF
            (b"GET /a\tb HTTP/1.1\r\n", 7),  // a control byte in the target
            (b"SSH-2.0-OpenSSH_9.6\r\n", 1), // a client that speaks first, not HTTP
            (b"\x00\x00\x00\x08\x04\xd2\x16\x2f", 1), // PostgreSQL SSLRequest
        ] {
            assert_eq!(
                dribble(bytes),
                Some((Protocol::Opaque, decided_at)),
                "{bytes:?}"
            );
        }
        // A prefix that could still be a request line is undecided, however long.
        let mut long = b"GET /".to_vec();
        long.resize(100_000, b'a');
        assert_eq!(dribble(&long), None);
        assert_eq!(Sniffer::settle(&long), Protocol::Opaque);
    }

    #[test]
    fn h2_preface() {
        assert_eq!(
            dribble(H2_PREFACE),
            Some((Protocol::Http2, H2_PREFACE.len()))
        );
        // Everything short of the preface waits (the prefix `PRI ` is no method we know).
        let mut s = Sniffer::default();
        for end in 1..H2_PREFACE.len() {
            assert_eq!(s.sniff(&H2_PREFACE[..end]), None, "{end}");
        }
        assert_eq!(Sniffer::settle(&H2_PREFACE[..23]), Protocol::Opaque);
        // Leaves room for the SETTINGS frame that follows.
        let mut more = H2_PREFACE.to_vec();
        more.extend([0, 0, 0, 4, 0, 0, 0, 0, 0]);
        assert_eq!(whole(&more), Some(Protocol::Http2));
        assert_eq!(dribble(b"PRI * HTTP/1.1\r\n"), Some((Protocol::Opaque, 12)));
    }

    #[test]
    fn tls_records() {
        let hello = rustls_client_hello("web.emojivoto.svc.cluster.local");
        let sni = Some("web.emojivoto.svc.cluster.local".to_string());
        let record_len = 5 + usize::from(u16::from_be_bytes([hello[3], hello[4]]));
        assert_eq!(record_len, hello.len(), "rustls sends one record");
        // Decided when the record is complete, with its name.
        assert_eq!(
            dribble(&hello),
            Some((Protocol::Tls { sni: sni.clone() }, hello.len()))
        );
        // Cut short, it is TLS once the record header is in, with the name once its bytes are.
        assert_eq!(Sniffer::settle(&hello[..4]), Protocol::Opaque);
        assert_eq!(Sniffer::settle(&hello[..5]), Protocol::Tls { sni: None });
        // (rustls shuffles its extensions: find where the name ends.)
        let name = b"web.emojivoto.svc.cluster.local";
        let name_end = name.len()
            + (0..hello.len())
                .find(|i| hello[*i..].starts_with(name))
                .expect("the name is in the hello");
        assert_eq!(Sniffer::settle(&hello[..name_end]), Protocol::Tls { sni });
        assert_eq!(
            Sniffer::settle(&hello[..name_end - 1]),
            Protocol::Tls { sni: None }
        );

        // Not a TLS 1.x handshake record.
        assert_eq!(dribble(&[0x16, 0x02]), Some((Protocol::Opaque, 2)));
        assert_eq!(dribble(&[0x16, 0x03, 0x05]), Some((Protocol::Opaque, 3)));
        assert_eq!(dribble(&[0x17, 0x03, 0x03]), Some((Protocol::Opaque, 1)));
        // A header, then nonsense: TLS without a name, decided as soon as it is nonsense.
        let no_name = Protocol::Tls { sni: None };
        assert_eq!(
            dribble(&[0x16, 0x03, 0x01, 0x00, 0x00]),
            Some((no_name.clone(), 5))
        );
        assert_eq!(
            dribble(&[0x16, 0x03, 0x01, 0x40, 0x01]),
            Some((no_name.clone(), 5))
        );
        assert_eq!(
            dribble(&[0x16, 0x03, 0x01, 0x00, 0x10, 0x02]),
            Some((no_name.clone(), 6))
        );
        let mut junk = vec![0x16, 0x03, 0x03, 0x00, 0x08, 0x01];
        junk.extend([0xff; 7]);
        assert_eq!(dribble(&junk), Some((no_name, 13)));
    }

    #[test]
    fn nothing_yet() {
        assert_eq!(whole(b""), None);
        assert_eq!(Sniffer::settle(b""), Protocol::Opaque);
        for partial in [
            &b"G"[..],
            b"P",
            b"PU",
            b"CONN",
            b"OPTIONS",
            b"GET /x",
            b"GET /x HTTP/1.1\r",
        ] {
            assert_eq!(whole(partial), None, "{partial:?}");
            assert_eq!(Sniffer::settle(partial), Protocol::Opaque);
        }
    }
}
