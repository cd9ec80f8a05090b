//! `palisade detect`: run the detectors offline over recorded traffic.
//!
//! `palisade detect beacons --zeek DIR` scores every (source, destination) pair of a Zeek log
//! directory for beaconing and prints one JSON object per line, highest score first; a summary
//! of what was read (files, records, skipped lines by reason) goes to standard error.
//!
//! Exit codes: 0 success, 2 the directory cannot be read or holds no conn logs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use palisade_detect::beacon::{self, BeaconScore, Config, Tracker, Window};
use palisade_detect::zeek::LogKind;
use serde_json::{Map, Value, json};

#[derive(Debug, Subcommand)]
pub enum DetectCommand {
    /// Score beaconing (a program calling home on a timer) per source and destination, from
    /// Zeek conn, http and ssl logs, as RITA does.
    Beacons(BeaconsArgs),
    /// Run the simulator's labelled attacks through the detection pipeline and print each
    /// detector's precision, recall, F1 and false-positive rate, and each family's recall.
    Eval(crate::evaluate::EvalArgs),
}

#[derive(Debug, Args)]
pub struct BeaconsArgs {
    /// Directory of Zeek logs (TSV or JSON, plain or .gz), dated sub-folders included.
    #[arg(long)]
    zeek: PathBuf,
    /// Pairs that connected in fewer distinct seconds are not scored. The default, 4, is RITA's
    /// (and the fewest the interval statistics can take: three intervals); lower values count
    /// as 4. Raise it to hide slow pairs whose few connections make every statistic noisy.
    #[arg(long, default_value_t = 4)]
    min_connections: usize,
    /// Score the hours before the last connection (RITA scores the last 24).
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..=24 * 366))]
    hours: u32,
    /// Print only pairs scoring at least this (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    min_score: f64,
    /// Also score multicast and broadcast destinations (protocol timers, left out by default).
    #[arg(long)]
    include_multicast: bool,
}

pub fn run(command: DetectCommand) -> anyhow::Result<ExitCode> {
    match command {
        DetectCommand::Beacons(args) => beacons(args),
        DetectCommand::Eval(args) => crate::evaluate::run(args),
    }
}

fn beacons(args: BeaconsArgs) -> anyhow::Result<ExitCode> {
    let mut tracker = Tracker::new();
    let files = match beacon::zeek::read_dir(&args.zeek, &mut tracker) {
        Ok(files) => files,
        Err(err) => {
            eprintln!("error: {err}");
            return Ok(ExitCode::from(2));
        }
    };
    let conn_files = files.iter().filter(|f| f.kind == LogKind::Conn).count();
    if conn_files == 0 {
        eprintln!(
            "error: {}: no Zeek conn logs (conn*.log, conn*.log.gz, conn*.json) found",
            args.zeek.display()
        );
        return Ok(ExitCode::from(2));
    }
    for file in &files {
        let stats = &file.stats;
        eprintln!(
            "{}: {} {} records, {} lines skipped{}",
            file.path.display(),
            stats.records,
            file.kind,
            stats.skipped_total(),
            file.stopped
                .as_deref()
                .map(|why| format!("; stopped early: {why}"))
                .unwrap_or_default()
        );
        for example in &file.examples {
            eprintln!("  {example}");
        }
    }
    let Some(window) = tracker
        .span()
        .and_then(|(first, last)| Window::last_hours(first, last, args.hours))
    else {
        eprintln!("no connections spanning more than a second: nothing to score");
        return Ok(ExitCode::SUCCESS);
    };
    let config = Config {
        min_connections: args.min_connections,
        include_multicast: args.include_multicast,
        ..Config::default()
    };
    let scores = tracker.score(window, &config);
    eprintln!(
        "scored {} pairs with at least {} connections from {} to {}",
        scores.len(),
        config.min_connections.max(4),
        timestamp(window.start),
        timestamp(window.end)
    );
    for score in scores.iter().filter(|s| s.score >= args.min_score) {
        println!("{}", line(score)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// One output line: the pair, its score and sub-scores first, then the figures behind them and
/// the explanation.
fn line(score: &BeaconScore) -> anyhow::Result<String> {
    let mut out = Map::new();
    for (key, value) in [
        ("src", json!(score.src)),
        ("dst", json!(score.dst)),
        ("dst_kind", json!(score.dst_kind)),
        ("score", json!(score.score)),
        ("connections", json!(score.connections)),
        ("ts_score", json!(score.timestamp.score)),
        ("ds_score", json!(score.data_size.score)),
        ("hist_score", json!(score.histogram.score)),
        ("dur_score", json!(score.duration.score)),
    ] {
        out.insert(key.to_owned(), value);
    }
    if let Value::Object(figures) = serde_json::to_value(score)? {
        for (key, value) in figures {
            out.entry(key).or_insert(value);
        }
    }
    out.insert("explanation".to_owned(), json!(score.explanation()));
    Ok(serde_json::to_string(&out)?)
}

fn timestamp(seconds: f64) -> String {
    jiff::SignedDuration::try_from_secs_f64(seconds)
        .and_then(jiff::Timestamp::from_duration)
        .map(|t| t.round(jiff::Unit::Second).map_or(t, |r| r).to_string())
        .unwrap_or_else(|_| format!("{seconds}"))
}
