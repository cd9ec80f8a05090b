//! Checking an ID token (a JWS in compact form): the signature against the provider's JSON Web
//! Key Set (RS256, or ES256 on P-256; nothing else, never `none`), then the claims: the issuer,
//! the audience (this client), the expiry and issue time (with a minute of leeway for clocks
//! that differ), and the nonce of this sign-in.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::{Map, Value};

use crate::credentials::constant_time_eq;

/// How far the provider's clock may be from ours.
const LEEWAY_SECONDS: i64 = 60;

/// What the token must say.
pub struct Expected<'a> {
    /// The `iss` claim.
    pub issuer: &'a str,
    /// Must be among the `aud` claim.
    pub client_id: &'a str,
    /// The `nonce` claim.
    pub nonce: &'a str,
    /// The time to check `exp` and `iat` against.
    pub now: Timestamp,
}

/// The claims of `token` once its signature verifies against one of `keys` (a JWKS document)
/// and its claims are what `expected` says; otherwise why not.
pub fn verify(
    token: &str,
    keys: &Value,
    expected: &Expected<'_>,
) -> Result<Map<String, Value>, String> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("it is not a signed JWT (three parts separated by dots)".to_owned());
    };
    let header: Map<String, Value> = decode_json(header, "header")?;
    let signature = decode(signature, "signature")?;
    let signed = token
        .rsplit_once('.')
        .map(|(signed, _)| signed)
        .unwrap_or_default();
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kid = header.get("kid").and_then(Value::as_str);
    check_signature(alg, kid, signed.as_bytes(), &signature, keys)?;
    let claims: Map<String, Value> = decode_json(payload, "payload")?;
    check_claims(&claims, expected)?;
    Ok(claims)
}

fn decode(part: &str, what: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| format!("its {what} is not base64url"))
}

fn decode_json(part: &str, what: &str) -> Result<Map<String, Value>, String> {
    serde_json::from_slice(&decode(part, what)?)
        .map_err(|_| format!("its {what} is not a JSON object"))
}

fn text<'v>(object: &'v Value, key: &str) -> Option<&'v str> {
    object.get(key).and_then(Value::as_str)
}

fn check_signature(
    alg: &str,
    kid: Option<&str>,
    signed: &[u8],
    signature: &[u8],
    keys: &Value,
) -> Result<(), String> {
    let kty = match alg {
        "RS256" => "RSA",
        "ES256" => "EC",
        other => {
            return Err(format!(
                "it is signed with {other:?}; only RS256 and ES256 are accepted"
            ));
        }
    };
    let keys = keys
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("the provider's key set has no keys")?;
    let mut candidates = keys
        .iter()
        .filter(|key| text(key, "kty") == Some(kty))
        .filter(|key| kid.is_none_or(|kid| text(key, "kid") == Some(kid)))
        .filter(|key| text(key, "use").is_none_or(|u| u == "sig"))
        .peekable();
    if candidates.peek().is_none() {
        return Err(format!(
            "no {kty} key of the provider has the token's key id {kid:?}"
        ));
    }
    if candidates.any(|key| verifies(alg, key, signed, signature)) {
        Ok(())
    } else {
        Err("its signature does not verify against the provider's keys".to_owned())
    }
}

fn verifies(alg: &str, key: &Value, signed: &[u8], signature: &[u8]) -> bool {
    let field = |name| text(key, name).and_then(|v| URL_SAFE_NO_PAD.decode(v).ok());
    if alg == "RS256" {
        let (Some(n), Some(e)) = (field("n"), field("e")) else {
            return false;
        };
        RsaPublicKeyComponents { n: &n, e: &e }
            .verify(&signature::RSA_PKCS1_2048_8192_SHA256, signed, signature)
            .is_ok()
    } else {
        let (Some(x), Some(y)) = (field("x"), field("y")) else {
            return false;
        };
        if text(key, "crv") != Some("P-256") || x.len() != 32 || y.len() != 32 {
            return false;
        }
        let mut point = vec![4u8];
        point.extend_from_slice(&x);
        point.extend_from_slice(&y);
        UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
            .verify(signed, signature)
            .is_ok()
    }
}

fn check_claims(claims: &Map<String, Value>, expected: &Expected<'_>) -> Result<(), String> {
    let claim = |name: &str| claims.get(name);
    let issuer = claim("iss").and_then(Value::as_str);
    if issuer != Some(expected.issuer) {
        return Err(format!(
            "its issuer {issuer:?} is not the configured {:?}",
            expected.issuer
        ));
    }
    let audience: Vec<&str> = match claim("aud") {
        Some(Value::String(aud)) => vec![aud.as_str()],
        Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !audience.contains(&expected.client_id) {
        return Err(format!(
            "its audience {audience:?} does not include this client ({:?})",
            expected.client_id
        ));
    }
    let party = claim("azp").and_then(Value::as_str);
    if party.is_some_and(|azp| azp != expected.client_id) {
        return Err(format!(
            "it was issued to {party:?} (azp), not to this client"
        ));
    }
    let now = expected.now.as_second();
    let seconds = |name| claim(name).and_then(Value::as_i64);
    let Some(expires) = seconds("exp") else {
        return Err("it has no expiry (exp)".to_owned());
    };
    if expires.saturating_add(LEEWAY_SECONDS) <= now {
        return Err(format!("it expired at {}", moment(expires)));
    }
    let Some(issued) = seconds("iat") else {
        return Err("it has no issue time (iat)".to_owned());
    };
    if issued > now.saturating_add(LEEWAY_SECONDS) {
        return Err(format!(
            "it was issued in the future, at {}",
            moment(issued)
        ));
    }
    let nonce = claim("nonce").and_then(Value::as_str).unwrap_or_default();
    if !constant_time_eq(nonce, expected.nonce) {
        return Err(
            "its nonce is not the one of this sign-in (a replayed or substituted token)".to_owned(),
        );
    }
    Ok(())
}

/// A claim's seconds as RFC 3339 (or the number when it is out of range).
fn moment(seconds: i64) -> String {
    Timestamp::from_second(seconds).map_or_else(|_| seconds.to_string(), |t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_tokens_are_refused_with_a_reason() {
        let keys = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "", "y": ""}]});
        let expected = Expected {
            issuer: "https://idp",
            client_id: "c",
            nonce: "n",
            now: Timestamp::UNIX_EPOCH,
        };
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(br#"{"iss":"https://idp"}"#)
        );
        let es = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256"}"#),
            URL_SAFE_NO_PAD.encode(b"{}"),
            URL_SAFE_NO_PAD.encode([0u8; 64])
        );
        for token in [
            "",
            ".",
            "..",
            "a.b.c",
            "a.b.c.d",
            "\u{0}.\u{0}.\u{0}",
            &none,
            &es,
        ] {
            assert!(verify(token, &keys, &expected).is_err(), "{token:?}");
        }
        assert!(
            verify(&none, &keys, &expected)
                .unwrap_err()
                .contains("only RS256 and ES256")
        );
    }
}
