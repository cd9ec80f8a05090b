//! The flow table: packets grouped into bidirectional 5-tuple flows, counted each way, with the
//! TCP state, the application protocol recognised from content ([`crate::inspect`]), and flow
//! records written when a flow ends.
//!
//! A flow ends when it has been idle for its timeout (shorter once a TCP connection is closed or
//! reset), when it has lasted the active timeout (the next packet starts a new record), when the
//! table is full (the least recently seen flow is evicted and counted), or at [`FlowTable::flush`].
//! Time is the packets' own: the table never reads the clock.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::counters::Counters;
use crate::inspect::Inspector;
use crate::packet::{Fragment, Packet, Transport, Tunnel, tcp_flags};
use crate::record::{AppProto, EndReason, FlowRecord, Mac, Proto, TcpState};

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// Limits and timeouts of a flow table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowConfig {
    /// Most flows held at once; past this the least recently seen flow is evicted.
    pub max_flows: usize,
    /// Idle timeout of an open TCP connection, nanoseconds.
    pub tcp_idle_ns: i64,
    /// Idle timeout of a TCP connection after FIN from both sides or RST, nanoseconds.
    pub tcp_closed_idle_ns: i64,
    /// Idle timeout of UDP, ICMP and other flows, nanoseconds.
    pub other_idle_ns: i64,
    /// A flow that lasts this long is written out and continues in a new record, nanoseconds.
    pub active_ns: i64,
}

impl Default for FlowConfig {
    /// 100,000 flows; idle 300 s (TCP), 10 s (closed TCP), 60 s (others); active 1,800 s.
    fn default() -> Self {
        FlowConfig {
            max_flows: 100_000,
            tcp_idle_ns: 300 * NANOS_PER_SEC,
            tcp_closed_idle_ns: 10 * NANOS_PER_SEC,
            other_idle_ns: 60 * NANOS_PER_SEC,
            active_ns: 1_800 * NANOS_PER_SEC,
        }
    }
}

/// What the table did, for the totals a user sees.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Packets added to flows.
    pub packets: u64,
    /// Flow records started.
    pub flows: u64,
    /// Flows evicted because the table was full.
    pub evicted: u64,
    /// Flows ended by their idle timeout.
    pub expired_idle: u64,
    /// Records ended by the active timeout.
    pub expired_active: u64,
    /// Content that a decoder refused, by reason (`tls_invalid`, `dns_invalid`, ...).
    pub decode_errors: Counters,
}

/// Flows being tracked. Records come out through the `emit` callback of each call.
pub struct FlowTable {
    config: FlowConfig,
    index: HashMap<FlowKey, u32, foldhash::fast::RandomState>,
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    /// Flows of each [`Class`] from least to most recently seen.
    lru: [List; CLASSES],
    now: i64,
    stats: FlowStats,
}

impl FlowTable {
    /// An empty table.
    pub fn new(config: FlowConfig) -> Self {
        FlowTable {
            config,
            index: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            lru: [List::EMPTY; CLASSES],
            now: i64::MIN,
            stats: FlowStats::default(),
        }
    }

    /// Adds a packet seen at `ts_ns` (nanoseconds since the epoch). Flows that the packet's time
    /// shows to have ended are written out first.
    pub fn observe(&mut self, ts_ns: i64, packet: &Packet<'_>, emit: &mut impl FnMut(FlowRecord)) {
        self.now = self.now.max(ts_ns);
        self.expire(emit);
        self.stats.packets += 1;
        let (key, src_is_lo) = FlowKey::of(packet);
        let id = match self.index.get(&key) {
            Some(&id) => id,
            None => self.start(key, ts_ns, packet, emit),
        };
        let Some(slot) = self.slots.get_mut(slot_index(id)).and_then(Option::as_mut) else {
            return;
        };
        if ts_ns.saturating_sub(slot.record.ts_start) >= self.config.active_ns {
            let next = slot.continuation(ts_ns);
            let ended = std::mem::replace(&mut slot.record, next);
            self.stats.expired_active += 1;
            self.stats.flows += 1;
            emit(ended);
        }
        let from_client = src_is_lo == slot.client_is_lo;
        slot.add(ts_ns, packet, from_client, &mut self.stats.decode_errors);
        let class = slot.class();
        let old = slot.class;
        slot.class = class;
        self.unlink(id, old);
        self.push_back(id, class);
    }

    /// Moves the table's time to `now_ns` (nanoseconds since the epoch) without a packet and
    /// writes out the flows idle past their timeout: a live capture calls it when no packet has
    /// come for a while. Time never goes back: a `now_ns` earlier than a packet already seen
    /// ends nothing.
    pub fn advance(&mut self, now_ns: i64, emit: &mut impl FnMut(FlowRecord)) {
        self.now = self.now.max(now_ns);
        self.expire(emit);
    }

    /// Writes out every flow still held (the end of a capture) and empties the table.
    pub fn flush(&mut self, emit: &mut impl FnMut(FlowRecord)) {
        for class in 0..CLASSES {
            while let Some(id) = self.lru.get(class).and_then(|list| list.head) {
                self.end(id, EndReason::EndOfCapture, emit);
            }
        }
    }

    /// Flows held now.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no flow is held.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// What the table has done so far.
    pub fn stats(&self) -> &FlowStats {
        &self.stats
    }

    /// Creates the flow of a packet's first appearance, evicting the oldest flow when full.
    fn start(
        &mut self,
        key: FlowKey,
        ts_ns: i64,
        packet: &Packet<'_>,
        emit: &mut impl FnMut(FlowRecord),
    ) -> u32 {
        if self.index.len() >= self.config.max_flows {
            if let Some(oldest) = self.oldest() {
                self.stats.evicted += 1;
                self.end(oldest, EndReason::Evicted, emit);
            }
        }
        self.stats.flows += 1;
        let slot = Slot::new(ts_ns, packet);
        let id = match self.free.pop() {
            Some(id) => {
                if let Some(free) = self.slots.get_mut(slot_index(id)) {
                    *free = Some(slot);
                }
                id
            }
            None => {
                self.slots.push(Some(slot));
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.index.insert(key, id);
        self.push_back(id, Class::Other as usize);
        id
    }

    /// Ends every flow whose idle timeout has passed.
    fn expire(&mut self, emit: &mut impl FnMut(FlowRecord)) {
        for class in 0..CLASSES {
            let timeout = self.timeout(class);
            while let Some(id) = self.lru.get(class).and_then(|list| list.head) {
                let idle_since = self.slot(id).map_or(i64::MAX, |slot| slot.record.ts_end);
                if self.now.saturating_sub(idle_since) < timeout {
                    break;
                }
                self.stats.expired_idle += 1;
                self.end(id, EndReason::Idle, emit);
            }
        }
    }

    /// The least recently seen flow of all classes.
    fn oldest(&self) -> Option<u32> {
        self.lru
            .iter()
            .filter_map(|list| list.head)
            .min_by_key(|&id| self.slot(id).map_or(i64::MIN, |slot| slot.record.ts_end))
    }

    /// Removes a flow and writes its record.
    fn end(&mut self, id: u32, reason: EndReason, emit: &mut impl FnMut(FlowRecord)) {
        let Some(class) = self.slot(id).map(|slot| slot.class) else {
            return;
        };
        self.unlink(id, class);
        let Some(slot) = self.slots.get_mut(slot_index(id)).and_then(Option::take) else {
            return;
        };
        self.index.remove(&slot.key);
        self.free.push(id);
        let mut record = slot.record;
        record.end = reason;
        emit(record);
    }

    fn timeout(&self, class: usize) -> i64 {
        match class {
            c if c == Class::TcpOpen as usize => self.config.tcp_idle_ns,
            c if c == Class::TcpClosed as usize => self.config.tcp_closed_idle_ns,
            _ => self.config.other_idle_ns,
        }
    }

    fn slot(&self, id: u32) -> Option<&Slot> {
        self.slots.get(slot_index(id)).and_then(Option::as_ref)
    }

    fn links(&mut self, id: u32) -> Option<&mut Links> {
        self.slots
            .get_mut(slot_index(id))
            .and_then(Option::as_mut)
            .map(|slot| &mut slot.links)
    }

    fn push_back(&mut self, id: u32, class: usize) {
        let Some(list) = self.lru.get(class).copied() else {
            return;
        };
        if let Some(links) = self.links(id) {
            *links = Links {
                prev: list.tail,
                next: None,
            };
        }
        match list.tail.and_then(|tail| self.links(tail)) {
            Some(tail) => tail.next = Some(id),
            None => self.set_head(class, Some(id)),
        }
        if let Some(list) = self.lru.get_mut(class) {
            list.tail = Some(id);
        }
    }

    fn unlink(&mut self, id: u32, class: usize) {
        let Some(Links { prev, next }) = self.links(id).map(|links| *links) else {
            return;
        };
        match prev.and_then(|prev| self.links(prev)) {
            Some(prev) => prev.next = next,
            None => self.set_head(class, next),
        }
        match next.and_then(|next| self.links(next)) {
            Some(next) => next.prev = prev,
            None => {
                if let Some(list) = self.lru.get_mut(class) {
                    list.tail = prev;
                }
            }
        }
    }

    fn set_head(&mut self, class: usize, head: Option<u32>) {
        if let Some(list) = self.lru.get_mut(class) {
            list.head = head;
        }
    }
}

/// Timeout classes, each with its own least-recently-seen list so that the head of each list
/// is the next flow of that class to time out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    TcpOpen,
    TcpClosed,
    Other,
}

const CLASSES: usize = 3;

#[derive(Debug, Clone, Copy)]
struct List {
    head: Option<u32>,
    tail: Option<u32>,
}

impl List {
    const EMPTY: List = List {
        head: None,
        tail: None,
    };
}

#[derive(Debug, Clone, Copy, Default)]
struct Links {
    prev: Option<u32>,
    next: Option<u32>,
}

/// A flow's identity, the same for both directions: the lower endpoint first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    lo: ([u8; 16], u16),
    hi: ([u8; 16], u16),
    proto: u8,
}

impl FlowKey {
    /// The key of a packet, and whether its source is the key's lower endpoint.
    fn of(packet: &Packet<'_>) -> (FlowKey, bool) {
        let (src_port, dst_port) = packet.transport.ports();
        let src = (octets(packet.src), src_port);
        let dst = (octets(packet.dst), dst_port);
        let proto = packet.transport.protocol_number();
        if src <= dst {
            (
                FlowKey {
                    lo: src,
                    hi: dst,
                    proto,
                },
                true,
            )
        } else {
            (
                FlowKey {
                    lo: dst,
                    hi: src,
                    proto,
                },
                false,
            )
        }
    }
}

/// A tracked flow.
struct Slot {
    key: FlowKey,
    record: FlowRecord,
    /// Whether the client is the key's lower endpoint.
    client_is_lo: bool,
    inspector: Option<Box<Inspector>>,
    fin_out: bool,
    fin_in: bool,
    class: usize,
    links: Links,
}

impl Slot {
    /// A flow as its first packet shows it: the client is the side that sent a SYN, or the side
    /// without the well-known port.
    fn new(ts_ns: i64, packet: &Packet<'_>) -> Slot {
        let (key, src_is_lo) = FlowKey::of(packet);
        let src_is_client = src_is_client(packet);
        let (src_port, dst_port) = packet.transport.ports();
        let (src_mac, dst_mac) = (packet.src_mac.map(Mac), packet.dst_mac.map(Mac));
        let ((src_ip, src_port, src_mac), (dst_ip, dst_port, dst_mac)) = if src_is_client {
            (
                (packet.src, src_port, src_mac),
                (packet.dst, dst_port, dst_mac),
            )
        } else {
            (
                (packet.dst, dst_port, dst_mac),
                (packet.src, src_port, src_mac),
            )
        };
        let proto = Proto(packet.transport.protocol_number());
        let record = FlowRecord {
            ts_start: ts_ns,
            ts_end: ts_ns,
            src_ip,
            src_port,
            dst_ip,
            dst_port,
            proto,
            app_proto: AppProto::Unknown,
            pkts_out: 0,
            pkts_in: 0,
            bytes_out: 0,
            bytes_in: 0,
            tcp_state: (proto == Proto::TCP).then_some(TcpState::Midstream),
            end: EndReason::EndOfCapture,
            src_mac,
            dst_mac,
            vlan: packet.vlan,
            tunnel: packet.tunnel.map(tunnel_name),
            fragments: 0,
            dns: None,
            tls: None,
            http: None,
            quic: None,
            device: None,
        };
        let inspector = Inspector::wanted(&packet.transport).then(Box::default);
        Slot {
            key,
            record,
            client_is_lo: src_is_lo == src_is_client,
            inspector,
            fin_out: false,
            fin_in: false,
            class: Class::Other as usize,
            links: Links::default(),
        }
    }

    /// The record that continues this flow after the active timeout: same endpoints and what
    /// was learnt of the connection, counters from zero.
    fn continuation(&self, ts_ns: i64) -> FlowRecord {
        FlowRecord {
            ts_start: ts_ns,
            ts_end: ts_ns,
            pkts_out: 0,
            pkts_in: 0,
            bytes_out: 0,
            bytes_in: 0,
            fragments: 0,
            dns: None,
            ..self.record.clone()
        }
    }

    fn add(&mut self, ts_ns: i64, packet: &Packet<'_>, from_client: bool, errors: &mut Counters) {
        let record = &mut self.record;
        record.ts_end = record.ts_end.max(ts_ns);
        let bytes = u64::from(packet.ip_len);
        if from_client {
            record.pkts_out += 1;
            record.bytes_out += bytes;
        } else {
            record.pkts_in += 1;
            record.bytes_in += bytes;
        }
        if packet.fragment == Fragment::First {
            record.fragments += 1;
        }
        if let Transport::Tcp { flags, .. } = packet.transport {
            self.track_tcp(flags, from_client);
        }
        if let Some(inspector) = &mut self.inspector {
            if !inspector.inspect(&mut self.record, packet, from_client, errors) {
                self.inspector = None;
            }
        }
    }

    fn track_tcp(&mut self, flags: u8, from_client: bool) {
        let syn = flags & tcp_flags::SYN != 0;
        let ack = flags & tcp_flags::ACK != 0;
        if flags & tcp_flags::FIN != 0 {
            if from_client {
                self.fin_out = true;
            } else {
                self.fin_in = true;
            }
        }
        let state = self.record.tcp_state.unwrap_or(TcpState::Midstream);
        let next = if flags & tcp_flags::RST != 0 {
            TcpState::Reset
        } else if self.fin_out && self.fin_in {
            TcpState::Closed
        } else if self.fin_out || self.fin_in {
            TcpState::Closing
        } else {
            match state {
                _ if syn && !ack && from_client && self.record.pkts_out == 1 => TcpState::SynSent,
                TcpState::SynSent if syn && ack && !from_client => TcpState::SynReceived,
                TcpState::SynReceived if ack && from_client => TcpState::Established,
                other => other,
            }
        };
        self.record.tcp_state = Some(next);
    }

    fn class(&self) -> usize {
        match self.record.tcp_state {
            Some(TcpState::Closed | TcpState::Reset) => Class::TcpClosed as usize,
            Some(_) => Class::TcpOpen as usize,
            None => Class::Other as usize,
        }
    }
}

/// Whether the first packet seen of a flow comes from its client.
fn src_is_client(packet: &Packet<'_>) -> bool {
    match packet.transport {
        Transport::Tcp {
            flags,
            src_port,
            dst_port,
            ..
        } => {
            if flags & tcp_flags::SYN != 0 {
                flags & tcp_flags::ACK == 0
            } else {
                !is_service_port(src_port, dst_port)
            }
        }
        Transport::Udp { src_port, dst_port } => !is_service_port(src_port, dst_port),
        // Echo reply (ICMP 0, ICMPv6 129) comes from the side that was asked.
        Transport::Icmp { kind, .. } => kind != 0,
        Transport::Icmpv6 { kind, .. } => kind != 129,
        Transport::Other(_) => true,
    }
}

/// Whether `port` looks like the server's side of the pair: well known while the other is not.
fn is_service_port(port: u16, other: u16) -> bool {
    port < 1024 && other >= 1024
}

fn tunnel_name(tunnel: Tunnel) -> &'static str {
    match tunnel {
        Tunnel::Gre => "gre",
        Tunnel::Erspan => "erspan",
        Tunnel::Vxlan => "vxlan",
        Tunnel::Geneve => "geneve",
        Tunnel::IpInIp => "ipip",
    }
}

fn octets(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn slot_index(id: u32) -> usize {
    usize::try_from(id).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::LinkType;
    use crate::packet;

    const T0: i64 = 1_700_000_000 * NANOS_PER_SEC;

    /// A raw IPv4 packet from 192.168.1.10:`sport` to 192.168.1.1:`dport`, UDP (17) or TCP (6)
    /// with the SYN flag.
    fn ipv4(proto: u8, sport: u16, dport: u16) -> Vec<u8> {
        let transport_len = if proto == 6 { 20 } else { 8 };
        let total = u16::try_from(20 + transport_len).unwrap();
        let mut bytes = vec![0x45, 0];
        bytes.extend(total.to_be_bytes());
        bytes.extend([0, 1, 0, 0, 64, proto, 0, 0, 192, 168, 1, 10, 192, 168, 1, 1]);
        bytes.extend(sport.to_be_bytes());
        bytes.extend(dport.to_be_bytes());
        if proto == 6 {
            bytes.extend([0, 0, 0, 1, 0, 0, 0, 0, 0x50, tcp_flags::SYN, 0xff, 0xff]);
            bytes.extend([0, 0, 0, 0]);
        } else {
            bytes.extend(8u16.to_be_bytes());
            bytes.extend([0, 0]);
        }
        bytes
    }

    fn observe(table: &mut FlowTable, ts_ns: i64, bytes: &[u8], out: &mut Vec<FlowRecord>) {
        let packet = packet::decode(LinkType::Raw, bytes).unwrap();
        table.observe(ts_ns, &packet, &mut |record| out.push(record));
    }

    #[test]
    fn advance_ends_idle_flows_without_a_packet() {
        let mut table = FlowTable::new(FlowConfig::default());
        let mut out = Vec::new();
        observe(&mut table, T0, &ipv4(17, 40_000, 53), &mut out);
        observe(&mut table, T0, &ipv4(6, 40_001, 80), &mut out);
        assert_eq!(table.len(), 2);

        table.advance(T0 + 59 * NANOS_PER_SEC, &mut |record| out.push(record));
        assert!(out.is_empty(), "nothing is idle for 60 s yet: {out:?}");

        // UDP is idle after 60 s; the TCP connection (300 s) stays open.
        table.advance(T0 + 60 * NANOS_PER_SEC, &mut |record| out.push(record));
        assert_eq!(out.len(), 1);
        let udp = &out[0];
        assert_eq!(
            (udp.proto, udp.src_port, udp.dst_port),
            (Proto::UDP, 40_000, 53)
        );
        assert_eq!(udp.end, EndReason::Idle);
        assert_eq!((udp.ts_start, udp.ts_end, udp.pkts_out), (T0, T0, 1));
        assert_eq!(table.len(), 1);
        assert_eq!(table.stats().expired_idle, 1);

        // Going back in time ends nothing.
        table.advance(T0, &mut |record| out.push(record));
        assert_eq!(out.len(), 1);

        table.advance(T0 + 300 * NANOS_PER_SEC, &mut |record| out.push(record));
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].tcp_state, Some(TcpState::SynSent));
        assert_eq!(out[1].end, EndReason::Idle);
        assert!(table.is_empty());
    }
}
