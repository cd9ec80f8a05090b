//! The outermost IP and transport headers of a raw IP packet (IPv4 or IPv6, TCP, UDP, ICMP), as
//! the kernel hands packets to the agent: whole packets held in a queue, or copies of their start.
//!
//! Only the outermost headers are read: what the kernel routes is what the policy decides (a
//! tunnel inside must not decide for the packet that carries it). IPv6 extension headers are not
//! walked: a packet with one has the extension's number as its protocol.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use palisade_proto::Protocol;

/// The outermost IP and transport headers of a packet.
pub struct Headers<'a> {
    /// The transport protocol, `None` for one a [`crate::flow::FlowKey`] cannot name.
    pub protocol: Option<Protocol>,
    /// Source address and port (port 0 without ports); IPv4-mapped addresses made IPv4.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// What follows the transport header (for other protocols, the IP payload), cut to the IP
    /// length and to the bytes present.
    pub payload: &'a [u8],
    /// Whether all the bytes the IP header claims are present (a copy of the packet's start is
    /// not whole).
    pub whole: bool,
    /// The TCP sequence number of the payload's first byte (0 for other protocols).
    pub seq: u32,
}

/// The outermost headers of an IP packet; `None` when it is not IPv4 or IPv6, is a fragment
/// other than the first, or is cut before its ports.
pub fn headers(packet: &[u8]) -> Option<Headers<'_>> {
    let version = packet.first()? >> 4;
    let (src, dst, proto, rest, claimed): (IpAddr, IpAddr, u8, &[u8], usize) = match version {
        4 => {
            let ihl = usize::from(packet.first()? & 0x0f) * 4;
            let fragment_offset = u16::from_be_bytes([*packet.get(6)?, *packet.get(7)?]) & 0x1fff;
            if ihl < 20 || fragment_offset != 0 {
                return None;
            }
            let claimed = usize::from(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]));
            (
                IpAddr::V4(Ipv4Addr::from(
                    <[u8; 4]>::try_from(packet.get(12..16)?).ok()?,
                )),
                IpAddr::V4(Ipv4Addr::from(
                    <[u8; 4]>::try_from(packet.get(16..20)?).ok()?,
                )),
                *packet.get(9)?,
                packet.get(ihl..claimed.min(packet.len()))?,
                claimed,
            )
        }
        6 => {
            let payload_len = usize::from(u16::from_be_bytes([*packet.get(4)?, *packet.get(5)?]));
            let claimed = 40 + payload_len;
            (
                IpAddr::V6(Ipv6Addr::from(
                    <[u8; 16]>::try_from(packet.get(8..24)?).ok()?,
                )),
                IpAddr::V6(Ipv6Addr::from(
                    <[u8; 16]>::try_from(packet.get(24..40)?).ok()?,
                )),
                *packet.get(6)?,
                packet.get(40..claimed.min(packet.len()))?,
                claimed,
            )
        }
        _ => return None,
    };
    let port = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes([*rest.get(at)?, *rest.get(at + 1)?]))
    };
    let mut seq = 0;
    let (protocol, sport, dport, payload) = match proto {
        6 => {
            let offset = usize::from(rest.get(12)? >> 4) * 4;
            seq = u32::from_be_bytes(<[u8; 4]>::try_from(rest.get(4..8)?).ok()?);
            (
                Some(Protocol::Tcp),
                port(0)?,
                port(2)?,
                rest.get(offset..).unwrap_or_default(),
            )
        }
        17 => (
            Some(Protocol::Udp),
            port(0)?,
            port(2)?,
            rest.get(8..).unwrap_or_default(),
        ),
        1 | 58 => (Some(Protocol::Icmp), 0, 0, rest),
        _ => (None, 0, 0, rest),
    };
    Some(Headers {
        protocol,
        src: SocketAddr::new(src.to_canonical(), sport),
        dst: SocketAddr::new(dst.to_canonical(), dport),
        payload,
        whole: claimed <= packet.len(),
        seq,
    })
}
