//! DNS query names, TLS/QUIC server names and HTTP hosts of every corpus capture, as
//! `palisade analyze` reports them, against what `tshark` (Wireshark) extracts from the same
//! file. Needs tshark and ../shared: runs when `PALISADE_TSHARK_TESTS=1` (set by .ci/run), says
//! it skipped otherwise. Prints the agreement; every difference must be one explained in
//! [`EXPLAINED`] (and docs/dpi.md).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/corpus/pcap");

/// What is compared: our field, and tshark's.
const FIELDS: [(&str, &str); 3] = [
    ("dns query names", "dns.qry.name"),
    ("server names", "tls.handshake.extensions_server_name"),
    ("http hosts", "http.host"),
];

/// Differences that are understood: (capture, field, value, who has it, why).
const EXPLAINED: &[(&str, &str, &str, &str, &str)] = &[
    (
        "https-connect.pcap",
        "http hosts",
        "ts01-b.cloudsink.net",
        "palisade",
        "a CONNECT request without a Host header: palisade reports the host of its target",
    ),
    (
        "truncated_dns.pcap",
        "dns query names",
        "api.spd.samsungdm.com",
        "tshark",
        "the only packet was cut by the capture's snapshot length inside the answers; palisade \
         decodes whole messages only",
    ),
];

#[test]
fn names_agree_with_tshark() {
    if std::env::var_os("PALISADE_TSHARK_TESTS").is_none_or(|v| v != "1") {
        println!("skipped: set PALISADE_TSHARK_TESTS=1 (needs tshark and ../shared/corpus)");
        return;
    }
    let mut agreed = [0usize; 3];
    let mut totals = [0usize; 3];
    let mut unexplained = Vec::new();
    for capture in captures() {
        let name = capture
            .strip_prefix(CORPUS)
            .unwrap_or(&capture)
            .display()
            .to_string();
        let ours = palisade_names(&capture);
        let theirs = tshark_names(&capture);
        for (i, (field, _)) in FIELDS.iter().enumerate() {
            totals[i] += ours[i].union(&theirs[i]).count();
            agreed[i] += ours[i].intersection(&theirs[i]).count();
            for (value, who) in ours[i].symmetric_difference(&theirs[i]).map(|v| {
                (
                    v,
                    if ours[i].contains(v) {
                        "palisade"
                    } else {
                        "tshark"
                    },
                )
            }) {
                let known = EXPLAINED.iter().any(|&(file, f, v, w, _)| {
                    name.ends_with(file) && f == *field && v == value && w == who
                });
                if !known {
                    unexplained.push(format!("{name}: {field}: {value:?} only in {who}"));
                }
            }
        }
    }
    for (i, (field, _)) in FIELDS.iter().enumerate() {
        println!("{field}: {} of {} agree with tshark", agreed[i], totals[i]);
    }
    println!("explained differences: {}", EXPLAINED.len());
    assert!(
        totals.iter().all(|&n| n > 0),
        "nothing compared: {totals:?}"
    );
    assert!(
        unexplained.is_empty(),
        "unexplained differences:\n{unexplained:#?}"
    );
}

fn captures() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["foxio-ja4", "misc"] {
        let entries = std::fs::read_dir(Path::new(CORPUS).join(dir))
            .unwrap_or_else(|e| panic!("PALISADE_TSHARK_TESTS=1 but no corpus at {CORPUS}: {e}"));
        for entry in entries {
            let path = entry.unwrap().path();
            let ext = path
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or_default();
            if matches!(ext, "pcap" | "pcapng" | "cap") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The names `palisade analyze` reports, per field, lower-cased.
fn palisade_names(capture: &Path) -> [BTreeSet<String>; 3] {
    let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .arg("analyze")
        .arg(capture)
        .output()
        .unwrap();
    let mut names: [BTreeSet<String>; 3] = Default::default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let flow: Value = serde_json::from_str(line).unwrap();
        let mut add = |i: usize, value: &Value| {
            if let Some(text) = value.as_str() {
                names[i].insert(text.to_ascii_lowercase());
            }
        };
        for query in flow["dns"]["queries"].as_array().into_iter().flatten() {
            add(0, &query["name"]);
        }
        add(1, &flow["tls"]["sni"]);
        add(1, &flow["quic"]["sni"]);
        add(2, &flow["http"]["host"]);
    }
    names
}

/// The names tshark extracts, per field, lower-cased.
fn tshark_names(capture: &Path) -> [BTreeSet<String>; 3] {
    let mut command = Command::new("tshark");
    command
        .arg("-n")
        .arg("-r")
        .arg(capture)
        .args(["-T", "fields", "-E", "separator=\t"]);
    command.args(["-E", "occurrence=a", "-E", "aggregator=\u{1f}"]);
    for (_, field) in FIELDS {
        command.args(["-e", field]);
    }
    let out = command
        .output()
        .expect("tshark runs (apt-get install tshark)");
    let mut names: [BTreeSet<String>; 3] = Default::default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        for (i, column) in line.split('\t').enumerate().take(3) {
            for value in column.split('\u{1f}').filter(|v| !v.is_empty()) {
                // tshark writes the root name as `<Root>`; palisade as the empty name.
                let value = if value == "<Root>" { "" } else { value };
                names[i].insert(value.to_ascii_lowercase());
            }
        }
    }
    names
}
