//! A datagram of NFLOG copies, as the agent's listener receives it, from arbitrary bytes: any
//! answer but a panic is fine, a refusal points inside the input, every packet found is a part
//! of it, and reading the packets' server names (one by one, or with a namer that joins two
//! segments) never panics either.

#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_agent::nflog;
use palisade_agent::server_name::{self, Namer};
use palisade_proto::{Direction, Protocol};

fuzz_target!(|data: &[u8]| {
    match nflog::parse(data) {
        Ok(packets) => {
            let mut namer = Namer::new();
            for packet in packets {
                assert!(packet.len() <= data.len());
                if let Some(named) = namer.named(packet) {
                    assert!(named.sni.is_some() || named.http_host.is_some());
                    assert_eq!(named.flow.protocol, Protocol::Tcp);
                    assert_eq!(named.flow.direction, Direction::Outbound);
                }
            }
            assert!(namer.pending() <= server_name::MAX_PENDING);
        }
        Err(error) => assert!(error.offset() <= data.len()),
    }
    // The bytes as a packet by themselves, as a copy is handed to the server name reader.
    if let Some(named) = server_name::named(data) {
        assert_eq!(named.flow.local.is_ipv4(), named.flow.remote.is_ipv4());
    }
});
