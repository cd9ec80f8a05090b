//! The Palisade policy language: parse, validate, compile and evaluate.
//!
//! A policy is a YAML or JSON document: ordered rules that match connections by the application
//! behind them and by where they go, named lists, and embedded test cases. This crate reads such
//! documents with errors that name file, line and field, compiles them into indexes so that a
//! decision costs the same few hash and binary-search lookups whatever the number of rules, and
//! keeps a plain reference evaluator that the compiled form is tested against. It does no I/O and
//! never reads the clock: callers pass file contents and the current time in.
//!
//! Layout:
//! - [`source`]: YAML/JSON text to a tree of values with positions.
//! - [`decode`]: that tree to a validated [`Policy`], every error collected.
//! - [`model`]: the validated policy, and the reference meaning of each matcher.
//! - [`pattern`], [`field`], [`condition`], [`schedule`]: the values rules are made of.
//! - [`index`] and [`compile`]: the compiled policy used on the hot path.
//! - [`naive`]: the reference evaluator.
//! - [`explain`]: why a decision was made, in words.
//! - [`lint`]: warnings for rules that can never match.
//! - [`emit`]: canonical formatting.
//! - [`cases`]: running the embedded test cases.
//! - [`diagnostic`]: errors and warnings with file, line and field.

pub mod cases;
pub mod compile;
pub mod condition;
pub mod decode;
pub mod diagnostic;
pub mod emit;
pub mod explain;
pub mod field;
pub mod index;
pub mod lint;
pub mod model;
pub mod naive;
pub mod pattern;
pub mod schedule;
pub mod source;

use palisade_proto::{Action, Connection, Verdict};

pub use compile::CompiledPolicy;
pub use decode::ListFiles;
pub use diagnostic::{Diagnostic, Invalid, Severity};
pub use model::Policy;
pub use source::Format;

/// The outcome of deciding one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The action of the deciding rule, or the policy's default action.
    pub action: Action,
    /// Position of the deciding rule in [`Policy::rules`]; `None` for the default action.
    pub rule: Option<usize>,
    /// What the endpoint does: in monitor mode a `block` is recorded as "would block" and the
    /// connection is allowed.
    pub verdict: Verdict,
}

impl Decision {
    /// Whether the policy decided `block` but its monitor mode lets the connection through.
    pub fn would_block(&self) -> bool {
        self.action == Action::Block && self.verdict == Verdict::Allow
    }
}

/// A policy read and validated, with the warnings found in it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The policy.
    pub policy: Policy,
    /// Things that are valid but probably not meant (rules that can never match).
    pub warnings: Vec<Diagnostic>,
}

/// Reads and validates a policy document. `file` names it in messages and selects the syntax
/// (`.json` is JSON, anything else YAML); `files` reads list files the document names.
pub fn load(file: &str, text: &str, files: ListFiles<'_>) -> Result<Loaded, Invalid> {
    let root = parse_source(file, text, Format::from_file_name(file))?;
    let policy = decode::policy(file, &root, files)?;
    let warnings = lint::shadowed_rules(&policy, file);
    Ok(Loaded { policy, warnings })
}

/// Reads a connection written as a JSON object of policy field names, normalised.
pub fn parse_connection(name: &str, json: &str) -> Result<Connection, Invalid> {
    let root = parse_source(name, json, Format::Json)?;
    decode::connection(name, &root)
}

fn parse_source(file: &str, text: &str, format: Format) -> Result<source::Node, Invalid> {
    source::parse(text, format).map_err(|e| Invalid {
        file: file.to_owned(),
        errors: vec![Diagnostic {
            severity: Severity::Error,
            file: file.to_owned(),
            pos: e.pos,
            field: String::new(),
            message: e.message,
        }],
    })
}
