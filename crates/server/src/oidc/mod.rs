//! Single sign-on to the console with OpenID Connect: the authorization code flow with PKCE
//! (S256), `state` and `nonce`.
//!
//! [`Oidc::begin`] reads the provider's discovery document and makes the authorization URL and
//! the [`Pending`] sign-in (state, nonce, PKCE verifier), which the console keeps in a
//! short-lived cookie of the browser that started it. [`Oidc::finish`] exchanges the code at
//! the token endpoint, checks the ID token ([`id_token`]: signature against the provider's keys,
//! issuer, audience, expiry, nonce) and reads who the user is and which Palisade role a value
//! of the role claim maps to. The provider owns the second factor.

pub mod id_token;

use std::time::Duration;

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::credentials::{Secret, random_token};
use crate::error::Error;
use crate::http::status_of;
use crate::role::Role;

/// How long a call to the provider may take.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// The claims that name the user when none is configured, in this order.
const NAME_CLAIMS: [&str; 3] = ["preferred_username", "email", "sub"];
/// When several values of the role claim are mapped, the role that comes first here wins.
const PRECEDENCE: [Role; 5] = [
    Role::Admin,
    Role::Editor,
    Role::Analyst,
    Role::Auditor,
    Role::Viewer,
];

/// What single sign-on needs to know (from the `[oidc]` settings).
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The provider's issuer URL, exactly as its tokens name it.
    pub issuer: String,
    /// The client id registered at the provider.
    pub client_id: String,
    /// The client secret; none for a public client.
    pub client_secret: Option<Secret>,
    /// The scopes asked for, separated by spaces.
    pub scopes: String,
    /// The claim that carries roles or groups.
    pub role_claim: String,
    /// Value of the role claim → Palisade role.
    pub roles: Vec<(String, Role)>,
    /// The claim that names the user; none means `preferred_username`, `email`, `sub`.
    pub name_claim: Option<String>,
    /// The console's address as browsers reach it; none means `http://` and the HTTP address.
    pub console_url: Option<String>,
}

/// Single sign-on with one provider.
#[derive(Debug)]
pub struct Oidc {
    config: OidcConfig,
    redirect_uri: String,
    http: reqwest::Client,
}

/// A sign-in between the redirect to the provider and the way back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Sent to the provider and expected back with the code.
    pub state: String,
    /// Expected in the ID token.
    pub nonce: String,
    /// The PKCE verifier, sent with the code.
    verifier: String,
}

impl Pending {
    fn new() -> Result<Pending, Error> {
        Ok(Pending {
            state: random_token()?.expose().to_owned(),
            nonce: random_token()?.expose().to_owned(),
            verifier: random_token()?.expose().to_owned(),
        })
    }

    /// The value kept in the browser's cookie.
    pub fn to_cookie(&self) -> String {
        format!("{}.{}.{}", self.state, self.nonce, self.verifier)
    }

    /// Reads a cookie made by [`Pending::to_cookie`].
    pub fn from_cookie(value: &str) -> Option<Pending> {
        let mut parts = value.split('.');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(state), Some(nonce), Some(verifier), None)
                if [state, nonce, verifier].iter().all(|p| !p.is_empty()) =>
            {
                Some(Pending {
                    state: state.to_owned(),
                    nonce: nonce.to_owned(),
                    verifier: verifier.to_owned(),
                })
            }
            _ => None,
        }
    }
}

/// Who the provider vouched for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `ISSUER#SUB`: the provider's own, stable name for the user.
    pub subject: String,
    /// The Palisade user name (from the name claim).
    pub name: String,
    /// The mapped role.
    pub role: Role,
}

/// Why single sign-on did not sign anyone in.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// Single sign-on is not configured.
    #[error("single sign-on is not configured on this server")]
    Off,
    /// The provider cannot be reached.
    #[error("the identity provider cannot be reached: {0}")]
    Unreachable(String),
    /// The provider answered something unusable.
    #[error("the identity provider answered unexpectedly: {0}")]
    Provider(String),
    /// The provider refused (an `error` on the way back, or the code at the token endpoint).
    #[error("the identity provider refused the sign-in: {0}")]
    Refused(String),
    /// No sign-in was started in this browser, or its `state` is not the one that came back.
    #[error(
        "this sign-in was not started in this browser or has expired (state mismatch): \
         start again from the sign-in page"
    )]
    State,
    /// The ID token was refused.
    #[error("the identity provider's ID token was refused: {0}")]
    Token(String),
    /// The user carries no mapped role, or no name.
    #[error("{0}")]
    NotMapped(String),
    /// The name belongs to a user single sign-on did not create (or to another subject).
    #[error(
        "a user named {0:?} exists that this identity did not create; single sign-on does not \
         take over other accounts (an administrator can rename or remove it)"
    )]
    Taken(String),
    /// Storage or randomness failed, or the name is not a valid user name.
    #[error(transparent)]
    Failed(#[from] Error),
}

impl OidcError {
    /// The status of the page that says so.
    pub fn status(&self) -> StatusCode {
        match self {
            OidcError::Off => StatusCode::NOT_FOUND,
            OidcError::Unreachable(_) | OidcError::Provider(_) => StatusCode::BAD_GATEWAY,
            OidcError::Refused(_) | OidcError::Token(_) => StatusCode::UNAUTHORIZED,
            OidcError::State => StatusCode::BAD_REQUEST,
            OidcError::NotMapped(_) => StatusCode::FORBIDDEN,
            OidcError::Taken(_) => StatusCode::CONFLICT,
            OidcError::Failed(e) => status_of(e),
        }
    }
}

/// The part of the discovery document used here.
#[derive(Debug, serde::Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

impl Oidc {
    /// Single sign-on for a console served at `http_url` (`http://` or `https://` and the
    /// address; for the default redirect URI).
    pub fn new(config: OidcConfig, http_url: &str) -> Result<Oidc, reqwest::Error> {
        let base = config
            .console_url
            .clone()
            .unwrap_or_else(|| http_url.to_owned());
        Ok(Oidc {
            redirect_uri: format!("{base}/login/sso/callback"),
            config,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(PROVIDER_TIMEOUT)
                .build()?,
        })
    }

    /// The provider's issuer URL.
    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// Starts a sign-in: the provider's authorization URL to send the browser to, and what to
    /// keep until it comes back.
    pub async fn begin(&self) -> Result<(String, Pending), OidcError> {
        let discovery = self.discover().await?;
        let pending = Pending::new()?;
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(pending.verifier.as_bytes()));
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("scope", &self.config.scopes)
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .finish();
        let endpoint = discovery.authorization_endpoint;
        let separator = if endpoint.contains('?') { '&' } else { '?' };
        Ok((format!("{endpoint}{separator}{query}"), pending))
    }

    /// Finishes the sign-in `pending` with the `code` the provider sent back, at `now`.
    pub async fn finish(
        &self,
        pending: &Pending,
        code: &str,
        now: Timestamp,
    ) -> Result<Identity, OidcError> {
        let discovery = self.discover().await?;
        let id_token = self.exchange(&discovery, pending, code).await?;
        let keys = self.get_json(&discovery.jwks_uri, "the key set").await?;
        let claims = id_token::verify(
            &id_token,
            &keys,
            &id_token::Expected {
                issuer: &self.config.issuer,
                client_id: &self.config.client_id,
                nonce: &pending.nonce,
                now,
            },
        )
        .map_err(OidcError::Token)?;
        identity(&self.config, &claims)
    }

    async fn discover(&self) -> Result<Discovery, OidcError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let document = self.get_json(&url, "the discovery document").await?;
        let discovery: Discovery = serde_json::from_value(document)
            .map_err(|e| OidcError::Provider(format!("the discovery document at {url}: {e}")))?;
        if discovery.issuer != self.config.issuer {
            return Err(OidcError::Provider(format!(
                "the discovery document names the issuer {:?}, not the configured {:?}",
                discovery.issuer, self.config.issuer
            )));
        }
        Ok(discovery)
    }

    /// Exchanges the code for tokens; the ID token.
    async fn exchange(
        &self,
        discovery: &Discovery,
        pending: &Pending,
        code: &str,
    ) -> Result<String, OidcError> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("code_verifier", pending.verifier.as_str()),
        ];
        let mut request = self.http.post(&discovery.token_endpoint);
        // client_secret_basic unless the provider says it only takes client_secret_post.
        let basic = discovery
            .token_endpoint_auth_methods_supported
            .as_ref()
            .is_none_or(|methods| methods.iter().any(|m| m == "client_secret_basic"));
        match &self.config.client_secret {
            Some(secret) if basic => {
                let encode =
                    |s: &str| -> String { form_urlencoded::byte_serialize(s.as_bytes()).collect() };
                request = request.basic_auth(
                    encode(&self.config.client_id),
                    Some(encode(secret.expose())),
                );
            }
            Some(secret) => {
                form.push(("client_id", self.config.client_id.as_str()));
                form.push(("client_secret", secret.expose()));
            }
            None => form.push(("client_id", self.config.client_id.as_str())),
        }
        let response = request
            .form(&form)
            .send()
            .await
            .map_err(|e| OidcError::Unreachable(describe(&e)))?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|_| {
            OidcError::Provider(format!("the token endpoint answered {status} without JSON"))
        })?;
        if !status.is_success() {
            let text = |key: &str| body.get(key).and_then(Value::as_str).unwrap_or_default();
            return Err(OidcError::Refused(format!(
                "the token endpoint did not accept the code ({status}): {} {}",
                text("error"),
                text("error_description")
            )));
        }
        body.get("id_token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| OidcError::Provider("the token response has no id_token".to_owned()))
    }

    async fn get_json(&self, url: &str, what: &str) -> Result<Value, OidcError> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| OidcError::Unreachable(describe(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(OidcError::Provider(format!("{what} at {url}: {status}")));
        }
        response
            .json()
            .await
            .map_err(|e| OidcError::Provider(format!("{what} at {url}: {e}")))
    }
}

/// A transport error with its causes (reqwest's own message alone says little).
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Who the verified `claims` name, with the mapped role.
fn identity(config: &OidcConfig, claims: &Map<String, Value>) -> Result<Identity, OidcError> {
    let text = |claim: &str| {
        claims
            .get(claim)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    };
    let sub = text("sub").ok_or_else(|| OidcError::Token("it has no sub claim".to_owned()))?;
    let name = match &config.name_claim {
        Some(claim) => text(claim).ok_or_else(|| {
            OidcError::NotMapped(format!(
                "the identity provider sent no {claim:?} claim to name you by"
            ))
        })?,
        None => NAME_CLAIMS.into_iter().find_map(text).unwrap_or(sub),
    };
    let values: Vec<&str> = match claims.get(&config.role_claim) {
        Some(Value::String(value)) => vec![value.as_str()],
        Some(Value::Array(values)) => values.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let role = PRECEDENCE.into_iter().find(|role| {
        config
            .roles
            .iter()
            .any(|(value, mapped)| mapped == role && values.contains(&value.as_str()))
    });
    let Some(role) = role else {
        return Err(OidcError::NotMapped(format!(
            "{name} may not use Palisade: no value of the {:?} claim ({}) is mapped to a \
             Palisade role; an administrator maps them in the [oidc.roles] settings",
            config.role_claim,
            if values.is_empty() {
                "none sent".to_owned()
            } else {
                values.join(", ")
            }
        )));
    };
    Ok(Identity {
        subject: format!("{}#{sub}", config.issuer),
        name: name.to_owned(),
        role,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn config() -> OidcConfig {
        OidcConfig {
            issuer: "https://idp".to_owned(),
            client_id: "palisade".to_owned(),
            client_secret: None,
            scopes: "openid".to_owned(),
            role_claim: "groups".to_owned(),
            roles: vec![
                ("ops".to_owned(), Role::Viewer),
                ("admins".to_owned(), Role::Admin),
            ],
            name_claim: None,
            console_url: None,
        }
    }

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn the_strongest_mapped_role_wins_and_the_name_falls_back_to_sub() {
        let who = identity(
            &config(),
            &claims(serde_json::json!({"sub": "u1", "groups": ["ops", "x", "admins"]})),
        )
        .unwrap();
        assert_eq!(who.role, Role::Admin);
        assert_eq!(who.name, "u1");
        assert_eq!(who.subject, "https://idp#u1");
        let who = identity(
            &config(),
            &claims(serde_json::json!({"sub": "u1", "email": "a@b", "groups": "ops"})),
        )
        .unwrap();
        assert_eq!((who.role, who.name.as_str()), (Role::Viewer, "a@b"));
    }

    #[test]
    fn no_mapped_value_is_refused_naming_the_claim() {
        for groups in [serde_json::json!(["x"]), serde_json::json!(7), Value::Null] {
            let err = identity(
                &config(),
                &claims(serde_json::json!({"sub": "u1", "groups": groups})),
            )
            .unwrap_err();
            assert!(
                matches!(&err, OidcError::NotMapped(m) if m.contains("\"groups\"")),
                "{err}"
            );
        }
    }

    #[test]
    fn a_pending_sign_in_survives_its_cookie_and_garbage_does_not_parse() {
        let pending = Pending::new().unwrap();
        assert_eq!(Pending::from_cookie(&pending.to_cookie()), Some(pending));
        for garbage in ["", "a.b", "a..c", "a.b.c.d", "..."] {
            assert_eq!(Pending::from_cookie(garbage), None, "{garbage}");
        }
    }
}
