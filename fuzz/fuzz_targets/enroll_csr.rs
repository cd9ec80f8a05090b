//! The certificate request an unauthenticated agent sends to `Enroll`, parsed, verified and
//! signed by `Ca::sign_agent` with a CA made once for the run. The first byte picks the form:
//! odd, the rest as PEM text as it arrives; even, the rest as DER wrapped in PEM, so that the
//! DER decoder sees arbitrary bytes. A refusal is fine, a panic is not.

#![no_main]

use std::sync::LazyLock;

use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;
use palisade_server::ca::Ca;
use palisade_server::enrollment::MAX_CSR_LEN;

/// A fixed time, so that runs are reproducible.
const NOW_S: i64 = 1_780_000_000;

static CA: LazyLock<Option<(Ca, Timestamp)>> = LazyLock::new(|| {
    let now = Timestamp::from_second(NOW_S).ok()?;
    Some((Ca::generate(now).ok()?, now))
});

fuzz_target!(|data: &[u8]| {
    let Some((ca, now)) = CA.as_ref() else {
        panic!("could not make the test CA");
    };
    let Some((&form, rest)) = data.split_first() else {
        return;
    };
    let csr_pem = if form % 2 == 1 {
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        text.to_owned()
    } else {
        pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", rest.to_vec()))
    };
    // `enroll` refuses a longer request before it is parsed.
    if csr_pem.len() > MAX_CSR_LEN {
        return;
    }
    if let Ok((certificate, fingerprint)) = ca.sign_agent(&csr_pem, "agent-1", *now) {
        assert!(certificate.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(fingerprint.len(), 64);
    }
});
