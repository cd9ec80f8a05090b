//! What `policy_yaml` and `policy_json` share: load a policy, use it, format it, load it again.

use std::net::{IpAddr, Ipv4Addr};

use jiff::Timestamp;
use palisade_policy::{CompiledPolicy, Format, emit, naive};
use palisade_proto::{Connection, Direction, Protocol};

/// Loads `data` as the policy file `file_name`; when it is valid, compiles it, decides one
/// connection with it (the compiled and reference evaluators must agree), formats it as YAML and asserts that the formatted text loads again.
/// Input that is not UTF-8 or not a valid policy is skipped: rejecting it is the parser's job.
pub fn check(file_name: &str, data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(loaded) = palisade_policy::load(file_name, text, &no_list_files) else {
        return;
    };

    let compiled = CompiledPolicy::new(&loaded.policy);
    let conn = connection();
    let fast = compiled.decide(&conn, Timestamp::UNIX_EPOCH);
    let slow = naive::decide(&loaded.policy, &conn, Timestamp::UNIX_EPOCH);
    assert_eq!(fast, slow, "compiled and reference evaluators disagree");

    let formatted = emit::to_text(&loaded.policy, Format::Yaml);
    if let Err(invalid) = palisade_policy::load("formatted.yaml", &formatted, &no_list_files) {
        panic!("formatted policy does not load again: {invalid}\n--- formatted ---\n{formatted}");
    }
}

/// List files are never available: a policy that names one is rejected, which is fine.
fn no_list_files(name: &str) -> Result<String, String> {
    Err(format!("{name}: the fuzzer provides no list files"))
}

/// One fixed, normalised outbound connection for the compiled policy to decide.
fn connection() -> Connection {
    Connection {
        app_path: Some("/usr/bin/curl".to_owned()),
        cmdline: Some("curl https://example.com/".to_owned()),
        user: Some("alice".to_owned()),
        uid: Some(1000),
        unit: Some("user@1000.service".to_owned()),
        domain: Some("example.com".to_owned()),
        src_ip: Some(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10))),
        src_port: Some(50_000),
        dst_ip: Some(IpAddr::V4(Ipv4Addr::new(93, 184, 215, 14))),
        dst_port: Some(443),
        protocol: Some(Protocol::Tcp),
        direction: Direction::Outbound,
        ..Connection::default()
    }
    .normalize()
}
