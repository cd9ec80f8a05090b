//! The OpenAPI document describes the API that is served: every documented operation exists,
//! and every one of them refuses a caller without a token.

use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, Backend, Reply, TestServer, reply, spawn_server};

/// Every (method, path) the document lists, with path parameters filled in.
fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let concrete = path.replace("{id}", "999999").replace("{name}", "nobody");
            out.push((method.clone(), concrete));
        }
    }
    out
}

async fn call(server: &TestServer, method: &str, path: &str, token: Option<&str>) -> Reply {
    let mut request = server
        .client
        .request(
            method.to_uppercase().parse().unwrap(),
            format!("{}{path}", server.base),
        )
        .json(&json!({}));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    reply(request.send().await.unwrap()).await
}

#[tokio::test]
async fn every_documented_operation_is_served_and_needs_a_token() {
    let server = spawn_server(Backend::Sqlite).await.unwrap();
    let doc = server.get("/api/v1/openapi.json", None).await;
    assert_eq!(doc.status, 200, "{}", doc.text);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(
        doc.body["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let operations = operations(&doc.body);
    for expected in [
        "/api/v1/policies",
        "/api/v1/tokens",
        "/api/v1/tokens/999999/revoke",
        "/api/v1/settings",
        "/api/v1/audit",
    ] {
        assert!(
            operations.iter().any(|(_, p)| p == expected),
            "{expected} not documented"
        );
    }
    for (method, path) in &operations {
        let anonymous = call(&server, method, path, None).await;
        assert_eq!(anonymous.status, 401, "{method} {path}: {}", anonymous.text);
        // Served: whatever the answer, it is the API's own (JSON with an error), not the
        // router's empty 404 or 405.
        let admin = call(&server, method, path, Some(ADMIN_TOKEN)).await;
        assert_ne!(admin.status, 405, "{method} {path}");
        if admin.status == 404 {
            assert!(
                admin.body["error"].is_string(),
                "{method} {path} is not routed"
            );
        }
    }
    server.stop().await;
}
