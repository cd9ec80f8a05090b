//! SOCKS proxy handshakes (SOCKS4 and 4a, SOCKS5 of RFC 1928 with the username/password step of
//! RFC 1929) at the start of a TCP connection: how many bytes of each direction they take, so
//! that what the proxy then carries (often TLS) is read like any other stream.

/// What the first bytes of a connection say about a SOCKS handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// The client did not start a SOCKS handshake.
    NotSocks,
    /// A handshake has started and is not over yet.
    Incomplete,
    /// The handshake took `client` bytes from the client and `server` from the proxy, and the
    /// proxy granted the connection.
    Done {
        /// SOCKS version, 4 or 5.
        version: u8,
        /// Handshake bytes sent by the client.
        client: usize,
        /// Handshake bytes sent by the proxy.
        server: usize,
    },
    /// The proxy refused the connection (or the handshake broke off): nothing follows.
    Refused,
}

/// Reads the handshake at the start of the client and proxy streams.
pub fn handshake(client: &[u8], server: &[u8]) -> Handshake {
    match client.first() {
        Some(4) => socks4(client, server),
        Some(5) => socks5(client, server),
        _ => Handshake::NotSocks,
    }
}

/// `04 CMD PORT(2) IP(4) USERID 00`, plus `DOMAIN 00` for 4a (IP 0.0.0.x, x ≠ 0); the reply is
/// `00 5A PORT IP` (0x5A granted).
fn socks4(client: &[u8], server: &[u8]) -> Handshake {
    if client.len() >= 2 && !matches!(client.get(1), Some(1 | 2)) {
        return Handshake::NotSocks;
    }
    let Some(user_end) = nul_after(client, 8) else {
        return Handshake::Incomplete;
    };
    let socks4a = matches!(client.get(4..8), Some([0, 0, 0, last]) if *last != 0);
    let client_len = if socks4a {
        match nul_after(client, user_end) {
            Some(domain_end) => domain_end,
            None => return Handshake::Incomplete,
        }
    } else {
        user_end
    };
    match server.get(..8) {
        None => Handshake::Incomplete,
        Some([0, 0x5a, ..]) => Handshake::Done {
            version: 4,
            client: client_len,
            server: 8,
        },
        Some(_) => Handshake::Refused,
    }
}

/// Greeting `05 N METHODS`, method choice `05 M`, the RFC 1929 exchange when M is 2, then the
/// request `05 CMD 00 ATYP ADDR PORT` and the reply `05 REP 00 ATYP ADDR PORT` (REP 0 granted).
fn socks5(client: &[u8], server: &[u8]) -> Handshake {
    let Some(&methods) = client.get(1) else {
        return Handshake::Incomplete;
    };
    if methods == 0 {
        return Handshake::NotSocks;
    }
    let mut c = 2 + usize::from(methods);
    let mut s = 2;
    match server.get(..2) {
        None => return Handshake::Incomplete,
        Some([5, 0]) => {}
        Some([5, 2]) => {
            // Username/password: 01 ULEN USER PLEN PASS, answered by 01 STATUS (0 success).
            let Some(&user_len) = client.get(c + 1) else {
                return Handshake::Incomplete;
            };
            let Some(&pass_len) = client.get(c + 2 + usize::from(user_len)) else {
                return Handshake::Incomplete;
            };
            c += 3 + usize::from(user_len) + usize::from(pass_len);
            match server.get(s..s + 2) {
                None => return Handshake::Incomplete,
                Some([1, 0]) => s += 2,
                Some(_) => return Handshake::Refused,
            }
        }
        Some(_) => return Handshake::Refused,
    }
    let Some(request) = address_message(client, c) else {
        return Handshake::Incomplete;
    };
    let Some(reply) = address_message(server, s) else {
        return Handshake::Incomplete;
    };
    match server.get(s + 1) {
        Some(0) => Handshake::Done {
            version: 5,
            client: request,
            server: reply,
        },
        _ => Handshake::Refused,
    }
}

/// The end of a `05 X 00 ATYP ADDR PORT` message starting at `at`, when it is all there.
fn address_message(bytes: &[u8], at: usize) -> Option<usize> {
    let addr_len = match bytes.get(at + 3)? {
        1 => 4,
        3 => 1 + usize::from(*bytes.get(at + 4)?),
        4 => 16,
        _ => return None,
    };
    let end = at + 4 + addr_len + 2;
    (bytes.len() >= end).then_some(end)
}

/// The index just past the first NUL at or after `from`.
fn nul_after(bytes: &[u8], from: usize) -> Option<usize> {
    let rest = bytes.get(from..)?;
    rest.iter().position(|&b| b == 0).map(|nul| from + nul + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SOCKS4 request and reply of the corpus capture `socks-https-example.pcap`.
    const SOCKS4_REQUEST: &[u8] = b"\x04\x01\x01\xbb\x5d\xb8\xd8\x77\x00";
    const SOCKS4_REPLY: &[u8] = b"\x00\x5a\x99\xb4\x0a\xb4\x9c\xf9";

    #[test]
    fn socks4_takes_the_request_and_the_reply() {
        let mut client = SOCKS4_REQUEST.to_vec();
        client.extend(b"\x16\x03\x01");
        assert_eq!(
            handshake(&client, SOCKS4_REPLY),
            Handshake::Done {
                version: 4,
                client: 9,
                server: 8
            }
        );
        assert_eq!(
            handshake(&client, &SOCKS4_REPLY[..7]),
            Handshake::Incomplete
        );
        assert_eq!(
            handshake(&client, b"\x00\x5b\0\0\0\0\0\0"),
            Handshake::Refused
        );
    }

    #[test]
    fn socks4a_carries_the_name_after_the_user() {
        let client = b"\x04\x01\x01\xbb\x00\x00\x00\x01user\x00login.live.com\x00";
        assert_eq!(
            handshake(client, SOCKS4_REPLY),
            Handshake::Done {
                version: 4,
                client: client.len(),
                server: 8
            }
        );
        assert_eq!(
            handshake(&client[..20], SOCKS4_REPLY),
            Handshake::Incomplete
        );
    }

    #[test]
    fn socks5_with_and_without_a_password() {
        let request = b"\x05\x01\x00\x03\x0bexample.com\x01\xbb";
        let reply = b"\x05\x00\x00\x01\x0a\x00\x00\x01\x04\x38";
        let client = [&b"\x05\x01\x00"[..], request].concat();
        let server = [&b"\x05\x00"[..], reply].concat();
        assert_eq!(
            handshake(&client, &server),
            Handshake::Done {
                version: 5,
                client: 21,
                server: 12
            }
        );

        let client = [&b"\x05\x01\x02"[..], b"\x01\x02me\x03pwd", request].concat();
        let server = [&b"\x05\x02\x01\x00"[..], reply].concat();
        assert_eq!(
            handshake(&client, &server),
            Handshake::Done {
                version: 5,
                client: 29,
                server: 14
            }
        );
        let denied = [&b"\x05\x02\x01\x01"[..], reply].concat();
        assert_eq!(handshake(&client, &denied), Handshake::Refused);

        for end in 0..client.len() {
            assert_ne!(
                handshake(&client[..end], &server),
                handshake(&client, &server)
            );
        }
    }

    #[test]
    fn other_streams_are_not_socks() {
        assert_eq!(handshake(b"\x16\x03\x01\x02\x00", b""), Handshake::NotSocks);
        assert_eq!(handshake(b"GET / HTTP/1.1\r\n", b""), Handshake::NotSocks);
        assert_eq!(handshake(b"\x04\x07", b""), Handshake::NotSocks);
        assert_eq!(handshake(b"\x05\x00", b""), Handshake::NotSocks);
    }
}
