//! Realistic synthetic policies and connections for the benchmarks.
//!
//! The mix per 20 rules: 10 per-application rules with domains, 2 per-application port rules,
//! (each application has ten consecutive rules),
//! 2 IPv4 CIDR rules, 2 domain-family blocks, 1 global port rule, 1 process-name + scope rule,
//! 1 IPv6 CIDR rule, 1 application + user + port-range rule. Three rules at the head apply to
//! everything: localhost traffic, a 1,000-domain tracker list and a 500-block network list.
//! Connections mostly meet those rules (application and domain both known), some only part of
//! one, some nothing at all.

use palisade_policy::Policy;
use palisade_proto::{Connection, Protocol};
use serde_json::json;

/// A small deterministic random source (xorshift64*), so runs are comparable.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n.max(1)
    }
}

fn apps(rules: usize) -> usize {
    (rules / 10).max(1)
}

/// The application of rule `i`: each application has ten consecutive rules.
fn app_of(i: usize, apps: usize) -> usize {
    (i / 10) % apps
}

fn app_path(a: usize) -> String {
    format!("/opt/vendor{a}/bin/app{a}")
}

/// A policy document with `rules` rules (JSON text).
pub fn policy_text(rules: usize) -> String {
    let apps = apps(rules);
    let mut list = vec![
        json!({"id": "localhost", "action": "allow", "match": {"scope": "localhost"}}),
        json!({"id": "trackers", "action": "block", "match": {"list": "trackers"}}),
        json!({"id": "bad-nets", "action": "block", "match": {"list": "bad-nets"}}),
    ];
    for i in list.len()..rules.max(list.len()) {
        let a = app_of(i, apps);
        let m = match i % 20 {
            0..=9 => {
                json!({"app_path": app_path(a), "domain": [format!("svc{i}.vendor{a}.com"), format!("*.svc{i}.vendor{a}.com")], "dst_port": 443, "protocol": "tcp"})
            }
            10 => json!({"app_path": app_path(a), "dst_port": [80, 443], "protocol": "tcp"}),
            11 => {
                json!({"app_path": app_path(a), "dst_port": 53, "protocol": "udp", "scope": "lan"})
            }
            12 => json!({"dst_ip": format!("10.{}.{}.0/24", (i >> 8) & 255, i & 255)}),
            13 => json!({"app_path": app_path(a), "dst_ip": format!("10.{}.0.0/16", i & 255)}),
            14 | 15 => json!({"domain": format!(".bad{i}.example")}),
            16 => json!({"dst_port": 1024 + i / 20, "protocol": "udp"}),
            17 => json!({"app_name": format!("app{a}"), "scope": "lan"}),
            18 => json!({"dst_ip": format!("2001:db8:{:x}::/48", i & 0xffff)}),
            _ => {
                json!({"app_path": app_path(a), "user": format!("user{}", i % 50), "dst_port": {"from": 8000, "to": 8999}})
            }
        };
        let action = ["allow", "block", "allow", "log", "alert"][i % 5];
        list.push(json!({"id": format!("r{i}"), "action": action, "match": m}));
    }
    list.truncate(rules);
    let trackers: Vec<String> = (0..1000).map(|k| format!(".tracker{k}.net")).collect();
    let nets: Vec<String> = (0..500)
        .map(|k| format!("100.{}.{}.0/24", 64 + k / 256, k % 256))
        .collect();
    json!({
        "version": 1,
        "name": format!("synthetic-{rules}"),
        "default_action": "block",
        "lists": {"trackers": {"domains": trackers}, "bad-nets": {"cidrs": nets}},
        "rules": list,
    })
    .to_string()
}

/// Loads a synthetic policy.
pub fn policy(rules: usize) -> Policy {
    let text = policy_text(rules);
    match palisade_policy::load("synthetic.json", &text, &|_| Err("no files".into())) {
        Ok(loaded) => loaded.policy,
        Err(invalid) => panic!("synthetic policy invalid: {:?}", invalid.errors.first()),
    }
}

/// `count` connections against a policy of `rules` rules.
pub fn connections(rules: usize, count: usize) -> Vec<Connection> {
    let apps = apps(rules);
    let mut rng = Rng::new(0x5eed);
    (0..count)
        .map(|_| {
            let i = rng.below(rules.max(20));
            let a = app_of(i, apps);
            let (path, domain, ip, port): (String, Option<String>, String, u16) =
                match rng.below(20) {
                    0..=7 => {
                        let i = i - i % 20 + rng.below(10);
                        let a = app_of(i, apps);
                        (
                            app_path(a),
                            Some(format!("svc{i}.vendor{a}.com")),
                            "93.184.215.14".into(),
                            443,
                        )
                    }
                    8..=11 => (
                        app_path(a),
                        Some(format!("cdn{i}.example.net")),
                        "151.101.2.132".into(),
                        443,
                    ),
                    12..=14 => (
                        app_path(a),
                        None,
                        format!("10.{}.{}.7", (i >> 8) & 255, i & 255),
                        8443,
                    ),
                    15 | 16 => (
                        "/usr/bin/curl".into(),
                        Some(format!("x.bad{i}.example")),
                        "203.0.113.5".into(),
                        80,
                    ),
                    17 => (
                        "/usr/bin/wget".into(),
                        Some(format!("ads.tracker{}.net", i % 1000)),
                        "198.51.100.1".into(),
                        443,
                    ),
                    _ => (
                        "/usr/local/bin/unknown".into(),
                        Some("unknown.example.org".into()),
                        "192.0.2.1".into(),
                        12345,
                    ),
                };
            Connection {
                app_path: Some(path),
                domain,
                dst_ip: ip.parse().ok(),
                dst_port: Some(port),
                protocol: Some(Protocol::Tcp),
                user: Some("alice".into()),
                ..Connection::default()
            }
            .normalize()
        })
        .collect()
}
