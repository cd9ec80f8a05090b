//! Zeek logs: conn, dns, ssl and http, in Zeek's TSV format (with its `#separator`, `#fields`,
//! `#types` headers) or as JSON lines, plain or gzip-compressed, from one file or a directory tree
//! (Zeek's dated archive folders, e.g. `DIR/2024-01-01/conn.00:00:00-01:00:00.log.gz`).
//!
//! Logs are hostile input: a line that cannot be read is counted and skipped with its reason
//! ([`LineError`]), never a panic, and the rest of the file is still read. A last line cut short
//! (a log still being written, a truncated archive) is told apart from an invalid one.
//!
//! - [`LogReader`]: the records of one log, line by line, from any reader.
//! - [`read_file`] / [`log_files`]: files and directories, plain or `.gz`.
//! - [`Conn`], [`Dns`], [`Ssl`], [`Http`]: the typed records.

mod fields;
mod files;
mod records;

use std::collections::BTreeMap;
use std::fmt;
use std::io::BufRead;

use serde::Serialize;

pub use files::{FileError, LogFile, log_files, read_file};
pub use records::{Conn, ConnId, Dns, Http, Record, Ssl};

use fields::{JsonRow, TsvHeader, TsvRow};

/// Longest line read; a longer one is skipped (and its bytes are not kept in memory).
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Which Zeek log a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogKind {
    /// `conn.log`: one line per connection.
    Conn,
    /// `dns.log`: one line per DNS query and its answers.
    Dns,
    /// `ssl.log`: one line per TLS handshake.
    Ssl,
    /// `http.log`: one line per HTTP request.
    Http,
}

impl LogKind {
    /// Every kind this module reads.
    pub const ALL: [LogKind; 4] = [LogKind::Conn, LogKind::Dns, LogKind::Ssl, LogKind::Http];

    /// Zeek's name for the log (its `#path`, and the start of its file names).
    pub fn name(self) -> &'static str {
        match self {
            LogKind::Conn => "conn",
            LogKind::Dns => "dns",
            LogKind::Ssl => "ssl",
            LogKind::Http => "http",
        }
    }
}

impl fmt::Display for LogKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why one line of a log was skipped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LineError {
    /// The line is longer than [`MAX_LINE_BYTES`].
    #[error("line longer than {MAX_LINE_BYTES} bytes")]
    TooLong,
    /// The line is not valid UTF-8 (Zeek escapes every non-printable byte as `\xHH`).
    #[error("not UTF-8")]
    NotUtf8,
    /// A TSV data line came before any `#fields` header.
    #[error("data line before any #fields header")]
    NoHeader,
    /// A `#` header line that cannot be used (e.g. `#fields` with no names, a bad `#separator`).
    #[error("bad header: {0}")]
    BadHeader(String),
    /// A TSV line with a different number of columns than `#fields` names.
    #[error("{found} columns where #fields names {expected}")]
    ColumnCount {
        /// Columns named by `#fields`.
        expected: usize,
        /// Columns on the line.
        found: usize,
    },
    /// A JSON line that does not parse, or is not an object.
    #[error("bad JSON: {0}")]
    BadJson(String),
    /// A field the record needs is absent or unset (`-`).
    #[error("missing field {0}")]
    MissingField(&'static str),
    /// A field whose value does not have its type (an address that is not one, ...).
    #[error("field {field}: {problem}")]
    BadValue {
        /// The field's Zeek name.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The last line of the input ends without a newline and does not parse: cut short (a log
    /// still being written, a truncated archive) rather than invalid.
    #[error("last line cut short ({0})")]
    Truncated(Box<LineError>),
}

impl LineError {
    /// A short stable name for counting skipped lines by reason.
    pub fn reason(&self) -> &'static str {
        match self {
            LineError::TooLong => "too_long",
            LineError::NotUtf8 => "not_utf8",
            LineError::NoHeader => "no_header",
            LineError::BadHeader(_) => "bad_header",
            LineError::ColumnCount { .. } => "column_count",
            LineError::BadJson(_) => "bad_json",
            LineError::MissingField(_) => "missing_field",
            LineError::BadValue { .. } => "bad_value",
            LineError::Truncated(_) => "truncated",
        }
    }
}

/// A skipped line: where, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    /// Line number, from 1.
    pub line: u64,
    /// Why it was skipped.
    pub error: LineError,
}

/// What reading one log gave: lines seen, records read, lines skipped by reason.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReadStats {
    /// Lines read, headers included.
    pub lines: u64,
    /// Records parsed.
    pub records: u64,
    /// Skipped lines by [`LineError::reason`].
    pub skipped: BTreeMap<&'static str, u64>,
}

impl ReadStats {
    /// All skipped lines.
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    /// Adds another log's figures to these.
    pub fn add(&mut self, other: &ReadStats) {
        self.lines += other.lines;
        self.records += other.records;
        for (reason, count) in &other.skipped {
            *self.skipped.entry(reason).or_default() += count;
        }
    }
}

/// The records of one log, line by line. Each line is TSV or JSON on its own: a line starting
/// with `{` is JSON, one starting with `#` a TSV header, anything else a TSV row under the last
/// `#fields` header. Empty lines are ignored.
pub struct LogReader<R> {
    input: R,
    kind: LogKind,
    header: TsvHeader,
    line: u64,
    buf: Vec<u8>,
    stats: ReadStats,
}

impl<R: BufRead> LogReader<R> {
    /// Reads a log of `kind` from `input`.
    pub fn new(kind: LogKind, input: R) -> Self {
        LogReader {
            input,
            kind,
            header: TsvHeader::default(),
            line: 0,
            buf: Vec::new(),
            stats: ReadStats::default(),
        }
    }

    /// The figures so far.
    pub fn stats(&self) -> &ReadStats {
        &self.stats
    }

    /// The next record, or the next skipped line; `Ok(None)` at the end of the input. An I/O
    /// error (including a corrupt or truncated gzip stream) ends the reading.
    pub fn next_record(&mut self) -> std::io::Result<Option<Result<Record, Skipped>>> {
        loop {
            let Some(terminated) = self.read_line()? else {
                return Ok(None);
            };
            self.line += 1;
            self.stats.lines += 1;
            let outcome = match terminated {
                Err(error) => Err(error),
                Ok(terminated) => match self.parse_buffered() {
                    Ok(None) => continue,
                    Ok(Some(record)) => Ok(record),
                    Err(error) if !terminated => Err(LineError::Truncated(Box::new(error))),
                    Err(error) => Err(error),
                },
            };
            return Ok(Some(match outcome {
                Ok(record) => {
                    self.stats.records += 1;
                    Ok(record)
                }
                Err(error) => {
                    *self.stats.skipped.entry(error.reason()).or_default() += 1;
                    Err(Skipped {
                        line: self.line,
                        error,
                    })
                }
            }));
        }
    }

    /// Reads one line into `buf` (without its newline). `None` at the end of the input;
    /// `Some(Ok(terminated))` for a line, `Some(Err(TooLong))` for one over the limit (read to
    /// its end and dropped).
    fn read_line(&mut self) -> std::io::Result<Option<Result<bool, LineError>>> {
        self.buf.clear();
        let mut too_long = false;
        let mut any = false;
        loop {
            let available = match self.input.fill_buf() {
                Ok(bytes) => bytes,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            if available.is_empty() {
                return Ok(match (any, too_long) {
                    (false, _) => None,
                    (true, true) => Some(Err(LineError::TooLong)),
                    (true, false) => Some(Ok(false)),
                });
            }
            any = true;
            let (chunk, found) = match available.iter().position(|&b| b == b'\n') {
                Some(at) => (available.get(..at).unwrap_or_default(), Some(at)),
                None => (available, None),
            };
            if !too_long && self.buf.len() + chunk.len() <= MAX_LINE_BYTES {
                self.buf.extend_from_slice(chunk);
            } else {
                too_long = true;
                self.buf.clear();
            }
            let consumed = found.map_or(chunk.len(), |at| at + 1);
            self.input.consume(consumed);
            if found.is_some() {
                return Ok(Some(if too_long {
                    Err(LineError::TooLong)
                } else {
                    Ok(true)
                }));
            }
        }
    }

    /// Parses the buffered line: a record, `None` for a header or empty line, or the error.
    fn parse_buffered(&mut self) -> Result<Option<Record>, LineError> {
        let text = std::str::from_utf8(&self.buf).map_err(|_| LineError::NotUtf8)?;
        let text = text.strip_suffix('\r').unwrap_or(text);
        if text.trim().is_empty() {
            return Ok(None);
        }
        if text.starts_with('{') {
            let row = JsonRow::parse(text)?;
            return Record::parse(self.kind, &row).map(Some);
        }
        if text.starts_with('#') {
            self.header.apply(text)?;
            return Ok(None);
        }
        let row = TsvRow::split(&self.header, text)?;
        Record::parse(self.kind, &row).map(Some)
    }
}

/// Reads a whole log of `kind` held in memory: its records, its skipped lines, and the figures.
/// (What the fuzz target drives.)
pub fn parse_lines(kind: LogKind, input: &[u8]) -> (Vec<Record>, Vec<Skipped>, ReadStats) {
    let mut reader = LogReader::new(kind, input);
    let (mut records, mut skipped) = (Vec::new(), Vec::new());
    while let Ok(Some(outcome)) = reader.next_record() {
        match outcome {
            Ok(record) => records.push(record),
            Err(skip) => skipped.push(skip),
        }
    }
    (records, skipped, reader.stats)
}

#[cfg(test)]
mod tests;
