//! Time-based one-time passwords (RFC 6238 over RFC 4226): six digits, 30-second steps,
//! HMAC-SHA1, the parameters every authenticator app assumes for an `otpauth://totp/` URI.
//! Secrets are 20 random bytes, shown to the user in base32 (RFC 4648, no padding).
//!
//! A code is accepted one step either side of now (clocks drift), and only for a step later
//! than the last one accepted for the user, so a code cannot be used twice.

use jiff::Timestamp;
use ring::hmac;

use crate::credentials::{CredentialError, constant_time_eq};

/// Seconds per step.
pub const STEP_SECONDS: i64 = 30;
/// Steps accepted either side of the current one.
const WINDOW: i64 = 1;
/// Bytes of a new secret (160 bits, as RFC 4226 recommends).
const SECRET_BYTES: usize = 20;
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A new random secret, base32.
pub fn new_secret() -> Result<String, CredentialError> {
    let mut bytes = [0u8; SECRET_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| CredentialError::Random(e.to_string()))?;
    Ok(base32(&bytes))
}

/// The step `now` falls in.
pub fn step_at(now: Timestamp) -> i64 {
    now.as_second().div_euclid(STEP_SECONDS)
}

/// The six-digit code of `secret` (base32) for `step`; `None` for a secret that does not
/// decode.
pub fn code(secret: &str, step: i64) -> Option<String> {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &unbase32(secret)?);
    let tag = hmac::sign(&key, &step.to_be_bytes());
    let digest = tag.as_ref();
    let offset = usize::from(digest.last()? & 0x0f);
    let word: [u8; 4] = digest.get(offset..offset + 4)?.try_into().ok()?;
    let value = u32::from_be_bytes(word) & 0x7fff_ffff;
    Some(format!("{:06}", value % 1_000_000))
}

/// The step whose code `given` is, when it is within a step of `now` and later than `last`
/// (the last step accepted); `None` when the code is wrong, too old or already used.
pub fn verify(secret: &str, given: &str, now: Timestamp, last: Option<i64>) -> Option<i64> {
    let given = given.trim();
    if given.len() != 6 || !given.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = step_at(now);
    (current - WINDOW..=current + WINDOW)
        .filter(|step| last.is_none_or(|last| *step > last))
        .find(|step| code(secret, *step).is_some_and(|c| constant_time_eq(&c, given)))
}

/// The URI an authenticator app reads (typed in, or from a QR code).
pub fn uri(issuer: &str, account: &str, secret: &str) -> String {
    let issuer = percent_encode(issuer);
    format!(
        "otpauth://totp/{issuer}:{}?secret={secret}&issuer={issuer}&algorithm=SHA1&digits=6&period={STEP_SECONDS}",
        percent_encode(account)
    )
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(base32_digit(buffer >> bits));
        }
    }
    if bits > 0 {
        out.push(base32_digit(buffer << (5 - bits)));
    }
    out
}

fn base32_digit(value: u32) -> char {
    let index = usize::try_from(value & 31).unwrap_or_default();
    BASE32.get(index).map_or('A', |&c| char::from(c))
}

/// Decodes base32 (upper or lower case, spaces and padding ignored); `None` on any other
/// character.
fn unbase32(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| !matches!(c, b' ' | b'=')) {
        let c = c.to_ascii_uppercase();
        let value = BASE32.iter().position(|&d| d == c)?;
        buffer = (buffer << 5) | u32::try_from(value).ok()?;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((buffer >> bits) & 0xff).ok()?);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238, appendix B: the SHA-1 secret is the ASCII of "12345678901234567890".
    const RFC_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    #[test]
    fn codes_match_the_rfc_test_vectors() {
        // The RFC lists eight digits; six-digit codes are their last six.
        for (seconds, eight) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
        ] {
            let step = step_at(Timestamp::from_second(seconds).unwrap());
            assert_eq!(code(RFC_SECRET, step).unwrap(), &eight[2..], "{seconds}");
        }
    }

    #[test]
    fn base32_round_trips() {
        assert_eq!(base32(b"12345678901234567890"), RFC_SECRET);
        assert_eq!(unbase32(RFC_SECRET).unwrap(), b"12345678901234567890");
        assert_eq!(
            unbase32("gezd gnbv").unwrap(),
            unbase32("GEZDGNBV").unwrap()
        );
        assert_eq!(unbase32("GEZ1"), None);
        let secret = new_secret().unwrap();
        assert_eq!(secret.len(), 32);
        assert_eq!(unbase32(&secret).unwrap().len(), SECRET_BYTES);
    }

    #[test]
    fn a_code_is_accepted_once_and_only_near_its_time() {
        let now = Timestamp::from_second(1_234_567_890).unwrap();
        let step = step_at(now);
        let current = code(RFC_SECRET, step).unwrap();
        assert_eq!(verify(RFC_SECRET, &current, now, None), Some(step));
        assert_eq!(
            verify(RFC_SECRET, &current, now, Some(step)),
            None,
            "replayed"
        );
        let previous = code(RFC_SECRET, step - 1).unwrap();
        assert_eq!(verify(RFC_SECRET, &previous, now, None), Some(step - 1));
        let old = code(RFC_SECRET, step - 2).unwrap();
        assert_eq!(verify(RFC_SECRET, &old, now, None), None, "too old");
        assert_eq!(verify(RFC_SECRET, "12345", now, None), None);
        assert_eq!(verify(RFC_SECRET, "abcdef", now, None), None);
    }

    #[test]
    fn the_uri_names_issuer_account_and_secret() {
        assert_eq!(
            uri("Palisade", "ann lee", "ABC"),
            "otpauth://totp/Palisade:ann%20lee?secret=ABC&issuer=Palisade&algorithm=SHA1&digits=6&period=30"
        );
    }
}
