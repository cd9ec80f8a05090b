//! A ctnetlink datagram from arbitrary bytes: any answer but a panic is fine, a refusal points
//! inside the input, and an event's tuple never mixes IPv4 and IPv6.

#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_agent::conntrack::{self, CtEvent};

fuzz_target!(|data: &[u8]| {
    match conntrack::parse(data) {
        Ok(events) => {
            for event in events {
                let (CtEvent::New { orig, .. } | CtEvent::Destroy { orig, .. }) = event;
                assert_eq!(orig.src.is_ipv4(), orig.dst.is_ipv4());
            }
        }
        Err(error) => assert!(error.offset() <= data.len()),
    }
});
