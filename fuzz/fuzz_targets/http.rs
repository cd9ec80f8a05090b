//! An HTTP/1.x request head from arbitrary bytes: any answer but a panic is fine, a request is
//! only read once its head has ended, and a refusal points inside the input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_dpi::http::{self, HttpError};

fuzz_target!(|data: &[u8]| {
    match http::parse_request(data) {
        Ok(_) => assert!(
            data.windows(2).any(|w| w == b"\n\n") || data.windows(3).any(|w| w == b"\n\r\n")
        ),
        Err(HttpError::Invalid { offset, .. }) => assert!(offset <= data.len()),
        Err(HttpError::Incomplete) => {}
    }
});
