//! A DHCP message from arbitrary bytes: any answer but a panic is fine, and a refusal points
//! inside the input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_dpi::dhcp::{self, DhcpError};

fuzz_target!(|data: &[u8]| {
    if let Err(DhcpError::Invalid { offset, .. }) = dhcp::parse(data) {
        assert!(offset <= data.len());
    }
});
