//! The console in a real headless Chromium, driven over WebDriver (chromedriver) the way a
//! person uses it: signing in with a password and a TOTP code, every page, the connection log
//! following a new connection without a reload, a viewer refused what is not theirs. Runs when
//! `PALISADE_BROWSER_TESTS=1` (CI installs Debian's `chromium` and `chromium-driver`); says it
//! skipped otherwise. A screenshot of every page goes to `PALISADE_SCREENSHOTS` (default
//! `target/console-screenshots`); docs/console.md shows them.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use palisade_server::totp;
use reqwest::StatusCode;
use serde_json::json;

use crate::console::{PASSWORD, create_user};
use crate::events::{event, ingest};
use crate::helpers::{ADMIN_TOKEN, Backend, TestServer, now, spawn_server, wait_for};

/// chromedriver on a port of its own, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    async fn start() -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver)");
        let url = format!("http://127.0.0.1:{port}");
        let status = format!("{url}/status");
        wait_for("chromedriver to answer", || async {
            reqwest::get(&status).await.is_ok()
        })
        .await;
        Driver { child, url }
    }

    async fn browser(&self) -> Client {
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900"],
            }
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .unwrap()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn screenshots() -> PathBuf {
    let dir = std::env::var_os("PALISADE_SCREENSHOTS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/console-screenshots"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shoot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

async fn text_of(browser: &Client, id: &str) -> String {
    browser
        .find(Locator::Id(id))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Whether the element `id` is on the page and its text contains `text`; false while the page
/// is changing (a navigation, a table being replaced).
async fn shows(browser: &Client, id: &str, text: &str) -> bool {
    match browser.find(Locator::Id(id)).await {
        Ok(element) => element.text().await.is_ok_and(|t| t.contains(text)),
        Err(_) => false,
    }
}

async fn fill(browser: &Client, id: &str, value: &str) {
    let field = browser.find(Locator::Id(id)).await.unwrap();
    field.send_keys(value).await.unwrap();
}

async fn click(browser: &Client, id: &str) {
    browser
        .find(Locator::Id(id))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Waits for the navigation a click started to arrive at `path`.
async fn wait_for_page(browser: &Client, path: &str) {
    wait_for(&format!("the browser to arrive at {path}"), || async {
        browser
            .current_url()
            .await
            .is_ok_and(|url| url.path() == path)
    })
    .await;
}

/// Signs `name` in through the pages, enrolling the authenticator; with `shots`, saves the
/// sign-in pages.
async fn sign_in(s: &TestServer, browser: &Client, name: &str, shots: bool) {
    browser.goto(&format!("{}/login", s.base)).await.unwrap();
    if shots {
        shoot(browser, "01-sign-in").await;
    }
    fill(browser, "name", name).await;
    fill(browser, "password", PASSWORD).await;
    click(browser, "sign-in").await;
    wait_for_page(browser, "/login/second-factor").await;
    let secret = text_of(browser, "totp-secret").await;
    if shots {
        shoot(browser, "02-second-factor").await;
    }
    let code = totp::code(&secret, totp::step_at(now())).unwrap();
    fill(browser, "code", &code).await;
    click(browser, "verify").await;
    wait_for_page(browser, "/console").await;
}

/// Replaces the editor's document with `source`.
async fn type_document(browser: &Client, source: &str) {
    let field = browser.find(Locator::Id("source")).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(source).await.unwrap();
}

/// Writes a policy in the editor (a mistake first), validates, dry-runs, saves and assigns
/// it to the default group; returns the policy page's path.
async fn edit_validate_and_assign_a_policy(s: &TestServer, browser: &Client) -> String {
    browser
        .goto(&format!("{}/console/policies", s.base))
        .await
        .unwrap();
    click(browser, "new-policy").await;
    wait_for_page(browser, "/console/policies/new").await;
    fill(browser, "policy-name", "laptops").await;
    type_document(
        browser,
        "version: 1\nname: laptops\ndefault_action: allow\nrules:\n  - id: no-telnet\n    action: deny\n    match: {dst_port: 23}\n",
    )
    .await;
    click(browser, "validate").await;
    wait_for("the findings", || async {
        browser.find(Locator::Id("invalid")).await.is_ok()
    })
    .await;
    let findings = text_of(browser, "findings").await;
    assert!(findings.contains("laptops.yaml:6:"), "{findings}");
    assert!(findings.contains("rules[0].action"), "{findings}");
    shoot(browser, "12-policy-invalid").await;

    type_document(
        browser,
        "version: 1\nname: laptops\ndefault_action: allow\nrules:\n  - id: no-telnet\n    action: block\n    match: {dst_port: 23}\n",
    )
    .await;
    click(browser, "validate").await;
    wait_for("the document to validate", || async {
        browser.find(Locator::Id("valid")).await.is_ok()
    })
    .await;
    click(browser, "dry-run-button").await;
    wait_for("the dry run", || async {
        browser.find(Locator::Id("dry-run-summary")).await.is_ok()
    })
    .await;
    let summary = text_of(browser, "dry-run-summary").await;
    assert!(
        summary.starts_with("Would have blocked 1 connection of 1 app"),
        "{summary}"
    );
    shoot(browser, "13-policy-dry-run").await;

    click(browser, "save").await;
    wait_for("the policy's page", || async {
        browser.find(Locator::Id("versions")).await.is_ok()
    })
    .await;
    let path = browser.current_url().await.unwrap().path().to_owned();
    click(browser, "assign-button").await;
    wait_for("the assignment", || async {
        shows(browser, "assigned", "default").await
    })
    .await;
    shoot(browser, "14-policy").await;

    click(browser, "edit").await;
    wait_for_page(browser, &format!("{path}/edit")).await;
    type_document(
        browser,
        "version: 1\nname: laptops\ndefault_action: allow\nrules:\n  - id: no-telnet\n    action: block\n    match: {dst_port: 23}\n  - id: no-ftp\n    action: block\n    match: {dst_port: 21}\n",
    )
    .await;
    click(browser, "save").await;
    wait_for_page(browser, &path).await;
    browser
        .goto(&format!("{}{path}/diff", s.base))
        .await
        .unwrap();
    let diff = text_of(browser, "diff").await;
    assert!(diff.contains("+  - id: no-ftp"), "{diff}");
    shoot(browser, "15-policy-diff").await;
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    if std::env::var("PALISADE_BROWSER_TESTS").as_deref() != Ok("1") {
        println!("skipped: set PALISADE_BROWSER_TESTS=1 (needs chromium and chromedriver)");
        return;
    }
    let s = spawn_server(Backend::Sqlite).await.unwrap();
    let created = s
        .create_policy(
            ADMIN_TOKEN,
            "workstation",
            "yaml",
            "version: 1\nname: workstation\ndefault_action: allow\nrules:\n  - id: no-telnet\n    action: block\n    match:\n      dst_port: 23\n",
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let at = now();
    let seen = [
        event(
            1,
            at,
            json!({"connection": {"app_name": "curl", "app_path": "/usr/bin/curl", "domain": "example.com", "dst_ip": "93.184.215.14", "dst_port": 443, "protocol": "tcp", "direction": "outbound", "user": "ann"}}),
        ),
        event(
            2,
            at,
            json!({"connection": {"app_name": "telnet", "app_path": "/usr/bin/telnet", "dst_ip": "192.0.2.23", "dst_port": 23, "protocol": "tcp", "direction": "outbound", "user": "ann"}, "action": "block", "verdict": "block", "rule": "no-telnet"}),
        ),
    ];
    let agent = crate::gateway::enroll(&s).await.identity.agent_id;
    ingest(&s, &agent, 1, &seen).await;
    let (alert, _) = crate::alerts::raise(&s, "beacon:agent-1:cdn-1", "high", &["agent-1/7"]).await;
    create_user(&s, "alice", "admin").await;
    create_user(&s, "victor", "viewer").await;
    let users = s.get("/api/v1/users", Some(ADMIN_TOKEN)).await;
    let victor = users
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "victor")
        .unwrap()["id"]
        .as_i64()
        .unwrap();

    let driver = Driver::start().await;
    let browser = driver.browser().await;
    sign_in(&s, &browser, "alice", true).await;
    assert_eq!(text_of(&browser, "connections").await, "2");
    assert_eq!(text_of(&browser, "blocks").await, "1");
    shoot(&browser, "03-dashboard").await;
    for (page, shot) in [
        ("endpoints".to_owned(), "04-endpoints"),
        ("events".to_owned(), "05-connections"),
        ("policies".to_owned(), "06-policies"),
        ("alerts".to_owned(), "07-alerts"),
        ("users".to_owned(), "08-users"),
        ("audit".to_owned(), "09-audit-log"),
        (format!("endpoints/{agent}"), "17-endpoint"),
        (format!("alerts/{alert}"), "18-alert"),
        ("enrollment".to_owned(), "19-enrollment"),
        ("tokens".to_owned(), "20-api-tokens"),
        ("settings".to_owned(), "21-settings"),
        (format!("users/{victor}"), "22-user"),
        ("audit?action=user.".to_owned(), "23-audit-filtered"),
    ] {
        browser
            .goto(&format!("{}/console/{page}", s.base))
            .await
            .unwrap();
        let title = browser.title().await.unwrap();
        assert!(!title.starts_with("4"), "{page}: {title}");
        shoot(&browser, shot).await;
    }
    browser
        .goto(&format!("{}/console/audit", s.base))
        .await
        .unwrap();
    assert!(text_of(&browser, "chain").await.contains("verifies"));

    // The log, live: a new connection appears without the page being loaded again.
    browser
        .goto(&format!("{}/console/events", s.base))
        .await
        .unwrap();
    browser
        .execute(
            "window.palisadeNotReloaded = true; return null;",
            Vec::new(),
        )
        .await
        .unwrap();
    click(&browser, "live").await;
    let fresh = [event(
        3,
        now(),
        json!({"connection": {"app_name": "live-tail-app", "dst_ip": "198.51.100.7", "dst_port": 8443, "protocol": "tcp", "direction": "outbound"}}),
    )];
    ingest(&s, &agent, 2, &fresh).await;
    wait_for("the live log to show the new connection", || async {
        shows(&browser, "events", "live-tail-app").await
    })
    .await;
    let same_page = browser
        .execute("return window.palisadeNotReloaded === true;", Vec::new())
        .await
        .unwrap();
    assert_eq!(same_page, json!(true), "the page was loaded again");
    shoot(&browser, "10-connections-live").await;
    let policy = edit_validate_and_assign_a_policy(&s, &browser).await;
    browser.close().await.unwrap();

    // A viewer is offered neither users nor the audit log, and is refused them by address.
    let browser = driver.browser().await;
    sign_in(&s, &browser, "victor", false).await;
    let nav = browser
        .find(Locator::Css("header nav"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!nav.contains("Users") && !nav.contains("Audit"), "{nav}");
    browser
        .goto(&format!("{}/console/users", s.base))
        .await
        .unwrap();
    assert!(
        text_of(&browser, "problem")
            .await
            .contains("your role may not list users"),
        "the viewer saw the users page"
    );
    shoot(&browser, "11-viewer-refused").await;
    browser.goto(&format!("{}{policy}", s.base)).await.unwrap();
    assert!(
        browser.find(Locator::Id("edit")).await.is_err(),
        "an Edit link for a viewer"
    );
    browser
        .goto(&format!("{}{policy}/edit", s.base))
        .await
        .unwrap();
    assert!(
        text_of(&browser, "problem")
            .await
            .contains("your role may not create policy versions"),
        "the viewer was given the editor"
    );
    shoot(&browser, "16-viewer-refused-edit").await;
    browser.close().await.unwrap();
    s.stop().await;
}

/// Signing in with single sign-on through the real OpenID provider process
/// (`oidc-provider-mock`), as a person does: the button, the provider's form, the console.
/// Needs `PALISADE_OIDC_TESTS=1` as well (crate::oidc says why it skips).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_sign_on_in_a_real_browser() {
    if std::env::var("PALISADE_BROWSER_TESTS").as_deref() != Ok("1") {
        println!("skipped: set PALISADE_BROWSER_TESTS=1 (needs chromium and chromedriver)");
        return;
    }
    let Some(provider) = crate::oidc::RealProvider::start(&crate::oidc::real_user()).await else {
        return;
    };
    let settings = provider.settings();
    let s = crate::helpers::spawn_server_with(Backend::Sqlite, move |c| c.oidc = Some(settings))
        .await
        .unwrap();
    let driver = Driver::start().await;
    let browser = driver.browser().await;
    browser.goto(&format!("{}/login", s.base)).await.unwrap();
    shoot(&browser, "sso-1-sign-in").await;
    click(&browser, "sign-in-sso").await;
    wait_for("the provider's authorization form", || async {
        browser
            .current_url()
            .await
            .is_ok_and(|url| url.as_str().starts_with(&provider.issuer))
    })
    .await;
    shoot(&browser, "sso-2-provider").await;
    let subject = browser.find(Locator::Css("input[name=sub]")).await.unwrap();
    subject.send_keys("frank").await.unwrap();
    browser
        .find(Locator::Css("form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_page(&browser, "/console").await;
    let whoami = browser
        .find(Locator::Css(".whoami span"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(whoami, "frank (editor)");
    shoot(&browser, "sso-3-console").await;
    browser.close().await.unwrap();
    s.stop().await;
}
