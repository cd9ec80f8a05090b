//! A DGA model file from arbitrary bytes: an error or a model, never a panic; a model that
//! parses writes back the same bytes and scores every name in [0, 1].

#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_detect::dga::Model;

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = Model::from_bytes(data) {
        assert_eq!(model.to_bytes(), data);
        for name in ["example.com", "xkqjzvtrwpl.net", "co.uk", ""] {
            let score = model.score(name);
            assert!((0.0..=1.0).contains(&score), "{name}: {score}");
        }
    }
});
