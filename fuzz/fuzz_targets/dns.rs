//! DNS decoding of arbitrary bytes, as a UDP payload and as the start of a TCP stream: any
//! answer but a panic is fine, and a TCP message never claims more bytes than it was given.

#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_dpi::dns;

fuzz_target!(|data: &[u8]| {
    let _ = dns::parse(data);
    if let Ok((_, used)) = dns::parse_tcp(data) {
        assert!(
            used <= data.len(),
            "parse_tcp used {used} of {} bytes",
            data.len()
        );
    }
});
