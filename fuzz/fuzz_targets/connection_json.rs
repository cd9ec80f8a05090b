//! A connection as JSON, as `palisade policy eval --conn` reads it.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _result = palisade_policy::parse_connection("fuzz.json", text);
});
