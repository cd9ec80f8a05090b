//! The `NETLINK_SOCK_DIAG` messages the identity lookup exchanges with the kernel: an
//! `inet_diag_req_v2` request for one TCP or UDP socket (or a dump of them all), and the parser
//! of the kernel's replies (`inet_diag_msg`, `NLMSG_ERROR`, `NLMSG_DONE`). The kernel is trusted
//! more than a peer, but its replies are still bytes: malformed ones give an error, never a
//! panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use thiserror::Error;

/// `SOCK_DIAG_BY_FAMILY`: the message type of requests and socket replies.
pub const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `NLMSG_ERROR`: an error or an acknowledgement.
const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`: the end of a dump.
const NLMSG_DONE: u16 = 3;
/// `NLM_F_REQUEST`.
const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_DUMP` (`NLM_F_ROOT | NLM_F_MATCH`).
const NLM_F_DUMP: u16 = 0x300;
/// `AF_INET`.
const AF_INET: u8 = 2;
/// `AF_INET6`.
const AF_INET6: u8 = 10;
/// `IPPROTO_TCP`.
pub const IPPROTO_TCP: u8 = 6;
/// `IPPROTO_UDP`.
pub const IPPROTO_UDP: u8 = 17;
/// Length of `struct nlmsghdr`.
const HEADER_LEN: usize = 16;
/// Length of `struct inet_diag_req_v2`.
const REQUEST_LEN: usize = 56;
/// Length of `struct inet_diag_msg`.
const DIAG_MSG_LEN: usize = 72;

/// Why a reply from the kernel could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SockDiagError {
    /// A message's header gives a length shorter than a header or longer than the bytes left.
    #[error("netlink message at offset {offset} has a bad length {len}")]
    BadLength {
        /// Where the message starts in the buffer.
        offset: usize,
        /// The length its header gives.
        len: u32,
    },
    /// A message is shorter than the structure its type announces.
    #[error("netlink message at offset {offset} is truncated")]
    Truncated {
        /// Where the message starts in the buffer.
        offset: usize,
    },
    /// A socket reply names an address family other than IPv4 and IPv6.
    #[error("socket reply with address family {0}")]
    UnknownFamily(u8),
}

/// One socket as the kernel describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiagSocket {
    /// TCP state (`TCP_ESTABLISHED` = 1, ...; UDP sockets use 7 unconnected, 1 connected).
    pub state: u8,
    /// The socket's local address and port.
    pub local: SocketAddr,
    /// The peer's address and port; unspecified for a listening or unconnected socket.
    pub remote: SocketAddr,
    /// The user id the socket belongs to.
    pub uid: u32,
    /// The kernel's cookie for the socket: unique for the host's uptime, and kept when the
    /// socket outlives its owner.
    pub cookie: u64,
    /// The socket's inode; 0 when no file refers to it any longer (an orphaned TCP socket whose
    /// owner closed it or exited).
    pub inode: u64,
}

/// One message of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// A socket matched the request.
    Socket {
        /// The request it answers.
        seq: u32,
        /// The socket.
        socket: DiagSocket,
    },
    /// An error (`errno` is positive, e.g. 2 for "no such socket") or, with `errno` 0, an
    /// acknowledgement.
    Error {
        /// The request it answers.
        seq: u32,
        /// The error number.
        errno: i32,
    },
    /// The end of a dump.
    Done {
        /// The request it answers.
        seq: u32,
    },
}

/// Which socket a request asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    /// The one socket with this exact pair of ends, in the order the kernel's lookup for the
    /// protocol reads them.
    Exact {
        /// `idiag_src` and `idiag_sport`.
        src: SocketAddr,
        /// `idiag_dst` and `idiag_dport`.
        dst: SocketAddr,
    },
    /// Every socket of the family and protocol (`NLM_F_DUMP`).
    Dump {
        /// `true` for IPv6.
        ipv6: bool,
    },
}

/// Builds a `SOCK_DIAG_BY_FAMILY` request for `protocol` (`IPPROTO_TCP` or `IPPROTO_UDP`).
///
/// The exact lookup of TCP matches `src` against the socket's local end; the one of UDP, for
/// historical reasons, matches `src` against the remote end.
pub fn request(seq: u32, protocol: u8, query: Query) -> Vec<u8> {
    let total = HEADER_LEN + REQUEST_LEN;
    let mut msg = Vec::with_capacity(total);
    let (flags, family, src, dst) = match query {
        Query::Exact { src, dst } => (NLM_F_REQUEST, family_of(&src), Some(src), Some(dst)),
        Query::Dump { ipv6 } => (
            NLM_F_REQUEST | NLM_F_DUMP,
            if ipv6 { AF_INET6 } else { AF_INET },
            None,
            None,
        ),
    };
    msg.extend_from_slice(&u32::try_from(total).unwrap_or(u32::MAX).to_ne_bytes());
    msg.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    msg.extend_from_slice(&flags.to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    // inet_diag_req_v2
    msg.extend_from_slice(&[family, protocol, 0, 0]);
    msg.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    // inet_diag_sockid
    msg.extend_from_slice(&src.map_or(0, |a| a.port()).to_be_bytes());
    msg.extend_from_slice(&dst.map_or(0, |a| a.port()).to_be_bytes());
    msg.extend_from_slice(&address_bytes(src));
    msg.extend_from_slice(&address_bytes(dst));
    msg.extend_from_slice(&0u32.to_ne_bytes()); // any interface
    msg.extend_from_slice(&[0xff; 8]); // INET_DIAG_NOCOOKIE
    msg
}

/// Parses every netlink message in `buf` (one datagram from the socket).
pub fn parse(buf: &[u8]) -> Result<Vec<Message>, SockDiagError> {
    let mut messages = Vec::new();
    let mut offset = 0usize;
    while buf.len().saturating_sub(offset) >= HEADER_LEN {
        let header = buf.get(offset..).unwrap_or_default();
        let len = read_u32(header, 0).ok_or(SockDiagError::Truncated { offset })?;
        let kind = read_u16(header, 4).ok_or(SockDiagError::Truncated { offset })?;
        let seq = read_u32(header, 8).ok_or(SockDiagError::Truncated { offset })?;
        let len_usize =
            usize::try_from(len).map_err(|_| SockDiagError::BadLength { offset, len })?;
        if len_usize < HEADER_LEN || len_usize > header.len() {
            return Err(SockDiagError::BadLength { offset, len });
        }
        let body = header.get(HEADER_LEN..len_usize).unwrap_or_default();
        match kind {
            SOCK_DIAG_BY_FAMILY => {
                let socket = parse_socket(body).map_err(|e| match e {
                    SockDiagError::Truncated { .. } => SockDiagError::Truncated { offset },
                    other => other,
                })?;
                messages.push(Message::Socket { seq, socket });
            }
            NLMSG_ERROR => {
                let raw = read_u32(body, 0).ok_or(SockDiagError::Truncated { offset })?;
                let errno = i32::from_ne_bytes(raw.to_ne_bytes());
                messages.push(Message::Error {
                    seq,
                    errno: errno.saturating_neg(),
                });
            }
            NLMSG_DONE => messages.push(Message::Done { seq }),
            _ => {} // NLMSG_NOOP and anything newer: nothing to learn
        }
        // Messages are aligned to 4 bytes.
        offset = offset.saturating_add(len_usize.saturating_add(3) & !3);
    }
    Ok(messages)
}

/// Parses one `inet_diag_msg` (attributes after it are ignored).
fn parse_socket(body: &[u8]) -> Result<DiagSocket, SockDiagError> {
    let fixed = body
        .get(..DIAG_MSG_LEN)
        .ok_or(SockDiagError::Truncated { offset: 0 })?;
    let family = *fixed
        .first()
        .ok_or(SockDiagError::Truncated { offset: 0 })?;
    let state = *fixed.get(1).ok_or(SockDiagError::Truncated { offset: 0 })?;
    let sport = read_u16_be(fixed, 4).ok_or(SockDiagError::Truncated { offset: 0 })?;
    let dport = read_u16_be(fixed, 6).ok_or(SockDiagError::Truncated { offset: 0 })?;
    let src = fixed
        .get(8..24)
        .ok_or(SockDiagError::Truncated { offset: 0 })?;
    let dst = fixed
        .get(24..40)
        .ok_or(SockDiagError::Truncated { offset: 0 })?;
    let cookie_low = read_u32(fixed, 44).ok_or(SockDiagError::Truncated { offset: 0 })?;
    let cookie_high = read_u32(fixed, 48).ok_or(SockDiagError::Truncated { offset: 0 })?;
    let cookie = u64::from(cookie_low) | (u64::from(cookie_high) << 32);
    let uid = read_u32(fixed, 64).ok_or(SockDiagError::Truncated { offset: 0 })?;
    let inode = read_u32(fixed, 68).ok_or(SockDiagError::Truncated { offset: 0 })?;
    let (local, remote) = match family {
        AF_INET => (ipv4(src, sport), ipv4(dst, dport)),
        AF_INET6 => (ipv6(src, sport), ipv6(dst, dport)),
        other => return Err(SockDiagError::UnknownFamily(other)),
    };
    let (Some(local), Some(remote)) = (local, remote) else {
        return Err(SockDiagError::Truncated { offset: 0 });
    };
    Ok(DiagSocket {
        state,
        local,
        remote,
        cookie,
        uid,
        inode: u64::from(inode),
    })
}

fn family_of(addr: &SocketAddr) -> u8 {
    if addr.is_ipv4() { AF_INET } else { AF_INET6 }
}

fn address_bytes(addr: Option<SocketAddr>) -> [u8; 16] {
    let mut out = [0u8; 16];
    match addr.map(|a| a.ip()) {
        Some(IpAddr::V4(v4)) => {
            for (slot, byte) in out.iter_mut().zip(v4.octets()) {
                *slot = byte;
            }
        }
        Some(IpAddr::V6(v6)) => out = v6.octets(),
        None => {}
    }
    out
}

fn ipv4(bytes: &[u8], port: u16) -> Option<SocketAddr> {
    let octets: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(octets)), port))
}

fn ipv6(bytes: &[u8], port: u16) -> Option<SocketAddr> {
    let octets: [u8; 16] = bytes.get(..16)?.try_into().ok()?;
    Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port))
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(
        bytes.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(
        bytes.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn read_u16_be(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(
        bytes.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply as the kernel lays it out, for one IPv4 socket.
    fn socket_reply(
        seq: u32,
        local: SocketAddr,
        remote: SocketAddr,
        uid: u32,
        inode: u32,
    ) -> Vec<u8> {
        let mut msg = Vec::new();
        let len = u32::try_from(HEADER_LEN + DIAG_MSG_LEN).unwrap();
        msg.extend_from_slice(&len.to_ne_bytes());
        msg.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        msg.extend_from_slice(&2u16.to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&[family_of(&local), 1, 0, 0]);
        msg.extend_from_slice(&local.port().to_be_bytes());
        msg.extend_from_slice(&remote.port().to_be_bytes());
        msg.extend_from_slice(&address_bytes(Some(local)));
        msg.extend_from_slice(&address_bytes(Some(remote)));
        msg.extend_from_slice(&[0; 4]); // interface
        msg.extend_from_slice(&5u32.to_ne_bytes()); // cookie
        msg.extend_from_slice(&1u32.to_ne_bytes());
        msg.extend_from_slice(&[0; 12]); // expires, rqueue, wqueue
        msg.extend_from_slice(&uid.to_ne_bytes());
        msg.extend_from_slice(&inode.to_ne_bytes());
        msg
    }

    #[test]
    fn request_layout_matches_the_kernel_structures() {
        let local: SocketAddr = "10.0.0.1:40000".parse().unwrap();
        let remote: SocketAddr = "192.0.2.7:443".parse().unwrap();
        let msg = request(
            9,
            IPPROTO_TCP,
            Query::Exact {
                src: local,
                dst: remote,
            },
        );
        assert_eq!(msg.len(), 72);
        assert_eq!(read_u32(&msg, 0), Some(72));
        assert_eq!(read_u16(&msg, 4), Some(SOCK_DIAG_BY_FAMILY));
        assert_eq!(read_u32(&msg, 8), Some(9));
        assert_eq!(&msg[16..18], &[AF_INET, IPPROTO_TCP]);
        assert_eq!(read_u16_be(&msg, 24), Some(40000));
        assert_eq!(read_u16_be(&msg, 26), Some(443));
        assert_eq!(&msg[28..32], &[10, 0, 0, 1]);
        assert_eq!(&msg[44..48], &[192, 0, 2, 7]);
        assert_eq!(&msg[64..72], &[0xff; 8]);
        let dump = request(1, IPPROTO_UDP, Query::Dump { ipv6: true });
        assert_eq!(read_u16(&dump, 6), Some(NLM_F_REQUEST | NLM_F_DUMP));
        assert_eq!(dump[16], AF_INET6);
    }

    #[test]
    fn parses_sockets_errors_and_done() {
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let remote: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let mut buf = socket_reply(4, local, remote, 1000, 777);
        // NLMSG_ERROR with -ENOENT, then NLMSG_DONE.
        buf.extend_from_slice(&36u32.to_ne_bytes());
        buf.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        buf.extend_from_slice(&[0; 2]);
        buf.extend_from_slice(&5u32.to_ne_bytes());
        buf.extend_from_slice(&[0; 4]);
        buf.extend_from_slice(&(-2i32).to_ne_bytes());
        buf.extend_from_slice(&[0; 16]);
        buf.extend_from_slice(&20u32.to_ne_bytes());
        buf.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        buf.extend_from_slice(&[0; 2]);
        buf.extend_from_slice(&6u32.to_ne_bytes());
        buf.extend_from_slice(&[0; 8]);
        let messages = parse(&buf).unwrap();
        assert_eq!(
            messages,
            vec![
                Message::Socket {
                    seq: 4,
                    socket: DiagSocket {
                        state: 1,
                        local,
                        remote,
                        cookie: (1 << 32) | 5,
                        uid: 1000,
                        inode: 777
                    }
                },
                Message::Error { seq: 5, errno: 2 },
                Message::Done { seq: 6 },
            ]
        );
    }

    #[test]
    fn rejects_bad_lengths_and_truncation() {
        let local: SocketAddr = "[::1]:5000".parse().unwrap();
        let remote: SocketAddr = "[::1]:80".parse().unwrap();
        let good = socket_reply(1, local, remote, 0, 1);
        assert!(matches!(
            parse(&good).unwrap()[..],
            [Message::Socket { .. }]
        ));
        assert!(matches!(
            parse(&good[..40]),
            Err(SockDiagError::BadLength { offset: 0, .. })
        ));
        let mut short = good.clone();
        short[..4].copy_from_slice(&40u32.to_ne_bytes());
        assert!(matches!(
            parse(&short[..40]),
            Err(SockDiagError::Truncated { offset: 0 })
        ));
        let mut tiny = good.clone();
        tiny[..4].copy_from_slice(&3u32.to_ne_bytes());
        assert!(matches!(parse(&tiny), Err(SockDiagError::BadLength { .. })));
        let mut family = good;
        family[16] = 99;
        assert_eq!(parse(&family), Err(SockDiagError::UnknownFamily(99)));
    }
}
