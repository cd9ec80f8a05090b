//! `palisade policy`: check, evaluate, test and format policy files.
//!
//! Exit codes: 0 success, 1 a test failed or `fmt --check` found changes, 2 the document (or the
//! connection given with `--conn`) is invalid or cannot be read.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use jiff::Timestamp;
use palisade_policy::{CompiledPolicy, Format, Invalid, Loaded, cases, emit, explain};
use serde_json::json;

/// Largest policy or list file read, so a wrong path cannot exhaust memory.
const MAX_FILE_BYTES: u64 = 256 << 20;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy: exit 0 when valid (warnings are printed), 2 when invalid.
    Check {
        /// Policy file (.yaml, .yml or .json).
        file: PathBuf,
    },
    /// Decide one connection and print the decision as JSON.
    Eval {
        /// Policy file.
        file: PathBuf,
        /// The connection as a JSON object, e.g.
        /// '{"app_path": "/usr/bin/curl", "domain": "example.com", "dst_port": 443}'.
        #[arg(long)]
        conn: String,
        /// Decide as of this instant (RFC 3339, e.g. 2026-03-02T09:30:00Z); default now.
        #[arg(long)]
        at: Option<Timestamp>,
    },
    /// Run the policy's embedded test cases: exit 1 when any fails.
    Test {
        /// Policy file.
        file: PathBuf,
    },
    /// Print the policy in canonical form.
    Fmt {
        /// Policy file.
        file: PathBuf,
        /// Rewrite the file in place instead of printing.
        #[arg(long, conflicts_with = "check")]
        write: bool,
        /// Print nothing; exit 1 when the file is not in canonical form.
        #[arg(long)]
        check: bool,
    },
}

pub fn run(command: PolicyCommand) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Check { file } => {
            let Some((_, loaded)) = load(&file) else {
                return Ok(ExitCode::from(2));
            };
            let policy = &loaded.policy;
            println!(
                "{}: valid: {} rules, {} lists, {} tests, {} warnings",
                file.display(),
                policy.rules.len(),
                policy.lists.len(),
                policy.tests.len(),
                loaded.warnings.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Eval { file, conn, at } => {
            let Some((_, loaded)) = load(&file) else {
                return Ok(ExitCode::from(2));
            };
            let conn = match palisade_policy::parse_connection("--conn", &conn) {
                Ok(conn) => conn,
                Err(invalid) => {
                    report(&invalid);
                    return Ok(ExitCode::from(2));
                }
            };
            let compiled = CompiledPolicy::new(&loaded.policy);
            let decision = compiled.decide(&conn, at.unwrap_or_else(now));
            let rule = decision
                .rule
                .and_then(|i| loaded.policy.rules.get(i))
                .map(|r| r.id.as_str());
            let output = json!({
                "action": decision.action,
                "rule": rule,
                "reason": explain::reasons(&decision, &loaded.policy, &conn),
                "verdict": decision.verdict,
                "would_block": decision.would_block(),
            });
            println!("{output}");
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Test { file } => {
            let Some((_, loaded)) = load(&file) else {
                return Ok(ExitCode::from(2));
            };
            let compiled = CompiledPolicy::new(&loaded.policy);
            let results = cases::run(&loaded.policy, &compiled, now());
            for result in &results {
                let status = if result.passed { "PASS" } else { "FAIL" };
                println!(
                    "{status} {} ({}:{}): {}",
                    result.name,
                    file.display(),
                    result.line,
                    result.detail
                );
            }
            let failed = results.iter().filter(|r| !r.passed).count();
            println!(
                "{} test cases: {} passed, {failed} failed",
                results.len(),
                results.len() - failed
            );
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        PolicyCommand::Fmt { file, write, check } => {
            let Some((text, loaded)) = load(&file) else {
                return Ok(ExitCode::from(2));
            };
            let format = Format::from_file_name(&file.to_string_lossy());
            let canonical = emit::to_text(&loaded.policy, format);
            if format == Format::Yaml && text.contains('#') && canonical != text {
                eprintln!("note: comments are not kept; put notes in `description` fields");
            }
            if check {
                return Ok(if canonical == text {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                });
            }
            if write {
                if canonical != text {
                    replace(&file, &canonical)?;
                }
            } else {
                print!("{canonical}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Reads and validates a policy, printing warnings; returns its text and the policy, or prints
/// the errors and returns `None` when it is invalid or unreadable.
pub(crate) fn load(file: &Path) -> Option<(String, Loaded)> {
    let name = file.display().to_string();
    let text = match read(file) {
        Ok(text) => text,
        Err(err) => {
            eprintln!("{name}: error: {err:#}");
            return None;
        }
    };
    let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let list_files = move |path: &str| read(&base.join(path)).map_err(|e| format!("{e:#}"));
    match palisade_policy::load(&name, &text, &list_files) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                eprintln!("{warning}");
            }
            Some((text, loaded))
        }
        Err(invalid) => {
            report(&invalid);
            None
        }
    }
}

fn report(invalid: &Invalid) {
    for error in &invalid.errors {
        eprintln!("{error}");
    }
    eprintln!("{invalid}");
}

fn read(path: &Path) -> anyhow::Result<String> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    anyhow::ensure!(
        size <= MAX_FILE_BYTES,
        "{} is larger than {} MiB",
        path.display(),
        MAX_FILE_BYTES >> 20
    );
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8 text", path.display()))
}

/// Replaces `file` with `text` through a temporary file in the same directory (with the same
/// permissions), so the policy is never left half written.
fn replace(file: &Path, text: &str) -> anyhow::Result<()> {
    let mut temporary = file.as_os_str().to_owned();
    temporary.push(".palisade-fmt");
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, text).with_context(|| format!("writing {}", temporary.display()))?;
    let permissions = std::fs::metadata(file)
        .with_context(|| format!("reading {}", file.display()))?
        .permissions();
    std::fs::set_permissions(&temporary, permissions)
        .with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, file).with_context(|| format!("replacing {}", file.display()))
}

/// The one place the policy commands read the clock.
#[allow(clippy::disallowed_methods)]
fn now() -> Timestamp {
    Timestamp::now()
}
