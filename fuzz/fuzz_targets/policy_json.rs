//! A policy document as JSON: load, compile, decide, format, load the formatted text again.

#![no_main]

mod round_trip;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| round_trip::check("fuzz.json", data));
