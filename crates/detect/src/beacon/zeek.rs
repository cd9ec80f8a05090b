//! Beacon observations from Zeek logs: each `conn.log` connection, named by the HTTP `Host` or
//! TLS server name that `http.log` and `ssl.log` give for the same `uid` (through a proxy the
//! connection goes to the proxy's address, and these name the real destination), and measured
//! as RITA does: the originator's IP bytes (`orig_ip_bytes`, else `orig_bytes`) as its size.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use super::{Observation, Tracker};
use crate::zeek::{Conn, FileError, LogFile, LogKind, Record, log_files, read_file};

/// Reads the conn, http and ssl logs under `dir` into `tracker`; returns the files read, each
/// with its figures (lines, records, skipped lines and why). A file that cannot be opened is
/// noted in its `stopped` and the others are still read; only a directory that cannot be listed
/// is an error.
pub fn read_dir(dir: &Path, tracker: &mut Tracker) -> Result<Vec<LogFile>, FileError> {
    let mut files = log_files(dir)?;
    // Names first, so each connection is recorded once, already named.
    let names = names_by_uid(&mut files);
    for file in files.iter_mut().filter(|f| f.kind == LogKind::Conn) {
        let read = read_file(file, |record| {
            if let Record::Conn(conn) = record {
                let name = names.get(&conn.uid).cloned();
                tracker.record(observation(&conn, name));
            }
        });
        note_unreadable(file, read);
    }
    files.retain(|f| f.kind != LogKind::Dns);
    Ok(files)
}

/// The host name each connection (`uid`) was for, from the http and ssl logs among `files`
/// (the first name given wins).
pub fn names_by_uid(files: &mut [LogFile]) -> HashMap<String, String> {
    let mut names: HashMap<String, String> = HashMap::new();
    for file in files
        .iter_mut()
        .filter(|f| matches!(f.kind, LogKind::Http | LogKind::Ssl))
    {
        let read = read_file(file, |record| {
            let (uid, name) = match record {
                Record::Http(http) => (http.uid, http.host.as_deref().and_then(host_name)),
                Record::Ssl(ssl) => (ssl.uid, ssl.server_name.as_deref().and_then(host_name)),
                Record::Conn(_) | Record::Dns(_) => return,
            };
            if let Some(name) = name {
                names.entry(uid).or_insert(name);
            }
        });
        note_unreadable(file, read);
    }
    names
}

/// The observation of one connection, with the name it was for.
pub fn observation(conn: &Conn, dst_name: Option<String>) -> Observation {
    Observation {
        ts: conn.ts,
        src: conn.id.orig_h,
        dst_addr: conn.id.resp_h,
        dst_name,
        bytes: conn.orig_ip_bytes.or(conn.orig_bytes).unwrap_or(0),
        duration: conn.duration.unwrap_or(0.0),
    }
}

/// A host name as a destination: lower case, without a port or a final dot; `None` for an empty
/// value or an address literal (the connection's address says as much).
pub fn host_name(value: &str) -> Option<String> {
    let value = value.trim();
    if value.starts_with('[') || value.parse::<IpAddr>().is_ok() {
        return None;
    }
    let host = match value.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => value,
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() || host.parse::<IpAddr>().is_ok() {
        None
    } else {
        Some(host)
    }
}

/// Notes in `file` why reading it stopped, if it did.
pub(crate) fn note_unreadable(file: &mut LogFile, read: Result<(), FileError>) {
    if let Err(err) = read {
        file.stopped = Some(err.to_string());
    }
}
