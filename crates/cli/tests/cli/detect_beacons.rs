//! `palisade detect beacons --zeek DIR`: one JSON line per pair, highest score first.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::analyze::lines;

pub(crate) const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/corpus/beacons"
);

fn detect(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
        .arg("detect")
        .arg("beacons")
        .args(args)
        .output()
        .expect("palisade runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn find<'a>(pairs: &'a [Value], src: &str, dst: &str) -> &'a Value {
    pairs
        .iter()
        .find(|p| p["src"] == src && p["dst"] == dst)
        .unwrap_or_else(|| panic!("no line for {src} -> {dst}: {pairs:?}"))
}

fn assert_sorted(pairs: &[Value]) {
    let scores: Vec<f64> = pairs.iter().map(|p| p["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
}

/// RITA scores its proxy test data's beacon 0.979 and the host's Google traffic 0.586.
#[test]
fn corpus_proxy_beacon_scores_as_rita_does() {
    if std::env::var_os("PALISADE_CORPUS_TESTS").is_none_or(|v| v != "1") {
        println!("skipped: set PALISADE_CORPUS_TESTS=1 to score the Zeek logs at {CORPUS}");
        return;
    }
    assert!(
        Path::new(CORPUS).is_dir(),
        "PALISADE_CORPUS_TESTS=1 but the corpus is not at {CORPUS}"
    );
    let out = detect(&["--zeek", CORPUS]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let pairs = lines(&out);
    assert_sorted(&pairs);
    let evil = find(&pairs, "10.136.0.18", "www.honestimnotevil.com");
    assert_eq!(evil["connections"], 357);
    assert_eq!(evil["dst_kind"], "name");
    assert_eq!(evil["addresses"], serde_json::json!(["10.136.0.16"]));
    let score = evil["score"].as_f64().unwrap();
    assert!((score - 0.98).abs() <= 0.05, "{evil}");
    let google = find(&pairs, "10.136.0.18", "www.google.com");
    assert_eq!(google["connections"], 6);
    let score = google["score"].as_f64().unwrap();
    assert!((score - 0.59).abs() <= 0.05, "{google}");
    assert_eq!(pairs[0]["dst"], "www.honestimnotevil.com");
}

const CONN_HEADER: &str = "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n\
#unset_field\t-\n#path\tconn\n\
#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\t\
orig_bytes\tresp_bytes\tconn_state\torig_ip_bytes\tresp_ip_bytes\n\
#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\t\
count\tcount\n";

/// A day of logs written here: a host calling `c2.example` every 10 minutes (± 20 s) through
/// a proxy (conn.log gzip in a dated folder, the name in a JSON http.log), and the same host
/// browsing `news.example` at irregular times (the name in a TSV ssl.log); one line damaged.
pub(crate) fn write_logs(dir: &Path) -> usize {
    let start = 1_704_067_200.0_f64;
    let day = dir.join("2024-01-01");
    std::fs::create_dir(&day).unwrap();
    let mut conn = String::from(CONN_HEADER);
    let mut http = String::new();
    let mut ssl = String::from(
        "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n\
#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tserver_name\n\
#types\ttime\tstring\taddr\tport\taddr\tport\tstring\n",
    );
    let mut beacons = 0;
    for i in 0..144u32 {
        let jitter = f64::from((i * 7919) % 41) - 20.0;
        let ts = start + 600.0 * f64::from(i) + jitter;
        let uid = format!("Cb{i}");
        conn.push_str(&format!(
            "{ts:.6}\t{uid}\t10.1.0.5\t{}\t10.1.0.1\t3128\ttcp\thttp,ssl\t0.2\t900\t4000\tSF\t1100\t4300\n",
            40000 + i
        ));
        http.push_str(&format!(
            "{{\"ts\":{ts:.6},\"uid\":\"{uid}\",\"id.orig_h\":\"10.1.0.5\",\"id.orig_p\":{},\"id.resp_h\":\"10.1.0.1\",\"id.resp_p\":3128,\"method\":\"CONNECT\",\"host\":\"c2.example:443\"}}\n",
            40000 + i
        ));
        beacons += 1;
    }
    let mut ts = start;
    for i in 0..40u32 {
        ts += f64::from((i * i * 7 + 13) % 5000) + 5.0;
        let uid = format!("Cn{i}");
        conn.push_str(&format!(
            "{ts:.6}\t{uid}\t10.1.0.5\t{}\t198.51.100.9\t443\ttcp\tssl\t3.0\t{}\t90000\tSF\t{}\t95000\n",
            50000 + i,
            300 + (i * 977) % 9000,
            400 + (i * 977) % 9000
        ));
        ssl.push_str(&format!(
            "{ts:.6}\t{uid}\t10.1.0.5\t{}\t198.51.100.9\t443\tnews.example\n",
            50000 + i
        ));
    }
    conn.push_str(
        "1704067201.0\tCbad\tnot-an-address\t1\t10.1.0.1\t3128\ttcp\t-\t-\t-\t-\t-\t-\t-\n",
    );
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(day.join("conn.00:00:00-01:00:00.log.gz")).unwrap(),
        flate2::Compression::default(),
    );
    gz.write_all(conn.as_bytes()).unwrap();
    gz.finish().unwrap();
    std::fs::write(day.join("http.00:00:00-01:00:00.log"), http).unwrap();
    std::fs::write(day.join("ssl.00:00:00-01:00:00.log"), ssl).unwrap();
    beacons
}

#[test]
fn a_proxied_beacon_in_written_logs_comes_first_with_its_figures() {
    let dir = tempfile::tempdir().unwrap();
    let beacons = write_logs(dir.path());
    let out = detect(&["--zeek", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let pairs = lines(&out);
    assert_sorted(&pairs);
    let c2 = &pairs[0];
    assert_eq!(
        (c2["src"].as_str(), c2["dst"].as_str()),
        (Some("10.1.0.5"), Some("c2.example"))
    );
    assert_eq!(c2["connections"], beacons);
    assert!(c2["score"].as_f64().unwrap() >= 0.9, "{c2}");
    for component in ["ts_score", "ds_score", "hist_score", "dur_score"] {
        assert!(c2[component].as_f64().is_some(), "{component}: {c2}");
    }
    let interval = c2["timestamp"]["median"].as_f64().unwrap();
    assert!((interval - 600.0).abs() <= 20.0, "{c2}");
    assert_eq!(c2["data_size"]["median"], 1100.0);
    assert_eq!(c2["addresses"], serde_json::json!(["10.1.0.1"]));
    let explanation = c2["explanation"].as_str().unwrap();
    assert!(
        explanation.contains("10.1.0.5 -> c2.example"),
        "{explanation}"
    );
    assert!(
        explanation.contains("1100 bytes sent each"),
        "{explanation}"
    );
    let news = find(&pairs, "10.1.0.5", "news.example");
    assert_eq!(news["connections"], 40);
    assert!(news["score"].as_f64().unwrap() < 0.8, "{news}");
    // Named connections are not scored again under the proxy's address.
    assert_eq!(pairs.len(), 2, "{pairs:?}");
    let err = stderr(&out);
    assert!(err.contains("184 conn records, 1 lines skipped"), "{err}");
    assert!(
        err.contains("line 192: field id.orig_h: not an IP address"),
        "{err}"
    );

    let out = detect(&[
        "--zeek",
        dir.path().to_str().unwrap(),
        "--min-connections",
        "100",
    ]);
    let pairs = lines(&out);
    assert_eq!(pairs.len(), 1, "{pairs:?}");
    assert_eq!(pairs[0]["dst"], "c2.example");
}

#[test]
fn a_directory_without_conn_logs_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dns.log"), "").unwrap();
    let out = detect(&["--zeek", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no Zeek conn logs"),
        "{}",
        stderr(&out)
    );
    let out = detect(&["--zeek", "/nonexistent/zeek"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("/nonexistent/zeek: cannot list"),
        "{}",
        stderr(&out)
    );
}
