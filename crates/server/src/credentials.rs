//! Secrets: passwords hashed with argon2id, API tokens stored only as their SHA-256, and the
//! random source for both. [`Secret`] does not print its value.

use std::fmt;

use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
use argon2::{Argon2, PasswordHash, PasswordVerifier};
use sha2::{Digest, Sha256};

use crate::audit::hex;

/// A password or token in memory. `Debug` shows `Secret(***)`, never the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// The operating system's random source or the password hasher failed.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// No random bytes from the operating system.
    #[error("no randomness from the operating system: {0}")]
    Random(String),
    /// argon2 refused to hash (parameters or memory).
    #[error("password hashing failed: {0}")]
    Hash(String),
}

impl Secret {
    /// Wraps a value that must not be printed.
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The value, for the few places that must use it (hashing, the one-time password file).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A random password of 24 characters from a 32-letter alphabet without look-alikes (120 bits).
pub fn random_password() -> Result<Secret, CredentialError> {
    const ALPHABET: &[u8; 32] = b"abcdefghjkmnpqrstuvwxyz23456789A";
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| CredentialError::Random(e.to_string()))?;
    let password = bytes
        .iter()
        // `b & 31` is always an index of the 32 letters; the fallback is never taken.
        .map(|b| char::from(ALPHABET.get(usize::from(b & 31)).copied().unwrap_or(b'a')))
        .collect();
    Ok(Secret(password))
}

/// A new API token: `pal_` and 32 random bytes in hex.
pub fn random_token() -> Result<Secret, CredentialError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| CredentialError::Random(e.to_string()))?;
    Ok(Secret(format!("pal_{}", hex(&bytes))))
}

/// The argon2id hash of `password` as a PHC string, with a fresh salt.
pub fn hash_password(password: &Secret) -> Result<String, CredentialError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.0.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CredentialError::Hash(e.to_string()))
}

/// Whether `password` matches the stored PHC string (false for a malformed one).
pub fn verify_password(password: &Secret, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.0.as_bytes(), &h)
            .is_ok()
    })
}

/// Whether `a` and `b` are equal, in a time that depends only on their lengths (for secrets a
/// client sends: codes, CSRF tokens).
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// What is stored for a token: its SHA-256 in hex. Tokens are random and long, so a fast hash
/// is enough; the token itself is never stored.
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_hash_only() {
        let password = random_password().unwrap();
        let stored = hash_password(&password).unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify_password(&password, &stored));
        assert!(!verify_password(&Secret::new("wrong".to_owned()), &stored));
    }

    #[test]
    fn secrets_do_not_print() {
        let token = random_token().unwrap();
        assert_eq!(format!("{token:?}"), "Secret(***)");
        assert_eq!(token.expose().len(), 4 + 64);
    }
}
