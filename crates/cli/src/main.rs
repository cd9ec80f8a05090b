//! The `palisade` binary: argument parsing and wiring only. Each role is a subcommand; the work
//! is done by the library crates.
//!
//! Layout:
//! - `main`: the command line and exit codes.
//! - [`policy`]: `palisade policy check|eval|test|fmt`.
//! - [`analyze`]: `palisade analyze FILE`, the flows of a capture file.

mod analyze;
mod policy;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Palisade: an application firewall for fleets of endpoints.
#[derive(Debug, Parser)]
#[command(name = "palisade", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check, evaluate, test and format policy files offline.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Read a pcap or pcapng capture and print its flows.
    Analyze(analyze::AnalyzeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Policy(command) => policy::run(command),
        Command::Analyze(args) => analyze::run(args),
    };
    match outcome {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
