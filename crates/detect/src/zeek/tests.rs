use std::io::Write;
use std::net::IpAddr;

use super::*;

const CONN_HEADER: &str = "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n\
#unset_field\t-\n#path\tconn\n#open\t2024-01-01-00-00-00\n\
#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\t\
orig_bytes\tresp_bytes\tconn_state\torig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\n\
#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\t\
count\tcount\tcount\tcount\n";

const CONN_LINE: &str = "1704067200.250000\tCabc1\t10.0.0.5\t51000\t192.0.2.7\t443\ttcp\tssl\t\
0.5\t300\t4000\tSF\t6\t620\t5\t4300\n";

fn read_conns(text: &str) -> (Vec<Conn>, Vec<Skipped>, ReadStats) {
    let (records, skipped, stats) = parse_lines(LogKind::Conn, text.as_bytes());
    let conns = records
        .into_iter()
        .map(|r| match r {
            Record::Conn(c) => c,
            other => panic!("not a conn: {other:?}"),
        })
        .collect();
    (conns, skipped, stats)
}

#[test]
fn tsv_conn_lines_are_typed() {
    let text = format!(
        "{CONN_HEADER}{CONN_LINE}1704067260.0\tCdef2\tfe80::1\t133\tff02::2\t134\ticmp\t-\t-\t-\t-\tOTH\t1\t56\t0\t0\n#close\t2024-01-01-01-00-00\n"
    );
    let (conns, skipped, stats) = read_conns(&text);
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(stats.records, 2);
    let c = &conns[0];
    assert_eq!(c.ts, 1_704_067_200.25);
    assert_eq!(c.uid, "Cabc1");
    assert_eq!(c.id.orig_h, "10.0.0.5".parse::<IpAddr>().unwrap());
    assert_eq!((c.id.orig_p, c.id.resp_p), (51000, 443));
    assert_eq!(c.service.as_deref(), Some("ssl"));
    assert_eq!(c.duration, Some(0.5));
    assert_eq!((c.orig_bytes, c.orig_ip_bytes), (Some(300), Some(620)));
    let icmp = &conns[1];
    assert_eq!(icmp.proto, "icmp");
    assert_eq!(
        (icmp.service.clone(), icmp.duration, icmp.orig_bytes),
        (None, None, None)
    );
    assert_eq!(icmp.id.resp_h, "ff02::2".parse::<IpAddr>().unwrap());
}

#[test]
fn dns_vectors_empty_fields_and_escapes() {
    let text = "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n\
#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tquery\tqtype_name\trcode_name\tanswers\tTTLs\n\
#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tstring\tstring\tvector[string]\tvector[interval]\n\
1.5\tC1\t10.0.0.5\t5353\t10.0.0.1\t53\tudp\twww.example.com\tA\tNOERROR\tcdn.example.net,192.0.2.1\t300.000000,60.0\n\
2.5\tC2\t10.0.0.5\t5353\t10.0.0.1\t53\tudp\tta\\x09b\\x2cc.example\tTXT\t-\t(empty)\t-\n";
    let (records, skipped, _) = parse_lines(LogKind::Dns, text.as_bytes());
    assert!(skipped.is_empty(), "{skipped:?}");
    let [Record::Dns(first), Record::Dns(second)] = records.as_slice() else {
        panic!("{records:?}");
    };
    assert_eq!(first.answers, vec!["cdn.example.net", "192.0.2.1"]);
    assert_eq!(first.ttls, vec![300.0, 60.0]);
    assert_eq!(first.qtype_name.as_deref(), Some("A"));
    // `\x09` and `\x2c` are an escaped tab and comma inside the value.
    assert_eq!(second.query.as_deref(), Some("ta\tb,c.example"));
    assert_eq!(second.rcode_name, None);
    assert!(second.answers.is_empty() && second.ttls.is_empty());
}

#[test]
fn json_lines_with_numeric_and_iso_times() {
    let text = r#"{"ts":1704067200.25,"uid":"C1","id.orig_h":"10.0.0.5","id.orig_p":51000,"id.resp_h":"192.0.2.7","id.resp_p":443,"version":"TLSv13","server_name":"c2.example","established":true}
{"ts":"2024-01-01T00:01:00.500000Z","uid":"C2","id.orig_h":"10.0.0.5","id.orig_p":51001,"id.resp_h":"192.0.2.7","id.resp_p":443}
"#;
    let (records, skipped, _) = parse_lines(LogKind::Ssl, text.as_bytes());
    assert!(skipped.is_empty(), "{skipped:?}");
    let [Record::Ssl(first), Record::Ssl(second)] = records.as_slice() else {
        panic!("{records:?}");
    };
    assert_eq!(first.server_name.as_deref(), Some("c2.example"));
    assert_eq!(first.established, Some(true));
    assert_eq!(second.ts, 1_704_067_260.5);
    assert_eq!(
        (second.server_name.clone(), second.established),
        (None, None)
    );
}

#[test]
fn bad_lines_are_counted_by_reason_and_the_rest_is_read() {
    let text = format!(
        "1.0\tbefore-any-header\n{CONN_HEADER}{CONN_LINE}\
1.0\tCx\tnot-an-ip\t1\t192.0.2.7\t443\ttcp\t-\t-\t-\t-\t-\t-\t-\t-\t-\n\
1.0\tCx\t10.0.0.5\t70000\t192.0.2.7\t443\ttcp\t-\t-\t-\t-\t-\t-\t-\t-\t-\n\
1.0\t-\t10.0.0.5\t1\t192.0.2.7\t443\ttcp\t-\t-\t-\t-\t-\t-\t-\t-\t-\n\
nan\tCx\t10.0.0.5\t1\t192.0.2.7\t443\ttcp\t-\t-\t-\t-\t-\t-\t-\t-\t-\n\
1.0\tCx\t10.0.0.5\n\
{{\"ts\": 1.0, \"uid\": \n\
{{\"ts\": 1.0}} trailing\n\
{CONN_LINE}"
    );
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(b"\xff\xfe\n");
    let (records, skipped, stats) = parse_lines(LogKind::Conn, &bytes);
    assert_eq!(records.len(), 2, "{skipped:?}");
    let reasons: Vec<&str> = skipped.iter().map(|s| s.error.reason()).collect();
    assert_eq!(
        reasons,
        [
            "no_header",
            "bad_value",
            "bad_value",
            "missing_field",
            "bad_value",
            "column_count",
            "bad_json",
            "bad_json",
            "not_utf8"
        ]
    );
    assert_eq!(stats.skipped_total(), 9);
    assert_eq!(stats.skipped.get("bad_value"), Some(&3));
    assert_eq!(
        skipped[3].error,
        LineError::MissingField("uid"),
        "{}",
        skipped[3].error
    );
    // Line numbers count every line, headers included.
    assert_eq!(skipped[0].line, 1);
    assert_eq!(skipped[1].line, 11);
}

#[test]
fn a_last_line_cut_short_is_told_apart_from_an_invalid_one() {
    let cut = &CONN_LINE[..40];
    let (conns, skipped, _) = read_conns(&format!("{CONN_HEADER}{CONN_LINE}{cut}"));
    assert_eq!(conns.len(), 1);
    assert!(
        matches!(&skipped[..], [Skipped { error: LineError::Truncated(inner), .. }]
            if matches!(**inner, LineError::ColumnCount { .. })),
        "{skipped:?}"
    );
    // A complete last line without its newline still counts.
    let (conns, skipped, _) = read_conns(&format!("{CONN_HEADER}{}", CONN_LINE.trim_end()));
    assert_eq!((conns.len(), skipped.len()), (1, 0));
}

#[test]
fn an_overlong_line_is_skipped_without_losing_the_next() {
    let long = "x".repeat(MAX_LINE_BYTES + 10);
    let (conns, skipped, _) = read_conns(&format!("{CONN_HEADER}{long}\n{CONN_LINE}"));
    assert_eq!(conns.len(), 1);
    assert_eq!(skipped[0].error, LineError::TooLong);
}

#[test]
fn file_names_say_which_log() {
    assert_eq!(LogFile::kind_of("conn.log"), Some(LogKind::Conn));
    assert_eq!(
        LogFile::kind_of("conn.00:00:00-01:00:00.log.gz"),
        Some(LogKind::Conn)
    );
    assert_eq!(LogFile::kind_of("dns-20240101.log"), Some(LogKind::Dns));
    assert_eq!(LogFile::kind_of("http.json"), Some(LogKind::Http));
    assert_eq!(LogFile::kind_of("ssl.log.gz"), Some(LogKind::Ssl));
    for other in [
        "conn_summary.log",
        "conn-stats.log",
        "x509.log",
        "connx.log",
        "conn.txt",
    ] {
        assert_eq!(LogFile::kind_of(other), None, "{other}");
    }
}

#[test]
fn dated_folders_and_gzip_are_read_and_damage_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let day = dir.path().join("2024-01-01");
    std::fs::create_dir(&day).unwrap();
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(day.join("conn.00:00:00-01:00:00.log.gz")).unwrap(),
        flate2::Compression::default(),
    );
    gz.write_all(format!("{CONN_HEADER}{CONN_LINE}").as_bytes())
        .unwrap();
    gz.finish().unwrap();
    // A gzip file cut in half: the records before the cut still come out.
    let mut whole = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    whole
        .write_all(format!("{CONN_HEADER}{}", CONN_LINE.repeat(2000)).as_bytes())
        .unwrap();
    let whole = whole.finish().unwrap();
    std::fs::write(
        day.join("conn.01:00:00-02:00:00.log.gz"),
        &whole[..whole.len() / 2],
    )
    .unwrap();
    std::fs::write(dir.path().join("weird.log"), "ignored").unwrap();
    let mut files = log_files(dir.path()).unwrap();
    assert_eq!(files.len(), 2);
    let mut seen = 0;
    read_file(&mut files[0], |_| seen += 1).unwrap();
    assert_eq!((seen, files[0].stopped.clone()), (1, None));
    let mut partial = 0;
    read_file(&mut files[1], |_| partial += 1).unwrap();
    assert!(partial > 0 && partial < 2000, "{partial}");
    assert!(
        files[1]
            .stopped
            .as_deref()
            .is_some_and(|s| s.starts_with("cut short")),
        "{:?}",
        files[1].stopped
    );
}
