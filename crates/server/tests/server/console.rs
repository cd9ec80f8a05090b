//! The web console over HTTP, as a browser without script sees it: signing in with a password
//! and a TOTP code (enrolled at the first sign-in), lockout, replayed codes, CSRF, the security
//! headers, and every page walked with every role.

use palisade_server::totp;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, LOCATION, SET_COOKIE};
use serde_json::json;

use crate::helpers::{ADMIN_TOKEN, Backend, TestServer, now, spawn_server};

on_both_backends!(
    a_user_signs_in_with_password_and_totp,
    failed_attempts_lock_the_user_out,
    state_changes_need_the_csrf_token,
    every_page_with_every_role,
);

/// The password of every user the console tests create.
pub const PASSWORD: &str = "correct horse battery";

/// A browser's view: no redirects followed, cookies carried by hand.
pub struct Browser {
    base: String,
    client: reqwest::Client,
    cookie: Option<String>,
}

pub struct Page {
    pub status: StatusCode,
    pub location: Option<String>,
    pub headers: reqwest::header::HeaderMap,
    csp: Option<String>,
    pub body: String,
}

impl Browser {
    pub fn new(s: &TestServer) -> Browser {
        Browser {
            base: s.base.clone(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookie: None,
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", format!("palisade_session={cookie}"));
        }
        self.page(request.send().await.unwrap()).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let mut request = self.client.post(format!("{}{path}", self.base)).form(form);
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", format!("palisade_session={cookie}"));
        }
        self.page(request.send().await.unwrap()).await
    }

    /// The session cookie's value, once signed in.
    pub fn cookie(&self) -> Option<String> {
        self.cookie.clone()
    }

    /// Posts a `multipart/form-data` body: `fields` as text, then one file.
    pub async fn post_file(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        file: (&str, &str, &str),
    ) -> Page {
        let boundary = "palisade-test-boundary";
        let mut body = String::new();
        for (name, value) in fields {
            body += &format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            );
        }
        let (name, file_name, content) = file;
        body += &format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n{content}\r\n--{boundary}--\r\n"
        );
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body);
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", format!("palisade_session={cookie}"));
        }
        self.page(request.send().await.unwrap()).await
    }

    async fn page(&mut self, response: reqwest::Response) -> Page {
        let header = |name| {
            response
                .headers()
                .get(name)
                .map(|v: &reqwest::header::HeaderValue| v.to_str().unwrap().to_owned())
        };
        if let Some(set) = header(SET_COOKIE) {
            let value = set
                .strip_prefix("palisade_session=")
                .and_then(|rest| rest.split(';').next())
                .unwrap();
            assert!(
                set.contains("HttpOnly") && set.contains("SameSite=Lax"),
                "{set}"
            );
            self.cookie = (!value.is_empty()).then(|| value.to_owned());
        }
        Page {
            status: response.status(),
            headers: response.headers().clone(),
            location: header(LOCATION),
            csp: header(CONTENT_SECURITY_POLICY),
            body: response.text().await.unwrap(),
        }
    }
}

/// The text between `before` and the next `<` (or `"` for an attribute) in `body`.
pub fn between(body: &str, before: &str) -> String {
    let rest = &body[body
        .find(before)
        .unwrap_or_else(|| panic!("{before} in {body}"))
        + before.len()..];
    rest.split(['<', '"']).next().unwrap().to_owned()
}

/// Creates a console user through the API.
pub async fn create_user(s: &TestServer, name: &str, role: &str) {
    let r = s
        .post(
            "/api/v1/users",
            Some(ADMIN_TOKEN),
            &json!({"name": name, "role": role, "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

/// Signs `name` in, enrolling a second factor the first time; returns the browser and the
/// TOTP secret.
pub async fn sign_in(s: &TestServer, name: &str) -> (Browser, String) {
    let mut browser = Browser::new(s);
    let page = browser
        .post("/login", &[("name", name), ("password", PASSWORD)])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(page.location.as_deref(), Some("/login/second-factor"));
    let page = browser.get("/login/second-factor").await;
    assert!(
        page.body.contains("Set up your authenticator"),
        "{}",
        page.body
    );
    let secret = between(&page.body, "id=\"totp-secret\">");
    let csrf = between(&page.body, "name=\"csrf\" value=\"");
    let code = totp::code(&secret, totp::step_at(now())).unwrap();
    let page = browser
        .post("/login/second-factor", &[("code", &code), ("csrf", &csrf)])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(page.location.as_deref(), Some("/console"));
    (browser, secret)
}

async fn a_user_signs_in_with_password_and_totp(s: &TestServer) {
    create_user(s, "ann", "viewer").await;
    let mut stranger = Browser::new(s);
    let page = stranger.get("/console").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location.as_deref(), Some("/login"));
    let page = stranger.get("/login").await;
    assert_eq!(page.status, StatusCode::OK);
    let csp = page.csp.unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(!page.body.contains("<script>"), "no inline script");

    let wrong = stranger
        .post(
            "/login",
            &[("name", "ann"), ("password", "not the password")],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("not right"), "{}", wrong.body);
    let unknown = stranger
        .post("/login", &[("name", "nobody"), ("password", PASSWORD)])
        .await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);

    // The password alone opens nothing.
    let mut half = Browser::new(s);
    half.post("/login", &[("name", "ann"), ("password", PASSWORD)])
        .await;
    assert_eq!(
        half.get("/console").await.location.as_deref(),
        Some("/login")
    );

    let (mut ann, secret) = sign_in(s, "ann").await;
    let page = ann.get("/console").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("ann (viewer)"), "{}", page.body);
    assert!(page.body.contains("agents online"), "{}", page.body);

    // Signing out ends the session on the server, not only in the browser.
    let old = ann.cookie.clone();
    let csrf = between(&page.body, "name=\"csrf\" value=\"");
    let out = ann.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.location.as_deref(), Some("/login"));
    ann.cookie = old;
    assert_eq!(
        ann.get("/console").await.location.as_deref(),
        Some("/login")
    );

    // Enrolled now: the next sign-in asks for a code, and the code just used is refused.
    let mut again = Browser::new(s);
    again
        .post("/login", &[("name", "ann"), ("password", PASSWORD)])
        .await;
    let page = again.get("/login/second-factor").await;
    assert!(page.body.contains("Enter your code"), "{}", page.body);
    assert!(
        !page.body.contains(&secret),
        "the secret is shown only while enrolling"
    );
    let csrf = between(&page.body, "name=\"csrf\" value=\"");
    let used = s
        .store()
        .user_by_name("ann")
        .await
        .unwrap()
        .unwrap()
        .totp_last_step
        .unwrap();
    let replayed = totp::code(&secret, used).unwrap();
    let page = again
        .post(
            "/login/second-factor",
            &[("code", &replayed), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(page.body.contains("used already"), "{}", page.body);
    let next = totp::code(&secret, used + 1).unwrap();
    let page = again
        .post("/login/second-factor", &[("code", &next), ("csrf", &csrf)])
        .await;
    assert_eq!(page.location.as_deref(), Some("/console"), "{}", page.body);
}

async fn failed_attempts_lock_the_user_out(s: &TestServer) {
    create_user(s, "bob", "analyst").await;
    let mut browser = Browser::new(s);
    for attempt in 1..=5 {
        let page = browser
            .post(
                "/login",
                &[("name", "bob"), ("password", "guess guess guess")],
            )
            .await;
        let expected = if attempt < 5 {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(page.status, expected, "attempt {attempt}: {}", page.body);
    }
    // Locked out: even the right password is refused for now.
    let page = browser
        .post("/login", &[("name", "bob"), ("password", PASSWORD)])
        .await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(page.body.contains("try again after"), "{}", page.body);
}

async fn state_changes_need_the_csrf_token(s: &TestServer) {
    create_user(s, "root2", "admin").await;
    let (mut admin, _) = sign_in(s, "root2").await;
    let form = |csrf: &'static str| {
        [
            ("csrf", csrf),
            ("name", "carol"),
            ("role", "viewer"),
            ("password", PASSWORD),
        ]
    };
    let forged = admin.post("/console/users", &form("forged")).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(s.store().user_by_name("carol").await.unwrap().is_none());
    let page = admin.get("/console/users").await;
    let csrf = between(&page.body, "name=\"csrf\" value=\"");
    let created = admin
        .post(
            "/console/users",
            &[
                ("csrf", csrf.as_str()),
                ("name", "carol"),
                ("role", "viewer"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let page = admin.get("/console/users").await;
    assert!(
        page.body.contains(">carol</a></td><td>viewer</td>"),
        "{}",
        page.body
    );
}

/// Every console page, and what each role gets: 200, or 403 with the reason.
async fn every_page_with_every_role(s: &TestServer) {
    // Something on every page: a policy, an audit trail.
    let created = s
        .create_policy(
            ADMIN_TOKEN,
            "workstation",
            "yaml",
            "version: 1\nname: workstation\ndefault_action: allow\n",
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.body["policy_id"].as_i64().unwrap();
    let second = s
        .create_policy(
            ADMIN_TOKEN,
            "workstation",
            "yaml",
            "version: 1\nname: workstation\ndefault_action: block\n",
        )
        .await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.text);
    let policy = |page: &str| format!("/console/policies/{id}{page}");
    let (detail, first, diff) = (policy(""), policy("?version=1"), policy("/diff"));
    let (export, edit) = (policy("/export"), policy("/edit"));
    let agent = crate::gateway::enroll(s).await.identity.agent_id;
    let endpoint = format!("/console/endpoints/{agent}");
    let (alert_id, _) = crate::alerts::raise(s, "beacon:agent-1:x", "high", &[]).await;
    let alert = format!("/console/alerts/{alert_id}");
    let users = s.get("/api/v1/users", Some(ADMIN_TOKEN)).await;
    let first_user = users.body[0]["id"].as_i64().unwrap();
    let user = format!("/console/users/{first_user}");
    let ok = StatusCode::OK;
    let no = StatusCode::FORBIDDEN;
    // (page, admin, editor, analyst, viewer, auditor)
    let matrix = [
        ("/console", [ok, ok, ok, ok, ok]),
        ("/console/endpoints", [ok, ok, ok, ok, ok]),
        (endpoint.as_str(), [ok, ok, ok, ok, ok]),
        ("/console/events", [ok, ok, ok, ok, ok]),
        (
            "/console/events?domain=!*.example.com",
            [ok, ok, ok, ok, ok],
        ),
        ("/console/events.csv", [ok, ok, ok, ok, ok]),
        ("/console/policies", [ok, ok, ok, ok, ok]),
        ("/console/policies/new", [ok, ok, no, no, no]),
        (detail.as_str(), [ok, ok, ok, ok, ok]),
        (first.as_str(), [ok, ok, ok, ok, ok]),
        (diff.as_str(), [ok, ok, ok, ok, ok]),
        (export.as_str(), [ok, ok, ok, ok, ok]),
        (edit.as_str(), [ok, ok, no, no, no]),
        ("/console/alerts", [ok, ok, ok, ok, ok]),
        (
            "/console/alerts?status=open&severity=high",
            [ok, ok, ok, ok, ok],
        ),
        (alert.as_str(), [ok, ok, ok, ok, ok]),
        ("/console/enrollment", [ok, ok, ok, ok, ok]),
        ("/console/tokens", [ok, no, no, no, no]),
        ("/console/settings", [ok, no, no, no, ok]),
        ("/console/audit", [ok, no, no, no, ok]),
        ("/console/audit?action=policy.&from=", [ok, no, no, no, ok]),
        ("/console/users", [ok, no, no, no, ok]),
        (user.as_str(), [ok, no, no, no, ok]),
    ];
    let roles = ["admin", "editor", "analyst", "viewer", "auditor"];
    for (i, role) in roles.iter().enumerate() {
        let name = format!("user-{role}");
        create_user(s, &name, role).await;
        let (mut browser, _) = sign_in(s, &name).await;
        for (path, expected) in &matrix {
            let page = browser.get(path).await;
            assert_eq!(page.status, expected[i], "{role} {path}: {}", page.body);
            if expected[i] == no {
                assert!(page.body.contains("your role may not"), "{}", page.body);
            }
        }
        let policies = browser.get("/console/policies").await;
        assert!(policies.body.contains("workstation"), "{}", policies.body);
        // Only admins create users.
        let form_csrf = browser.get("/console").await;
        let csrf = between(&form_csrf.body, "name=\"csrf\" value=\"");
        let created = browser
            .post(
                "/console/users",
                &[
                    ("csrf", csrf.as_str()),
                    ("name", &format!("made-by-{role}")),
                    ("role", "viewer"),
                    ("password", PASSWORD),
                ],
            )
            .await;
        let expected = if *role == "admin" {
            StatusCode::SEE_OTHER
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(created.status, expected, "{role}: {}", created.body);
    }
}
