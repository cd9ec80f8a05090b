//! Zeek logs through the pipeline: conn records (named by the HTTP `Host` and TLS server name
//! of the same `uid`) and dns queries, each source address taken as an agent, in time order,
//! with a tick each minute of log time. Findings cite Zeek `uid`s as their evidence.
//!
//! Zeek knows no applications: every finding is about a source address, and the detectors
//! keyed by application judge each source's traffic as one application's.

use std::net::IpAddr;
use std::path::Path;

use super::{Counters, Finding, Observation, Pipeline, Settings};
use crate::beacon::zeek::{names_by_uid, note_unreadable};
use crate::zeek::{FileError, LogFile, LogKind, Record, log_files, read_file};

const MINUTE_MS: i64 = 60_000;

/// What a replay read and raised.
#[derive(Debug)]
pub struct Replay {
    /// The files read, with their figures (records, skipped lines and why).
    pub files: Vec<LogFile>,
    /// Connections and DNS queries replayed.
    pub replayed: usize,
    /// The pipeline's counters at the end.
    pub counters: Counters,
    /// What the detectors raised, in the order they raised it.
    pub findings: Vec<Finding>,
}

/// One record as replayed.
struct Row {
    time_ms: i64,
    src: String,
    uid: String,
    domain: Option<String>,
    dst_ip: IpAddr,
    dst_port: u16,
    bytes_out: u64,
    bytes_in: u64,
    query_type: Option<String>,
}

/// Reads the conn, dns, http and ssl logs under `dir` and runs them through a pipeline with
/// `settings`. Only a directory that cannot be listed is an error; a file that cannot be read
/// is noted in its `stopped`.
pub fn replay_dir(dir: &Path, settings: Settings) -> Result<Replay, FileError> {
    let mut files = log_files(dir)?;
    let names = names_by_uid(&mut files);
    let mut rows = Vec::new();
    for file in files
        .iter_mut()
        .filter(|f| matches!(f.kind, LogKind::Conn | LogKind::Dns))
    {
        let read = read_file(file, |record| match record {
            Record::Conn(conn) => rows.push(Row {
                time_ms: millis(conn.ts),
                src: conn.id.orig_h.to_string(),
                domain: names.get(&conn.uid).cloned(),
                uid: conn.uid,
                dst_ip: conn.id.resp_h,
                dst_port: conn.id.resp_p,
                bytes_out: conn.orig_bytes.unwrap_or(0),
                bytes_in: conn.resp_bytes.unwrap_or(0),
                query_type: None,
            }),
            Record::Dns(dns) => {
                if let Some(query) = dns.query {
                    rows.push(Row {
                        time_ms: millis(dns.ts),
                        src: dns.id.orig_h.to_string(),
                        uid: dns.uid,
                        domain: Some(query),
                        dst_ip: dns.id.resp_h,
                        dst_port: 53,
                        bytes_out: 0,
                        bytes_in: 0,
                        query_type: dns.qtype_name,
                    });
                }
            }
            Record::Http(_) | Record::Ssl(_) => {}
        });
        note_unreadable(file, read);
    }
    rows.sort_by_key(|r| r.time_ms);
    let mut pipeline = Pipeline::new(settings);
    let mut findings = Vec::new();
    let mut next_tick = rows.first().map_or(0, |r| r.time_ms + MINUTE_MS);
    for (n, row) in rows.iter().enumerate() {
        while row.time_ms >= next_tick {
            pipeline.tick(next_tick, &mut findings);
            next_tick += MINUTE_MS;
        }
        let observation = Observation {
            agent: &row.src,
            seq: n as u64 + 1,
            time_ms: row.time_ms,
            app: "",
            domain: row.domain.as_deref(),
            dst_ip: Some(row.dst_ip),
            dst_port: row.dst_port,
            inbound: false,
            bytes_out: row.bytes_out,
            bytes_in: row.bytes_in,
            update_of: None,
            query_type: row.query_type.as_deref(),
            reference: Some(&row.uid),
        };
        pipeline.observe(&observation, &mut findings);
    }
    if let Some(last) = rows.last() {
        pipeline.tick(last.time_ms, &mut findings);
    }
    Ok(Replay {
        files,
        replayed: rows.len(),
        counters: pipeline.counters(),
        findings,
    })
}

fn millis(ts: f64) -> i64 {
    #[allow(clippy::cast_possible_truncation)] // Zeek times are seconds since 1970, far in range
    let ms = (ts * 1000.0).round() as i64;
    ms
}
