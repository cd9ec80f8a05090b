//! The shipped example policies are valid, free of warnings, and pass their own tests.

use jiff::Timestamp;
use palisade_policy::{CompiledPolicy, cases};

use crate::support::{examples_dir, load_ok};

#[test]
fn every_example_is_valid_and_passes_its_tests() {
    let mut seen = 0;
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.to_string_lossy().to_string();
        if !(name.ends_with(".yaml") || name.ends_with(".json")) {
            continue;
        }
        seen += 1;
        let loaded = load_ok(&name, &std::fs::read_to_string(&path).unwrap());
        assert!(loaded.warnings.is_empty(), "{name}: {:?}", loaded.warnings);
        assert!(!loaded.policy.tests.is_empty(), "{name} has no test cases");
        let compiled = CompiledPolicy::new(&loaded.policy);
        let now: Timestamp = "2026-03-04T12:00:00Z".parse().unwrap();
        for result in cases::run(&loaded.policy, &compiled, now) {
            assert!(
                result.passed,
                "{name}: {} (line {}): {}",
                result.name, result.line, result.detail
            );
        }
    }
    assert!(seen >= 3, "expected the shipped examples, found {seen}");
}

#[test]
fn monitor_mode_allows_what_it_would_block() {
    let text = std::fs::read_to_string(examples_dir().join("rollout-monitor.yaml")).unwrap();
    let loaded = load_ok("rollout-monitor.yaml", &text);
    let compiled = CompiledPolicy::new(&loaded.policy);
    let conn = palisade_policy::parse_connection(
        "conn",
        r#"{"app_path": "/usr/bin/code", "domain": "DC.services.visualstudio.com.", "dst_port": 443}"#,
    )
    .unwrap();
    let decision = compiled.decide(&conn, Timestamp::UNIX_EPOCH);
    assert_eq!(decision.action, palisade_proto::Action::Block);
    assert_eq!(decision.verdict, palisade_proto::Verdict::Allow);
    assert!(decision.would_block());
}

#[test]
fn shadowed_rules_are_warned_about() {
    let text = r#"
version: 1
name: shadows
default_action: allow
rules:
  - id: block-example
    action: block
    match:
      domain: .example.com
  - id: allow-api
    action: allow
    match:
      app_path: /usr/bin/curl
      domain: api.example.com
  - id: curl-any
    action: allow
    match:
      app_path: [/usr/bin/curl, /usr/bin/wget]
      dst_port: {from: 1, to: 1024}
  - id: curl-web
    action: alert
    match:
      app_path: /usr/bin/curl
      dst_port: [80, 443]
      protocol: tcp
  - id: scheduled
    action: block
    match:
      app_path: /usr/bin/ssh
    schedule: {hours: "09:00-17:00"}
  - id: ssh
    action: allow
    match:
      app_path: /usr/bin/ssh
"#;
    let loaded = load_ok("shadows.yaml", text);
    let messages: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(messages.len(), 2, "{messages:#?}");
    assert!(messages[0].starts_with("shadows.yaml:10:5: warning: rules.allow-api: rule \"allow-api\" can never match: rule \"block-example\" (line 6)"), "{}", messages[0]);
    assert!(
        messages[1].contains("rule \"curl-web\" can never match: rule \"curl-any\""),
        "{}",
        messages[1]
    );
}
