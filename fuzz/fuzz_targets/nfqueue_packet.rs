//! A packet held in an NFQUEUE queue, from arbitrary bytes: read as the first packet of a
//! connection (both directions) and as a DNS response. Any answer but a panic is fine; a DNS
//! message found is a part of the packet.

#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_agent::intercept::Held;
use palisade_agent::nfqueue::{dns_answer, held_packet};

fuzz_target!(|data: &[u8]| {
    for inbound in [false, true] {
        if let Held::Connection(flow) = held_packet(data, inbound) {
            assert_eq!(flow.local.is_ipv4(), flow.remote.is_ipv4());
        }
    }
    if let Held::DnsAnswer(message) = dns_answer(data) {
        assert!(message.len() < data.len());
    }
});
