//! Devices on the local network, learned from the traffic a network sensor sees: which MAC
//! address has which IP address, and the host name each device announced. The sensor names the
//! client of each flow with it ([`Devices::device`]).
//!
//! What is learned, from each decoded packet ([`Devices::learn`]):
//! - DHCPv4 client messages (UDP 68 → 67): the client's MAC (`chaddr`) → its host name (option
//!   12), and its address (`ciaddr`, or option 50 in a DHCPREQUEST) → that MAC; a server's
//!   DHCPACK binds the address it gives (`yiaddr`) to the client's MAC.
//! - mDNS responses (UDP from port 5353, RFC 6762 §6): A and AAAA answers for `*.local` names
//!   bind the address to the name as announced (`printer.local`); goodbyes (TTL 0) are ignored.
//! - Any other packet sent on the local link: its source address → its Ethernet source. A packet
//!   counts as sent on the link when it was not tunnelled and its TTL (hop limit) is still an
//!   initial value (32, 64, 128 or 255): a router decrements it, so packets it forwards from
//!   elsewhere do not bind remote addresses to the router's MAC.
//!
//! A device's host name is the DHCP name of its MAC where there is one, else the mDNS name of its
//! address. The table holds at most a set number of entries (addresses plus MAC addresses); past
//! that the least recently seen is evicted and counted. Time is not read: "recently" is the order
//! in which packets were learned from.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use serde::Serialize;

use crate::counters::Counters;
use crate::dhcp;
use crate::dns::{self, RecordData};
use crate::packet::{Packet, Transport};
use crate::record::{Device, Mac};

/// Entries a [`Devices`] table holds by default.
pub const DEFAULT_MAX_ENTRIES: usize = 65_536;

/// What is known of the devices on the local network.
pub struct Devices {
    max_entries: usize,
    by_ip: HashMap<IpAddr, IpEntry, foldhash::fast::RandomState>,
    by_mac: HashMap<Mac, MacEntry, foldhash::fast::RandomState>,
    /// Every entry by the sequence number of its last use, oldest first.
    order: BTreeMap<u64, Key>,
    next_seq: u64,
    evicted: u64,
    decode_errors: Counters,
}

/// What a [`Devices`] table holds and has done, for the totals a user sees.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeviceStats {
    /// IP addresses known.
    pub addresses: usize,
    /// Of those, addresses whose MAC address is known.
    pub with_mac: usize,
    /// Of those, addresses with a host name (DHCP or mDNS).
    pub named: usize,
    /// Entries evicted to keep the table within its bound.
    pub evicted: u64,
    /// DHCP and mDNS messages that could not be decoded, by reason (`dhcp_invalid`,
    /// `mdns_invalid`).
    pub decode_errors: Counters,
}

impl Devices {
    /// An empty table of at most `max_entries` entries (one per address, one per MAC address
    /// with a DHCP host name); at least one.
    pub fn new(max_entries: usize) -> Self {
        Devices {
            max_entries: max_entries.max(1),
            by_ip: HashMap::default(),
            by_mac: HashMap::default(),
            order: BTreeMap::new(),
            next_seq: 0,
            evicted: 0,
            decode_errors: Counters::default(),
        }
    }

    /// Learns what one decoded packet says about devices (see the module documentation).
    pub fn learn(&mut self, packet: &Packet<'_>) {
        if let Some(mac) = packet.src_mac.map(Mac).filter(|&mac| is_station(mac)) {
            if packet.tunnel.is_none() && INITIAL_TTLS.contains(&packet.ttl) && is_host(packet.src)
            {
                self.bind(packet.src, mac);
            }
        }
        let Transport::Udp { src_port, dst_port } = packet.transport else {
            return;
        };
        match (src_port, dst_port) {
            (68, 67) | (67, 68) => self.learn_dhcp(packet.payload),
            (MDNS_PORT, _) => self.learn_mdns(packet.payload),
            _ => {}
        }
    }

    /// The device at `ip`: its MAC address and host name where they were learned.
    pub fn device(&self, ip: IpAddr) -> Device {
        let entry = self.by_ip.get(&ip);
        let mac = entry.and_then(|entry| entry.mac);
        let hostname = mac
            .and_then(|mac| self.by_mac.get(&mac))
            .map(|entry| entry.hostname.clone())
            .or_else(|| entry.and_then(|entry| entry.hostname.clone()));
        Device { mac, ip, hostname }
    }

    /// Entries held now (addresses plus named MAC addresses).
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether nothing is known.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// What the table holds and has done.
    pub fn stats(&self) -> DeviceStats {
        let mut stats = DeviceStats {
            addresses: self.by_ip.len(),
            evicted: self.evicted,
            decode_errors: self.decode_errors.clone(),
            ..DeviceStats::default()
        };
        for &ip in self.by_ip.keys() {
            let device = self.device(ip);
            stats.with_mac += usize::from(device.mac.is_some());
            stats.named += usize::from(device.hostname.is_some());
        }
        stats
    }

    fn learn_dhcp(&mut self, payload: &[u8]) {
        let Ok(message) = dhcp::parse(payload) else {
            self.decode_errors.add("dhcp_invalid");
            return;
        };
        let Some(mac) = message.client_mac.map(Mac).filter(|&mac| is_station(mac)) else {
            return;
        };
        let address = match (message.op, message.message_type) {
            (DHCP_REQUEST_OP, kind) => {
                if let Some(hostname) = message.hostname {
                    self.name_mac(mac, hostname);
                }
                let requested = message.requested_ip.filter(|_| kind == Some(DHCPREQUEST));
                message.client_ip.or(requested)
            }
            (_, Some(DHCPACK)) => message.your_ip,
            _ => None,
        };
        if let Some(address) = address.map(IpAddr::V4).filter(|&ip| is_host(ip)) {
            self.bind(address, mac);
        }
    }

    fn learn_mdns(&mut self, payload: &[u8]) {
        let Ok(message) = dns::parse(payload) else {
            self.decode_errors.add("mdns_invalid");
            return;
        };
        if !message.is_response {
            return;
        }
        for answer in message.answers {
            let address = match answer.data {
                RecordData::A(v4) => IpAddr::V4(v4),
                RecordData::Aaaa(v6) => IpAddr::V6(v6),
                _ => continue,
            };
            if answer.ttl > 0 && is_local_name(&answer.name) && is_host(address) {
                self.name_ip(address, answer.name);
            }
        }
    }

    /// Records that `ip` is used by `mac`.
    fn bind(&mut self, ip: IpAddr, mac: Mac) {
        self.touch_ip(ip).mac = Some(mac);
        self.evict();
    }

    /// Records that the device with `mac` calls itself `hostname` (DHCP).
    fn name_mac(&mut self, mac: Mac, hostname: String) {
        let seq = self.touch(Key::Mac(mac));
        self.by_mac.insert(mac, MacEntry { hostname, seq });
        self.evict();
    }

    /// Records that the device at `ip` calls itself `hostname` (mDNS).
    fn name_ip(&mut self, ip: IpAddr, hostname: String) {
        self.touch_ip(ip).hostname = Some(hostname);
        self.evict();
    }

    /// The entry of `ip`, created if new, made the most recently seen.
    fn touch_ip(&mut self, ip: IpAddr) -> &mut IpEntry {
        let seq = self.touch(Key::Ip(ip));
        let entry = self.by_ip.entry(ip).or_insert(IpEntry {
            mac: None,
            hostname: None,
            seq,
        });
        entry.seq = seq;
        entry
    }

    /// Makes `key` the most recently seen entry and returns its new sequence number.
    fn touch(&mut self, key: Key) -> u64 {
        let old = match key {
            Key::Ip(ip) => self.by_ip.get(&ip).map(|entry| entry.seq),
            Key::Mac(mac) => self.by_mac.get(&mac).map(|entry| entry.seq),
        };
        if let Some(old) = old {
            self.order.remove(&old);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, key);
        seq
    }

    /// Removes the least recently seen entries past the bound.
    fn evict(&mut self) {
        while self.order.len() > self.max_entries {
            let Some((_, key)) = self.order.pop_first() else {
                return;
            };
            match key {
                Key::Ip(ip) => {
                    self.by_ip.remove(&ip);
                }
                Key::Mac(mac) => {
                    self.by_mac.remove(&mac);
                }
            }
            self.evicted += 1;
        }
    }
}

/// The UDP port of mDNS.
const MDNS_PORT: u16 = 5353;
/// BOOTP op of a message from a client.
const DHCP_REQUEST_OP: u8 = 1;
/// DHCP message types (option 53).
const DHCPREQUEST: u8 = 3;
const DHCPACK: u8 = 5;
/// TTLs (hop limits) that operating systems start packets with: a packet that still has one
/// was sent by the host on this link rather than routed here.
const INITIAL_TTLS: [u8; 4] = [32, 64, 128, 255];

/// An entry of the order list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Ip(IpAddr),
    Mac(Mac),
}

struct IpEntry {
    mac: Option<Mac>,
    /// The mDNS name announced for the address.
    hostname: Option<String>,
    seq: u64,
}

struct MacEntry {
    /// The DHCP host name.
    hostname: String,
    seq: u64,
}

/// Whether `mac` can be one station's address: not all zeros, not group (multicast, broadcast).
fn is_station(mac: Mac) -> bool {
    mac.0 != [0; 6] && mac.0.first().is_some_and(|first| first & 1 == 0)
}

/// Whether `ip` can be one host's address: not unspecified, multicast or broadcast.
fn is_host(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()),
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
    }
}

/// Whether `name` is a host under `.local` (the mDNS domain), in any case.
fn is_local_name(name: &str) -> bool {
    const SUFFIX: &str = ".local";
    name.len() > SUFFIX.len()
        && name
            .get(name.len() - SUFFIX.len()..)
            .is_some_and(|tail| tail.eq_ignore_ascii_case(SUFFIX))
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::capture::LinkType;
    use crate::packet;

    const LAPTOP_MAC: [u8; 6] = [0x00, 0x11, 0x22, 0x33, 0x44, 0x55];
    const ROUTER_MAC: [u8; 6] = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x01];

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    /// An Ethernet + IPv4 + UDP frame.
    fn udp_frame(
        mac: [u8; 6],
        ttl: u8,
        src: [u8; 4],
        ports: (u16, u16),
        dst: [u8; 4],
        payload: &[u8],
    ) -> Vec<u8> {
        let mut frame = vec![0xff; 6];
        frame.extend(mac);
        frame.extend([0x08, 0x00, 0x45, 0]);
        frame.extend(u16::try_from(28 + payload.len()).unwrap().to_be_bytes());
        frame.extend([0, 1, 0, 0, ttl, 17, 0, 0]);
        frame.extend(src);
        frame.extend(dst);
        frame.extend(ports.0.to_be_bytes());
        frame.extend(ports.1.to_be_bytes());
        frame.extend(u16::try_from(8 + payload.len()).unwrap().to_be_bytes());
        frame.extend([0, 0]);
        frame.extend(payload);
        frame
    }

    fn learn(devices: &mut Devices, frame: &[u8]) {
        devices.learn(&packet::decode(LinkType::Ethernet, frame).unwrap());
    }

    /// A DHCP client message (op 1) of type `kind` from `mac`, with `options` after option 53.
    fn dhcp_client(kind: u8, mac: [u8; 6], options: &[u8]) -> Vec<u8> {
        let mut msg = vec![0u8; 240];
        msg[..4].copy_from_slice(&[1, 1, 6, 0]);
        msg[28..34].copy_from_slice(&mac);
        msg[236..240].copy_from_slice(&[99, 130, 83, 99]);
        msg.extend([53, 1, kind]);
        msg.extend(options);
        msg.push(255);
        msg
    }

    /// A DHCPREQUEST from the laptop, named `laptop-7`, asking for 192.168.1.23, broadcast from
    /// 0.0.0.0 as a client without an address sends it.
    fn dhcp_request() -> Vec<u8> {
        let mut options = vec![50, 4, 192, 168, 1, 23, 12, 8];
        options.extend(b"laptop-7");
        let msg = dhcp_client(DHCPREQUEST, LAPTOP_MAC, &options);
        udp_frame(LAPTOP_MAC, 64, [0; 4], (68, 67), [255; 4], &msg)
    }

    /// An mDNS response with answers (name, A or AAAA data, TTL).
    fn mdns_response(answers: &[(&str, IpAddr, u32)]) -> Vec<u8> {
        let mut msg = vec![0, 0, 0x84, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        msg[7] = u8::try_from(answers.len()).unwrap();
        for (name, address, ttl) in answers {
            for label in name.split('.') {
                msg.push(u8::try_from(label.len()).unwrap());
                msg.extend(label.as_bytes());
            }
            msg.push(0);
            let (rtype, data) = match address {
                IpAddr::V4(v4) => (1u16, v4.octets().to_vec()),
                IpAddr::V6(v6) => (28u16, v6.octets().to_vec()),
            };
            msg.extend(rtype.to_be_bytes());
            msg.extend([0x80, 0x01]); // cache-flush bit, class IN
            msg.extend(ttl.to_be_bytes());
            msg.extend(u16::try_from(data.len()).unwrap().to_be_bytes());
            msg.extend(data);
        }
        msg
    }

    #[test]
    fn a_dhcp_request_names_the_device_and_gives_its_address() {
        let mut devices = Devices::new(DEFAULT_MAX_ENTRIES);
        learn(&mut devices, &dhcp_request());
        // The laptop's first packet from its new address names it by its MAC.
        assert_eq!(
            devices.device(v4(192, 168, 1, 23)),
            Device {
                mac: Some(Mac(LAPTOP_MAC)),
                ip: v4(192, 168, 1, 23),
                hostname: Some("laptop-7".into()),
            }
        );
        // Nothing is invented for an address not seen.
        assert_eq!(
            devices.device(v4(192, 168, 1, 24)),
            Device {
                mac: None,
                ip: v4(192, 168, 1, 24),
                hostname: None,
            }
        );
        // The broadcast's 0.0.0.0 source is not a device.
        assert_eq!(devices.stats().addresses, 1);
    }

    #[test]
    fn a_dhcp_name_follows_the_mac_to_a_new_address() {
        let mut devices = Devices::new(DEFAULT_MAX_ENTRIES);
        learn(&mut devices, &dhcp_request());
        // Later the laptop sends from 192.168.1.99 (TTL 64: sent on this link).
        let frame = udp_frame(LAPTOP_MAC, 64, [192, 168, 1, 99], (5000, 53), [8; 4], b"x");
        learn(&mut devices, &frame);
        let device = devices.device(v4(192, 168, 1, 99));
        assert_eq!(device.mac, Some(Mac(LAPTOP_MAC)));
        assert_eq!(device.hostname.as_deref(), Some("laptop-7"));
    }

    #[test]
    fn a_dhcp_ack_binds_the_given_address() {
        let mut devices = Devices::new(DEFAULT_MAX_ENTRIES);
        let mut ack = dhcp_client(DHCPACK, LAPTOP_MAC, &[]);
        ack[0] = 2;
        ack[16..20].copy_from_slice(&[192, 168, 1, 50]);
        let frame = udp_frame(ROUTER_MAC, 64, [192, 168, 1, 1], (67, 68), [255; 4], &ack);
        learn(&mut devices, &frame);
        assert_eq!(
            devices.device(v4(192, 168, 1, 50)).mac,
            Some(Mac(LAPTOP_MAC))
        );
        // The server itself sent from its own MAC.
        assert_eq!(
            devices.device(v4(192, 168, 1, 1)).mac,
            Some(Mac(ROUTER_MAC))
        );
    }

    #[test]
    fn an_mdns_response_names_the_address() {
        let mut devices = Devices::new(DEFAULT_MAX_ENTRIES);
        let v6: IpAddr = "fe80::1234".parse::<Ipv6Addr>().unwrap().into();
        let response = mdns_response(&[
            ("printer.local", v4(192, 168, 1, 40), 120),
            ("printer.local", v6, 120),
            ("www.example.com", v4(192, 168, 1, 41), 120),
            ("gone.local", v4(192, 168, 1, 42), 0),
        ]);
        // Relayed by a router (TTL 254): the names count, the relay's MAC does not.
        let frame = udp_frame(
            ROUTER_MAC,
            254,
            [192, 168, 1, 40],
            (5353, 5353),
            [224, 0, 0, 251],
            &response,
        );
        learn(&mut devices, &frame);
        assert_eq!(
            devices.device(v4(192, 168, 1, 40)),
            Device {
                mac: None,
                ip: v4(192, 168, 1, 40),
                hostname: Some("printer.local".into()),
            }
        );
        assert_eq!(
            devices.device(v6).hostname.as_deref(),
            Some("printer.local")
        );
        // Not a .local name, and a goodbye: neither names anything.
        assert_eq!(devices.device(v4(192, 168, 1, 41)).hostname, None);
        assert_eq!(devices.device(v4(192, 168, 1, 42)).hostname, None);
        assert_eq!(devices.stats().named, 2);
    }

    #[test]
    fn the_dhcp_name_wins_over_the_mdns_name() {
        let mut devices = Devices::new(DEFAULT_MAX_ENTRIES);
        let response = mdns_response(&[("Laptop-7.local", v4(192, 168, 1, 23), 120)]);
        let frame = udp_frame(
            LAPTOP_MAC,
            255,
            [192, 168, 1, 23],
            (5353, 5353),
            [224, 0, 0, 251],
            &response,
        );
        learn(&mut devices, &frame);
        assert_eq!(
            devices.device(v4(192, 168, 1, 23)).hostname.as_deref(),
            Some("Laptop-7.local")
        );
        learn(&mut devices, &dhcp_request());
        assert_eq!(
            devices.device(v4(192, 168, 1, 23)).hostname.as_deref(),
            Some("laptop-7")
        );
    }

    #[test]
    fn routed_packets_do_not_bind_remote_addresses_to_the_router() {
        let mut devices = Devices::new(DEFAULT_MAX_ENTRIES);
        // From the internet through the router: TTL 52.
        let frame = udp_frame(
            ROUTER_MAC,
            52,
            [93, 184, 216, 34],
            (443, 50_000),
            [192, 168, 1, 23],
            b"x",
        );
        learn(&mut devices, &frame);
        assert_eq!(devices.device(v4(93, 184, 216, 34)).mac, None);
        assert!(devices.is_empty());
    }

    #[test]
    fn broken_messages_are_counted() {
        let mut devices = Devices::new(DEFAULT_MAX_ENTRIES);
        learn(
            &mut devices,
            &udp_frame(LAPTOP_MAC, 64, [0; 4], (68, 67), [255; 4], b"junk"),
        );
        let truncated = &mdns_response(&[("tv.local", v4(192, 168, 1, 8), 120)])[..20];
        learn(
            &mut devices,
            &udp_frame(
                LAPTOP_MAC,
                64,
                [0; 4],
                (5353, 5353),
                [224, 0, 0, 251],
                truncated,
            ),
        );
        let stats = devices.stats();
        assert_eq!(stats.decode_errors.get("dhcp_invalid"), 1);
        assert_eq!(stats.decode_errors.get("mdns_invalid"), 1);
        assert_eq!(stats.named, 0);
    }

    #[test]
    fn the_least_recently_seen_entry_is_evicted_and_counted() {
        let mut devices = Devices::new(2);
        let mac = |n: u8| [0x02, 0, 0, 0, 0, n];
        let from = |n: u8| udp_frame(mac(n), 64, [10, 0, 0, n], (5000, 53), [10, 0, 0, 254], b"x");
        learn(&mut devices, &from(1));
        learn(&mut devices, &from(2));
        // 10.0.0.1 is seen again, so 10.0.0.2 is now the least recently seen.
        learn(&mut devices, &from(1));
        learn(&mut devices, &from(3));
        assert_eq!(devices.len(), 2);
        assert_eq!(devices.device(v4(10, 0, 0, 1)).mac, Some(Mac(mac(1))));
        assert_eq!(devices.device(v4(10, 0, 0, 2)).mac, None);
        assert_eq!(devices.device(v4(10, 0, 0, 3)).mac, Some(Mac(mac(3))));
        assert_eq!(devices.stats().evicted, 1);
    }
}
