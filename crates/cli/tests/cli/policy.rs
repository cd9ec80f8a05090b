//! `palisade policy check|eval|test|fmt`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn palisade(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .output()
        .expect("palisade runs")
}

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/policies")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn check_accepts_the_shipped_examples() {
    for name in ["workstation.yaml", "rollout-monitor.yaml", "server.json"] {
        let out = palisade(&["policy", "check", &example(name)]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
        assert!(stdout(&out).contains(": valid: "), "{}", stdout(&out));
        assert!(
            stderr(&out).is_empty(),
            "{name} has warnings: {}",
            stderr(&out)
        );
    }
}

#[test]
fn check_rejects_invalid_documents_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "bad.yaml",
        "version: 1\nname: t\ndefault_action: allow\nrules:\n  - id: web\n    action: allow\n    match:\n      dst_port: \"80\"\n      dst_ip: 10.0.0.0/33\n",
    );
    let out = palisade(&["policy", "check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    let file = bad.display();
    assert!(
        err.contains(&format!(
            "{file}:8:17: error: rules[0].match.dst_port: expected a port number"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{file}:9:15: error: rules[0].match.dst_ip: bad address or CIDR"
        )),
        "{err}"
    );
    assert!(err.contains("2 error(s)"), "{err}");
}

#[test]
fn check_reports_unreadable_and_non_policy_files() {
    let out = palisade(&["policy", "check", "/nonexistent/policy.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot read /nonexistent/policy.yaml"),
        "{}",
        stderr(&out)
    );

    let dir = tempfile::tempdir().unwrap();
    let json = write(
        dir.path(),
        "p.json",
        "{\"version\": 1,\n \"name\": \"x\",\n default_action: 1}",
    );
    let out = palisade(&["policy", "check", json.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("p.json:3:2: error: invalid JSON"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn check_prints_shadowed_rule_warnings_and_still_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "shadow.yaml",
        "version: 1\nname: t\ndefault_action: allow\nrules:\n  - id: all-web\n    action: block\n    match: {dst_port: [80, 443]}\n  - id: curl-web\n    action: allow\n    match: {app_name: curl, dst_port: 443}\n",
    );
    let out = palisade(&["policy", "check", policy.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("shadow.yaml:8:5: warning: rules.curl-web: rule \"curl-web\" can never match: rule \"all-web\""), "{}", stderr(&out));
}

#[test]
fn eval_prints_the_decision_as_json() {
    let conn = r#"{"app_path": "/usr/bin/curl", "domain": "example.com", "dst_ip": "93.184.215.14", "dst_port": 443, "protocol": "tcp", "direction": "outbound", "user": "alice"}"#;
    let out = palisade(&[
        "policy",
        "eval",
        &example("workstation.yaml"),
        "--conn",
        conn,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let decision: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(decision["action"], "allow");
    assert_eq!(decision["rule"], "curl-web");
    assert_eq!(decision["verdict"], "allow");
    let reasons: Vec<&str> = decision["reason"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        ["app_name \"curl\" matches curl", "dst_port 443 in 443"]
    );

    let unknown = r#"{"app_path": "/usr/bin/nc", "dst_ip": "93.184.215.14", "dst_port": 4444, "protocol": "tcp"}"#;
    let out = palisade(&[
        "policy",
        "eval",
        &example("workstation.yaml"),
        "--conn",
        unknown,
    ]);
    let decision: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(decision["action"], "block");
    assert_eq!(decision["rule"], Value::Null);
    assert_eq!(
        decision["reason"][0],
        "no rule matched; default_action is block"
    );
}

#[test]
fn eval_in_monitor_mode_allows_and_says_it_would_block() {
    let conn = r#"{"app_path": "/usr/bin/curl", "dst_ip": "93.184.215.14", "dst_port": 80, "protocol": "tcp"}"#;
    let out = palisade(&[
        "policy",
        "eval",
        &example("rollout-monitor.yaml"),
        "--conn",
        conn,
    ]);
    let decision: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(decision["action"], "block");
    assert_eq!(decision["verdict"], "allow");
    assert_eq!(decision["would_block"], true);
}

#[test]
fn eval_honours_the_schedule_at_the_given_instant() {
    let conn = r#"{"app_path": "/usr/bin/ssh", "dst_ip": "192.168.1.20", "dst_port": 22, "protocol": "tcp"}"#;
    let at = |t: &str| {
        let out = palisade(&[
            "policy",
            "eval",
            &example("workstation.yaml"),
            "--conn",
            conn,
            "--at",
            t,
        ]);
        serde_json::from_str::<Value>(&stdout(&out)).unwrap()["action"].clone()
    };
    assert_eq!(at("2026-03-02T09:00:00Z"), "allow");
    assert_eq!(at("2026-03-02T23:00:00Z"), "block");
}

#[test]
fn eval_rejects_a_bad_connection() {
    let out = palisade(&[
        "policy",
        "eval",
        &example("workstation.yaml"),
        "--conn",
        r#"{"dst_port": "443"}"#,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--conn:1:14: error: conn.dst_port: expected an integer for dst_port, found the string \"443\"; write 443 without quotes"), "{}", stderr(&out));
    let out = palisade(&[
        "policy",
        "eval",
        &example("workstation.yaml"),
        "--conn",
        r#"{"port": 443}"#,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown key \"port\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn test_runs_embedded_cases_and_fails_on_a_wrong_expectation() {
    let out = palisade(&["policy", "test", &example("workstation.yaml")]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("10 test cases: 10 passed, 0 failed"),
        "{}",
        stdout(&out)
    );

    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "t.yaml",
        "version: 1\nname: t\ndefault_action: block\nrules:\n  - id: web\n    action: allow\n    match: {dst_port: 443}\ntests:\n  - name: web is allowed\n    conn: {dst_port: 443}\n    expect: allow\n  - name: ssh is allowed\n    conn: {dst_port: 22}\n    expect: allow\n",
    );
    let out = palisade(&["policy", "test", policy.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("PASS web is allowed"), "{text}");
    assert!(
        text.contains("FAIL ssh is allowed")
            && text.contains("expected allow, got block by the default action"),
        "{text}"
    );
    assert!(text.contains("2 test cases: 1 passed, 1 failed"), "{text}");
}

#[test]
fn fmt_writes_canonical_text_that_reads_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "p.yaml",
        "name: t\nversion: 1\ndefault_action: block\nrules:\n- match: {dst_port: [443], domain: '*.Example.com.'}\n  action: allow\n  id: web\n",
    );
    let path = policy.to_str().unwrap();
    let out = palisade(&["policy", "fmt", path]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out),
        "version: 1\nname: t\ndefault_action: block\nmode: enforce\nrules:\n  - id: web\n    action: allow\n    match:\n      domain: \"*.example.com\"\n      dst_port: 443\n"
    );
    assert_eq!(
        palisade(&["policy", "fmt", "--check", path]).status.code(),
        Some(1)
    );
    assert_eq!(
        palisade(&["policy", "fmt", "--write", path]).status.code(),
        Some(0)
    );
    assert_eq!(
        palisade(&["policy", "fmt", "--check", path]).status.code(),
        Some(0)
    );
    assert_eq!(std::fs::read_to_string(&policy).unwrap(), stdout(&out));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers,
        ["p.yaml"],
        "fmt --write leaves no temporary file behind"
    );
}
