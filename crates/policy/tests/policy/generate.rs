//! Random policies and connections over small shared vocabularies, so that rules and connections
//! meet often: every index, every matcher and every condition operator is exercised.

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Value, json};

const PATHS: &[&str] = &[
    "/usr/bin/curl",
    "/usr/bin/wget",
    "/usr/lib/firefox/firefox",
    "/opt/app/bin/tool",
    "/usr/sbin/sshd",
];
const PATH_PATTERNS: &[&str] = &[
    "/usr/bin/curl",
    "/usr/bin/wget",
    "/usr/lib/firefox/firefox",
    "/opt/app/bin/tool",
    "/usr/sbin/sshd",
    "/usr/bin/*",
    "/opt/**",
    "/usr/*/ss*",
];
const NAMES: &[&str] = &["curl", "wget", "firefox", "tool", "sshd", "c*"];
const HASHES: &[&str] = &[
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
];
const USERS: &[&str] = &["alice", "bob", "root"];
const UNITS: &[&str] = &["ssh.service", "nginx.service", "user@1000.service"];
const CMDLINES: &[&str] = &[
    "curl -s https://example.com",
    "wget --upload-file x",
    "tool --daemon",
    "sshd -D",
];
const NEEDLES: &[&str] = &["--upload", "-s", "daemon", "https://"];
const REGEXES: &[&str] = &["^curl", "upload-file\\s", "[0-9]+", "-D$"];
const DOMAINS: &[&str] = &[
    "example.com",
    "a.example.com",
    "b.a.example.com",
    "example.org",
    "x.test",
    "tracker.net",
    "a.tracker.net",
    "com",
];
const IPS: &[&str] = &[
    "10.0.0.1",
    "10.1.2.3",
    "192.168.1.5",
    "127.0.0.1",
    "93.184.215.14",
    "203.0.113.9",
    "2001:db8::1",
    "fd00::5",
    "::1",
    "8.8.8.8",
];
const CIDRS: &[&str] = &[
    "10.0.0.0/8",
    "10.1.0.0/16",
    "10.1.2.3",
    "192.168.0.0/16",
    "0.0.0.0/0",
    "203.0.113.0/24",
    "2001:db8::/32",
    "::/0",
    "fd00::/8",
    "93.184.215.14/32",
    "8.8.0.0/16",
];
const PORTS: &[u16] = &[22, 53, 80, 443, 8080, 8443, 0, 65535];
const INSTANTS: &[&str] = &[
    "2026-03-02T08:30:00Z",
    "2026-03-02T23:00:00Z",
    "2026-03-07T12:00:00Z",
];
const ACTIONS: &[&str] = &["allow", "block", "alert", "log"];

/// Instants at which generated connections are decided (schedules are in play).
pub fn instants() -> Vec<jiff::Timestamp> {
    INSTANTS.iter().map(|t| t.parse().unwrap()).collect()
}

fn domain_pattern() -> impl Strategy<Value = String> + Clone {
    (select(DOMAINS), select(&["", "*.", "."][..])).prop_map(|(d, prefix)| format!("{prefix}{d}"))
}

fn port_value() -> impl Strategy<Value = Value> + Clone {
    prop_oneof![
        3 => select(PORTS).prop_map(|p| json!(p)),
        1 => (select(PORTS), select(PORTS)).prop_map(|(a, b)| json!({"from": a.min(b), "to": a.max(b)})),
    ]
}

/// One value or a list of one to three values.
fn some<T: Strategy<Value = Value> + Clone>(item: T) -> impl Strategy<Value = Value> {
    prop_oneof![
        item.clone(),
        prop::collection::vec(item, 1..4).prop_map(Value::Array),
    ]
}

fn text(values: &'static [&'static str]) -> impl Strategy<Value = Value> + Clone {
    select(values).prop_map(|v| json!(v))
}

fn matcher() -> impl Strategy<Value = (String, Value)> {
    prop_oneof![
        4 => some(text(PATH_PATTERNS)).prop_map(|v| ("app_path".to_owned(), v)),
        2 => some(text(NAMES)).prop_map(|v| ("app_name".to_owned(), v)),
        1 => some(text(HASHES)).prop_map(|v| ("app_sha256".to_owned(), v)),
        1 => some(text(NEEDLES)).prop_map(|v| ("cmdline_contains".to_owned(), v)),
        1 => some(text(REGEXES)).prop_map(|v| ("cmdline_matches".to_owned(), v)),
        1 => some(text(USERS)).prop_map(|v| ("user".to_owned(), v)),
        1 => some(select(&[0u32, 1000, 1001][..]).prop_map(|u| json!(u))).prop_map(|v| ("uid".to_owned(), v)),
        1 => some(text(UNITS)).prop_map(|v| ("unit".to_owned(), v)),
        4 => some(domain_pattern().prop_map(Value::String)).prop_map(|v| ("domain".to_owned(), v)),
        3 => some(text(CIDRS)).prop_map(|v| ("dst_ip".to_owned(), v)),
        1 => some(text(CIDRS)).prop_map(|v| ("src_ip".to_owned(), v)),
        3 => some(port_value()).prop_map(|v| ("dst_port".to_owned(), v)),
        1 => some(port_value()).prop_map(|v| ("src_port".to_owned(), v)),
        2 => some(text(&["tcp", "udp", "icmp", "any"])).prop_map(|v| ("protocol".to_owned(), v)),
        1 => some(text(&["outbound", "inbound"])).prop_map(|v| ("direction".to_owned(), v)),
        2 => some(text(&["localhost", "lan", "internet"])).prop_map(|v| ("scope".to_owned(), v)),
        3 => some(text(&["names", "more-names", "nets"])).prop_map(|v| ("list".to_owned(), v)),
    ]
}

fn test_condition() -> impl Strategy<Value = Value> {
    prop_oneof![
        (
            select(&["==", "!=", "<", "<=", ">", ">="][..]),
            select(PORTS)
        )
            .prop_map(|(op, p)| json!({"field": "dst_port", "operator": op, "value": p})),
        (
            select(&["in", "not_in"][..]),
            prop::collection::vec(select(PORTS), 1..3)
        )
            .prop_map(|(op, p)| json!({"field": "dst_port", "operator": op, "value": p})),
        (
            select(&["==", "!=", "contains", "starts_with", "ends_with"][..]),
            select(DOMAINS)
        )
            .prop_map(|(op, d)| json!({"field": "domain", "operator": op, "value": d})),
        select(REGEXES)
            .prop_map(|r| json!({"field": "cmdline", "operator": "matches", "value": r})),
        some(text(CIDRS)).prop_map(|c| json!({"field": "src_ip", "operator": "cidr", "value": c})),
        select(IPS).prop_map(|ip| json!({"field": "dst_ip", "operator": "==", "value": ip})),
        select(&["localhost", "lan", "internet"][..])
            .prop_map(|s| json!({"field": "scope", "operator": "==", "value": s})),
        select(USERS)
            .prop_map(|u| json!({"field": "user", "operator": "in", "value": [u, "nobody"]})),
    ]
}

fn condition() -> impl Strategy<Value = Value> {
    test_condition().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..3).prop_map(|c| json!({"all": c})),
            prop::collection::vec(inner.clone(), 1..3).prop_map(|c| json!({"any": c})),
            inner.prop_map(|c| json!({"not": c})),
        ]
    })
}

fn schedule() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"days": ["mon", "tue"], "hours": "08:00-17:00"})),
        Just(json!({"hours": "22:00-06:00", "timezone": "Europe/Berlin"})),
        Just(json!({"days": "sat"})),
    ]
}

fn rule(index: usize) -> impl Strategy<Value = Value> {
    (
        select(ACTIONS),
        prop::bool::weighted(0.9),
        prop::collection::vec(matcher(), 0..5),
        prop::option::weighted(0.2, condition()),
        prop::option::weighted(0.1, schedule()),
    )
        .prop_map(move |(action, enabled, matchers, when, schedule)| {
            let mut rule = json!({"id": format!("r{index}"), "action": action});
            if !enabled {
                rule["enabled"] = json!(false);
            }
            let mut matches = serde_json::Map::new();
            for (key, value) in matchers {
                matches.insert(key, value);
            }
            if !matches.is_empty() {
                rule["match"] = Value::Object(matches);
            }
            if let Some(when) = when {
                rule["when"] = when;
            }
            if let Some(schedule) = schedule {
                rule["schedule"] = schedule;
            }
            rule
        })
}

/// A random policy document as JSON.
pub fn policy() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(domain_pattern(), 1..4),
        prop::collection::vec(domain_pattern(), 1..4),
        prop::collection::vec(select(CIDRS), 1..3),
        select(ACTIONS),
        (select(&["enforce", "monitor"][..]), select(&["open", "closed"][..])),
        (0..25usize).prop_flat_map(|n| (0..n).map(rule).collect::<Vec<_>>()),
    )
        .prop_map(|(names, more, nets, default_action, (mode, fail), rules)| {
            json!({
                "version": 1,
                "name": "generated",
                "default_action": default_action,
                "mode": mode,
                "fail": fail,
                "lists": {"names": {"domains": names}, "more-names": {"domains": more}, "nets": {"cidrs": nets}},
                "rules": rules,
            })
        })
}

/// A random connection as JSON, with each field present or not.
pub fn connection() -> impl Strategy<Value = Value> {
    (
        (
            prop::option::of(select(PATHS)),
            prop::option::weighted(0.3, select(HASHES)),
            prop::option::weighted(0.5, select(CMDLINES)),
            prop::option::weighted(0.5, select(USERS)),
            prop::option::weighted(0.5, select(&[0u32, 1000, 1001][..])),
            prop::option::weighted(0.3, select(UNITS)),
        ),
        (
            prop::option::weighted(0.8, select(DOMAINS)),
            prop::option::weighted(0.9, select(IPS)),
            prop::option::weighted(0.5, select(IPS)),
            prop::option::weighted(0.9, select(PORTS)),
            prop::option::weighted(0.5, select(PORTS)),
            prop::option::weighted(0.9, select(&["tcp", "udp", "icmp"][..])),
            select(&["outbound", "inbound"][..]),
        ),
    )
        .prop_map(
            |(
                (path, hash, cmdline, user, uid, unit),
                (domain, dst, src, dport, sport, proto, direction),
            )| {
                let mut conn = serde_json::Map::new();
                let mut put = |key: &str, value: Option<Value>| {
                    if let Some(v) = value {
                        conn.insert(key.to_owned(), v);
                    }
                };
                put("app_path", path.map(|v| json!(v)));
                put("app_sha256", hash.map(|v| json!(v)));
                put("cmdline", cmdline.map(|v| json!(v)));
                put("user", user.map(|v| json!(v)));
                put("uid", uid.map(|v| json!(v)));
                put("unit", unit.map(|v| json!(v)));
                put("domain", domain.map(|v| json!(v)));
                put("dst_ip", dst.map(|v| json!(v)));
                put("src_ip", src.map(|v| json!(v)));
                put("dst_port", dport.map(|v| json!(v)));
                put("src_port", sport.map(|v| json!(v)));
                put("protocol", proto.map(|v| json!(v)));
                put("direction", Some(json!(direction)));
                Value::Object(conn)
            },
        )
}
