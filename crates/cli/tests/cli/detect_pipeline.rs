//! The detection pipeline from the command line: `palisade detect import-zeek DIR` (Zeek logs
//! through the pipeline, one finding per JSON line) and `palisade detect eval` (the
//! simulator's labelled attacks through it, scored).

use std::path::Path;

use serde_json::Value;

use crate::analyze::lines;
use crate::detect_beacons::{CORPUS, write_logs};
use crate::detect_dga::{palisade as detect, stderr};

/// A DNS log of one host carrying data in the names under one domain, and looking up a few
/// ordinary names.
fn write_tunnel(dir: &Path) {
    let mut dns = String::new();
    // A linear congruential generator: data that looks random, the same every run.
    let mut state: u64 = 7;
    for i in 0..120u32 {
        let data: String = (0..48)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                char::from(b"abcdefghijklmnopqrstuvwxyz234567"[(state >> 59) as usize])
            })
            .collect();
        let ts = 1_704_067_200.0 + f64::from(i) * 2.0;
        dns.push_str(&format!(
            "{{\"ts\":{ts:.3},\"uid\":\"Dt{i}\",\"id.orig_h\":\"10.1.0.7\",\"id.orig_p\":{},\"id.resp_h\":\"10.1.0.53\",\"id.resp_p\":53,\"proto\":\"udp\",\"query\":\"{data}.t.tunnel-example.net\",\"qtype_name\":\"TXT\"}}\n",
            30000 + i
        ));
    }
    for (i, name) in ["www.example.com", "mail.example.com", "example.org"]
        .iter()
        .enumerate()
    {
        dns.push_str(&format!(
            "{{\"ts\":1704067300.0,\"uid\":\"Dn{i}\",\"id.orig_h\":\"10.1.0.7\",\"id.orig_p\":31000,\"id.resp_h\":\"10.1.0.53\",\"id.resp_p\":53,\"proto\":\"udp\",\"query\":\"{name}\",\"qtype_name\":\"A\"}}\n"
        ));
    }
    std::fs::write(
        dir.join("2024-01-01").join("dns.00:00:00-01:00:00.log"),
        dns,
    )
    .unwrap();
}

#[test]
fn zeek_logs_through_the_pipeline_raise_the_beacon_and_the_tunnel_with_their_uids() {
    let dir = tempfile::tempdir().unwrap();
    write_logs(dir.path());
    write_tunnel(dir.path());
    let out = detect(&["import-zeek", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let findings = lines(&out);
    let kinds: std::collections::BTreeSet<&str> = findings
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["beacon", "dns_tunnel"].into_iter().collect(),
        "{}",
        stderr(&out)
    );
    let beacon = findings.iter().find(|f| f["kind"] == "beacon").unwrap();
    assert_eq!(beacon["key"], "beacon:10.1.0.5:c2.example");
    let interval = beacon["explanation"]["interval_median_seconds"]
        .as_f64()
        .unwrap();
    assert!((590.0..=610.0).contains(&interval), "{beacon}");
    assert!(
        beacon["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e.as_str().unwrap().starts_with("Cb")),
        "the beacon cites its own connections by uid: {beacon}"
    );
    let tunnel = findings.iter().find(|f| f["kind"] == "dns_tunnel").unwrap();
    assert_eq!(tunnel["key"], "dns_tunnel:10.1.0.7:tunnel-example.net");
    assert!(
        tunnel["evidence"][0].as_str().unwrap().starts_with("Dt"),
        "{tunnel}"
    );
    assert!(stderr(&out).contains("findings"), "{}", stderr(&out));
}

#[test]
fn a_directory_without_conn_logs_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = detect(&["import-zeek", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no Zeek conn logs"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn corpus_proxy_beacon_is_raised_by_the_pipeline() {
    if std::env::var_os("PALISADE_CORPUS_TESTS").is_none_or(|v| v != "1") {
        println!("skipped: set PALISADE_CORPUS_TESTS=1 to replay the Zeek logs at {CORPUS}");
        return;
    }
    let out = detect(&["import-zeek", CORPUS]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let findings = lines(&out);
    let keys: std::collections::BTreeSet<&str> = findings
        .iter()
        .map(|f| f["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["beacon:10.136.0.18:www.honestimnotevil.com"]
            .into_iter()
            .collect(),
        "{findings:?}"
    );
}

#[test]
fn the_evaluator_finds_every_simulated_attack_and_says_how_well() {
    let out = detect(&["eval", "--endpoints", "30", "--hours", "2", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let families = report["families"].as_array().unwrap();
    assert_eq!(families.len(), 6);
    for family in families {
        assert_eq!(family["campaigns"], 1, "{family}");
        assert_eq!(family["recall"], 1.0, "{family}");
    }
    for detector in report["detectors"].as_array().unwrap() {
        assert_eq!(detector["false_alerts"], 0, "{detector}");
        assert!(detector["benign_units"].as_u64().unwrap() > 0, "{detector}");
    }
    assert!(report["throughput"]["events_per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(report["events"], report["throughput"]["events"]);
}
