//! Kernel connection tracking events: which connections the host opens and accepts, and how
//! many packets and bytes each carried when it ends.
//!
//! The kernel announces every new conntrack entry and every destroyed one on two netlink
//! multicast groups (`NFNLGRP_CONNTRACK_NEW`, `NFNLGRP_CONNTRACK_DESTROY`). A new entry gives the
//! original tuple of a connection, which becomes a [`FlowKey`] for monitor mode; a destroyed one
//! also carries the entry's packet and byte counters each way (when `nf_conntrack_acct` is on),
//! its start and stop times (when `nf_conntrack_timestamp` is on), and its mark, where the agent
//! keeps its verdict.
//!
//! [`parse`] reads the messages of one netlink datagram and works on any platform; the socket
//! ([`Listener`]) and the sysctl switches exist on Linux only.
//!
//! The kernel tracks connections only while something in the network namespace asks for it (an
//! nftables or iptables rule that uses conntrack, NAT, or the agent's own rules); a listener by
//! itself does not switch tracking on, and connections made before it was switched on give no
//! events.

use std::net::{IpAddr, SocketAddr};

use palisade_proto::{Direction, Protocol};

use crate::flow::FlowKey;

#[cfg(target_os = "linux")]
mod listener;
mod parse;

#[cfg(target_os = "linux")]
pub use listener::{Groups, Listener, RECV_BUFFER_LEN, enable_accounting};
pub use parse::{CtError, parse};

/// One conntrack event the agent uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtEvent {
    /// The kernel created an entry for a connection it had not seen.
    New {
        /// The kernel's id of the entry; the same in the entry's [`CtEvent::Destroy`].
        id: u32,
        /// The connection as its first packet went (the side that opened it is `src`).
        orig: Tuple,
        /// The entry's mark (0 when none is set).
        mark: u32,
    },
    /// The kernel removed an entry: the connection ended or timed out, or it was deleted.
    Destroy {
        /// The kernel's id of the entry.
        id: u32,
        /// The connection as its first packet went.
        orig: Tuple,
        /// The entry's mark (0 when none is set); the agent keeps its verdict here.
        mark: u32,
        /// Packets and bytes each way, present when accounting was on when the entry was made.
        acct: Option<Accounting>,
        /// When the entry was made, in nanoseconds of the kernel's real-time clock, present when
        /// timestamps were on when the entry was made.
        start_ns: Option<u64>,
        /// When the entry was removed, in the same clock.
        stop_ns: Option<u64>,
    },
}

/// A connection's ends as conntrack names them: protocol number and both addresses and ports.
///
/// Ports are 0 for protocols without them (ICMP, GRE, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tuple {
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, ...).
    pub protocol: u8,
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
}

/// Packets and bytes counted in one direction of a connection. Bytes count whole IP packets,
/// headers included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets.
    pub packets: u64,
    /// Bytes of those packets.
    pub bytes: u64,
}

/// A conntrack entry's counters, in the kernel's terms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accounting {
    /// Packets in the direction of the first packet (from the side that opened the connection).
    pub orig: Counters,
    /// Packets in the answering direction.
    pub reply: Counters,
}

/// A connection's counters seen from this host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// What this host sent.
    pub sent: Counters,
    /// What this host received.
    pub received: Counters,
}

impl Tuple {
    /// The flow key of this connection as this host sees it, where `is_local` tells whether an
    /// address is one of this host's.
    ///
    /// A connection whose source is local was opened here ([`Direction::Outbound`]); otherwise one
    /// whose destination is local was accepted here ([`Direction::Inbound`]). `None` for a
    /// connection with neither end on this host (forwarded traffic) and for protocols a
    /// [`FlowKey`] cannot name.
    pub fn flow_key(&self, is_local: &dyn Fn(IpAddr) -> bool) -> Option<FlowKey> {
        let protocol = match (self.protocol, self.src.ip()) {
            (IPPROTO_TCP, _) => Protocol::Tcp,
            (IPPROTO_UDP, _) => Protocol::Udp,
            (IPPROTO_ICMP, IpAddr::V4(_)) | (IPPROTO_ICMPV6, IpAddr::V6(_)) => Protocol::Icmp,
            _ => return None,
        };
        let (local, remote, direction) = if is_local(self.src.ip()) {
            (self.src, self.dst, Direction::Outbound)
        } else if is_local(self.dst.ip()) {
            (self.dst, self.src, Direction::Inbound)
        } else {
            return None;
        };
        Some(FlowKey {
            protocol,
            local,
            remote,
            direction,
        })
    }
}

impl Accounting {
    /// The counters as sent and received by this host, for a connection in `direction`: an
    /// outbound connection's original direction is what this host sent, an inbound one's is
    /// what it received.
    pub fn traffic(&self, direction: Direction) -> Traffic {
        match direction {
            Direction::Outbound => Traffic {
                sent: self.orig,
                received: self.reply,
            },
            Direction::Inbound => Traffic {
                sent: self.reply,
                received: self.orig,
            },
        }
    }
}

const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn tuple(protocol: u8, src: &str, dst: &str) -> Tuple {
        Tuple {
            protocol,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
        }
    }

    fn host(ip: IpAddr) -> bool {
        ip == IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)) || ip == IpAddr::V6(Ipv6Addr::LOCALHOST)
    }

    #[test]
    fn a_connection_from_a_local_address_is_outbound_with_the_source_as_local() {
        let key = tuple(6, "10.0.0.5:40000", "93.184.216.34:443")
            .flow_key(&host)
            .unwrap();
        assert_eq!(key.direction, Direction::Outbound);
        assert_eq!(key.protocol, Protocol::Tcp);
        assert_eq!(key.local, "10.0.0.5:40000".parse().unwrap());
        assert_eq!(key.remote, "93.184.216.34:443".parse().unwrap());
    }

    #[test]
    fn a_connection_to_a_local_address_is_inbound_with_the_destination_as_local() {
        let key = tuple(17, "[2001:db8::9]:5353", "[::1]:53")
            .flow_key(&host)
            .unwrap();
        assert_eq!(key.direction, Direction::Inbound);
        assert_eq!(key.protocol, Protocol::Udp);
        assert_eq!(key.local, "[::1]:53".parse().unwrap());
        assert_eq!(key.remote, "[2001:db8::9]:5353".parse().unwrap());
    }

    #[test]
    fn forwarded_connections_and_unnamed_protocols_have_no_flow_key() {
        assert_eq!(tuple(6, "10.0.0.7:1", "10.0.0.8:2").flow_key(&host), None);
        assert_eq!(tuple(47, "10.0.0.5:0", "10.0.0.8:0").flow_key(&host), None);
        // ICMPv6's number over IPv4 is not ICMP.
        assert_eq!(tuple(58, "10.0.0.5:0", "10.0.0.8:0").flow_key(&host), None);
        let icmp = tuple(1, "10.0.0.5:0", "10.0.0.8:0")
            .flow_key(&host)
            .unwrap();
        assert_eq!(icmp.protocol, Protocol::Icmp);
    }

    #[test]
    fn traffic_follows_the_direction() {
        let acct = Accounting {
            orig: Counters {
                packets: 3,
                bytes: 300,
            },
            reply: Counters {
                packets: 5,
                bytes: 5000,
            },
        };
        let out = acct.traffic(Direction::Outbound);
        assert_eq!((out.sent.bytes, out.received.bytes), (300, 5000));
        let inbound = acct.traffic(Direction::Inbound);
        assert_eq!((inbound.sent.bytes, inbound.received.bytes), (5000, 300));
        assert_eq!(inbound.received.packets, 3);
    }
}
