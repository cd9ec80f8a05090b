//! Single sign-on to the console with OpenID Connect, driven as a browser would (redirects
//! followed and cookies carried by hand) against a real spawned server:
//! - an OpenID provider inside the test (discovery, key set, authorize, token; ES256 keys from
//!   ring) that checks the PKCE verifier and can be told to misbehave: each misbehaviour
//!   (bad signature, wrong audience, expired token, nonce mismatch, an error sent back) and a
//!   state that is not this browser's is refused with a page and no session; the happy path
//!   signs in with the mapped role and updates it at the next sign-in; a user without a mapped
//!   role, a local user's name, and an unreachable provider are refused;
//! - the real provider process `oidc-provider-mock` (PyPI, RS256), when
//!   `PALISADE_OIDC_TESTS=1` and `PALISADE_OIDC_PROVIDER` names its launcher (`.ci/run` sets
//!   both); says it skipped otherwise.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use palisade_server::Config;
use palisade_server::oidc::OidcConfig;
use palisade_server::role::Role;
use reqwest::StatusCode;
use reqwest::header::{LOCATION, SET_COOKIE};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::console::{PASSWORD, create_user};
use crate::helpers::{Backend, TestServer, now, spawn_server_with, wait_for};

const CLIENT_ID: &str = "palisade-console";
const CLIENT_SECRET: &str = "s3cret with spaces & symbols";

/// What the in-test provider does wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Misbehaviour {
    None,
    /// Signs the ID token with a key that is not in its key set (same key id).
    BadSignature,
    /// Issues the ID token to another client.
    WrongAudience,
    /// Issues an ID token that expired an hour ago.
    Expired,
    /// Puts another nonce in the ID token.
    WrongNonce,
    /// Sends the browser back with `error=access_denied`.
    Deny,
}

/// An authorization request the provider saw.
#[derive(Debug, Clone)]
struct Grant {
    nonce: String,
    challenge: String,
    redirect_uri: String,
}

struct ProviderState {
    base: String,
    key: EcdsaKeyPair,
    impostor: EcdsaKeyPair,
    misbehaviour: Misbehaviour,
    claims: Value,
    grants: HashMap<String, Grant>,
    next_code: u32,
}

/// The provider inside the test, on its own port.
struct Provider {
    base: String,
    state: Arc<Mutex<ProviderState>>,
}

fn p256_key() -> EcdsaKeyPair {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap()
}

impl Provider {
    async fn start() -> Provider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(ProviderState {
            base: base.clone(),
            key: p256_key(),
            impostor: p256_key(),
            misbehaviour: Misbehaviour::None,
            claims: json!({"sub": "u-1001", "preferred_username": "carol", "groups": ["staff", "palisade-editors"]}),
            grants: HashMap::new(),
            next_code: 0,
        }));
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Provider { base, state }
    }

    fn misbehave(&self, misbehaviour: Misbehaviour) {
        self.state.lock().unwrap().misbehaviour = misbehaviour;
    }

    fn claims(&self, claims: Value) {
        self.state.lock().unwrap().claims = claims;
    }
}

type Shared = State<Arc<Mutex<ProviderState>>>;

async fn discovery(State(state): Shared) -> Json<Value> {
    let base = state.lock().unwrap().base.clone();
    Json(json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "jwks_uri": format!("{base}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    }))
}

async fn jwks(State(state): Shared) -> Json<Value> {
    let state = state.lock().unwrap();
    let point = state.key.public_key().as_ref();
    Json(json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "alg": "ES256",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
    }]}))
}

async fn authorize(State(state): Shared, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut state = state.lock().unwrap();
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q["scope"].split(' ').any(|s| s == "openid"), "{q:?}");
    let redirect_uri = q["redirect_uri"].clone();
    let back = |pairs: &[(&str, &str)]| {
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        Redirect::to(&format!("{redirect_uri}?{query}")).into_response()
    };
    if state.misbehaviour == Misbehaviour::Deny {
        return back(&[
            ("error", "access_denied"),
            ("error_description", "the user said no"),
            ("state", &q["state"]),
        ]);
    }
    state.next_code += 1;
    let code = format!("code-{}", state.next_code);
    state.grants.insert(
        code.clone(),
        Grant {
            nonce: q["nonce"].clone(),
            challenge: q["code_challenge"].clone(),
            redirect_uri: redirect_uri.clone(),
        },
    );
    back(&[("code", &code), ("state", &q["state"])])
}

async fn token(
    State(state): Shared,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut state = state.lock().unwrap();
    let refuse =
        |error: &str| (StatusCode::BAD_REQUEST, Json(json!({"error": error}))).into_response();
    // client_secret_basic: both parts form-encoded, then base64.
    let encode = |s: &str| -> String { form_urlencoded::byte_serialize(s.as_bytes()).collect() };
    let expected = format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", encode(CLIENT_ID), encode(CLIENT_SECRET)))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return refuse("invalid_client");
    }
    let Some(grant) = state.grants.remove(&form["code"]) else {
        return refuse("invalid_grant");
    };
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(form["code_verifier"].as_bytes()));
    if form["grant_type"] != "authorization_code"
        || challenge != grant.challenge
        || form["redirect_uri"] != grant.redirect_uri
    {
        return refuse("invalid_grant");
    }
    let issued = now().as_second();
    let mut claims = state.claims.clone();
    let extra = json!({
        "iss": state.base,
        "aud": match state.misbehaviour {
            Misbehaviour::WrongAudience => json!(["someone-else"]),
            _ => json!([CLIENT_ID, "another-api"]),
        },
        "iat": issued,
        "exp": match state.misbehaviour {
            Misbehaviour::Expired => issued - 3600,
            _ => issued + 300,
        },
        "nonce": match state.misbehaviour {
            Misbehaviour::WrongNonce => "not-the-nonce".to_owned(),
            _ => grant.nonce,
        },
    });
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"JWT","kid":"k1"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signed = format!("{header}.{payload}");
    let key = match state.misbehaviour {
        Misbehaviour::BadSignature => &state.impostor,
        _ => &state.key,
    };
    let signature = key.sign(&SystemRandom::new(), signed.as_bytes()).unwrap();
    let id_token = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()));
    Json(json!({"access_token": "at", "token_type": "Bearer", "id_token": id_token}))
        .into_response()
}

/// The `[oidc]` settings the tests use against a provider at `issuer`.
fn settings(issuer: &str) -> OidcConfig {
    OidcConfig {
        issuer: issuer.to_owned(),
        client_id: CLIENT_ID.to_owned(),
        client_secret: Some(palisade_server::credentials::Secret::new(
            CLIENT_SECRET.to_owned(),
        )),
        scopes: "openid profile email".to_owned(),
        role_claim: "groups".to_owned(),
        roles: vec![
            ("palisade-admins".to_owned(), Role::Admin),
            ("palisade-editors".to_owned(), Role::Editor),
            ("palisade-viewers".to_owned(), Role::Viewer),
        ],
        name_claim: None,
        console_url: None,
    }
}

/// A browser: no redirects followed, every site's cookies in one jar (the provider sets none).
struct Browser {
    client: reqwest::Client,
    cookies: HashMap<String, String>,
}

struct Page {
    status: StatusCode,
    location: Option<String>,
    body: String,
}

impl Browser {
    fn new() -> Browser {
        Browser {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: HashMap::new(),
        }
    }

    async fn get(&mut self, url: &str) -> Page {
        let request = self.client.get(url);
        self.send(request).await
    }

    async fn post(&mut self, url: &str, form: &[(&str, &str)]) -> Page {
        let request = self.client.post(url).form(form);
        self.send(request).await
    }

    async fn send(&mut self, mut request: reqwest::RequestBuilder) -> Page {
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            request = request.header("cookie", jar.join("; "));
        }
        let response = request.send().await.unwrap();
        for set in response.headers().get_all(SET_COOKIE) {
            let set = set.to_str().unwrap();
            assert!(
                set.contains("HttpOnly") && set.contains("SameSite=Lax"),
                "{set}"
            );
            let (name, value) = set.split(';').next().unwrap().split_once('=').unwrap();
            if value.is_empty() || set.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        Page {
            status: response.status(),
            location: response
                .headers()
                .get(LOCATION)
                .map(|v| v.to_str().unwrap().to_owned()),
            body: response.text().await.unwrap(),
        }
    }

    /// Clicks "Sign in with SSO" on the sign-in page; the provider's authorization URL.
    async fn start_sso(&mut self, s: &TestServer) -> String {
        let login = self.get(&format!("{}/login", s.base)).await;
        assert!(
            login.body.contains(r#"href="/login/sso""#),
            "{}",
            login.body
        );
        assert!(login.body.contains("Sign in with SSO"));
        let start = self.get(&format!("{}/login/sso", s.base)).await;
        assert_eq!(start.status, StatusCode::SEE_OTHER, "{}", start.body);
        assert!(self.cookies.contains_key("palisade_sso"));
        start.location.unwrap()
    }

    /// Follows the provider's redirect back to the console; the callback's answer.
    async fn come_back(&mut self, redirect: &Page) -> Page {
        assert!(redirect.status.is_redirection(), "{}", redirect.body);
        let callback = redirect.location.clone().unwrap();
        self.get(&callback).await
    }
}

/// The whole flow against the in-test provider; the callback's answer.
async fn sign_in(s: &TestServer) -> (Browser, Page) {
    let mut browser = Browser::new();
    let authorize = browser.start_sso(s).await;
    let redirect = browser.get(&authorize).await;
    let answer = browser.come_back(&redirect).await;
    (browser, answer)
}

/// The answer is a refusal page with `status` saying `words`, and no session exists.
async fn assert_refused(
    s: &TestServer,
    browser: &mut Browser,
    answer: &Page,
    status: StatusCode,
    words: &str,
) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert!(answer.body.contains(words), "{words:?} in {}", answer.body);
    assert!(!browser.cookies.contains_key("palisade_session"));
    assert!(
        !browser.cookies.contains_key("palisade_sso"),
        "the pending sign-in is used once"
    );
    let console = browser.get(&format!("{}/console", s.base)).await;
    assert_eq!(console.location.as_deref(), Some("/login"));
}

async fn setup(backend: Backend) -> Option<(Provider, TestServer)> {
    let provider = Provider::start().await;
    let issuer = provider.base.clone();
    let s = spawn_server_with(backend, move |c: &mut Config| {
        c.oidc = Some(settings(&issuer))
    })
    .await?;
    Some((provider, s))
}

async fn signs_in_with_the_mapped_role(backend: Backend) {
    let Some((provider, s)) = setup(backend).await else {
        return;
    };
    let (mut browser, answer) = sign_in(&s).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    assert_eq!(answer.location.as_deref(), Some("/console"));
    assert!(browser.cookies.contains_key("palisade_session"));
    let console = browser.get(&format!("{}/console", s.base)).await;
    assert_eq!(console.status, StatusCode::OK);
    assert!(console.body.contains("carol (editor)"), "{}", console.body);

    // The user exists, provisioned with the role, and has no password sign-in.
    let users = s
        .get("/api/v1/users", Some(crate::helpers::ADMIN_TOKEN))
        .await;
    let carol = users
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "carol")
        .unwrap();
    assert_eq!(carol["role"], "editor");
    let password = browser
        .post(
            &format!("{}/login", s.base),
            &[("name", "carol"), ("password", "")],
        )
        .await;
    assert_eq!(password.status, StatusCode::UNAUTHORIZED);

    // The role follows the provider at the next sign-in: the strongest mapped group wins.
    provider.claims(json!({"sub": "u-1001", "preferred_username": "carol", "groups": ["palisade-viewers", "palisade-admins"]}));
    let (mut browser, answer) = sign_in(&s).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let console = browser.get(&format!("{}/console", s.base)).await;
    assert!(console.body.contains("carol (admin)"), "{}", console.body);
    let audit = s
        .get("/api/v1/audit", Some(crate::helpers::ADMIN_TOKEN))
        .await;
    let actions: Vec<String> = audit.text.lines().map(str::to_owned).collect();
    assert!(
        audit.text.contains("user:carol role:editor sso"),
        "{actions:?}"
    );
    assert!(audit.text.contains("user:carol role:admin"), "{actions:?}");
    assert_eq!(audit.body["verified"], true);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signs_in_with_the_mapped_role_sqlite() {
    signs_in_with_the_mapped_role(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signs_in_with_the_mapped_role_postgres() {
    signs_in_with_the_mapped_role(Backend::Postgres).await;
}

/// A misbehaving provider's sign-in is refused with `status` and a page that says `words`.
async fn refused_when(misbehaviour: Misbehaviour, status: StatusCode, words: &str) {
    let (provider, s) = setup(Backend::Sqlite).await.unwrap();
    provider.misbehave(misbehaviour);
    let (mut browser, answer) = sign_in(&s).await;
    assert_refused(&s, &mut browser, &answer, status, words).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_signature_is_refused() {
    refused_when(
        Misbehaviour::BadSignature,
        StatusCode::UNAUTHORIZED,
        "signature does not verify",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_another_audience_is_refused() {
    refused_when(
        Misbehaviour::WrongAudience,
        StatusCode::UNAUTHORIZED,
        "does not include this client",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refused() {
    refused_when(
        Misbehaviour::Expired,
        StatusCode::UNAUTHORIZED,
        "it expired at",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_mismatch_is_refused() {
    refused_when(
        Misbehaviour::WrongNonce,
        StatusCode::UNAUTHORIZED,
        "nonce is not the one of this sign-in",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_from_the_provider_is_shown() {
    refused_when(
        Misbehaviour::Deny,
        StatusCode::UNAUTHORIZED,
        "access_denied: the user said no",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_from_another_browser_is_refused() {
    let (_provider, s) = setup(Backend::Sqlite).await.unwrap();
    // The victim's browser started a sign-in; the attacker's callback (its own code and
    // state) arrives there instead.
    let mut attacker = Browser::new();
    let authorize = attacker.start_sso(&s).await;
    let attackers_redirect = attacker.get(&authorize).await;
    let mut victim = Browser::new();
    victim.start_sso(&s).await;
    let answer = victim.come_back(&attackers_redirect).await;
    assert_refused(
        &s,
        &mut victim,
        &answer,
        StatusCode::BAD_REQUEST,
        "state mismatch",
    )
    .await;
    // Without any pending sign-in in the browser, too.
    let mut stranger = Browser::new();
    let answer = stranger.come_back(&attackers_redirect).await;
    assert_refused(
        &s,
        &mut stranger,
        &answer,
        StatusCode::BAD_REQUEST,
        "state mismatch",
    )
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_a_mapped_role_is_refused() {
    let (provider, s) = setup(Backend::Sqlite).await.unwrap();
    provider.claims(json!({"sub": "u-7", "email": "dave@example.com", "groups": ["staff"]}));
    let (mut browser, answer) = sign_in(&s).await;
    assert_refused(
        &s,
        &mut browser,
        &answer,
        StatusCode::FORBIDDEN,
        "claim (staff) is mapped to",
    )
    .await;
    let users = s
        .get("/api/v1/users", Some(crate::helpers::ADMIN_TOKEN))
        .await;
    assert!(!users.text.contains("dave@example.com"), "{}", users.text);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_user_is_not_taken_over() {
    let (provider, s) = setup(Backend::Sqlite).await.unwrap();
    create_user(&s, "erin", "viewer").await;
    provider
        .claims(json!({"sub": "u-9", "preferred_username": "erin", "groups": ["palisade-admins"]}));
    let (mut browser, answer) = sign_in(&s).await;
    assert_refused(
        &s,
        &mut browser,
        &answer,
        StatusCode::CONFLICT,
        "this identity did not create",
    )
    .await;
    // erin still signs in with her password, as a viewer.
    let page = browser
        .post(
            &format!("{}/login", s.base),
            &[("name", "erin"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(page.location.as_deref(), Some("/login/second-factor"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_provider_is_a_bad_gateway() {
    let closed: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let issuer = format!("http://{closed}");
    let s = spawn_server_with(Backend::Sqlite, move |c: &mut Config| {
        c.oidc = Some(settings(&issuer))
    })
    .await
    .unwrap();
    let mut browser = Browser::new();
    let answer = browser.get(&format!("{}/login/sso", s.base)).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{}", answer.body);
    assert!(answer.body.contains("cannot be reached"), "{}", answer.body);
    assert!(browser.cookies.is_empty());
    // Without single sign-on configured there is no button and no route.
    let plain = crate::helpers::spawn_server(Backend::Sqlite).await.unwrap();
    let login = browser.get(&format!("{}/login", plain.base)).await;
    assert!(!login.body.contains("/login/sso"));
    let sso = browser.get(&format!("{}/login/sso", plain.base)).await;
    assert_eq!(sso.status, StatusCode::NOT_FOUND);
    plain.stop().await;
    s.stop().await;
}

/// The real provider process (`oidc-provider-mock` from PyPI), stopped when dropped.
pub struct RealProvider {
    child: Child,
    pub issuer: String,
}

impl RealProvider {
    /// Starts the provider with one user, or says why the test skips.
    pub async fn start(claims: &Value) -> Option<RealProvider> {
        let (Ok(_), Ok(launcher)) = (
            std::env::var("PALISADE_OIDC_TESTS"),
            std::env::var("PALISADE_OIDC_PROVIDER"),
        ) else {
            eprintln!(
                "skipped: set PALISADE_OIDC_TESTS=1 and PALISADE_OIDC_PROVIDER to the \
                 oidc-provider-mock launcher (.ci/run does) to run against the real provider"
            );
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&launcher)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--user-claims")
            .arg(claims.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{launcher}: {e}"));
        let issuer = format!("http://127.0.0.1:{port}");
        let provider = RealProvider { child, issuer };
        let discovery = format!("{}/.well-known/openid-configuration", provider.issuer);
        wait_for("oidc-provider-mock to answer", || async {
            reqwest::get(&discovery)
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        Some(provider)
    }

    pub fn settings(&self) -> OidcConfig {
        settings(&self.issuer)
    }
}

impl Drop for RealProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The user the real provider knows.
pub fn real_user() -> Value {
    json!({"sub": "frank", "preferred_username": "frank", "email": "frank@example.com", "groups": ["palisade-editors"]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signs_in_through_the_real_provider() {
    let Some(provider) = RealProvider::start(&real_user()).await else {
        return;
    };
    let settings = provider.settings();
    let s = spawn_server_with(Backend::Sqlite, move |c: &mut Config| {
        c.oidc = Some(settings)
    })
    .await
    .unwrap();
    let mut browser = Browser::new();
    let authorize = browser.start_sso(&s).await;
    assert!(authorize.starts_with(&provider.issuer), "{authorize}");
    // The provider's authorization form; submitted as the form's button does (same URL).
    let form = browser.get(&authorize).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    assert!(form.body.contains(r#"name="sub""#), "{}", form.body);
    let redirect = browser.post(&authorize, &[("sub", "frank")]).await;
    let answer = browser.come_back(&redirect).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    assert_eq!(answer.location.as_deref(), Some("/console"));
    let console = browser.get(&format!("{}/console", s.base)).await;
    assert_eq!(console.status, StatusCode::OK);
    assert!(console.body.contains("frank (editor)"), "{}", console.body);
    s.stop().await;
}
