//! Errors and warnings about a policy document, each naming file, line, column and field.

use std::fmt;

use crate::source::Pos;

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The document is still valid; something in it is probably not what was meant.
    Warning,
    /// The document is invalid and cannot be used.
    Error,
}

/// One finding about a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file (or other source name) the finding is in.
    pub file: String,
    /// Where in the file.
    pub pos: Pos,
    /// The field's path in the document, e.g. `rules[2].match.dst_port`.
    pub field: String,
    /// What is wrong, and where possible how to fix it.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{}:{}: {severity}: ", self.file, self.pos)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// A document that cannot be used, with every error found in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} is invalid: {} error(s)", .file, .errors.len())]
pub struct Invalid {
    /// The file (or other source name).
    pub file: String,
    /// The errors, in document order; never empty.
    pub errors: Vec<Diagnostic>,
}
