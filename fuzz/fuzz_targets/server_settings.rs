//! The server's TOML configuration file (`palisade server --config`), parsed over the defaults
//! by `Settings::from_toml`. A refusal must name a line and column inside the text.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use palisade_server::settings::{Settings, SettingsError};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Settings::from_toml(Path::new("fuzz.toml"), text) {
        let SettingsError::File { line, column, .. } = e else {
            panic!("parsing text gave {e}");
        };
        assert!(line >= 1 && column >= 1, "{line}:{column}");
        assert!(line <= text.matches('\n').count() + 1, "line {line}");
    }
});
