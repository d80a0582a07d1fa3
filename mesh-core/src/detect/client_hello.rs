//! Reading the SNI server name out of a TLS ClientHello record, without trusting a single byte.
//!
//! The parser walks one record's payload (RFC 8446 §4.1.2, which TLS 1.0–1.2 share) and looks at
//! nothing but the lengths it must skip and the `server_name` extension (RFC 6066 §3). Every read
//! goes through [`Reader`], which returns `None` instead of indexing past the end, so truncated,
//! lying or hostile input ends the walk without a name and never panics.

/// The `server_name` extension.
const EXT_SERVER_NAME: u16 = 0;
/// The `host_name` entry of a `ServerNameList`.
const NAME_TYPE_HOST_NAME: u8 = 0;
/// A `ClientHello` handshake message.
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
/// The longest DNS name (RFC 1035 §2.3.4, without the root label's length byte and dot).
const MAX_NAME_LEN: usize = 253;
/// The longest DNS label.
const MAX_LABEL_LEN: usize = 63;

/// The server name a ClientHello asks for, from the payload of its first handshake record
/// (the bytes after the 5-byte record header).
///
/// `payload` may be cut short (the record did not fit in the buffer, or the client stopped
/// sending): the name is returned when it lies within the bytes there are. `None` when the
/// payload is not a ClientHello, is malformed or truncated before the name, carries no
/// `server_name` extension, or names something that is not a DNS name. A ClientHello whose
/// handshake message continues in a second record is read as far as the first record goes.
///
/// The name is lowercased, as rustls does before it looks up a certificate.
pub(super) fn server_name(payload: &[u8]) -> Option<String> {
    let mut record = Reader::new(payload);
    if record.u8()? != HANDSHAKE_CLIENT_HELLO {
        return None;
    }
    let len = record.u24()?;
    // A ClientHello fragmented over several records is read as far as this record goes.
    let mut hello = Reader::new(record.take_up_to(len));
    hello.skip(2)?; // legacy_version
    hello.skip(32)?; // random
    let session_id = usize::from(hello.u8()?);
    hello.skip(session_id)?;
    let cipher_suites = usize::from(hello.u16()?);
    hello.skip(cipher_suites)?;
    let compression_methods = usize::from(hello.u8()?);
    hello.skip(compression_methods)?;
    // A ClientHello without extensions ends here (TLS 1.2 allows it): no name.
    let extensions_len = usize::from(hello.u16()?);
    let mut extensions = Reader::new(hello.take_up_to(extensions_len));
    while !extensions.is_empty() {
        let kind = extensions.u16()?;
        let len = usize::from(extensions.u16()?);
        let data = extensions.take(len)?;
        if kind == EXT_SERVER_NAME {
            return host_name(data);
        }
    }
    None
}

/// The first `host_name` of a `server_name` extension's `ServerNameList`.
fn host_name(extension: &[u8]) -> Option<String> {
    let mut ext = Reader::new(extension);
    let list_len = usize::from(ext.u16()?);
    let mut list = Reader::new(ext.take(list_len)?);
    while !list.is_empty() {
        let name_type = list.u8()?;
        let len = usize::from(list.u16()?);
        let name = list.take(len)?;
        if name_type == NAME_TYPE_HOST_NAME {
            return dns_name(name);
        }
        // Unknown name types share the `opaque<1..2^16-1>` shape in practice; skip them.
    }
    None
}

/// `name` lowercased, if it is a DNS name: dot-separated labels of 1..=63 letters, digits,
/// hyphens or underscores, at most 253 bytes, no trailing dot (RFC 6066 forbids it).
fn dns_name(name: &[u8]) -> Option<String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return None;
    }
    let labels_ok = name.split(|b| *b == b'.').all(|label| {
        (1..=MAX_LABEL_LEN).contains(&label.len())
            && label
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
    });
    if !labels_ok {
        return None;
    }
    let name = std::str::from_utf8(name).ok()?;
    Some(name.to_ascii_lowercase())
}

/// A cursor over untrusted bytes: every read is checked, none can panic.
#[derive(Debug)]
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next `n` bytes, or `None` when fewer are left.
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.rest.split_at_checked(n)?;
        self.rest = tail;
        Some(head)
    }

    /// The next `n` bytes, or all that are left when fewer are.
    fn take_up_to(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = tail;
        head
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(drop)
    }

    fn u8(&mut self) -> Option<u8> {
        let (first, tail) = self.rest.split_first()?;
        self.rest = tail;
        Some(*first)
    }

    fn u16(&mut self) -> Option<u16> {
        let b: [u8; 2] = self.take(2)?.try_into().ok()?;
        Some(u16::from_be_bytes(b))
    }

    fn u24(&mut self) -> Option<usize> {
        let [a, b, c]: [u8; 3] = self.take(3)?.try_into().ok()?;
        Some(usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c))
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::detect::tests::rustls_client_hello;

    fn payload(record: &[u8]) -> &[u8] {
        &record[5..]
    }

    /// Builds a ClientHello payload by hand, so lengths can be made to lie.
    fn hello_with_extensions(extensions: &[u8]) -> Vec<u8> {
        let mut body = vec![0x03, 0x03];
        body.extend([7; 32]); // random
        body.push(0); // no session id
        body.extend([0x00, 0x02, 0x13, 0x01]); // one cipher suite
        body.extend([0x01, 0x00]); // null compression
        body.extend((extensions.len() as u16).to_be_bytes());
        body.extend(extensions);
        let mut msg = vec![HANDSHAKE_CLIENT_HELLO];
        msg.extend(&(body.len() as u32).to_be_bytes()[1..]);
        msg.extend(body);
        msg
    }

    fn sni_extension(name_type: u8, name: &[u8]) -> Vec<u8> {
        let mut entry = vec![name_type];
        entry.extend((name.len() as u16).to_be_bytes());
        entry.extend(name);
        let mut list = (entry.len() as u16).to_be_bytes().to_vec();
        list.extend(entry);
        let mut ext = EXT_SERVER_NAME.to_be_bytes().to_vec();
        ext.extend((list.len() as u16).to_be_bytes());
        ext.extend(list);
        ext
    }

    #[test]
    fn reads_the_name_rustls_sends() {
        let record = rustls_client_hello("web.emojivoto.svc.cluster.local");
        assert_eq!(
            server_name(payload(&record)).as_deref(),
            Some("web.emojivoto.svc.cluster.local")
        );
    }

    #[test]
    fn hand_built_hellos() {
        // Another extension first, then the name; uppercase is lowercased.
        let mut exts = vec![0x00, 0x0a, 0x00, 0x02, 0xff, 0xff];
        exts.extend(sni_extension(0, b"Voting.Emojivoto"));
        assert_eq!(
            server_name(&hello_with_extensions(&exts)).as_deref(),
            Some("voting.emojivoto")
        );

        // No extensions at all, and an empty extension block.
        let mut bare = hello_with_extensions(&[]);
        assert_eq!(server_name(&bare), None);
        bare.truncate(bare.len() - 2);
        assert_eq!(server_name(&bare), None);

        // Not host names.
        for bad in [
            &b""[..],
            b"a..b",
            b"trailing.",
            b"sp ace",
            b"\xff\xfe",
            &[b'a'; 64],
            b"-ok-",
        ] {
            let exts = sni_extension(0, bad);
            let expected = (bad == b"-ok-").then(|| "-ok-".to_string());
            assert_eq!(
                server_name(&hello_with_extensions(&exts)),
                expected,
                "{bad:?}"
            );
        }
        // An unknown name type is skipped.
        assert_eq!(
            server_name(&hello_with_extensions(&sni_extension(7, b"x"))),
            None
        );

        // Not a ClientHello.
        let mut server_hello = hello_with_extensions(&sni_extension(0, b"web"));
        server_hello[0] = 2;
        assert_eq!(server_name(&server_hello), None);
    }

    #[test]
    fn lengths_that_lie() {
        let hello = hello_with_extensions(&sni_extension(0, b"web"));
        // The handshake length claims more than there is: read what there is.
        let mut long = hello.clone();
        long[1..4].copy_from_slice(&[0xff, 0xff, 0xff]);
        assert_eq!(server_name(&long).as_deref(), Some("web"));
        // ... or less: the name is cut off.
        let mut short = hello.clone();
        short[1..4].copy_from_slice(&[0, 0, 40]);
        assert_eq!(server_name(&short), None);
        // A session id longer than the message.
        let mut sid = hello.clone();
        sid[4 + 2 + 32] = 0xff;
        assert_eq!(server_name(&sid), None);
    }

    /// Every prefix of a real ClientHello, and many random mutations of it: never a panic, and
    /// a name only when it is the real one or a mutation of its bytes.
    #[test]
    fn prefixes_and_mutations_never_panic() {
        let name = "web.emojivoto.svc.cluster.local";
        let record = rustls_client_hello(name);
        let payload = payload(&record);
        for end in 0..=payload.len() {
            let found = server_name(&payload[..end]);
            assert!(
                found.is_none() || found.as_deref() == Some(name),
                "prefix {end}: {found:?}"
            );
        }
        // The name comes out as soon as its bytes are in.
        assert_eq!(server_name(payload).as_deref(), Some(name));

        let mut rng = StdRng::seed_from_u64(0x5eed);
        for _ in 0..20_000 {
            let mut bytes = payload.to_vec();
            for _ in 0..rng.random_range(1..=8) {
                let i = rng.random_range(0..bytes.len());
                match rng.random_range(0..4) {
                    0 => bytes[i] = rng.random(),
                    1 => bytes[i] = if rng.random() { 0x00 } else { 0xff },
                    2 => bytes.truncate(i),
                    _ => bytes.insert(i, rng.random()),
                }
                if bytes.is_empty() {
                    break;
                }
            }
            if let Some(found) = server_name(&bytes) {
                assert!(found.len() <= MAX_NAME_LEN && found.is_ascii(), "{found:?}");
            }
        }
        for _ in 0..5_000 {
            let len = rng.random_range(0..600);
            let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let _ = server_name(&bytes);
        }
    }
}
