//! The flow table: packets grouped into bidirectional 5-tuple flows, counted each way, with the
//! TCP state, the application protocol recognised from content ([`crate::inspect`]), and flow
//! records written when a flow ends.
//!
//! A flow ends when it has been idle for its timeout (shorter once a TCP connection is closed or
//! reset), when it has lasted the active timeout (the next packet starts a new record), when the
//! table is full (the least recently seen flow is evicted and counted), or at [`FlowTable::flush`].
//! Time is the packets' own: the table never reads the clock, and its clock is the time of the
//! last packet, so a capture whose time jumps back does not end every flow at once.

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
    /// Bytes that content inspection may hold at once, over all flows (reassembled stream
    /// beginnings). A flow whose inspection would pass it is no longer inspected, and that is
    /// counted as `inspection_over_budget`; its counters go on.
    pub max_inspect_bytes: usize,
}

impl Default for FlowConfig {
    /// 100,000 flows; idle 300 s (TCP), 10 s (closed TCP), 60 s (others); active 1,800 s;
    /// 64 MiB for inspection.
    fn default() -> Self {
        FlowConfig {
            max_flows: 100_000,
            tcp_idle_ns: 300 * NANOS_PER_SEC,
            tcp_closed_idle_ns: 10 * NANOS_PER_SEC,
            other_idle_ns: 60 * NANOS_PER_SEC,
            active_ns: 1_800 * NANOS_PER_SEC,
            max_inspect_bytes: 64 << 20,
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
    /// Bytes held by the inspection of all flows.
    inspect_bytes: usize,
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
            inspect_bytes: 0,
        }
    }

    /// Adds a packet seen at `ts_ns` (nanoseconds since the epoch). Flows that the packet's time
    /// shows to have ended are written out first.
    pub fn observe(&mut self, ts_ns: i64, packet: &Packet<'_>, emit: &mut impl FnMut(FlowRecord)) {
        // The table's clock follows the packets, backwards too: after a jump back (a merged or
        // re-timed capture) nothing expires until time passes the flows' own last packets,
        // where keeping the largest time seen would end every flow at its first packet.
        self.now = ts_ns;
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
            let mut ended = std::mem::replace(&mut slot.record, next);
            ended.end = EndReason::Active;
            self.stats.expired_active += 1;
            self.stats.flows += 1;
            emit(ended);
        }
        let from_client = src_is_lo == slot.client_is_lo;
        slot.add(ts_ns, packet, from_client, &mut self.stats.decode_errors);
        let held = slot
            .inspector
            .as_ref()
            .map_or(0, |inspector| inspector.buffered());
        self.inspect_bytes = self.inspect_bytes - slot.inspect_bytes + held;
        slot.inspect_bytes = held;
        if self.inspect_bytes > self.config.max_inspect_bytes {
            self.inspect_bytes -= held;
            slot.inspect_bytes = 0;
            slot.inspector = None;
            self.stats.decode_errors.add("inspection_over_budget");
        }
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
        self.inspect_bytes -= slot.inspect_bytes;
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
    /// Bytes the inspector held after the last packet (counted in the table's total).
    inspect_bytes: usize,
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
            tunnel: packet.tunnel.map(Tunnel::name),
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
            inspect_bytes: 0,
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
    use std::net::Ipv4Addr;

    use super::*;
    use crate::packet::tcp_flags::{ACK, FIN, PSH, RST, SYN};

    const CLIENT: [u8; 4] = [192, 168, 1, 10];
    const SERVER: [u8; 4] = [93, 184, 216, 34];
    const SEC: i64 = NANOS_PER_SEC;

    fn packet(src: [u8; 4], dst: [u8; 4], transport: Transport, payload: &[u8]) -> Packet<'_> {
        Packet {
            src_mac: Some([2, 0, 0, 0, 0, src[3]]),
            dst_mac: Some([2, 0, 0, 0, 0, dst[3]]),
            vlan: None,
            tunnel: None,
            src: IpAddr::V4(Ipv4Addr::from(src)),
            dst: IpAddr::V4(Ipv4Addr::from(dst)),
            ttl: 64,
            ip_len: 40 + u32::try_from(payload.len()).unwrap(),
            fragment: Fragment::None,
            transport,
            payload,
        }
    }

    fn tcp(from_client: bool, flags: u8, seq: u32, payload: &[u8]) -> Packet<'_> {
        let (src, dst, src_port, dst_port) = if from_client {
            (CLIENT, SERVER, 50_000, 443)
        } else {
            (SERVER, CLIENT, 443, 50_000)
        };
        packet(
            src,
            dst,
            Transport::Tcp {
                src_port,
                dst_port,
                seq,
                ack: 0,
                flags,
            },
            payload,
        )
    }

    fn udp(src_port: u16, dst_port: u16) -> Packet<'static> {
        packet(CLIENT, SERVER, Transport::Udp { src_port, dst_port }, b"")
    }

    /// Feeds `(time, packet)` pairs and flushes; returns every record.
    fn run(config: FlowConfig, packets: &[(i64, Packet<'_>)]) -> (Vec<FlowRecord>, FlowStats) {
        let mut table = FlowTable::new(config);
        let mut records = Vec::new();
        for (ts, packet) in packets {
            table.observe(*ts, packet, &mut |r| records.push(r));
        }
        table.flush(&mut |r| records.push(r));
        (records, table.stats().clone())
    }

    #[test]
    fn both_directions_are_one_flow_counted_each_way() {
        let (records, stats) = run(
            FlowConfig::default(),
            &[
                (0, tcp(true, SYN, 100, b"")),
                (SEC, tcp(false, SYN | ACK, 900, b"")),
                (2 * SEC, tcp(true, ACK, 101, b"")),
                (3 * SEC, tcp(true, ACK | PSH, 101, b"hello")),
                (4 * SEC, tcp(false, ACK | PSH, 901, b"hi")),
            ],
        );
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!(
            (r.src_ip, r.src_port, r.dst_port),
            (IpAddr::from(CLIENT), 50_000, 443)
        );
        assert_eq!(
            (r.pkts_out, r.pkts_in, r.bytes_out, r.bytes_in),
            (3, 2, 125, 82)
        );
        assert_eq!((r.ts_start, r.ts_end), (0, 4 * SEC));
        assert_eq!(r.tcp_state, Some(TcpState::Established));
        assert_eq!(r.end, EndReason::EndOfCapture);
        assert_eq!(
            r.src_mac.map(|m| m.to_string()).as_deref(),
            Some("02:00:00:00:00:0a")
        );
        assert_eq!((stats.packets, stats.flows), (5, 1));
    }

    #[test]
    fn the_client_is_the_side_without_the_well_known_port_when_the_capture_starts_late() {
        let (records, _) = run(
            FlowConfig::default(),
            &[(0, tcp(false, ACK | PSH, 1, b"x"))],
        );
        assert_eq!(
            (records[0].src_ip, records[0].dst_port),
            (IpAddr::from(CLIENT), 443)
        );
        assert_eq!((records[0].pkts_out, records[0].pkts_in), (0, 1));
        assert_eq!(records[0].tcp_state, Some(TcpState::Midstream));
        let (records, _) = run(FlowConfig::default(), &[(0, tcp(false, SYN | ACK, 1, b""))]);
        assert_eq!(records[0].src_port, 50_000);
    }

    #[test]
    fn tcp_states_follow_the_handshake_and_the_close() {
        let state =
            |packets: &[(i64, Packet<'_>)]| run(FlowConfig::default(), packets).0[0].tcp_state;
        assert_eq!(
            state(&[(0, tcp(true, SYN, 1, b""))]),
            Some(TcpState::SynSent)
        );
        assert_eq!(
            state(&[
                (0, tcp(true, SYN, 1, b"")),
                (1, tcp(false, SYN | ACK, 9, b""))
            ]),
            Some(TcpState::SynReceived)
        );
        assert_eq!(
            state(&[
                (0, tcp(true, ACK, 1, b"")),
                (1, tcp(true, FIN | ACK, 1, b""))
            ]),
            Some(TcpState::Closing)
        );
        assert_eq!(
            state(&[
                (0, tcp(true, FIN | ACK, 1, b"")),
                (1, tcp(false, FIN | ACK, 9, b""))
            ]),
            Some(TcpState::Closed)
        );
        assert_eq!(
            state(&[(0, tcp(true, ACK, 1, b"")), (1, tcp(false, RST, 9, b""))]),
            Some(TcpState::Reset)
        );
    }

    #[test]
    fn idle_flows_end_by_their_class_timeout() {
        let config = FlowConfig::default();
        let (records, stats) = run(
            config.clone(),
            &[
                (0, udp(5000, 53)),
                (0, tcp(true, ACK, 1, b"")),
                (1, tcp(false, RST, 9, b"")),
                // 11 s later: the reset TCP flow (10 s) has ended, the UDP flow (60 s) has not.
                (11 * SEC, udp(5001, 53)),
                // 61 s after the first: the first UDP flow ends; the second goes on.
                (61 * SEC, udp(5001, 53)),
            ],
        );
        let ends: Vec<(u16, EndReason)> = records.iter().map(|r| (r.src_port, r.end)).collect();
        assert_eq!(
            ends,
            [
                (50_000, EndReason::Idle),
                (5000, EndReason::Idle),
                (5001, EndReason::EndOfCapture)
            ]
        );
        assert_eq!(stats.expired_idle, 2);
        // The same 5-tuple after its timeout starts a new record.
        let (records, _) = run(config, &[(0, udp(5000, 53)), (61 * SEC, udp(5000, 53))]);
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].ts_start, 61 * SEC);
    }

    #[test]
    fn a_long_flow_is_written_out_at_the_active_timeout_and_continues() {
        let config = FlowConfig {
            active_ns: 100 * SEC,
            ..FlowConfig::default()
        };
        let packets: Vec<(i64, Packet<'_>)> =
            (0..=5).map(|i| (i * 30 * SEC, udp(5000, 53))).collect();
        let (records, stats) = run(config, &packets);
        let spans: Vec<(i64, i64, u64, EndReason)> = records
            .iter()
            .map(|r| (r.ts_start, r.ts_end, r.pkts_out, r.end))
            .collect();
        assert_eq!(
            spans,
            [
                (0, 90 * SEC, 4, EndReason::Active),
                (120 * SEC, 150 * SEC, 2, EndReason::EndOfCapture)
            ]
        );
        assert_eq!((stats.expired_active, stats.flows), (1, 2));
    }

    #[test]
    fn a_full_table_evicts_the_least_recently_seen_flow_and_counts_it() {
        let config = FlowConfig {
            max_flows: 2,
            ..FlowConfig::default()
        };
        let (records, stats) = run(
            config,
            &[
                (0, udp(1, 53)),
                (1, udp(2, 53)),
                (2, udp(1, 53)),
                (3, udp(3, 53)),
            ],
        );
        assert_eq!(
            (records[0].src_port, records[0].end),
            (2, EndReason::Evicted)
        );
        assert_eq!(records.len(), 3);
        assert_eq!(stats.evicted, 1);
    }

    #[test]
    fn time_going_back_does_not_end_flows() {
        let (records, stats) = run(
            FlowConfig::default(),
            &[(1_000 * SEC, udp(1, 53)), (0, udp(2, 53)), (1, udp(2, 53))],
        );
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].pkts_out, 2);
        assert_eq!(stats.expired_idle, 0);
    }

    #[test]
    fn advance_ends_idle_flows_without_a_packet() {
        let mut table = FlowTable::new(FlowConfig::default());
        let mut out = Vec::new();
        table.observe(0, &udp(40_000, 53), &mut |r| out.push(r));
        table.observe(0, &tcp(true, SYN, 1, b""), &mut |r| out.push(r));
        table.advance(59 * SEC, &mut |r| out.push(r));
        assert!(out.is_empty(), "nothing is idle for 60 s yet: {out:?}");
        // UDP is idle after 60 s; the TCP connection (300 s) stays open.
        table.advance(60 * SEC, &mut |r| out.push(r));
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].proto, out[0].src_port, out[0].end),
            (Proto::UDP, 40_000, EndReason::Idle)
        );
        assert_eq!(table.len(), 1);
        // Going back in time ends nothing.
        table.advance(0, &mut |r| out.push(r));
        assert_eq!(out.len(), 1);
        table.advance(300 * SEC, &mut |r| out.push(r));
        assert_eq!(out.len(), 2);
        assert_eq!(
            (out[1].tcp_state, out[1].end),
            (Some(TcpState::SynSent), EndReason::Idle)
        );
        assert!(table.is_empty());
    }

    #[test]
    fn inspection_stops_at_its_memory_budget_and_says_so() {
        let config = FlowConfig {
            max_inspect_bytes: 100,
            ..FlowConfig::default()
        };
        // A stream that starts like TLS and never completes its ClientHello keeps its bytes.
        let mut hello = vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc];
        hello.resize(90, 0);
        let (records, stats) = run(
            config,
            &[
                (0, tcp(true, ACK | PSH, 1, &hello)),
                (1, tcp(true, ACK | PSH, 91, &hello[..20])),
                (2, tcp(true, ACK | PSH, 111, &hello[..20])),
            ],
        );
        assert_eq!(records[0].pkts_out, 3);
        assert_eq!(records[0].app_proto, AppProto::Tls);
        assert_eq!(stats.decode_errors.get("inspection_over_budget"), 1);
    }
}
