//! Log files on disk: finding them in a directory tree, and reading one, plain or gzip.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use serde::Serialize;

use super::{LogKind, LogReader, ReadStats, Record, Skipped};

/// How deep [`log_files`] looks below the directory it is given (Zeek archives are one level of
/// dated folders; a little more is allowed for sensors' own sub-folders).
const MAX_DEPTH: usize = 4;

/// How many skipped lines a [`LogFile`] keeps as examples (all are counted).
const MAX_EXAMPLES: usize = 5;

/// Why a directory or file could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The directory (or a sub-folder) could not be listed.
    #[error("{path}: cannot list: {source}")]
    List {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file could not be opened.
    #[error("{path}: cannot open: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// A log file found by [`log_files`], and after [`read_file`] what reading it gave.
#[derive(Debug, Clone, Serialize)]
pub struct LogFile {
    /// Where it is.
    pub path: PathBuf,
    /// Which log, from its name.
    pub kind: LogKind,
    /// Whether it is gzip-compressed (name ends in `.gz`).
    pub gzip: bool,
    /// Lines, records and skipped lines (after reading).
    pub stats: ReadStats,
    /// The first skipped lines, as `line N: reason` (after reading).
    pub examples: Vec<String>,
    /// Why reading stopped before the end, if it did: a gzip stream cut short or corrupt, or an
    /// I/O error. The records before it were delivered.
    pub stopped: Option<String>,
}

impl LogFile {
    /// A file of `kind` at `path`, unread.
    pub fn new(path: PathBuf, kind: LogKind) -> LogFile {
        let gzip = path.extension().is_some_and(|ext| ext == "gz");
        LogFile {
            path,
            kind,
            gzip,
            stats: ReadStats::default(),
            examples: Vec::new(),
            stopped: None,
        }
    }

    /// The log a file name names, if it is one of [`LogKind::ALL`]: `conn.log`,
    /// `conn.00:00:00-01:00:00.log.gz`, `conn-20240101.log`, `conn.json` (but not
    /// `conn_summary.log` or `conn-stats.log`).
    pub fn kind_of(name: &str) -> Option<LogKind> {
        let name = name.strip_suffix(".gz").unwrap_or(name);
        if !(name.ends_with(".log") || name.ends_with(".json")) {
            return None;
        }
        let stem = name.split('.').next().unwrap_or_default();
        LogKind::ALL.into_iter().find(|kind| {
            let Some(rest) = stem.strip_prefix(kind.name()) else {
                return false;
            };
            let mut chars = rest.chars();
            match chars.next() {
                None => true,
                Some('_' | '-') => chars.next().is_some_and(|c| c.is_ascii_digit()),
                Some(_) => false,
            }
        })
    }
}

/// The conn, dns, ssl and http logs in `dir` and its sub-folders (four levels deep), sorted by
/// path (so dated folders come in date order). Symbolic links to folders are not followed.
pub fn log_files(dir: &Path) -> Result<Vec<LogFile>, FileError> {
    let mut found = Vec::new();
    walk(dir, 0, &mut found)?;
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// Reads `file`, handing each record to `on_record`; fills in the file's figures.
pub fn read_file(file: &mut LogFile, mut on_record: impl FnMut(Record)) -> Result<(), FileError> {
    let opened = File::open(&file.path).map_err(|source| FileError::Open {
        path: file.path.clone(),
        source,
    })?;
    let input: Box<dyn Read> = if file.gzip {
        Box::new(MultiGzDecoder::new(opened))
    } else {
        Box::new(opened)
    };
    let mut reader = LogReader::new(file.kind, BufReader::with_capacity(1 << 16, input));
    let mut examples = Vec::new();
    let stopped = loop {
        match reader.next_record() {
            Ok(None) => break None,
            Ok(Some(Ok(record))) => on_record(record),
            Ok(Some(Err(Skipped { line, error }))) => {
                if examples.len() < MAX_EXAMPLES {
                    examples.push(format!("line {line}: {error}"));
                }
            }
            Err(err) if err.kind() == ErrorKind::UnexpectedEof => {
                break Some(format!("cut short: {err}"));
            }
            Err(err) if matches!(err.kind(), ErrorKind::InvalidInput | ErrorKind::InvalidData) => {
                break Some(format!("corrupt: {err}"));
            }
            Err(err) => break Some(format!("read error: {err}")),
        }
    };
    file.stats = reader.stats().clone();
    file.examples = examples;
    file.stopped = stopped;
    Ok(())
}

fn walk(dir: &Path, depth: usize, found: &mut Vec<LogFile>) -> Result<(), FileError> {
    let list_error = |source| FileError::List {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(list_error)? {
        let entry = entry.map_err(list_error)?;
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        if file_type.is_dir() {
            if depth < MAX_DEPTH {
                walk(&path, depth + 1, found)?;
            }
            continue;
        }
        let is_file = file_type.is_file() || (file_type.is_symlink() && path.is_file());
        if let (true, Some(kind)) = (
            is_file,
            entry.file_name().to_str().and_then(LogFile::kind_of),
        ) {
            found.push(LogFile::new(path, kind));
        }
    }
    Ok(())
}
