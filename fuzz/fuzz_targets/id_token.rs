//! An OpenID Connect ID token and the provider's key set, as a sign-in's callback receives
//! them: the first line is the token, the rest the JSON Web Key Set. Checking them must refuse
//! with a reason or accept, never panic; an accepted token has the expected issuer.

#![no_main]

use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;
use palisade_server::oidc::id_token::{Expected, verify};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (token, keys) = text.split_once('\n').unwrap_or((text, "{}"));
    let Ok(keys) = serde_json::from_str::<serde_json::Value>(keys) else {
        return;
    };
    let expected = Expected {
        issuer: "https://idp.example",
        client_id: "palisade",
        nonce: "n",
        now: Timestamp::from_second(1_800_000_000).unwrap_or(Timestamp::UNIX_EPOCH),
    };
    if let Ok(claims) = verify(token, &keys, &expected) {
        assert_eq!(claims["iss"], "https://idp.example");
    }
});
