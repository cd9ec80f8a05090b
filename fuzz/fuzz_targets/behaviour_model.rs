//! A behaviour model file from arbitrary bytes, as they are and with a valid checksum appended
//! (so the fuzzer reaches past the checksum): an error or a model, never a panic; a model that
//! parses writes back the same bytes and judges a window with a score in [0, 1].

#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_detect::behaviour::{FEATURES, Model};

fuzz_target!(|data: &[u8]| {
    let mut sealed = data.to_vec();
    sealed.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    for bytes in [data, &sealed] {
        if let Ok(model) = Model::decode(bytes) {
            assert_eq!(model.encode(), bytes);
            let window = [3.0; FEATURES.len()];
            let judgement = model.judge("/usr/bin/curl", &window);
            assert!((0.0..=1.0).contains(&judgement.score), "{judgement:?}");
        }
    }
});
