//! The language reference, `docs/policy.md`, shows what the code does: every complete policy in
//! it is loaded, and its embedded tests are run.
//!
//! Conventions in `docs/policy.md` (its last section repeats them for writers of the document):
//! - A policy block is a fenced block tagged `yaml` whose first line is `version: 1`, or tagged
//!   `json` whose first line is `{`. Every other block (fragments, command output, list files)
//!   is an illustration and is not checked.
//! - Words after the language in the fence's info string say what the block is about:
//!   - none: the policy is valid, has no warnings, and its embedded tests pass;
//!   - `expect-warnings`: the same, except that it has at least one warning;
//!   - `invalid`: the policy is refused;
//!   - `canonical`: valid as above, and exactly what `palisade policy fmt` prints for it.
//!
//!   The first line of a policy block has to stay `version: 1`, so the marker lives in the info
//!   string (```` ```yaml expect-warnings ````), which Markdown renderers ignore after the
//!   language.
//! - When a policy block is directly followed by a `text` block whose first line is
//!   `$ palisade policy check NAME`, the policy is loaded under the file name `NAME`, and the
//!   diagnostic lines of that text block (`NAME:LINE:COL: ...` and `NAME is invalid: ...`) must
//!   be exactly the ones the policy produces. Other policy blocks are loaded as
//!   `docs/policy.md block N.yaml` (or `.json`).
//! - List files named with `file:` are read from `examples/policies` (see `support::load`).
//! - Embedded cases without `at` are decided at a fixed instant, 2026-03-04T12:00:00Z.

use std::path::Path;

use jiff::Timestamp;
use palisade_policy::{CompiledPolicy, Format, cases, emit};

use crate::support::{load, load_ok};

/// What a policy block of the reference must do, from the words after its language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Valid,
    Warnings,
    Invalid,
    Canonical,
}

/// A fenced block of the Markdown text.
struct Fenced {
    /// The info string after the opening fence, e.g. `yaml expect-warnings`.
    info: String,
    /// Line of the opening fence, from 1.
    line: usize,
    /// The lines between the fences, each ending in a newline.
    text: String,
}

#[test]
fn every_policy_in_the_reference_does_what_the_reference_says() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/policy.md");
    let markdown = std::fs::read_to_string(&path).unwrap();
    let blocks = fenced_blocks(&markdown);
    let now: Timestamp = "2026-03-04T12:00:00Z".parse().unwrap();
    let mut checked = 0;
    for (i, block) in blocks.iter().enumerate() {
        let Some((ext, expect)) = policy_block(block) else {
            continue;
        };
        checked += 1;
        // Command output right after the block names the file the policy is shown as.
        let output = blocks
            .get(i + 1)
            .and_then(|next| Some((check_command_name(next)?, next)));
        let name = match &output {
            Some((shown_as, _)) => shown_as.clone(),
            None => format!("docs/policy.md block {checked}.{ext}"),
        };
        let at = format!("docs/policy.md line {} ({name})", block.line);
        let produced = check_block(block, &name, expect, now, &at);
        if let Some((_, output)) = output {
            assert_eq!(
                shown_diagnostics(&output.text, &name),
                produced,
                "{at}: the output shown after the block is not what loading it produces"
            );
        }
    }
    assert!(
        checked >= 5,
        "expected at least 5 policies in docs/policy.md, found {checked}"
    );
}

/// Loads one policy block and checks it as its tag says; returns the diagnostic lines it
/// produced (warnings, or errors and the summary line for an invalid policy).
fn check_block(
    block: &Fenced,
    name: &str,
    expect: Expect,
    now: Timestamp,
    at: &str,
) -> Vec<String> {
    if expect == Expect::Invalid {
        let invalid = match load(name, &block.text) {
            Ok(_) => panic!("{at}: tagged `invalid` but the policy is valid"),
            Err(invalid) => invalid,
        };
        let mut lines: Vec<String> = invalid.errors.iter().map(ToString::to_string).collect();
        lines.push(invalid.to_string());
        return lines;
    }
    let loaded = load_ok(name, &block.text);
    let warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    if expect == Expect::Warnings {
        assert!(
            !warnings.is_empty(),
            "{at}: tagged `expect-warnings` but there are none"
        );
    } else {
        assert!(
            warnings.is_empty(),
            "{at}: unexpected warnings: {warnings:#?}"
        );
    }
    let compiled = CompiledPolicy::new(&loaded.policy);
    for result in cases::run(&loaded.policy, &compiled, now) {
        assert!(
            result.passed,
            "{at}: test case {} (line {} of the block): {}",
            result.name, result.line, result.detail
        );
    }
    if expect == Expect::Canonical {
        let canonical = emit::to_text(&loaded.policy, Format::Yaml);
        assert_eq!(
            canonical, block.text,
            "{at}: tagged `canonical` but `fmt` prints something else"
        );
    }
    warnings
}

/// Every fenced block, in order. Fences are lines starting with three backticks.
fn fenced_blocks(markdown: &str) -> Vec<Fenced> {
    let mut blocks = Vec::new();
    let mut open: Option<Fenced> = None;
    for (i, line) in markdown.lines().enumerate() {
        match (open.take(), line.strip_prefix("```")) {
            (None, Some(info)) => {
                open = Some(Fenced {
                    info: info.trim().to_owned(),
                    line: i + 1,
                    text: String::new(),
                });
            }
            (None, None) => {}
            (Some(block), Some(rest)) if rest.trim().is_empty() => blocks.push(block),
            (Some(mut block), _) => {
                block.text.push_str(line);
                block.text.push('\n');
                open = Some(block);
            }
        }
    }
    assert!(open.is_none(), "docs/policy.md ends inside a fenced block");
    blocks
}

/// The file extension and expectation of a policy block; `None` for any other block.
fn policy_block(block: &Fenced) -> Option<(&'static str, Expect)> {
    let mut words = block.info.split_whitespace();
    let language = words.next()?;
    let first_line = block.text.lines().next().unwrap_or("");
    let ext = match (language, first_line) {
        ("yaml", "version: 1") => "yaml",
        ("json", "{") => "json",
        _ => return None,
    };
    let tags: Vec<&str> = words.collect();
    let expect = match tags.as_slice() {
        [] => Expect::Valid,
        ["expect-warnings"] => Expect::Warnings,
        ["invalid"] => Expect::Invalid,
        ["canonical"] => Expect::Canonical,
        _ => panic!(
            "docs/policy.md line {}: unknown block tags {tags:?}; use expect-warnings, invalid or canonical",
            block.line
        ),
    };
    Some((ext, expect))
}

/// `NAME` when the block is command output starting with `$ palisade policy check NAME`.
fn check_command_name(block: &Fenced) -> Option<String> {
    if block.info != "text" {
        return None;
    }
    let first = block.text.lines().next()?;
    first
        .strip_prefix("$ palisade policy check ")
        .map(|name| name.trim().to_owned())
}

/// The lines of command output that are diagnostics about `name`, or its "is invalid" summary.
fn shown_diagnostics(output: &str, name: &str) -> Vec<String> {
    output
        .lines()
        .filter(|line| {
            is_diagnostic(line, name) || line.starts_with(&format!("{name} is invalid:"))
        })
        .map(str::to_owned)
        .collect()
}

/// Whether `line` reads `NAME:LINE:COL: ...`.
fn is_diagnostic(line: &str, name: &str) -> bool {
    let Some(rest) = line.strip_prefix(name).and_then(|r| r.strip_prefix(':')) else {
        return false;
    };
    let mut parts = rest.splitn(3, ':');
    let number = |part: Option<&str>| {
        part.is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    };
    number(parts.next()) && number(parts.next()) && parts.next().is_some_and(|p| p.starts_with(' '))
}
