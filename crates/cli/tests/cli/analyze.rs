//! `palisade analyze FILE`: flows of a capture as JSON lines, a table or a summary; a corrupt
//! file ends with exit 2 and the byte offset, after what could be read.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn palisade(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .output()
        .expect("palisade runs")
}

/// Each line of a command's standard output, parsed as JSON.
pub fn lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// A classic pcap (microsecond timestamps, Ethernet) holding `frames` at one-second steps.
fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut file = Vec::new();
    file.extend(0xa1b2_c3d4_u32.to_le_bytes());
    file.extend(2u16.to_le_bytes());
    file.extend(4u16.to_le_bytes());
    file.extend([0; 8]);
    file.extend(65_535u32.to_le_bytes());
    file.extend(1u32.to_le_bytes());
    for (i, frame) in frames.iter().enumerate() {
        let len = u32::try_from(frame.len()).unwrap();
        file.extend((1_700_000_000 + u32::try_from(i).unwrap()).to_le_bytes());
        file.extend(250_000u32.to_le_bytes());
        file.extend(len.to_le_bytes());
        file.extend(len.to_le_bytes());
        file.extend(frame);
    }
    file
}

/// An Ethernet + IPv4 + UDP frame.
fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00];
    let total = u16::try_from(20 + 8 + payload.len()).unwrap();
    frame.extend([0x45, 0]);
    frame.extend(total.to_be_bytes());
    frame.extend([0, 1, 0, 0, 64, 17, 0, 0]);
    frame.extend(src);
    frame.extend(dst);
    frame.extend(sport.to_be_bytes());
    frame.extend(dport.to_be_bytes());
    frame.extend(u16::try_from(8 + payload.len()).unwrap().to_be_bytes());
    frame.extend([0, 0]);
    frame.extend(payload);
    frame
}

/// A DNS query for `example.com` A (id 0x1234), and its answer 93.184.216.34, TTL 300.
fn dns_exchange() -> (Vec<u8>, Vec<u8>) {
    let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    query.extend(b"\x07example\x03com\x00\x00\x01\x00\x01");
    let mut answer = query.clone();
    answer[2..4].copy_from_slice(&[0x81, 0x80]);
    answer[7] = 1;
    answer.extend([
        0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x01, 0x2c, 0, 4, 93, 184, 216, 34,
    ]);
    (query, answer)
}

fn dns_capture(dir: &Path) -> PathBuf {
    let (query, answer) = dns_exchange();
    let client = [192, 168, 1, 10];
    let resolver = [192, 168, 1, 1];
    let path = dir.join("dns.pcap");
    std::fs::write(
        &path,
        pcap(&[
            udp(client, 53_000, resolver, 53, &query),
            udp(resolver, 53, client, 53_000, &answer),
        ]),
    )
    .unwrap();
    path
}

#[test]
fn a_dns_exchange_is_one_flow_with_its_question_and_answer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dns_capture(dir.path());
    let out = palisade(&["analyze", path.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let flows = lines(&out);
    assert_eq!(flows.len(), 1, "{flows:?}");
    let flow = &flows[0];
    assert_eq!(flow["src_ip"], "192.168.1.10");
    assert_eq!(flow["src_port"], 53_000);
    assert_eq!(flow["dst_ip"], "192.168.1.1");
    assert_eq!(flow["dst_port"], 53);
    assert_eq!(flow["proto"], "udp");
    assert_eq!(flow["app_proto"], "dns");
    assert_eq!(
        (flow["pkts_out"].as_u64(), flow["pkts_in"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(flow["bytes_out"], 20 + 8 + 29);
    assert_eq!(flow["ts_start"].as_f64(), Some(1_700_000_000.25));
    assert_eq!(flow["ts_end"].as_f64(), Some(1_700_000_001.25));
    assert_eq!(
        flow["dns"]["queries"],
        serde_json::json!([{"name": "example.com", "type": "A"}])
    );
    assert_eq!(
        flow["dns"]["answers"],
        serde_json::json!([{"name": "example.com", "type": "A", "data": "93.184.216.34", "ttl": 300}])
    );
    assert_eq!(flow["dns"]["rcode"], "NOERROR");
}

#[test]
fn table_and_summary_are_for_people() {
    let dir = tempfile::tempdir().unwrap();
    let path = dns_capture(dir.path());
    let path = path.to_str().unwrap();
    let table = palisade(&["analyze", path, "--format", "table"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("start (UTC)"), "{text}");
    assert!(
        text.contains("2023-11-14 22:13:20.250  udp     192.168.1.10:53000"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("example.com"), "{text}");

    let summary = palisade(&["analyze", path, "--summary", "--format", "table"]);
    let text = String::from_utf8_lossy(&summary.stdout);
    assert!(text.contains("frames      2"), "{text}");
    assert!(text.contains("flows       1 (0 evicted)"), "{text}");
    assert!(
        text.contains("top domains (flows)\n               1  example.com"),
        "{text}"
    );

    let json = palisade(&["analyze", path, "--summary"]);
    let report = &lines(&json)[0];
    assert_eq!(report["totals"]["packets"], 2);
    assert_eq!(
        report["top_talkers"][0],
        serde_json::json!(["192.168.1.1", 130])
    );
}

#[test]
fn a_capture_that_breaks_off_exits_2_with_the_offset_after_printing_what_was_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dns_capture(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(bytes.len() - 10);
    std::fs::write(&path, &bytes).unwrap();
    let out = palisade(&["analyze", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The second record starts after the 24-byte file header and the first 16 + 71 byte record.
    assert!(stderr.contains("at byte 111"), "{stderr}");
    let flows = lines(&out);
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0]["pkts_out"], 1);
    assert_eq!(flows[0]["pkts_in"], 0);
}

#[test]
fn a_file_that_is_not_a_capture_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "hello, this is text").unwrap();
    let out = palisade(&["analyze", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("notes.txt"));
    assert!(out.stdout.is_empty());
}

#[test]
fn a_missing_file_exits_1() {
    let out = palisade(&["analyze", "/nonexistent/capture.pcap"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open /nonexistent/capture.pcap"));
}
