//! A Zeek log of any kind (the first byte picks conn, dns, ssl or http) from arbitrary bytes,
//! TSV headers and rows or JSON lines: every line is a record or a skip with its reason, never a
//! panic, and the counts agree with what came out.

#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_detect::zeek::{LogKind, parse_lines};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, log)) = data.split_first() else {
        return;
    };
    let kind = LogKind::ALL[usize::from(selector) % LogKind::ALL.len()];
    let (records, skipped, stats) = parse_lines(kind, log);
    assert_eq!(stats.records, records.len() as u64);
    assert_eq!(stats.skipped_total(), skipped.len() as u64);
    assert!(stats.lines >= stats.records + stats.skipped_total());
    assert!(skipped.iter().all(|s| s.line >= 1 && s.line <= stats.lines));
});
