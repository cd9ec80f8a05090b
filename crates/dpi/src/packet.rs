//! Packets: from a captured frame to the innermost IP header and its transport header, through
//! the link layer, VLAN tags and tunnels, without copying (the payload is borrowed from the frame).
//!
//! Decoded layers:
//! - link: Ethernet II (802.3 and LLC frames are refused), Linux cooked captures (SLL and SLL2),
//!   raw IP, BSD loopback (Null and Loop, a 4-byte address family in either byte order);
//! - 802.1Q and 802.1ad tags (`0x8100`, `0x88a8`, `0x9100`), any number of them; PPPoE sessions
//!   carrying IP; MPLS label stacks carrying IP;
//! - IPv4 (options skipped) and IPv6 (hop-by-hop, routing, fragment, destination options and AH
//!   extension headers skipped);
//! - TCP, UDP, ICMP and ICMPv6; any other protocol is reported by number;
//! - tunnels, replaced by the packet they carry: GRE (IPv4, IPv6, transparent Ethernet bridging,
//!   ERSPAN types I, II and III), VXLAN (UDP port 4789) and VXLAN-GPE (4790), Geneve (UDP port
//!   6081) and IP in IP
//!   (protocols 4 and 41), nested up to [`MAX_TUNNEL_DEPTH`] deep.
//!
//! Lengths come from the IP header: Ethernet padding after the packet is dropped, and a packet
//! that the capture cut short (snapshot length) is decoded as far as its headers go, with a
//! payload shorter than the IP header says. Fragments after the first carry no transport header
//! and are refused ([`Skip::Ipv4Fragment`], [`Skip::Ipv6Fragment`]): a flow table counts them
//! instead of guessing their ports.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::capture::LinkType;

/// Most tunnels [`decode`] removes from one frame; a frame nested deeper is refused with
/// [`Skip::TunnelTooDeep`].
pub const MAX_TUNNEL_DEPTH: usize = 4;

/// Most IPv6 extension headers [`decode`] walks before refusing a packet.
const MAX_IPV6_EXTENSIONS: usize = 8;

/// TCP flag bits, as found in [`Transport::Tcp`]'s `flags`.
pub mod tcp_flags {
    /// No more data from the sender.
    pub const FIN: u8 = 0x01;
    /// Synchronise sequence numbers (connection opening).
    pub const SYN: u8 = 0x02;
    /// Reset the connection.
    pub const RST: u8 = 0x04;
    /// Push the data to the application.
    pub const PSH: u8 = 0x08;
    /// The acknowledgement number is valid.
    pub const ACK: u8 = 0x10;
    /// The urgent pointer is valid.
    pub const URG: u8 = 0x20;
    /// ECN echo.
    pub const ECE: u8 = 0x40;
    /// Congestion window reduced.
    pub const CWR: u8 = 0x80;
}

/// A decoded packet: the outer layers that matter for accounting, the innermost IP header's
/// addresses and the transport header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Source address of the outermost Ethernet header, if the frame has one.
    pub src_mac: Option<[u8; 6]>,
    /// Destination address of the outermost Ethernet header, if the frame has one.
    pub dst_mac: Option<[u8; 6]>,
    /// VLAN id of the outermost 802.1Q or 802.1ad tag, if any.
    pub vlan: Option<u16>,
    /// The outermost tunnel that was removed, if any.
    pub tunnel: Option<Tunnel>,
    /// Source address of the innermost IP header.
    pub src: IpAddr,
    /// Destination address of the innermost IP header.
    pub dst: IpAddr,
    /// TTL (IPv4) or hop limit (IPv6) of the innermost IP header.
    pub ttl: u8,
    /// Length of the innermost IP packet, header included, as its header says (what flow byte
    /// counters add up). A header that says 0 (TCP segmentation offload, IPv6 jumbograms) is
    /// taken to mean "as long as what was captured".
    pub ip_len: u32,
    /// Whether the innermost IP packet is the first fragment of a larger one.
    pub fragment: Fragment,
    /// The transport header.
    pub transport: Transport,
    /// The transport payload (for ICMP and ICMPv6, what follows type, code and checksum; for other
    /// protocols, the IP payload), trimmed to the IP length. Shorter than the IP header says when
    /// the capture cut the packet short.
    pub payload: &'a [u8],
}

/// Whether a packet is a fragment. Fragments after the first are not decoded at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fragment {
    /// A whole packet.
    None,
    /// The first fragment of a larger packet: the transport header is there, the payload is
    /// only its first part.
    First,
}

/// An encapsulation that was removed to reach the inner packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tunnel {
    /// GRE carrying IPv4, IPv6 or Ethernet.
    Gre,
    /// ERSPAN (type I, II or III) in GRE: mirrored Ethernet frames.
    Erspan,
    /// VXLAN: Ethernet in UDP port 4789; or VXLAN-GPE, Ethernet or IP in UDP port 4790.
    Vxlan,
    /// Geneve: Ethernet or IP in UDP port 6081.
    Geneve,
    /// IPv4 or IPv6 directly in IPv4 or IPv6 (protocols 4 and 41).
    IpInIp,
}

/// The transport header of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// TCP.
    Tcp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
        /// Sequence number.
        seq: u32,
        /// Acknowledgement number.
        ack: u32,
        /// Flag bits; see [`tcp_flags`].
        flags: u8,
    },
    /// UDP (that was not a tunnel decoded here).
    Udp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
    },
    /// ICMP.
    Icmp {
        /// Message type.
        kind: u8,
        /// Message code.
        code: u8,
    },
    /// ICMPv6.
    Icmpv6 {
        /// Message type.
        kind: u8,
        /// Message code.
        code: u8,
    },
    /// Any other protocol (ESP, SCTP, GRE that is not decoded, IPv6 "no next header", ...), by
    /// its IP protocol number.
    Other(u8),
}

impl Transport {
    /// The IP protocol number (6 for TCP, 17 for UDP, ...).
    pub fn protocol_number(&self) -> u8 {
        match *self {
            Self::Tcp { .. } => 6,
            Self::Udp { .. } => 17,
            Self::Icmp { .. } => 1,
            Self::Icmpv6 { .. } => 58,
            Self::Other(number) => number,
        }
    }

    /// Source and destination ports; `(0, 0)` for protocols without ports.
    pub fn ports(&self) -> (u16, u16) {
        match *self {
            Self::Tcp {
                src_port, dst_port, ..
            }
            | Self::Udp { src_port, dst_port } => (src_port, dst_port),
            _ => (0, 0),
        }
    }
}

/// Why a frame was not decoded into a [`Packet`]. [`Skip::reason`] names each one for counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Skip {
    /// The frame has no bytes at all.
    #[error("empty frame")]
    EmptyFrame,
    /// The capture's link type is not one [`decode`] reads.
    #[error("unsupported link type")]
    UnsupportedLink,
    /// Shorter than the 14-byte Ethernet header.
    #[error("truncated Ethernet header")]
    TruncatedEthernet,
    /// An IEEE 802.3 frame with a length instead of an EtherType (LLC, STP, CDP, ...).
    #[error("802.3/LLC frame")]
    EthernetLlc,
    /// A VLAN tag is cut short.
    #[error("truncated VLAN tag")]
    TruncatedVlan,
    /// Shorter than the Linux cooked capture header (16 bytes for SLL, 20 for SLL2).
    #[error("truncated Linux cooked capture header")]
    TruncatedSll,
    /// Shorter than the 4-byte BSD loopback header.
    #[error("truncated loopback header")]
    TruncatedNull,
    /// A BSD loopback frame of an address family other than IPv4 or IPv6.
    #[error("loopback frame of an unsupported address family")]
    UnsupportedFamily,
    /// An EtherType other than IPv4, IPv6, a VLAN tag, PPPoE session or MPLS (ARP, LLDP, PPPoE
    /// discovery, ...).
    #[error("unsupported EtherType")]
    UnsupportedEthertype,
    /// A PPPoE session header cut short (6 bytes, then the 2-byte PPP protocol).
    #[error("truncated PPPoE header")]
    TruncatedPppoe,
    /// A PPPoE session frame that carries something other than IPv4 or IPv6 (LCP, IPCP, ...).
    #[error("PPP protocol other than IP")]
    UnsupportedPpp,
    /// An MPLS label stack that ends before its bottom-of-stack label.
    #[error("truncated MPLS label stack")]
    TruncatedMpls,
    /// MPLS carrying something other than IP (a pseudowire, for instance).
    #[error("MPLS payload other than IP")]
    UnsupportedMpls,
    /// Raw IP whose version nibble is neither 4 nor 6 (or that has no first byte).
    #[error("not IPv4 or IPv6")]
    BadIpVersion,
    /// Shorter than the IPv4 header (20 bytes, or what its header length says).
    #[error("truncated IPv4 header")]
    TruncatedIpv4,
    /// An IPv4 header with the wrong version, a header length under 20 bytes or a total length
    /// shorter than its header.
    #[error("invalid IPv4 header")]
    BadIpv4Header,
    /// An IPv4 fragment other than the first: it has no transport header.
    #[error("IPv4 fragment after the first")]
    Ipv4Fragment,
    /// Shorter than the 40-byte IPv6 header, or an extension header cut short by the capture.
    #[error("truncated IPv6 header")]
    TruncatedIpv6,
    /// An IPv6 header with the wrong version.
    #[error("invalid IPv6 header")]
    BadIpv6Header,
    /// An IPv6 extension header that runs past the packet's payload length, or more than eight
    /// of them.
    #[error("invalid IPv6 extension header")]
    BadIpv6Extension,
    /// An IPv6 fragment other than the first: it has no transport header.
    #[error("IPv6 fragment after the first")]
    Ipv6Fragment,
    /// Shorter than the TCP header (20 bytes, or what its data offset says).
    #[error("truncated TCP header")]
    TruncatedTcp,
    /// A TCP data offset under 20 bytes.
    #[error("invalid TCP header")]
    BadTcpHeader,
    /// Shorter than the 8-byte UDP header.
    #[error("truncated UDP header")]
    TruncatedUdp,
    /// Shorter than the 4-byte ICMP or ICMPv6 header (type, code, checksum).
    #[error("truncated ICMP header")]
    TruncatedIcmp,
    /// A GRE header cut short (4 bytes plus its checksum, key and sequence fields).
    #[error("truncated GRE header")]
    TruncatedGre,
    /// An ERSPAN header cut short (8 bytes for type II, 12 or 20 for type III).
    #[error("truncated ERSPAN header")]
    TruncatedErspan,
    /// A UDP datagram to port 4789 or 4790 shorter than the 8-byte VXLAN header.
    #[error("truncated VXLAN header")]
    TruncatedVxlan,
    /// A UDP datagram to port 6081 shorter than its Geneve header and options.
    #[error("truncated Geneve header")]
    TruncatedGeneve,
    /// More than [`MAX_TUNNEL_DEPTH`] tunnels inside one another.
    #[error("tunnels nested too deep")]
    TunnelTooDeep,
}

impl Skip {
    /// Every reason, in declaration order (for counter tables).
    pub const ALL: [Skip; 30] = [
        Skip::EmptyFrame,
        Skip::UnsupportedLink,
        Skip::TruncatedEthernet,
        Skip::EthernetLlc,
        Skip::TruncatedVlan,
        Skip::TruncatedSll,
        Skip::TruncatedNull,
        Skip::UnsupportedFamily,
        Skip::UnsupportedEthertype,
        Skip::TruncatedPppoe,
        Skip::UnsupportedPpp,
        Skip::TruncatedMpls,
        Skip::UnsupportedMpls,
        Skip::BadIpVersion,
        Skip::TruncatedIpv4,
        Skip::BadIpv4Header,
        Skip::Ipv4Fragment,
        Skip::TruncatedIpv6,
        Skip::BadIpv6Header,
        Skip::BadIpv6Extension,
        Skip::Ipv6Fragment,
        Skip::TruncatedTcp,
        Skip::BadTcpHeader,
        Skip::TruncatedUdp,
        Skip::TruncatedIcmp,
        Skip::TruncatedGre,
        Skip::TruncatedErspan,
        Skip::TruncatedVxlan,
        Skip::TruncatedGeneve,
        Skip::TunnelTooDeep,
    ];

    /// A stable snake_case name for counters (`truncated_ipv4`, `ipv4_fragment`, ...).
    pub fn reason(&self) -> &'static str {
        match self {
            Skip::EmptyFrame => "empty_frame",
            Skip::UnsupportedLink => "unsupported_link",
            Skip::TruncatedEthernet => "truncated_ethernet",
            Skip::EthernetLlc => "ethernet_llc",
            Skip::TruncatedVlan => "truncated_vlan",
            Skip::TruncatedSll => "truncated_sll",
            Skip::TruncatedNull => "truncated_null",
            Skip::UnsupportedFamily => "unsupported_family",
            Skip::UnsupportedEthertype => "unsupported_ethertype",
            Skip::TruncatedPppoe => "truncated_pppoe",
            Skip::UnsupportedPpp => "unsupported_ppp",
            Skip::TruncatedMpls => "truncated_mpls",
            Skip::UnsupportedMpls => "unsupported_mpls",
            Skip::BadIpVersion => "bad_ip_version",
            Skip::TruncatedIpv4 => "truncated_ipv4",
            Skip::BadIpv4Header => "bad_ipv4_header",
            Skip::Ipv4Fragment => "ipv4_fragment",
            Skip::TruncatedIpv6 => "truncated_ipv6",
            Skip::BadIpv6Header => "bad_ipv6_header",
            Skip::BadIpv6Extension => "bad_ipv6_extension",
            Skip::Ipv6Fragment => "ipv6_fragment",
            Skip::TruncatedTcp => "truncated_tcp",
            Skip::BadTcpHeader => "bad_tcp_header",
            Skip::TruncatedUdp => "truncated_udp",
            Skip::TruncatedIcmp => "truncated_icmp",
            Skip::TruncatedGre => "truncated_gre",
            Skip::TruncatedErspan => "truncated_erspan",
            Skip::TruncatedVxlan => "truncated_vxlan",
            Skip::TruncatedGeneve => "truncated_geneve",
            Skip::TunnelTooDeep => "tunnel_too_deep",
        }
    }
}

/// Decodes a frame of link type `link` down to its innermost IP packet and transport header.
pub fn decode(link: LinkType, data: &[u8]) -> Result<Packet<'_>, Skip> {
    if data.is_empty() {
        return Err(Skip::EmptyFrame);
    }
    let mut outer = Outer::default();
    let mut layer = match link {
        LinkType::Ethernet => Layer::Ethernet(data),
        LinkType::Raw => Layer::Ip(data),
        LinkType::Ipv4 => Layer::Ipv4(data),
        LinkType::Ipv6 => Layer::Ipv6(data),
        LinkType::Null | LinkType::Loop => loopback(data)?,
        LinkType::LinuxSll => {
            let (&[.., p0, p1], rest) = data.split_first_chunk::<16>().ok_or(Skip::TruncatedSll)?;
            Layer::EtherType(u16::from_be_bytes([p0, p1]), rest)
        }
        LinkType::LinuxSll2 => {
            let (&[p0, p1, ..], rest) = data.split_first_chunk::<20>().ok_or(Skip::TruncatedSll)?;
            Layer::EtherType(u16::from_be_bytes([p0, p1]), rest)
        }
        LinkType::Other(_) => return Err(Skip::UnsupportedLink),
    };
    loop {
        // Every step either consumes header bytes or, for a tunnel, counts towards the depth
        // limit, so the loop ends.
        let ip = match layer {
            Layer::Ethernet(frame) => {
                layer = ethernet(frame, &mut outer)?;
                continue;
            }
            Layer::EtherType(ether_type, rest) => {
                layer = by_ether_type(ether_type, rest, &mut outer)?;
                continue;
            }
            Layer::Ip(bytes) => {
                layer = by_version(bytes)?;
                continue;
            }
            Layer::Ipv4(bytes) => ipv4(bytes)?,
            Layer::Ipv6(bytes) => ipv6(bytes)?,
        };
        match upper(&ip)? {
            Upper::Transport(transport, payload) => {
                return Ok(Packet {
                    src_mac: outer.src_mac,
                    dst_mac: outer.dst_mac,
                    vlan: outer.vlan,
                    tunnel: outer.tunnel,
                    src: ip.src,
                    dst: ip.dst,
                    ttl: ip.ttl,
                    ip_len: ip.ip_len,
                    fragment: ip.fragment,
                    transport,
                    payload,
                });
            }
            Upper::Tunnel(tunnel, inner) => {
                outer.depth += 1;
                if outer.depth > MAX_TUNNEL_DEPTH {
                    return Err(Skip::TunnelTooDeep);
                }
                outer.tunnel.get_or_insert(tunnel);
                layer = inner;
            }
        }
    }
}

/// What the layers outside the innermost IP header contributed.
#[derive(Default)]
struct Outer {
    src_mac: Option<[u8; 6]>,
    dst_mac: Option<[u8; 6]>,
    vlan: Option<u16>,
    tunnel: Option<Tunnel>,
    depth: usize,
}

/// What is left to decode.
#[derive(Clone, Copy)]
enum Layer<'a> {
    /// An Ethernet frame.
    Ethernet(&'a [u8]),
    /// Bytes announced by an EtherType (Ethernet, VLAN tag, Linux cooked header).
    EtherType(u16, &'a [u8]),
    /// IPv4 or IPv6, by the version nibble.
    Ip(&'a [u8]),
    /// IPv4.
    Ipv4(&'a [u8]),
    /// IPv6.
    Ipv6(&'a [u8]),
}

/// An IP header's fields, and what it carries.
struct Ip<'a> {
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    ip_len: u32,
    fragment: Fragment,
    protocol: u8,
    payload: &'a [u8],
}

/// What an IP packet carries: a transport header ending the decoding, or another layer.
enum Upper<'a> {
    Transport(Transport, &'a [u8]),
    Tunnel(Tunnel, Layer<'a>),
}

fn loopback(data: &[u8]) -> Result<Layer<'_>, Skip> {
    let (&family, rest) = data.split_first_chunk::<4>().ok_or(Skip::TruncatedNull)?;
    // The family is in the capturing machine's byte order (Null) or in network byte order
    // (Loop, though not every writer honours that): families are small, so the order whose
    // upper half is zero is the right one.
    let little = u32::from_le_bytes(family);
    let family = if little & 0xffff_0000 == 0 {
        little
    } else {
        u32::from_be_bytes(family)
    };
    match family {
        2 => Ok(Layer::Ipv4(rest)),
        // AF_INET6 on Linux, NetBSD/OpenBSD, FreeBSD and Darwin.
        10 | 24 | 28 | 30 => Ok(Layer::Ipv6(rest)),
        _ => Err(Skip::UnsupportedFamily),
    }
}

fn ethernet<'a>(frame: &'a [u8], outer: &mut Outer) -> Result<Layer<'a>, Skip> {
    let (&[d0, d1, d2, d3, d4, d5, s0, s1, s2, s3, s4, s5, t0, t1], rest) = frame
        .split_first_chunk::<14>()
        .ok_or(Skip::TruncatedEthernet)?;
    if outer.dst_mac.is_none() {
        outer.dst_mac = Some([d0, d1, d2, d3, d4, d5]);
        outer.src_mac = Some([s0, s1, s2, s3, s4, s5]);
    }
    let ether_type = u16::from_be_bytes([t0, t1]);
    if ether_type <= 1500 {
        return Err(Skip::EthernetLlc);
    }
    Ok(Layer::EtherType(ether_type, rest))
}

fn by_ether_type<'a>(
    ether_type: u16,
    rest: &'a [u8],
    outer: &mut Outer,
) -> Result<Layer<'a>, Skip> {
    match ether_type {
        0x0800 => Ok(Layer::Ipv4(rest)),
        0x86dd => Ok(Layer::Ipv6(rest)),
        // PPPoE session stage (RFC 2516): a 6-byte header, then a PPP protocol number.
        0x8864 => {
            let (&[.., p0, p1], inner) =
                rest.split_first_chunk::<8>().ok_or(Skip::TruncatedPppoe)?;
            match u16::from_be_bytes([p0, p1]) {
                0x0021 => Ok(Layer::Ipv4(inner)),
                0x0057 => Ok(Layer::Ipv6(inner)),
                _ => Err(Skip::UnsupportedPpp),
            }
        }
        // MPLS unicast and multicast: labels up to the one with the bottom-of-stack bit, then a
        // packet whose type is not written anywhere; IP is recognised by its version nibble.
        0x8847 | 0x8848 => {
            let mut labels = rest;
            loop {
                let (&[_, _, bottom, _], inner) =
                    labels.split_first_chunk::<4>().ok_or(Skip::TruncatedMpls)?;
                labels = inner;
                if bottom & 0x01 != 0 {
                    break;
                }
            }
            match labels.first().map(|b| b >> 4) {
                Some(4) => Ok(Layer::Ipv4(labels)),
                Some(6) => Ok(Layer::Ipv6(labels)),
                _ => Err(Skip::UnsupportedMpls),
            }
        }
        0x8100 | 0x88a8 | 0x9100 => {
            let (&[c0, c1, t0, t1], inner) =
                rest.split_first_chunk::<4>().ok_or(Skip::TruncatedVlan)?;
            outer
                .vlan
                .get_or_insert(u16::from_be_bytes([c0, c1]) & 0x0fff);
            Ok(Layer::EtherType(u16::from_be_bytes([t0, t1]), inner))
        }
        _ => Err(Skip::UnsupportedEthertype),
    }
}

fn by_version(bytes: &[u8]) -> Result<Layer<'_>, Skip> {
    match bytes.first().map(|b| b >> 4) {
        Some(4) => Ok(Layer::Ipv4(bytes)),
        Some(6) => Ok(Layer::Ipv6(bytes)),
        _ => Err(Skip::BadIpVersion),
    }
}

fn ipv4(bytes: &[u8]) -> Result<Ip<'_>, Skip> {
    let Some(
        &[
            vihl,
            _,
            l0,
            l1,
            _,
            _,
            f0,
            f1,
            ttl,
            protocol,
            _,
            _,
            s0,
            s1,
            s2,
            s3,
            d0,
            d1,
            d2,
            d3,
        ],
    ) = bytes.first_chunk::<20>()
    else {
        return Err(Skip::TruncatedIpv4);
    };
    if vihl >> 4 != 4 {
        return Err(Skip::BadIpv4Header);
    }
    let header_len = usize::from(vihl & 0x0f) * 4;
    if header_len < 20 {
        return Err(Skip::BadIpv4Header);
    }
    if bytes.len() < header_len {
        return Err(Skip::TruncatedIpv4);
    }
    let total = match usize::from(u16::from_be_bytes([l0, l1])) {
        0 => bytes.len(),
        total if total < header_len => return Err(Skip::BadIpv4Header),
        total => total,
    };
    let flags = u16::from_be_bytes([f0, f1]);
    if flags & 0x1fff != 0 {
        return Err(Skip::Ipv4Fragment);
    }
    Ok(Ip {
        src: IpAddr::V4(Ipv4Addr::new(s0, s1, s2, s3)),
        dst: IpAddr::V4(Ipv4Addr::new(d0, d1, d2, d3)),
        ttl,
        ip_len: u32::try_from(total).unwrap_or(u32::MAX),
        fragment: if flags & 0x2000 != 0 {
            Fragment::First
        } else {
            Fragment::None
        },
        protocol,
        payload: bytes
            .get(header_len..total.min(bytes.len()))
            .unwrap_or_default(),
    })
}

fn ipv6(bytes: &[u8]) -> Result<Ip<'_>, Skip> {
    let Some((fixed, _)) = bytes.split_first_chunk::<40>() else {
        return Err(Skip::TruncatedIpv6);
    };
    let &[v, _, _, _, l0, l1, first_next, hop_limit, ..] = fixed;
    if v >> 4 != 6 {
        return Err(Skip::BadIpv6Header);
    }
    let (src, dst) = match (fixed.get(8..24), fixed.get(24..40)) {
        (Some(src), Some(dst)) => (address6(src), address6(dst)),
        _ => return Err(Skip::TruncatedIpv6),
    };
    let total = match usize::from(u16::from_be_bytes([l0, l1])) {
        // Jumbogram or segmentation offload: as long as what was captured.
        0 => bytes.len(),
        payload_len => 40 + payload_len,
    };
    let cut_short = bytes.len() < total;
    let mut rest = bytes.get(40..total.min(bytes.len())).unwrap_or_default();
    let mut next = first_next;
    let mut fragment = Fragment::None;
    let mut extensions = 0;
    loop {
        let len = match next {
            // Hop-by-hop, routing, destination options: length in 8-byte units after the first 8.
            0 | 43 | 60 => rest.get(1).map(|&n| (usize::from(n) + 1) * 8),
            // Authentication header: length in 4-byte units after the first 8.
            51 => rest.get(1).map(|&n| (usize::from(n) + 2) * 4),
            44 => Some(8),
            _ => break,
        };
        extensions += 1;
        if extensions > MAX_IPV6_EXTENSIONS {
            return Err(Skip::BadIpv6Extension);
        }
        let Some((header, after)) = len.and_then(|len| Some((rest.get(..len)?, rest.get(len..)?)))
        else {
            return Err(if cut_short {
                Skip::TruncatedIpv6
            } else {
                Skip::BadIpv6Extension
            });
        };
        if next == 44 {
            let Some(&[_, _, o0, o1]) = header.first_chunk::<4>() else {
                return Err(Skip::BadIpv6Extension);
            };
            let offset_and_more = u16::from_be_bytes([o0, o1]);
            if offset_and_more >> 3 != 0 {
                return Err(Skip::Ipv6Fragment);
            }
            if offset_and_more & 1 != 0 {
                fragment = Fragment::First;
            }
        }
        next = header.first().copied().unwrap_or(59);
        rest = after;
    }
    Ok(Ip {
        src: IpAddr::V6(src),
        dst: IpAddr::V6(dst),
        ttl: hop_limit,
        ip_len: u32::try_from(total).unwrap_or(u32::MAX),
        fragment,
        protocol: next,
        payload: rest,
    })
}

fn address6(bytes: &[u8]) -> Ipv6Addr {
    <[u8; 16]>::try_from(bytes).map_or(Ipv6Addr::UNSPECIFIED, Ipv6Addr::from)
}

/// The transport header, or the tunnelled packet, that an IP packet carries. Tunnels inside a
/// first fragment are not followed: only part of the inner packet is there.
fn upper<'a>(ip: &Ip<'a>) -> Result<Upper<'a>, Skip> {
    let whole = ip.fragment == Fragment::None;
    let payload = ip.payload;
    match ip.protocol {
        6 => {
            let Some(
                &[
                    s0,
                    s1,
                    d0,
                    d1,
                    q0,
                    q1,
                    q2,
                    q3,
                    a0,
                    a1,
                    a2,
                    a3,
                    offset,
                    flags,
                    ..,
                ],
            ) = payload.first_chunk::<20>()
            else {
                return Err(Skip::TruncatedTcp);
            };
            let header_len = usize::from(offset >> 4) * 4;
            if header_len < 20 {
                return Err(Skip::BadTcpHeader);
            }
            let data = payload.get(header_len..).ok_or(Skip::TruncatedTcp)?;
            let transport = Transport::Tcp {
                src_port: u16::from_be_bytes([s0, s1]),
                dst_port: u16::from_be_bytes([d0, d1]),
                seq: u32::from_be_bytes([q0, q1, q2, q3]),
                ack: u32::from_be_bytes([a0, a1, a2, a3]),
                flags,
            };
            Ok(Upper::Transport(transport, data))
        }
        17 => udp(payload, whole),
        1 | 58 => {
            let (&[kind, code, _, _], data) = payload
                .split_first_chunk::<4>()
                .ok_or(Skip::TruncatedIcmp)?;
            let transport = if ip.protocol == 1 {
                Transport::Icmp { kind, code }
            } else {
                Transport::Icmpv6 { kind, code }
            };
            Ok(Upper::Transport(transport, data))
        }
        4 if whole => Ok(Upper::Tunnel(Tunnel::IpInIp, Layer::Ipv4(payload))),
        41 if whole => Ok(Upper::Tunnel(Tunnel::IpInIp, Layer::Ipv6(payload))),
        47 if whole => Ok(match gre(payload)? {
            Some((tunnel, inner)) => Upper::Tunnel(tunnel, inner),
            None => Upper::Transport(Transport::Other(47), payload),
        }),
        protocol => Ok(Upper::Transport(Transport::Other(protocol), payload)),
    }
}

fn udp(datagram: &[u8], whole: bool) -> Result<Upper<'_>, Skip> {
    let (&[s0, s1, d0, d1, l0, l1, _, _], rest) = datagram
        .split_first_chunk::<8>()
        .ok_or(Skip::TruncatedUdp)?;
    let src_port = u16::from_be_bytes([s0, s1]);
    let dst_port = u16::from_be_bytes([d0, d1]);
    // The UDP length trims the payload further when it is shorter than the IP payload; a length
    // that does not fit (0 for jumbograms, or a lie) is ignored.
    let payload = usize::from(u16::from_be_bytes([l0, l1]))
        .checked_sub(8)
        .and_then(|len| rest.get(..len))
        .unwrap_or(rest);
    if whole {
        match dst_port {
            // VXLAN (RFC 7348) and VXLAN-GPE (port 4790): the I flag says the VNI is valid, and
            // without it this is not VXLAN. GPE's P flag announces a next-protocol byte.
            4789 | 4790 => {
                let (&[flags, _, _, next, ..], inner) = payload
                    .split_first_chunk::<8>()
                    .ok_or(Skip::TruncatedVxlan)?;
                let gpe_next = (dst_port == 4790 && flags & 0x04 != 0).then_some(next);
                let inner = match gpe_next {
                    _ if flags & 0x08 == 0 => None,
                    None | Some(3) => Some(Layer::Ethernet(inner)),
                    Some(1) => Some(Layer::Ipv4(inner)),
                    Some(2) => Some(Layer::Ipv6(inner)),
                    Some(_) => None,
                };
                if let Some(inner) = inner {
                    return Ok(Upper::Tunnel(Tunnel::Vxlan, inner));
                }
            }
            6081 => {
                let (&[version_options, _, p0, p1, ..], after) = payload
                    .split_first_chunk::<8>()
                    .ok_or(Skip::TruncatedGeneve)?;
                let options_len = usize::from(version_options & 0x3f) * 4;
                let inner = after.get(options_len..).ok_or(Skip::TruncatedGeneve)?;
                let inner = match u16::from_be_bytes([p0, p1]) {
                    _ if version_options >> 6 != 0 => None,
                    0x6558 => Some(Layer::Ethernet(inner)),
                    0x0800 => Some(Layer::Ipv4(inner)),
                    0x86dd => Some(Layer::Ipv6(inner)),
                    _ => None,
                };
                if let Some(inner) = inner {
                    return Ok(Upper::Tunnel(Tunnel::Geneve, inner));
                }
            }
            _ => {}
        }
    }
    Ok(Upper::Transport(
        Transport::Udp { src_port, dst_port },
        payload,
    ))
}

/// The packet a GRE packet carries, or `None` for versions and protocols not decoded here (PPTP's
/// enhanced GRE, source routing, MPLS, WCCP, ...), which are reported as protocol 47.
fn gre(packet: &[u8]) -> Result<Option<(Tunnel, Layer<'_>)>, Skip> {
    let (&[f0, f1, p0, p1], rest) = packet.split_first_chunk::<4>().ok_or(Skip::TruncatedGre)?;
    let flags = u16::from_be_bytes([f0, f1]);
    const CHECKSUM: u16 = 0x8000;
    const ROUTING: u16 = 0x4000;
    const KEY: u16 = 0x2000;
    const SEQUENCE: u16 = 0x1000;
    if flags & 0x0007 != 0 || flags & ROUTING != 0 {
        return Ok(None);
    }
    let optional_len = [CHECKSUM, KEY, SEQUENCE]
        .iter()
        .filter(|&&bit| flags & bit != 0)
        .count()
        * 4;
    let inner = rest.get(optional_len..).ok_or(Skip::TruncatedGre)?;
    let layer = match u16::from_be_bytes([p0, p1]) {
        0x0800 => (Tunnel::Gre, Layer::Ipv4(inner)),
        0x86dd => (Tunnel::Gre, Layer::Ipv6(inner)),
        0x6558 => (Tunnel::Gre, Layer::Ethernet(inner)),
        // ERSPAN type I has no header and no GRE sequence number; type II has both.
        0x88be if flags & SEQUENCE == 0 => (Tunnel::Erspan, Layer::Ethernet(inner)),
        0x88be => {
            let (_, frame) = inner
                .split_first_chunk::<8>()
                .ok_or(Skip::TruncatedErspan)?;
            (Tunnel::Erspan, Layer::Ethernet(frame))
        }
        0x22eb => {
            let (&[.., hardware_and_type, last], after) = inner
                .split_first_chunk::<12>()
                .ok_or(Skip::TruncatedErspan)?;
            // The O bit announces an 8-byte platform-specific sub-header.
            let frame = if last & 1 != 0 {
                after.get(8..).ok_or(Skip::TruncatedErspan)?
            } else {
                after
            };
            match (hardware_and_type >> 2) & 0x1f {
                0 => (Tunnel::Erspan, Layer::Ethernet(frame)),
                2 => (Tunnel::Erspan, Layer::Ip(frame)),
                _ => return Ok(None),
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(layer))
}
