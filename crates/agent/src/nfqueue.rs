//! Serving one NFQUEUE queue on Linux: each held packet is read as a [`Held`] and answered with
//! the verdict in its mark (see [`crate::netfilter`]).
//!
//! The packet's own IP and transport headers are read by [`crate::packet`], and only the
//! outermost ones: what the kernel routes is what the policy decides (a tunnel inside must not
//! decide for the packet that carries it).

use palisade_proto::{Direction, Protocol};
use std::io;

use crate::flow::FlowKey;
use crate::intercept::{Enforcement, Held, Interceptor};
use crate::netfilter::mark;
use crate::packet::headers;

/// Netfilter's hook number for packets this host receives.
const HOOK_LOCAL_IN: u8 = 1;
/// Longest packet part copied to the agent for connection queues: enough for any IP and
/// transport header.
const HEADER_COPY: u16 = 128;
/// How many packets a queue holds while the agent decides.
const QUEUE_LEN: u32 = 4096;

/// What one queue carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    /// First packets of new connections.
    Connections,
    /// DNS responses.
    Dns,
}

/// One bound queue.
pub struct NfQueue {
    queue: nfq::Queue,
    kind: QueueKind,
}

impl NfQueue {
    /// Binds queue `number` in the current network namespace. `fail_open` also lets packets
    /// through when the queue is full, instead of dropping them.
    pub fn bind(number: u16, kind: QueueKind, fail_open: bool) -> io::Result<NfQueue> {
        let mut queue = nfq::Queue::open()?;
        queue.bind(number)?;
        if kind == QueueKind::Connections {
            queue.set_copy_range(number, HEADER_COPY)?;
        }
        queue.set_queue_max_len(number, QUEUE_LEN)?;
        queue.set_fail_open(number, fail_open)?;
        Ok(NfQueue { queue, kind })
    }
}

impl Interceptor for NfQueue {
    fn serve(&mut self, decide: &mut dyn FnMut(Held<'_>) -> Enforcement) -> io::Result<()> {
        let mut msg = self.queue.recv()?;
        let inbound = msg.get_hook() == HOOK_LOCAL_IN;
        match self.kind {
            QueueKind::Connections => {
                let enforcement = decide(held_packet(msg.get_payload(), inbound));
                msg.set_nfmark(mark(enforcement));
                msg.set_verdict(nfq::Verdict::Repeat);
            }
            QueueKind::Dns => {
                let enforcement = decide(dns_answer(msg.get_payload()));
                msg.set_verdict(match enforcement {
                    Enforcement::Allow => nfq::Verdict::Accept,
                    Enforcement::Drop | Enforcement::Reject => nfq::Verdict::Drop,
                });
            }
        }
        self.queue.verdict(msg)
    }
}

/// The connection whose first packet `packet` (an IP packet) is; `inbound` when it arrived
/// rather than left.
pub fn held_packet(packet: &[u8], inbound: bool) -> Held<'static> {
    match headers(packet) {
        Some(h) => {
            let (remote, local, direction) = if inbound {
                (h.src, h.dst, Direction::Inbound)
            } else {
                (h.dst, h.src, Direction::Outbound)
            };
            match h.protocol {
                Some(protocol) => Held::Connection(FlowKey {
                    protocol,
                    local,
                    remote,
                    direction,
                }),
                None => Held::Unreadable,
            }
        }
        None => Held::Unreadable,
    }
}

/// The DNS message inside a DNS response packet (UDP, or one TCP segment holding a whole
/// length-prefixed message).
pub fn dns_answer(packet: &[u8]) -> Held<'_> {
    let Some(h) = headers(packet) else {
        return Held::Unreadable;
    };
    match h.protocol {
        Some(Protocol::Udp) => Held::DnsAnswer(h.payload),
        Some(Protocol::Tcp) => match h.payload.get(2..) {
            Some(message) if !message.is_empty() => Held::DnsAnswer(message),
            _ => Held::Unreadable,
        },
        _ => Held::Unreadable,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;

    fn ipv4_tcp_syn() -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0];
        p.extend([10, 0, 0, 2, 93, 184, 216, 34]);
        p.extend(40000u16.to_be_bytes());
        p.extend(443u16.to_be_bytes());
        p.extend([0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        p
    }

    #[test]
    fn an_outbound_syn_names_its_connection() {
        let Held::Connection(flow) = held_packet(&ipv4_tcp_syn(), false) else {
            panic!("not read")
        };
        assert_eq!(flow.protocol, Protocol::Tcp);
        assert_eq!(flow.local, "10.0.0.2:40000".parse().unwrap());
        assert_eq!(flow.remote, "93.184.216.34:443".parse().unwrap());
        assert_eq!(flow.direction, Direction::Outbound);
    }

    #[test]
    fn an_inbound_syn_swaps_the_ends() {
        let Held::Connection(flow) = held_packet(&ipv4_tcp_syn(), true) else {
            panic!("not read")
        };
        assert_eq!(flow.local, "93.184.216.34:443".parse().unwrap());
        assert_eq!(flow.direction, Direction::Inbound);
    }

    #[test]
    fn ipv6_udp_and_its_payload() {
        let mut p = vec![0x60, 0, 0, 0, 0, 12, 17, 64];
        p.extend(Ipv6Addr::LOCALHOST.octets());
        p.extend("2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        p.extend([0, 53, 0x9c, 0x40, 0, 12, 0, 0, 1, 2, 3, 4]);
        let Held::DnsAnswer(message) = dns_answer(&p) else {
            panic!("not read")
        };
        assert_eq!(message, [1, 2, 3, 4]);
    }

    #[test]
    fn truncated_fragmented_and_foreign_packets_are_unreadable() {
        let syn = ipv4_tcp_syn();
        for cut in 0..22 {
            assert_eq!(
                held_packet(&syn[..cut], false),
                Held::Unreadable,
                "cut at {cut}"
            );
        }
        let mut fragment = syn.clone();
        fragment[7] = 1;
        assert_eq!(held_packet(&fragment, false), Held::Unreadable);
        assert_eq!(held_packet(&[0x75; 60], false), Held::Unreadable);
    }
}
