//! HTTPS on the HTTP address: with a certificate from the internal CA, a client that trusts
//! `ca.pem` reaches the console and API under every name the certificate carries, the session
//! cookie is `Secure`, and neither plain HTTP nor a client without the CA gets through; with
//! the operator's own certificate files, those are served.

use palisade_server::ca::Ca;
use palisade_server::https::Https;
use reqwest::StatusCode;

use crate::console::{PASSWORD, create_user};
use crate::helpers::{Backend, now, spawn_server_with};

#[tokio::test]
async fn the_console_is_served_over_https_with_secure_cookies() {
    let s = spawn_server_with(Backend::Sqlite, |config| {
        config.https = Some(Https::Generated {
            names: vec!["console.example".to_owned()],
        });
    })
    .await
    .unwrap();
    assert!(s.base.starts_with("https://127.0.0.1:"), "{}", s.base);
    assert_eq!(s.get("/healthz", None).await.status, StatusCode::OK);

    let ca = reqwest::Certificate::from_pem(s.ca_pem().as_bytes()).unwrap();
    let addr = s.server.as_ref().unwrap().http;
    let browser = reqwest::Client::builder()
        .add_root_certificate(ca)
        .resolve("console.example", addr)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    create_user(&s, "ann", "viewer").await;
    let response = browser
        .post(format!("https://console.example:{}/login", addr.port()))
        .form(&[("name", "ann"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.ends_with("; Secure"),
        "{cookie}"
    );

    let stranger = reqwest::Client::new();
    assert!(
        stranger
            .get(format!("{}/healthz", s.base))
            .send()
            .await
            .is_err(),
        "a client without the CA was served"
    );
    assert!(
        stranger
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .is_err(),
        "plain HTTP was served"
    );
    s.stop().await;
}

#[tokio::test]
async fn the_operators_certificate_files_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = Ca::generate(now()).unwrap();
    let identity = issuer
        .identity_for(&["localhost".to_owned(), "127.0.0.1".to_owned()], now())
        .unwrap();
    let (cert, key) = (
        dir.path().join("console.pem"),
        dir.path().join("console.key"),
    );
    std::fs::write(&cert, &identity.cert_pem).unwrap();
    std::fs::write(&key, &identity.key_pem).unwrap();
    let s = spawn_server_with(Backend::Sqlite, |config| {
        config.https = Some(Https::Files { cert, key });
    })
    .await
    .unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(issuer.cert_pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let r = client
        .get(format!("{}/healthz", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The server's own CA did not issue it: a client trusting only that CA is refused.
    let own_ca = reqwest::Certificate::from_pem(s.ca_pem().as_bytes()).unwrap();
    let only_own = reqwest::Client::builder()
        .add_root_certificate(own_ca)
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    assert!(
        only_own
            .get(format!("{}/healthz", s.base))
            .send()
            .await
            .is_err()
    );
    s.stop().await;
}
