//! Packet decoding of arbitrary bytes, with the link type picked by the first byte: any answer
//! but a panic is fine, and a decoded payload is a part of the frame, shorter than the IP length.

#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_dpi::capture::LinkType;
use palisade_dpi::packet;

const LINKS: [LinkType; 9] = [
    LinkType::Ethernet,
    LinkType::Raw,
    LinkType::Ipv4,
    LinkType::Ipv6,
    LinkType::Null,
    LinkType::Loop,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::Other(147),
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, frame)) = data.split_first() else {
        return;
    };
    let link = LINKS[usize::from(pick) % LINKS.len()];
    if let Ok(packet) = packet::decode(link, frame) {
        let frame_range = frame.as_ptr_range();
        let payload_range = packet.payload.as_ptr_range();
        assert!(
            frame_range.start <= payload_range.start && payload_range.end <= frame_range.end,
            "payload outside the frame"
        );
        assert!(
            packet.payload.len() < packet.ip_len as usize,
            "payload of {} bytes in an IP packet of {}",
            packet.payload.len(),
            packet.ip_len
        );
    }
});
