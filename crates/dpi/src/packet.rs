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
//!   6081), L2TPv2 data messages (UDP port 1701) and IP in IP (protocols 4 and 41), nested up to
//!   [`MAX_TUNNEL_DEPTH`] deep.
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
    /// L2TPv2 data messages (UDP port 1701) carrying PPP with IPv4 or IPv6.
    L2tp,
}

impl Tunnel {
    /// The name flow records use: `gre`, `erspan`, `vxlan`, `geneve`, `ipip`, `l2tp`.
    pub fn name(self) -> &'static str {
        match self {
            Tunnel::Gre => "gre",
            Tunnel::Erspan => "erspan",
            Tunnel::Vxlan => "vxlan",
            Tunnel::Geneve => "geneve",
            Tunnel::IpInIp => "ipip",
            Tunnel::L2tp => "l2tp",
        }
    }
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
    /// An MPLS label stack that ends before its bottom-of-stack label, or with nothing after it.
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
                None => Err(Skip::TruncatedMpls),
                Some(4) => Ok(Layer::Ipv4(labels)),
                Some(6) => Ok(Layer::Ipv6(labels)),
                Some(_) => Err(Skip::UnsupportedMpls),
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
    // The version first: bytes that are not IPv4 are not a truncated IPv4 header.
    if bytes.first().is_some_and(|b| b >> 4 != 4) {
        return Err(Skip::BadIpv4Header);
    }
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
    if bytes.first().is_some_and(|b| b >> 4 != 6) {
        return Err(Skip::BadIpv6Header);
    }
    let Some((fixed, _)) = bytes.split_first_chunk::<40>() else {
        return Err(Skip::TruncatedIpv6);
    };
    let &[_, _, _, _, l0, l1, first_next, hop_limit, ..] = fixed;
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
        if dst_port == L2TP_PORT || src_port == L2TP_PORT {
            if let Some(inner) = l2tp(payload) {
                return Ok(Upper::Tunnel(Tunnel::L2tp, inner));
            }
        }
    }
    Ok(Upper::Transport(
        Transport::Udp { src_port, dst_port },
        payload,
    ))
}

/// L2TP's registered port (RFC 2661 §8.1).
const L2TP_PORT: u16 = 1701;

/// The IP packet an L2TPv2 data message carries in PPP (RFC 2661 §3.1, RFC 1661 §2), or `None`
/// for control messages, other versions, other PPP protocols and anything cut short: those stay
/// plain UDP.
fn l2tp(payload: &[u8]) -> Option<Layer<'_>> {
    let (&[f0, f1], mut rest) = payload.split_first_chunk::<2>()?;
    let flags = u16::from_be_bytes([f0, f1]);
    const CONTROL: u16 = 0x8000;
    const LENGTH: u16 = 0x4000;
    const SEQUENCE: u16 = 0x0800;
    const OFFSET: u16 = 0x0200;
    if flags & CONTROL != 0 || flags & 0x000f != 2 {
        return None;
    }
    let fixed =
        4 + if flags & LENGTH != 0 { 2 } else { 0 } + if flags & SEQUENCE != 0 { 4 } else { 0 };
    rest = rest.get(fixed..)?;
    if flags & OFFSET != 0 {
        let (&[o0, o1], after) = rest.split_first_chunk::<2>()?;
        rest = after.get(usize::from(u16::from_be_bytes([o0, o1]))..)?;
    }
    // PPP: the address and control bytes may be left out, and the protocol may be compressed to
    // one byte (an odd first byte).
    let ppp = rest.strip_prefix(&[0xff, 0x03]).unwrap_or(rest);
    let (protocol, inner) = match ppp.first()? {
        first if first & 1 == 1 => (u16::from(*first), ppp.get(1..)?),
        _ => {
            let (&[p0, p1], inner) = ppp.split_first_chunk::<2>()?;
            (u16::from_be_bytes([p0, p1]), inner)
        }
    };
    match protocol {
        0x0021 => Some(Layer::Ipv4(inner)),
        0x0057 => Some(Layer::Ipv6(inner)),
        _ => None,
    }
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
    const MAC_C: [u8; 6] = [2, 0, 0, 0, 0, 0xc];
    const OUTER_A: [u8; 4] = [192, 0, 2, 1];
    const OUTER_B: [u8; 4] = [198, 51, 100, 2];
    const INNER_A: [u8; 4] = [10, 0, 0, 1];
    const INNER_B: [u8; 4] = [10, 0, 0, 2];

    /// Decodes a copy of `frame` that lives as long as the test (so results can be kept).
    fn dec(link: LinkType, frame: &[u8]) -> Result<Packet<'static>, Skip> {
        decode(link, Vec::leak(frame.to_vec()))
    }

    fn v6(last: u16) -> Ipv6Addr {
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last)
    }

    fn ip(octets: [u8; 4]) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(octets))
    }

    fn eth_from(src: [u8; 6], dst: [u8; 6], ether_type: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = dst.to_vec();
        out.extend(src);
        out.extend(ether_type.to_be_bytes());
        out.extend(payload);
        out
    }

    fn eth(ether_type: u16, payload: &[u8]) -> Vec<u8> {
        eth_from(MAC_A, MAC_B, ether_type, payload)
    }

    /// A tag (TPID, TCI) in front of `ether_type` and `payload`: what follows an Ethernet
    /// header whose type is the TPID.
    fn tag(tci: u16, ether_type: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = tci.to_be_bytes().to_vec();
        out.extend(ether_type.to_be_bytes());
        out.extend(payload);
        out
    }

    fn ipv4_full(
        src: [u8; 4],
        dst: [u8; 4],
        protocol: u8,
        options: &[u8],
        flags_offset: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let header_len = 20 + options.len();
        let total = u16::try_from(header_len + payload.len()).unwrap();
        let mut out = vec![0x40 | u8::try_from(header_len / 4).unwrap(), 0];
        out.extend(total.to_be_bytes());
        out.extend([0, 1]);
        out.extend(flags_offset.to_be_bytes());
        out.extend([64, protocol, 0, 0]);
        out.extend(src);
        out.extend(dst);
        out.extend(options);
        out.extend(payload);
        out
    }

    fn ipv4(src: [u8; 4], dst: [u8; 4], protocol: u8, payload: &[u8]) -> Vec<u8> {
        ipv4_full(src, dst, protocol, &[], 0, payload)
    }

    fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0x60, 0, 0, 0];
        out.extend(u16::try_from(payload.len()).unwrap().to_be_bytes());
        out.extend([next, 64]);
        out.extend(src.octets());
        out.extend(dst.octets());
        out.extend(payload);
        out
    }

    /// An IPv6 extension header of `units` 8-byte units (hop-by-hop, routing, destination).
    fn extension(next: u8, units: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![next, units - 1];
        out.extend(vec![0; usize::from(units) * 8 - 2]);
        out.extend(payload);
        out
    }

    fn fragment_header(next: u8, offset: u16, more: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![next, 0];
        out.extend((offset << 3 | u16::from(more)).to_be_bytes());
        out.extend([0, 0, 0, 7]);
        out.extend(payload);
        out
    }

    fn tcp_full(src_port: u16, dst_port: u16, options: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut out = src_port.to_be_bytes().to_vec();
        out.extend(dst_port.to_be_bytes());
        out.extend(1000u32.to_be_bytes());
        out.extend(2000u32.to_be_bytes());
        out.push(u8::try_from((20 + options.len()) / 4).unwrap() << 4);
        out.push(tcp_flags::SYN | tcp_flags::ACK);
        out.extend([0xff, 0xff, 0, 0, 0, 0]);
        out.extend(options);
        out.extend(payload);
        out
    }

    fn tcp(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
        tcp_full(src_port, dst_port, &[], payload)
    }

    const TCP: Transport = Transport::Tcp {
        src_port: 40000,
        dst_port: 443,
        seq: 1000,
        ack: 2000,
        flags: tcp_flags::SYN | tcp_flags::ACK,
    };

    fn udp(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = src_port.to_be_bytes().to_vec();
        out.extend(dst_port.to_be_bytes());
        out.extend(u16::try_from(payload.len() + 8).unwrap().to_be_bytes());
        out.extend([0, 0]);
        out.extend(payload);
        out
    }

    const UDP: Transport = Transport::Udp {
        src_port: 5353,
        dst_port: 53,
    };

    /// A GRE header with the given flags (a 4-byte field for each of C, K, S) and protocol.
    fn gre(flags: u16, protocol: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = flags.to_be_bytes().to_vec();
        out.extend(protocol.to_be_bytes());
        for bit in [0x8000, 0x2000, 0x1000] {
            if flags & bit != 0 {
                out.extend([0xee; 4]);
            }
        }
        out.extend(payload);
        out
    }

    fn vxlan(flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![flags, 0, 0, 0, 0, 0, 42, 0];
        out.extend(payload);
        out
    }

    fn geneve(option_words: u8, protocol: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![option_words, 0];
        out.extend(protocol.to_be_bytes());
        out.extend([0, 0, 42, 0]);
        out.extend(vec![0xcc; usize::from(option_words) * 4]);
        out.extend(payload);
        out
    }

    /// The inner packet most tunnel tests carry: UDP 10.0.0.1:5353 -> 10.0.0.2:53 "query".
    fn inner_ipv4() -> Vec<u8> {
        ipv4(INNER_A, INNER_B, 17, &udp(5353, 53, b"query"))
    }

    fn inner_eth() -> Vec<u8> {
        eth_from(MAC_C, MAC_C, 0x0800, &inner_ipv4())
    }

    /// An Ethernet frame from OUTER_A to OUTER_B carrying `protocol`.
    fn outer(protocol: u8, payload: &[u8]) -> Vec<u8> {
        eth(0x0800, &ipv4(OUTER_A, OUTER_B, protocol, payload))
    }

    /// Checks a decoded tunnel frame: the inner flow with the outer Ethernet addresses.
    fn assert_inner(frame: &[u8], tunnel: Tunnel) {
        let packet = dec(LinkType::Ethernet, frame).unwrap();
        assert_eq!(packet.tunnel, Some(tunnel));
        assert_eq!((packet.src, packet.dst), (ip(INNER_A), ip(INNER_B)));
        assert_eq!(packet.transport, UDP);
        assert_eq!(packet.payload, b"query");
        assert_eq!(packet.ip_len, 33);
        assert_eq!((packet.src_mac, packet.dst_mac), (Some(MAC_A), Some(MAC_B)));
    }

    #[test]
    fn ethernet_ipv4_tcp_with_padding() {
        let mut frame = outer(6, &tcp(40000, 443, b"hello"));
        frame.extend([0; 10]); // Ethernet padding, not part of the IP packet
        let packet = dec(LinkType::Ethernet, &frame).unwrap();
        assert_eq!(
            packet,
            Packet {
                src_mac: Some(MAC_A),
                dst_mac: Some(MAC_B),
                vlan: None,
                tunnel: None,
                src: ip(OUTER_A),
                dst: ip(OUTER_B),
                ttl: 64,
                ip_len: 45,
                fragment: Fragment::None,
                transport: TCP,
                payload: b"hello",
            }
        );
        assert_eq!(packet.transport.ports(), (40000, 443));
        assert_eq!(packet.transport.protocol_number(), 6);
    }

    #[test]
    fn ip_and_tcp_options_are_skipped() {
        let segment = tcp_full(40000, 443, &[2, 4, 5, 0xb4, 1, 1, 4, 2], b"data");
        let frame = eth(
            0x0800,
            &ipv4_full(OUTER_A, OUTER_B, 6, &[1, 1, 1, 0], 0, &segment),
        );
        let packet = dec(LinkType::Ethernet, &frame).unwrap();
        assert_eq!(packet.payload, b"data");
        assert_eq!(packet.ip_len, 24 + 28 + 4);
        assert_eq!(packet.transport, TCP);
    }

    #[test]
    fn vlan_tags_report_the_outermost_id() {
        let ip_packet = ipv4(OUTER_A, OUTER_B, 17, &udp(5353, 53, b"q"));
        let single = eth(0x8100, &tag(0xe064, 0x0800, &ip_packet)); // priority 7, VLAN 100
        let qinq = eth(0x88a8, &tag(10, 0x8100, &tag(20, 0x0800, &ip_packet)));
        let old_qinq = eth(0x9100, &tag(30, 0x8100, &tag(40, 0x0800, &ip_packet)));
        for (frame, vlan) in [(single, 100), (qinq, 10), (old_qinq, 30)] {
            let packet = dec(LinkType::Ethernet, &frame).unwrap();
            assert_eq!(packet.vlan, Some(vlan));
            assert_eq!(
                (packet.src, packet.transport, packet.payload),
                (ip(OUTER_A), UDP, &b"q"[..])
            );
        }
    }

    #[test]
    fn every_link_type() {
        let four = ipv4(OUTER_A, OUTER_B, 17, &udp(5353, 53, b"q"));
        let six = ipv6(v6(1), v6(2), 17, &udp(5353, 53, b"q"));
        let with = |header: &[u8], packet: &[u8]| [header, packet].concat();
        let mut sll = vec![0, 0, 0, 1, 0, 6];
        sll.extend(MAC_A);
        sll.extend([0, 0]);
        let mut sll2 = vec![0, 0, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6];
        sll2.extend(MAC_A);
        sll2.extend([0, 0]);
        let cases = [
            (LinkType::Raw, four.clone(), 4),
            (LinkType::Raw, six.clone(), 6),
            (LinkType::Ipv4, four.clone(), 4),
            (LinkType::Ipv6, six.clone(), 6),
            (LinkType::Null, with(&[2, 0, 0, 0], &four), 4),
            (LinkType::Null, with(&[0, 0, 0, 2], &four), 4),
            (LinkType::Null, with(&[24, 0, 0, 0], &six), 6),
            (LinkType::Null, with(&[28, 0, 0, 0], &six), 6),
            (LinkType::Null, with(&[0, 0, 0, 30], &six), 6),
            (LinkType::Loop, with(&[0, 0, 0, 2], &four), 4),
            (LinkType::Loop, with(&[0, 0, 0, 24], &six), 6),
            (
                LinkType::LinuxSll,
                with(&[sll.as_slice(), &[0x08, 0]].concat(), &four),
                4,
            ),
            (
                LinkType::LinuxSll,
                with(&[sll.as_slice(), &[0x86, 0xdd]].concat(), &six),
                6,
            ),
            (
                LinkType::LinuxSll2,
                with(&[&[0x08, 0], &sll2[2..]].concat(), &four),
                4,
            ),
            (
                LinkType::LinuxSll2,
                with(&[&[0x86, 0xdd], &sll2[2..]].concat(), &six),
                6,
            ),
        ];
        for (link, frame, version) in cases {
            let packet = dec(link, &frame).unwrap_or_else(|e| panic!("{link:?}: {e}"));
            let src = if version == 4 {
                ip(OUTER_A)
            } else {
                IpAddr::V6(v6(1))
            };
            assert_eq!(packet.src, src, "{link:?}");
            assert_eq!(
                (packet.transport, packet.payload),
                (UDP, &b"q"[..]),
                "{link:?}"
            );
            assert_eq!((packet.src_mac, packet.vlan), (None, None));
        }
        assert_eq!(
            dec(LinkType::Null, &with(&[7, 0, 0, 0], &four)),
            Err(Skip::UnsupportedFamily)
        );
        assert_eq!(
            dec(LinkType::Raw, &with(&[0x50], &four)),
            Err(Skip::BadIpVersion)
        );
        assert_eq!(dec(LinkType::Other(147), &four), Err(Skip::UnsupportedLink));
        assert_eq!(dec(LinkType::Ethernet, &[]), Err(Skip::EmptyFrame));
        assert_eq!(dec(LinkType::Ipv4, &six), Err(Skip::BadIpv4Header));
        assert_eq!(dec(LinkType::Ipv6, &four), Err(Skip::BadIpv6Header));
    }

    #[test]
    fn non_ip_frames() {
        let four = ipv4(OUTER_A, OUTER_B, 17, &udp(5353, 53, b"q"));
        assert_eq!(
            dec(LinkType::Ethernet, &eth(38, &[0x42, 0x42, 3])),
            Err(Skip::EthernetLlc)
        );
        assert_eq!(
            dec(LinkType::Ethernet, &eth(0x0806, &[0; 28])),
            Err(Skip::UnsupportedEthertype)
        );
        // PPPoE session: version/type, code, session id, length, then PPP protocol.
        let pppoe = |protocol: u16, payload: &[u8]| {
            let mut out = vec![0x11, 0, 0x12, 0x34];
            out.extend(u16::try_from(payload.len() + 2).unwrap().to_be_bytes());
            out.extend(protocol.to_be_bytes());
            out.extend(payload);
            eth(0x8864, &out)
        };
        let packet = dec(LinkType::Ethernet, &pppoe(0x0021, &four)).unwrap();
        assert_eq!((packet.src, packet.transport), (ip(OUTER_A), UDP));
        let six = ipv6(v6(1), v6(2), 58, &[128, 0, 0, 0, 1, 2]);
        let packet = dec(LinkType::Ethernet, &pppoe(0x0057, &six)).unwrap();
        assert_eq!(packet.transport, Transport::Icmpv6 { kind: 128, code: 0 });
        assert_eq!(
            dec(LinkType::Ethernet, &pppoe(0xc021, &[1, 2, 3, 4])),
            Err(Skip::UnsupportedPpp)
        );
        // MPLS: two labels, the second with the bottom-of-stack bit.
        let mpls = |payload: &[u8]| eth(0x8847, &[&[0, 1, 0, 64, 0, 2, 1, 64], payload].concat());
        let packet = dec(LinkType::Ethernet, &mpls(&four)).unwrap();
        assert_eq!((packet.dst, packet.payload), (ip(OUTER_B), &b"q"[..]));
        assert_eq!(
            dec(LinkType::Ethernet, &mpls(&[0, 0, 0, 0, 1, 2])),
            Err(Skip::UnsupportedMpls)
        );
    }

    #[test]
    fn ipv4_fragments_and_lengths() {
        let segment = tcp(40000, 443, b"first part");
        // More fragments, offset 0: decoded, marked, the IP length is the fragment's.
        let first = eth(
            0x0800,
            &ipv4_full(OUTER_A, OUTER_B, 6, &[], 0x2000, &segment),
        );
        let packet = dec(LinkType::Ethernet, &first).unwrap();
        assert_eq!(packet.fragment, Fragment::First);
        assert_eq!(
            (packet.transport.ports(), packet.payload),
            ((40000, 443), &b"first part"[..])
        );
        // Don't fragment is not a fragment; a later fragment is not decoded.
        let whole = eth(
            0x0800,
            &ipv4_full(OUTER_A, OUTER_B, 6, &[], 0x4000, &segment),
        );
        assert_eq!(
            dec(LinkType::Ethernet, &whole).unwrap().fragment,
            Fragment::None
        );
        let later = eth(0x0800, &ipv4_full(OUTER_A, OUTER_B, 6, &[], 185, b"rest"));
        assert_eq!(dec(LinkType::Ethernet, &later), Err(Skip::Ipv4Fragment));
        let last = eth(
            0x0800,
            &ipv4_full(OUTER_A, OUTER_B, 6, &[], 0x2000 | 185, b"rest"),
        );
        assert_eq!(dec(LinkType::Ethernet, &last), Err(Skip::Ipv4Fragment));

        let packet = ipv4(OUTER_A, OUTER_B, 6, &segment);
        let with = |at: usize, value: u8| {
            let mut changed = packet.clone();
            changed[at] = value;
            dec(LinkType::Ipv4, &changed)
        };
        assert_eq!(with(0, 0x44), Err(Skip::BadIpv4Header), "header length 16");
        assert_eq!(with(0, 0x4f), Err(Skip::TruncatedIpv4), "header length 60");
        assert_eq!(
            with(3, 10).map(|_| ()),
            Err(Skip::BadIpv4Header),
            "total length 10"
        );
        // Total length 0 (segmentation offload): the captured length.
        let offload = with(3, 0).and(with(2, 0)).unwrap();
        assert_eq!((offload.ip_len, offload.payload), (50, &b"first part"[..]));
        // A capture cut short: what is there, with the length the header says.
        let mut long = packet.clone();
        long[2..4].copy_from_slice(&1500u16.to_be_bytes());
        let cut = dec(LinkType::Ipv4, &long).unwrap();
        assert_eq!((cut.ip_len, cut.payload), (1500, &b"first part"[..]));
    }

    #[test]
    fn ipv6_extension_headers() {
        let segment = tcp(40000, 443, b"v6");
        // Hop-by-hop, routing, destination options, then AH (length in 4-byte units).
        let mut ah = vec![6, 4];
        ah.extend([0; 22]);
        ah.extend(&segment);
        let chain = extension(43, 1, &extension(60, 2, &extension(51, 1, &ah)));
        let frame = eth(0x86dd, &ipv6(v6(1), v6(2), 0, &chain));
        let packet = dec(LinkType::Ethernet, &frame).unwrap();
        assert_eq!(
            (packet.src, packet.dst),
            (IpAddr::V6(v6(1)), IpAddr::V6(v6(2)))
        );
        assert_eq!((packet.transport, packet.payload), (TCP, &b"v6"[..]));
        assert_eq!(packet.ip_len, u32::try_from(40 + chain.len()).unwrap());
        assert_eq!(packet.ttl, 64);

        let fragment = |offset, more| {
            let frame = ipv6(
                v6(1),
                v6(2),
                44,
                &fragment_header(6, offset, more, &segment),
            );
            dec(LinkType::Ipv6, &frame)
        };
        assert_eq!(fragment(0, true).unwrap().fragment, Fragment::First);
        assert_eq!(fragment(0, true).unwrap().transport, TCP);
        assert_eq!(
            fragment(0, false).unwrap().fragment,
            Fragment::None,
            "atomic fragment"
        );
        assert_eq!(fragment(100, true), Err(Skip::Ipv6Fragment));
        assert_eq!(fragment(100, false), Err(Skip::Ipv6Fragment));

        let esp = dec(LinkType::Ipv6, &ipv6(v6(1), v6(2), 50, &[1, 2, 3, 4])).unwrap();
        assert_eq!(
            (esp.transport, esp.payload),
            (Transport::Other(50), &[1, 2, 3, 4][..])
        );
        assert_eq!(esp.transport.ports(), (0, 0));
        let none = dec(
            LinkType::Ipv6,
            &ipv6(v6(1), v6(2), 0, &extension(59, 1, &[])),
        )
        .unwrap();
        assert_eq!(none.transport, Transport::Other(59));

        // An extension header longer than the payload length allows.
        let mut overlong = ipv6(v6(1), v6(2), 0, &extension(6, 1, &segment));
        overlong[41] = 200;
        assert_eq!(dec(LinkType::Ipv6, &overlong), Err(Skip::BadIpv6Extension));
        // Nine extension headers.
        let mut many = extension(6, 1, &segment);
        for _ in 0..8 {
            many = extension(60, 1, &many);
        }
        assert_eq!(
            dec(LinkType::Ipv6, &ipv6(v6(1), v6(2), 60, &many)),
            Err(Skip::BadIpv6Extension)
        );
    }

    #[test]
    fn icmp_udp_and_other_protocols() {
        let echo = dec(
            LinkType::Ipv4,
            &ipv4(OUTER_A, OUTER_B, 1, &[8, 0, 0xf7, 0xff, 0, 1, 0, 1]),
        )
        .unwrap();
        assert_eq!(echo.transport, Transport::Icmp { kind: 8, code: 0 });
        assert_eq!(
            (echo.payload, echo.transport.ports()),
            (&[0, 1, 0, 1][..], (0, 0))
        );
        assert_eq!(echo.transport.protocol_number(), 1);
        let v6_echo = dec(LinkType::Ipv6, &ipv6(v6(1), v6(2), 58, &[129, 0, 0, 0])).unwrap();
        assert_eq!(v6_echo.transport, Transport::Icmpv6 { kind: 129, code: 0 });
        assert_eq!(v6_echo.transport.protocol_number(), 58);
        let datagram = dec(
            LinkType::Ipv4,
            &ipv4(OUTER_A, OUTER_B, 17, &udp(5353, 53, b"dns")),
        )
        .unwrap();
        assert_eq!((datagram.transport, datagram.payload), (UDP, &b"dns"[..]));
        assert_eq!(datagram.transport.protocol_number(), 17);
        let sctp = dec(LinkType::Ipv4, &ipv4(OUTER_A, OUTER_B, 132, &[1, 2, 3])).unwrap();
        assert_eq!(
            (sctp.transport, sctp.payload),
            (Transport::Other(132), &[1, 2, 3][..])
        );
        assert_eq!(sctp.transport.protocol_number(), 132);
        // A UDP length shorter than the IP payload trims the payload.
        let mut short = udp(5353, 53, b"dns and more");
        short[5] = 11;
        let trimmed = dec(LinkType::Ipv4, &ipv4(OUTER_A, OUTER_B, 17, &short)).unwrap();
        assert_eq!(trimmed.payload, b"dns");
        // A TCP data offset under 5 words.
        let mut bad = tcp(1, 2, b"");
        bad[12] = 0x40;
        assert_eq!(
            dec(LinkType::Ipv4, &ipv4(OUTER_A, OUTER_B, 6, &bad)),
            Err(Skip::BadTcpHeader)
        );
    }

    #[test]
    fn gre_tunnels() {
        // Checksum, key and sequence number present.
        assert_inner(&outer(47, &gre(0xb000, 0x0800, &inner_ipv4())), Tunnel::Gre);
        let v6_inner = ipv6(v6(1), v6(2), 17, &udp(5353, 53, b"query"));
        let packet = dec(
            LinkType::Ethernet,
            &outer(47, &gre(0x2000, 0x86dd, &v6_inner)),
        )
        .unwrap();
        assert_eq!(
            (packet.tunnel, packet.dst),
            (Some(Tunnel::Gre), IpAddr::V6(v6(2)))
        );
        // Transparent Ethernet bridging, with a VLAN tag inside: the outer MACs stay, the VLAN
        // is the inner frame's (the outer frame has none).
        let bridged = eth_from(MAC_C, MAC_C, 0x8100, &tag(7, 0x0800, &inner_ipv4()));
        let packet = dec(LinkType::Ethernet, &outer(47, &gre(0, 0x6558, &bridged))).unwrap();
        assert_eq!(packet.vlan, Some(7));
        assert_eq!((packet.src_mac, packet.src), (Some(MAC_A), ip(INNER_A)));
        // Not decoded: source routing, version 1 (PPTP), unknown protocols; the GRE packet
        // itself is reported.
        for (flags, protocol) in [(0x4000, 0x0800), (0x3001, 0x880b), (0, 0x8847)] {
            let frame = outer(47, &gre(flags, protocol, &inner_ipv4()));
            let packet = dec(LinkType::Ethernet, &frame).unwrap();
            assert_eq!(
                (packet.tunnel, packet.transport),
                (None, Transport::Other(47))
            );
            assert_eq!(packet.src, ip(OUTER_A));
        }
    }

    #[test]
    fn erspan_types() {
        // Type I: no sequence number, no ERSPAN header.
        assert_inner(&outer(47, &gre(0, 0x88be, &inner_eth())), Tunnel::Erspan);
        // Type II: sequence number and an 8-byte header.
        let type2 = [&[0x10, 0, 0, 20, 0, 0, 0, 1][..], &inner_eth()].concat();
        assert_inner(&outer(47, &gre(0x1000, 0x88be, &type2)), Tunnel::Erspan);
        // Type III: a 12-byte header; the O bit adds an 8-byte platform sub-header; frame type
        // 2 is IP rather than Ethernet.
        let header3 = |hardware_and_type: u8, last: u8| {
            vec![0x20, 0, 0, 20, 1, 2, 3, 4, 0, 0, hardware_and_type, last]
        };
        let plain = [header3(0, 0), inner_eth()].concat();
        assert_inner(&outer(47, &gre(0x1000, 0x22eb, &plain)), Tunnel::Erspan);
        let with_platform = [header3(0, 1), vec![0x99; 8], inner_eth()].concat();
        assert_inner(
            &outer(47, &gre(0x1000, 0x22eb, &with_platform)),
            Tunnel::Erspan,
        );
        let ip_frame = [header3(2 << 2, 0), inner_ipv4()].concat();
        assert_inner(&outer(47, &gre(0x1000, 0x22eb, &ip_frame)), Tunnel::Erspan);
    }

    #[test]
    fn udp_tunnels() {
        assert_inner(
            &outer(17, &udp(50000, 4789, &vxlan(0x08, &inner_eth()))),
            Tunnel::Vxlan,
        );
        // Group policy extension bits do not matter.
        assert_inner(
            &outer(17, &udp(50000, 4789, &vxlan(0x88, &inner_eth()))),
            Tunnel::Vxlan,
        );
        // Without the I flag, this is just UDP to port 4789.
        let not_vxlan = dec(
            LinkType::Ethernet,
            &outer(17, &udp(50000, 4789, &vxlan(0, &inner_eth()))),
        )
        .unwrap();
        assert_eq!(
            (not_vxlan.tunnel, not_vxlan.transport.ports()),
            (None, (50000, 4789))
        );
        // VXLAN-GPE: the P flag and a next-protocol byte (1 IPv4, 3 Ethernet, 4 NSH).
        let gpe = |next: u8, inner: &[u8]| {
            let mut header = vxlan(0x0c, inner);
            header[3] = next;
            outer(17, &udp(50000, 4790, &header))
        };
        assert_inner(&gpe(1, &inner_ipv4()), Tunnel::Vxlan);
        assert_inner(&gpe(3, &inner_eth()), Tunnel::Vxlan);
        assert_eq!(
            dec(LinkType::Ethernet, &gpe(4, &inner_eth()))
                .unwrap()
                .tunnel,
            None
        );
        // Geneve, with two words of options, carrying Ethernet or IPv4.
        assert_inner(
            &outer(17, &udp(50000, 6081, &geneve(2, 0x6558, &inner_eth()))),
            Tunnel::Geneve,
        );
        assert_inner(
            &outer(17, &udp(50000, 6081, &geneve(0, 0x0800, &inner_ipv4()))),
            Tunnel::Geneve,
        );
        let mut version1 = geneve(0, 0x0800, &inner_ipv4());
        version1[0] = 0x40;
        let packet = dec(LinkType::Ethernet, &outer(17, &udp(50000, 6081, &version1))).unwrap();
        assert_eq!((packet.tunnel, packet.src), (None, ip(OUTER_A)));
    }

    #[test]
    fn l2tp_data_messages_carry_ppp() {
        // Length and sequence present, PPP with address and control, IPv4 inside.
        let mut l2tp = vec![
            0x48, 0x02, 0, 40, 0, 1, 0, 2, 0, 0, 0, 0, 0xff, 0x03, 0x00, 0x21,
        ];
        l2tp.extend(inner_ipv4());
        assert_inner(&outer(17, &udp(1701, 1701, &l2tp)), Tunnel::L2tp);
        // Minimal header, compressed PPP protocol.
        let mut short = vec![0x00, 0x02, 0, 1, 0, 2, 0x21];
        short.extend(inner_ipv4());
        assert_inner(&outer(17, &udp(40000, 1701, &short)), Tunnel::L2tp);
        // A control message is plain UDP.
        let control = [0xc8, 0x02, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0];
        let packet = dec(LinkType::Ethernet, &outer(17, &udp(1701, 1701, &control))).unwrap();
        assert_eq!(
            (packet.tunnel, packet.transport.ports()),
            (None, (1701, 1701))
        );
    }

    #[test]
    fn ip_in_ip() {
        assert_inner(&outer(4, &inner_ipv4()), Tunnel::IpInIp);
        let v6_inner = ipv6(v6(1), v6(2), 17, &udp(5353, 53, b"query"));
        let six_in_four = dec(LinkType::Ethernet, &outer(41, &v6_inner)).unwrap();
        assert_eq!(
            (six_in_four.tunnel, six_in_four.src),
            (Some(Tunnel::IpInIp), IpAddr::V6(v6(1)))
        );
        let six_in_six = dec(LinkType::Ipv6, &ipv6(v6(3), v6(4), 41, &v6_inner)).unwrap();
        assert_eq!(
            (six_in_six.tunnel, six_in_six.dst, six_in_six.payload),
            (Some(Tunnel::IpInIp), IpAddr::V6(v6(2)), &b"query"[..])
        );
        // A tunnel inside a first fragment is not followed: only part of it is there.
        let fragment = eth(
            0x0800,
            &ipv4_full(OUTER_A, OUTER_B, 4, &[], 0x2000, &inner_ipv4()),
        );
        let packet = dec(LinkType::Ethernet, &fragment).unwrap();
        assert_eq!(
            (packet.tunnel, packet.transport, packet.fragment),
            (None, Transport::Other(4), Fragment::First)
        );
    }

    #[test]
    fn nesting_is_limited_and_the_outermost_tunnel_is_reported() {
        let mut packet = inner_ipv4();
        for depth in 1..=MAX_TUNNEL_DEPTH + 1 {
            packet = ipv4(OUTER_A, OUTER_B, 4, &packet);
            let decoded = dec(LinkType::Ipv4, &packet);
            if depth <= MAX_TUNNEL_DEPTH {
                assert_eq!(decoded.unwrap().src, ip(INNER_A), "depth {depth}");
            } else {
                assert_eq!(decoded, Err(Skip::TunnelTooDeep));
            }
        }
        // VXLAN inside GRE: GRE is the outermost.
        let vxlan_frame = eth_from(
            MAC_C,
            MAC_C,
            0x0800,
            &ipv4(OUTER_B, OUTER_A, 17, &udp(1, 4789, &vxlan(8, &inner_eth()))),
        );
        assert_inner(&outer(47, &gre(0, 0x6558, &vxlan_frame)), Tunnel::Gre);
    }

    /// Every prefix of `frame` shorter than `layers[i].0` (and not shorter than the previous
    /// end) gives `layers[i].1`; longer prefixes decode, with the payload cut short.
    fn check_truncations(link: LinkType, frame: &[u8], layers: &[(usize, Skip)]) {
        let full = dec(link, frame).unwrap();
        for len in 0..frame.len() {
            let decoded = dec(link, &frame[..len]);
            match layers.iter().find(|(end, _)| len < *end) {
                _ if len == 0 => assert_eq!(decoded, Err(Skip::EmptyFrame)),
                Some((_, skip)) => assert_eq!(decoded, Err(*skip), "prefix of {len} bytes"),
                None => {
                    let packet = decoded.unwrap_or_else(|e| panic!("prefix of {len} bytes: {e}"));
                    let header_end = layers.last().unwrap().0;
                    assert_eq!(
                        packet.payload,
                        &full.payload[..len - header_end],
                        "prefix of {len}"
                    );
                    assert_eq!(
                        (packet.ip_len, packet.transport),
                        (full.ip_len, full.transport)
                    );
                }
            }
        }
    }

    #[test]
    fn truncations_give_the_layer_that_is_cut() {
        use Skip::*;
        let payload = b"payload";
        check_truncations(
            LinkType::Ethernet,
            &eth(
                0x8100,
                &tag(5, 0x0800, &ipv4(OUTER_A, OUTER_B, 6, &tcp(1, 2, payload))),
            ),
            &[
                (14, TruncatedEthernet),
                (18, TruncatedVlan),
                (38, TruncatedIpv4),
                (58, TruncatedTcp),
            ],
        );
        check_truncations(
            LinkType::Ethernet,
            &eth(
                0x86dd,
                &ipv6(v6(1), v6(2), 0, &extension(17, 1, &udp(1, 2, payload))),
            ),
            &[
                (14, TruncatedEthernet),
                (54, TruncatedIpv6),
                (62, TruncatedIpv6),
                (70, TruncatedUdp),
            ],
        );
        let mut sll = vec![0; 14];
        sll.extend([8, 0]);
        sll.extend(ipv4(OUTER_A, OUTER_B, 1, &[0, 0, 0, 0, 1, 2]));
        check_truncations(
            LinkType::LinuxSll,
            &sll,
            &[(16, TruncatedSll), (36, TruncatedIpv4), (40, TruncatedIcmp)],
        );
        let mut sll2 = vec![0x86, 0xdd];
        sll2.extend([0; 18]);
        sll2.extend(ipv6(v6(1), v6(2), 58, &[128, 0, 0, 0, 1, 2]));
        check_truncations(
            LinkType::LinuxSll2,
            &sll2,
            &[(20, TruncatedSll), (60, TruncatedIpv6), (64, TruncatedIcmp)],
        );
        let mut null = vec![30, 0, 0, 0];
        null.extend(ipv6(v6(1), v6(2), 6, &tcp(1, 2, payload)));
        check_truncations(
            LinkType::Null,
            &null,
            &[(4, TruncatedNull), (44, TruncatedIpv6), (64, TruncatedTcp)],
        );
        let pppoe = eth(
            0x8864,
            &[&[0x11, 0, 0, 1, 0, 35, 0, 0x21][..], &inner_ipv4()].concat(),
        );
        check_truncations(
            LinkType::Ethernet,
            &pppoe,
            &[
                (14, TruncatedEthernet),
                (22, TruncatedPppoe),
                (42, TruncatedIpv4),
                (50, TruncatedUdp),
            ],
        );
        let mpls = eth(
            0x8847,
            &[&[0, 1, 0, 64, 0, 2, 1, 64][..], &inner_ipv4()].concat(),
        );
        check_truncations(
            LinkType::Ethernet,
            &mpls,
            &[
                (14, TruncatedEthernet),
                (23, TruncatedMpls),
                (42, TruncatedIpv4),
                (50, TruncatedUdp),
            ],
        );

        // Tunnels: outer Ethernet (14) and IPv4 (34), then the tunnel header, then the inner
        // IPv4 (20) and UDP (8) headers, with an inner Ethernet header (14) where there is one.
        let tunnels: [(Vec<u8>, usize, Skip, bool); 6] = [
            (gre(0x2000, 0x0800, &inner_ipv4()), 8, TruncatedGre, false),
            (
                gre(
                    0x1000,
                    0x88be,
                    &[&[0x10, 0, 0, 1, 0, 0, 0, 1][..], &inner_eth()].concat(),
                ),
                16,
                TruncatedErspan,
                true,
            ),
            (
                gre(
                    0x1000,
                    0x22eb,
                    &[
                        &[0x20, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1][..],
                        &[0; 8],
                        &inner_eth(),
                    ]
                    .concat(),
                ),
                28,
                TruncatedErspan,
                true,
            ),
            (
                udp(1, 4789, &vxlan(8, &inner_eth())),
                16,
                TruncatedVxlan,
                true,
            ),
            (
                udp(1, 6081, &geneve(1, 0x6558, &inner_eth())),
                20,
                TruncatedGeneve,
                true,
            ),
            (inner_ipv4(), 0, TruncatedIpv4, false),
        ];
        for (tunnel, header_len, skip, inner_ethernet) in tunnels {
            let protocol = match skip {
                TruncatedVxlan | TruncatedGeneve => 17,
                TruncatedIpv4 => 4,
                _ => 47,
            };
            let mut layers = vec![(14, TruncatedEthernet), (34, TruncatedIpv4)];
            if protocol == 17 {
                layers.push((42, TruncatedUdp));
            } else if protocol == 47 {
                layers.push((38 + 4, TruncatedGre));
            }
            let mut end = 34 + header_len;
            if header_len > 0 {
                layers.push((end, skip));
            }
            if inner_ethernet {
                end += 14;
                layers.push((end, TruncatedEthernet));
            }
            layers.push((end + 20, TruncatedIpv4));
            layers.push((end + 28, TruncatedUdp));
            check_truncations(LinkType::Ethernet, &outer(protocol, &tunnel), &layers);
        }
    }

    #[test]
    fn skip_reasons_are_distinct_snake_case_names() {
        let mut reasons: Vec<&str> = Skip::ALL.iter().map(Skip::reason).collect();
        assert!(reasons.iter().all(|r| {
            r.chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
        }));
        assert!(reasons.contains(&"ipv4_fragment") && reasons.contains(&"tunnel_too_deep"));
        reasons.sort_unstable();
        reasons.dedup();
        assert_eq!(reasons.len(), Skip::ALL.len());
    }

    /// What a generated packet is made of, to build it and to know what decoding must give.
    #[derive(Debug, Clone)]
    struct Spec {
        v6: bool,
        src: u16,
        dst: u16,
        transport: Transport,
        payload: Vec<u8>,
        vlan: Option<u16>,
        tunnel: Option<Tunnel>,
        padding: usize,
    }

    fn any_spec() -> impl Strategy<Value = Spec> {
        let transport = prop_oneof![
            (
                any::<u16>(),
                any::<u16>(),
                any::<u32>(),
                any::<u32>(),
                any::<u8>()
            )
                .prop_map(|(src_port, dst_port, seq, ack, flags)| Transport::Tcp {
                    src_port,
                    dst_port,
                    seq,
                    ack,
                    flags
                }),
            (any::<u16>(), any::<u16>())
                .prop_filter("not a tunnel port", |(s, d)| {
                    *s != 1701 && ![1701, 4789, 4790, 6081].contains(d)
                })
                .prop_map(|(src_port, dst_port)| Transport::Udp { src_port, dst_port }),
            (any::<u8>(), any::<u8>()).prop_map(|(kind, code)| Transport::Icmp { kind, code }),
        ];
        let tunnel = prop::option::of(prop::sample::select(vec![
            Tunnel::Gre,
            Tunnel::Erspan,
            Tunnel::Vxlan,
            Tunnel::Geneve,
            Tunnel::IpInIp,
            Tunnel::L2tp,
        ]));
        (
            any::<bool>(),
            any::<u16>(),
            any::<u16>(),
            transport,
            prop::collection::vec(any::<u8>(), 0..200),
            prop::option::of(0u16..4096),
            tunnel,
            0usize..30,
        )
            .prop_map(
                |(v6, src, dst, transport, payload, vlan, tunnel, padding)| Spec {
                    v6,
                    src,
                    dst,
                    transport,
                    payload,
                    vlan,
                    tunnel,
                    padding,
                },
            )
    }

    fn build(spec: &Spec) -> Vec<u8> {
        let (protocol, header) = match spec.transport {
            Transport::Tcp {
                src_port,
                dst_port,
                seq,
                ack,
                flags,
            } => {
                let mut segment = tcp(src_port, dst_port, &[]);
                segment[4..8].copy_from_slice(&seq.to_be_bytes());
                segment[8..12].copy_from_slice(&ack.to_be_bytes());
                segment[13] = flags;
                (6, segment)
            }
            Transport::Udp { src_port, dst_port } => {
                (17, udp(src_port, dst_port, &[])[..8].to_vec())
            }
            Transport::Icmp { kind, code } => {
                (if spec.v6 { 58 } else { 1 }, vec![kind, code, 0, 0])
            }
            _ => unreachable!(),
        };
        let mut upper = header;
        upper.extend(&spec.payload);
        if protocol == 17 {
            let len = u16::try_from(upper.len()).unwrap().to_be_bytes();
            upper[4..6].copy_from_slice(&len);
        }
        let [s0, s1] = spec.src.to_be_bytes();
        let [d0, d1] = spec.dst.to_be_bytes();
        let inner = if spec.v6 {
            ipv6(v6(spec.src), v6(spec.dst), protocol, &upper)
        } else {
            ipv4([10, 1, s0, s1], [10, 2, d0, d1], protocol, &upper)
        };
        let inner_type: u16 = if spec.v6 { 0x86dd } else { 0x0800 };
        let inner_frame = || eth_from(MAC_C, MAC_C, inner_type, &inner);
        let (ether_type, network) = match spec.tunnel {
            None => (inner_type, inner.clone()),
            Some(tunnel) => {
                let (protocol, carried) = match tunnel {
                    Tunnel::Gre => (47, gre(0x2000, inner_type, &inner)),
                    Tunnel::Erspan => (
                        47,
                        gre(
                            0x1000,
                            0x88be,
                            &[&[0x10, 0, 0, 1, 0, 0, 0, 1][..], &inner_frame()].concat(),
                        ),
                    ),
                    Tunnel::Vxlan => (17, udp(999, 4789, &vxlan(8, &inner_frame()))),
                    Tunnel::Geneve => (17, udp(999, 6081, &geneve(1, inner_type, &inner))),
                    Tunnel::IpInIp => (if spec.v6 { 41 } else { 4 }, inner.clone()),
                    Tunnel::L2tp => {
                        let ppp = if spec.v6 { 0x57 } else { 0x21 };
                        let header = [0x00, 0x02, 0, 1, 0, 2, 0xff, 0x03, 0x00, ppp];
                        (17, udp(999, 1701, &[&header[..], &inner].concat()))
                    }
                };
                (0x0800, ipv4(OUTER_A, OUTER_B, protocol, &carried))
            }
        };
        let mut frame = match spec.vlan {
            Some(id) => eth(0x8100, &tag(id, ether_type, &network)),
            None => eth(ether_type, &network),
        };
        frame.extend(vec![0; spec.padding]);
        frame
    }

    proptest! {
        #[test]
        fn generated_packets_decode_to_what_they_were_built_from(spec in any_spec()) {
            let frame = build(&spec);
            let packet = dec(LinkType::Ethernet, &frame).unwrap();
            let [s0, s1] = spec.src.to_be_bytes();
            let [d0, d1] = spec.dst.to_be_bytes();
            let (src, dst) = if spec.v6 {
                (IpAddr::V6(v6(spec.src)), IpAddr::V6(v6(spec.dst)))
            } else {
                (ip([10, 1, s0, s1]), ip([10, 2, d0, d1]))
            };
            let transport = match spec.transport {
                Transport::Icmp { kind, code } if spec.v6 => Transport::Icmpv6 { kind, code },
                other => other,
            };
            prop_assert_eq!((packet.src, packet.dst), (src, dst));
            prop_assert_eq!(packet.transport, transport);
            prop_assert_eq!(packet.payload, spec.payload.as_slice());
            prop_assert_eq!(packet.tunnel, spec.tunnel);
            prop_assert_eq!(packet.vlan, spec.vlan);
            prop_assert_eq!((packet.src_mac, packet.dst_mac), (Some(MAC_A), Some(MAC_B)));
            let header = match transport { Transport::Tcp { .. } => 20, Transport::Udp { .. } => 8, _ => 4 };
            let ip_header = if spec.v6 { 40 } else { 20 };
            prop_assert_eq!(packet.ip_len as usize, ip_header + header + spec.payload.len());
        }

        #[test]
        fn arbitrary_bytes_decode_to_a_part_of_the_frame_or_a_skip(
            link in prop::sample::select(vec![
                LinkType::Ethernet, LinkType::Raw, LinkType::Ipv4, LinkType::Ipv6, LinkType::Null,
                LinkType::Loop, LinkType::LinuxSll, LinkType::LinuxSll2, LinkType::Other(9),
            ]),
            prefix in prop::sample::select(vec![
                vec![],
                vec![2, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45],
                vec![2, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 1, 0x86, 0xdd, 0x60],
                vec![0x45, 0, 0, 0],
                vec![0x60, 0, 0, 0],
            ]),
            bytes in prop::collection::vec(any::<u8>(), 0..300),
        ) {
            let frame = [prefix, bytes].concat();
            if let Ok(packet) = decode(link, &frame) {
                let frame_range = frame.as_ptr_range();
                let payload_range = packet.payload.as_ptr_range();
                prop_assert!(frame_range.start <= payload_range.start && payload_range.end <= frame_range.end);
                prop_assert!(packet.payload.len() < packet.ip_len as usize);
                let (src_port, dst_port) = packet.transport.ports();
                if let Transport::Tcp { src_port: s, dst_port: d, .. } | Transport::Udp { src_port: s, dst_port: d } = packet.transport {
                    prop_assert_eq!((s, d), (src_port, dst_port));
                }
            }
        }
    }
}
