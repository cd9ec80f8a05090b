//! `palisade detect`: run the detectors offline over recorded traffic.
//!
//! `palisade detect beacons --zeek DIR` scores every (source, destination) pair of a Zeek log
//! directory for beaconing and prints one JSON object per line, highest score first; a summary
//! of what was read (files, records, skipped lines by reason) goes to standard error.
//!
//! `palisade detect dga FILE` scores one domain per line for a domain generation algorithm
//! and prints `score<TAB>domain` per line (score 0 to 1, higher = more likely generated);
//! lines that are not DNS names are counted and skipped, the summary on standard error.
//!
//! `palisade detect train dga --benign FILE --dga FILE --out PATH` trains the DGA classifier
//! (benign names one per line; generated names as `family<TAB>domain`); `--evaluate` first
//! prints the held-out-family evaluation (5 folds of families) of the same settings.
//!
//! `palisade detect import-zeek DIR` runs a Zeek log directory through the detection pipeline
//! the server runs (every source address an agent) and prints each finding as a JSON object
//! per line; `palisade detect eval` scores that pipeline on the simulator's labelled attacks
//! (see `evaluate`).
//!
//! Exit codes: 0 success, 2 an input cannot be read (a directory without conn logs, a missing
//! file, a damaged model file).

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use palisade_detect::beacon::{self, BeaconScore, Config, Tracker, Window};
use palisade_detect::dga;
use palisade_detect::pipeline::{self, Settings};
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
    /// Run Zeek conn, dns, http and ssl logs (TSV or JSON, plain or .gz, dated sub-folders)
    /// through the detection pipeline; prints each finding as one JSON object per line.
    ImportZeek(ImportZeekArgs),
    /// Score domain names (one per line) for a domain generation algorithm: prints
    /// `score<TAB>domain`, the score from 0 to 1, higher = more likely generated.
    Dga(DgaArgs),
    /// Train a detector's model from labelled files.
    #[command(subcommand)]
    Train(TrainCommand),
}

#[derive(Debug, Args)]
pub struct ImportZeekArgs {
    /// Directory of Zeek logs.
    dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct DgaArgs {
    /// File of domain names, one per line (blank lines and `#` comments ignored).
    file: PathBuf,
    /// Model file from `palisade detect train dga` (default: the model shipped in the binary).
    #[arg(long)]
    model: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// Train the DGA domain classifier.
    Dga(TrainDgaArgs),
}

#[derive(Debug, Args)]
pub struct TrainDgaArgs {
    /// Benign domain names, one per line.
    #[arg(long)]
    benign: PathBuf,
    /// Generated domain names as `family<TAB>domain` lines.
    #[arg(long)]
    dga: PathBuf,
    /// Where to write the model file.
    #[arg(long)]
    out: PathBuf,
    /// Seed of the shuffles (the same seed and files give the same model file).
    #[arg(long)]
    seed: Option<u64>,
    /// Before training, print the held-out-family evaluation: families in 5 folds, each scored
    /// by a model trained on the other families and 80 % of the benign names.
    #[arg(long)]
    evaluate: bool,
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
        DetectCommand::ImportZeek(args) => import_zeek(args),
        DetectCommand::Dga(args) => dga_score(args),
        DetectCommand::Train(TrainCommand::Dga(args)) => dga_train(args),
    }
}

fn dga_score(args: DgaArgs) -> anyhow::Result<ExitCode> {
    let loaded;
    let model = match &args.model {
        None => dga::Model::shipped(),
        Some(path) => {
            let parsed = std::fs::read(path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| dga::Model::from_bytes(&bytes).map_err(|e| e.to_string()));
            match parsed {
                Ok(model) => {
                    loaded = model;
                    &loaded
                }
                Err(err) => {
                    eprintln!("error: {}: {err}", path.display());
                    return Ok(ExitCode::from(2));
                }
            }
        }
    };
    let text = match std::fs::read(&args.file) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(err) => {
            eprintln!("error: {}: {err}", args.file.display());
            return Ok(ExitCode::from(2));
        }
    };
    let mut out = BufWriter::new(std::io::stdout().lock());
    let (mut scored, mut skipped) = (0usize, BTreeMap::<&str, usize>::new());
    let mut first_skips = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let name = line.trim();
        if name.is_empty() || name.starts_with('#') {
            continue;
        }
        if let Err(invalid) = dga::scorable(name) {
            *skipped.entry(invalid.reason()).or_default() += 1;
            if first_skips.len() < 5 {
                first_skips.push(format!("line {}: {}: {name:?}", i + 1, invalid.reason()));
            }
            continue;
        }
        writeln!(out, "{:.6}\t{name}", model.score(name))?;
        scored += 1;
    }
    out.flush()?;
    let total: usize = skipped.values().sum();
    eprintln!(
        "{}: {scored} names scored, {total} lines skipped",
        args.file.display()
    );
    for (reason, count) in &skipped {
        eprintln!("  {count} {reason}");
    }
    for example in &first_skips {
        eprintln!("  {example}");
    }
    Ok(ExitCode::SUCCESS)
}

fn dga_train(args: TrainDgaArgs) -> anyhow::Result<ExitCode> {
    let read = |path: &PathBuf| match std::fs::read(path) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(err) => Err(format!("error: {}: {err}", path.display())),
    };
    let (benign_text, dga_text) = match (read(&args.benign), read(&args.dga)) {
        (Ok(b), Ok(d)) => (b, d),
        (Err(err), _) | (_, Err(err)) => {
            eprintln!("{err}");
            return Ok(ExitCode::from(2));
        }
    };
    let (benign, skipped_benign) = dga::read_names(&benign_text);
    let (generated, skipped_dga) = dga::read_generated(&dga_text);
    for (path, skipped) in [(&args.benign, &skipped_benign), (&args.dga, &skipped_dga)] {
        let mut reasons = BTreeMap::<&str, usize>::new();
        for skip in skipped {
            *reasons.entry(skip.reason).or_default() += 1;
        }
        eprintln!("{}: {} lines skipped", path.display(), skipped.len());
        for (reason, count) in reasons {
            eprintln!("  {count} {reason}");
        }
    }
    let mut options = dga::TrainOptions::default();
    if let Some(seed) = args.seed {
        options.seed = seed;
    }
    if args.evaluate {
        let eval_options = dga::EvalOptions {
            train: options.clone(),
            ..dga::EvalOptions::default()
        };
        print_evaluation(
            &dga::evaluate(&benign, &generated, &eval_options),
            &eval_options,
        );
    }
    // The binary is the edge where the clock may be read: training time is reported.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let (model, report) = dga::train_families(&benign, &generated, &options);
    let seconds = started.elapsed().as_secs_f64();
    let bytes = model.to_bytes();
    if let Err(err) = std::fs::write(&args.out, &bytes) {
        eprintln!("error: {}: {err}", args.out.display());
        return Ok(ExitCode::from(2));
    }
    eprintln!(
        "trained on {} benign and {} generated names in {seconds:.1} s; log loss by epoch {}; \
         training AUC {:.4}; wrote {} ({} bytes)",
        report.benign,
        report.dga,
        report
            .epoch_log_loss
            .iter()
            .map(|l| format!("{l:.4}"))
            .collect::<Vec<_>>()
            .join(" "),
        report.train_auc,
        args.out.display(),
        bytes.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn print_evaluation(eval: &dga::Evaluation, options: &dga::EvalOptions) {
    println!(
        "held-out families, {} folds: AUC {:.4}, TPR {:.3} at FPR {:.4} (threshold {:.4}; {} generated, {} benign names)",
        options.folds, eval.auc, eval.tpr, eval.fpr, eval.threshold, eval.dga, eval.benign
    );
    for (i, fold) in eval.folds.iter().enumerate() {
        println!(
            "fold {}: AUC {:.4}, TPR {:.3} at its own {:.1} % FPR threshold {:.4}; {} generated, {} benign; families {}",
            i + 1,
            fold.auc,
            fold.tpr,
            options.fpr * 100.0,
            fold.threshold,
            fold.dga,
            fold.benign,
            fold.families.join(", ")
        );
    }
    println!("family\tnames\tdetected\trecall\tauc");
    for family in &eval.families {
        println!(
            "{}\t{}\t{}\t{:.3}\t{:.4}",
            family.family, family.names, family.detected, family.recall, family.auc
        );
    }
}

/// Prints what was read from each Zeek log file to standard error; false (after saying so) when
/// there was no conn log among them.
fn report_files(dir: &std::path::Path, files: &[palisade_detect::zeek::LogFile]) -> bool {
    if !files.iter().any(|f| f.kind == LogKind::Conn) {
        eprintln!(
            "error: {}: no Zeek conn logs (conn*.log, conn*.log.gz, conn*.json) found",
            dir.display()
        );
        return false;
    }
    for file in files {
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
    true
}

fn import_zeek(args: ImportZeekArgs) -> anyhow::Result<ExitCode> {
    let replay = match pipeline::zeek::replay_dir(&args.dir, Settings::default()) {
        Ok(replay) => replay,
        Err(err) => {
            eprintln!("error: {err}");
            return Ok(ExitCode::from(2));
        }
    };
    if !report_files(&args.dir, &replay.files) {
        return Ok(ExitCode::from(2));
    }
    let mut out = BufWriter::new(std::io::stdout().lock());
    for finding in &replay.findings {
        writeln!(out, "{}", serde_json::to_string(finding)?)?;
    }
    out.flush()?;
    eprintln!(
        "replayed {} connections and DNS queries; {} findings",
        replay.replayed,
        replay.findings.len()
    );
    Ok(ExitCode::SUCCESS)
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
    if !report_files(&args.zeek, &files) {
        return Ok(ExitCode::from(2));
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
