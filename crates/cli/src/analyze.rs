//! `palisade analyze FILE`: the flows of a pcap or pcapng capture, as JSON lines (default), as a
//! table, or as a summary of totals and top talkers, domains and server names.
//!
//! Exit codes: 0 when the whole file was read, 2 when the file is not a capture or breaks off
//! (after writing what was read, with the byte offset where it broke), 1 for other errors.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use palisade_dpi::analyzer::{Analyzer, Totals};
use palisade_dpi::capture::CaptureReader;
use palisade_dpi::counters::Counters;
use palisade_dpi::flow::FlowConfig;
use palisade_dpi::record::FlowRecord;
use serde::Serialize;

/// How many entries each "top" list of the summary has.
const TOP: usize = 10;

/// Arguments of `palisade analyze`.
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// The capture file (pcap or pcapng); `-` reads standard input.
    file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// Print totals and top talkers, domains and server names instead of one line per flow.
    #[arg(long)]
    summary: bool,
    /// Most flows tracked at once; the least recently seen is evicted (and counted) beyond it.
    #[arg(long, default_value_t = FlowConfig::default().max_flows)]
    max_flows: usize,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// One JSON object per line.
    Json,
    /// Aligned columns for people.
    Table,
}

/// Runs `palisade analyze`.
pub fn run(args: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let input: Box<dyn Read> = if args.file.as_os_str() == "-" {
        Box::new(io::stdin().lock())
    } else {
        let file = File::open(&args.file)
            .with_context(|| format!("cannot open {}", args.file.display()))?;
        Box::new(file)
    };
    let name = args.file.display().to_string();
    let mut reader = match CaptureReader::new(input) {
        Ok(reader) => reader,
        Err(err) => {
            eprintln!("error: {name}: not a readable capture: {err}");
            return Ok(ExitCode::from(2));
        }
    };
    let config = FlowConfig {
        max_flows: args.max_flows.max(1),
        ..FlowConfig::default()
    };
    let mut analyzer = Analyzer::new(config);
    let stdout = io::stdout().lock();
    let mut output = Output::new(
        args.format,
        args.summary,
        BufWriter::with_capacity(1 << 16, stdout),
    );
    let broke = loop {
        match reader.next_frame() {
            Ok(Some(frame)) => analyzer.frame(&frame, &mut |record| output.record(record)),
            Ok(None) => break None,
            Err(err) => break Some(err),
        }
    };
    let totals = analyzer.finish(&mut |record| output.record(record));
    output.finish(&totals)?;
    match broke {
        None => Ok(ExitCode::SUCCESS),
        Some(err) => {
            eprintln!("error: {name}: capture breaks off {err}");
            Ok(ExitCode::from(2))
        }
    }
}

/// Where records go: written at once (JSON lines, table) or gathered for the summary.
struct Output<W: Write> {
    format: Format,
    sink: W,
    summary: Option<Summary>,
    table_header: bool,
    error: Option<io::Error>,
}

impl<W: Write> Output<W> {
    fn new(format: Format, summary: bool, sink: W) -> Self {
        let summary = summary.then(Summary::default);
        Output {
            format,
            sink,
            summary,
            table_header: false,
            error: None,
        }
    }

    fn record(&mut self, record: FlowRecord) {
        if self.error.is_some() {
            return;
        }
        let written = match (&mut self.summary, self.format) {
            (Some(summary), _) => {
                summary.add(&record);
                Ok(())
            }
            (None, Format::Json) => write_json_line(&mut self.sink, &record),
            (None, Format::Table) => {
                let header = !std::mem::replace(&mut self.table_header, true);
                write_table_row(&mut self.sink, &record, header)
            }
        };
        self.error = written.err();
    }

    fn finish(mut self, totals: &Totals) -> anyhow::Result<()> {
        if let Some(err) = self.error {
            return Err(err).context("cannot write the output");
        }
        if let Some(summary) = self.summary.take() {
            let report = summary.report(totals);
            match self.format {
                Format::Json => write_json_line(&mut self.sink, &report)?,
                Format::Table => report.write_text(&mut self.sink)?,
            }
        }
        self.sink.flush().context("cannot write the output")
    }
}

/// Writes `value` as one line of JSON.
pub fn write_json_line(sink: &mut impl Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *sink, value)?;
    sink.write_all(b"\n")
}

fn write_table_row(sink: &mut impl Write, record: &FlowRecord, header: bool) -> io::Result<()> {
    if header {
        writeln!(
            sink,
            "{:<23}  {:<6}  {:<45}  {:<45}  {:<7}  {:>13}  {:>21}  name",
            "start (UTC)", "proto", "client", "server", "app", "pkts out/in", "bytes out/in"
        )?;
    }
    let name = record
        .tls
        .as_ref()
        .and_then(|tls| tls.sni.clone())
        .or_else(|| record.quic.as_ref().and_then(|quic| quic.sni.clone()))
        .or_else(|| record.http.as_ref().and_then(|http| http.host.clone()))
        .or_else(|| {
            record
                .dns
                .as_ref()
                .and_then(|dns| dns.queries.first())
                .map(|q| q.name.clone())
        })
        .unwrap_or_default();
    writeln!(
        sink,
        "{:<23}  {:<6}  {:<45}  {:<45}  {:<7}  {:>13}  {:>21}  {name}",
        utc(record.ts_start),
        record.proto.to_string(),
        endpoint(record.src_ip, record.src_port),
        endpoint(record.dst_ip, record.dst_port),
        record.app_proto.name(),
        format!("{}/{}", record.pkts_out, record.pkts_in),
        format!("{}/{}", record.bytes_out, record.bytes_in),
    )
}

fn endpoint(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

fn utc(ns: i64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(ns))
        .map(|ts| ts.strftime("%Y-%m-%d %H:%M:%S%.3f").to_string())
        .unwrap_or_else(|_| ns.to_string())
}

/// Counts gathered from the records for `--summary`.
#[derive(Debug, Default)]
struct Summary {
    talkers: HashMap<IpAddr, u64>,
    domains: HashMap<String, u64>,
    server_names: HashMap<String, u64>,
    app_protos: HashMap<&'static str, u64>,
}

impl Summary {
    fn add(&mut self, record: &FlowRecord) {
        let bytes = record.bytes_out + record.bytes_in;
        *self.talkers.entry(record.src_ip).or_default() += bytes;
        *self.talkers.entry(record.dst_ip).or_default() += bytes;
        *self.app_protos.entry(record.app_proto.name()).or_default() += 1;
        if let Some(dns) = &record.dns {
            for query in &dns.queries {
                *self
                    .domains
                    .entry(query.name.to_ascii_lowercase())
                    .or_default() += 1;
            }
        }
        let sni = record.tls.as_ref().and_then(|tls| tls.sni.as_ref());
        let sni = sni.or_else(|| record.quic.as_ref().and_then(|quic| quic.sni.as_ref()));
        if let Some(sni) = sni {
            *self
                .server_names
                .entry(sni.to_ascii_lowercase())
                .or_default() += 1;
        }
    }

    fn report(self, totals: &Totals) -> Report<'_> {
        Report {
            totals,
            seconds: span_seconds(totals),
            app_protos: top(
                self.app_protos.into_iter().map(|(k, v)| (k.to_owned(), v)),
                usize::MAX,
            ),
            top_talkers: top(
                self.talkers
                    .into_iter()
                    .map(|(ip, bytes)| (ip.to_string(), bytes)),
                TOP,
            ),
            top_domains: top(self.domains, TOP),
            top_server_names: top(self.server_names, TOP),
        }
    }
}

/// The summary as printed: totals, then the top lists (largest first, ties by name).
#[derive(Debug, Serialize)]
struct Report<'t> {
    totals: &'t Totals,
    seconds: f64,
    app_protos: Vec<(String, u64)>,
    /// Addresses by bytes sent and received.
    top_talkers: Vec<(String, u64)>,
    /// DNS query names by the number of flows that asked.
    top_domains: Vec<(String, u64)>,
    /// TLS and QUIC server names by the number of flows.
    top_server_names: Vec<(String, u64)>,
}

impl Report<'_> {
    fn write_text(&self, out: &mut impl Write) -> io::Result<()> {
        let t = self.totals;
        write_totals(out, t)?;
        for (app, count) in &self.app_protos {
            writeln!(out, "              {app}: {count}")?;
        }
        write_counts(out, "refused", &t.decode_errors)?;
        for (title, list) in [
            ("top talkers (bytes)", &self.top_talkers),
            ("top domains (flows)", &self.top_domains),
            ("top server names (flows)", &self.top_server_names),
        ] {
            writeln!(out, "\n{title}")?;
            for (name, count) in list {
                writeln!(out, "  {count:>14}  {name}")?;
            }
        }
        Ok(())
    }
}

/// Writes the totals of an analysis as people read them: frames, packets decoded and skipped by
/// reason, flows and evictions (the first lines of the summary; `palisade sensor` prints them
/// at exit).
pub fn write_totals(out: &mut impl Write, t: &Totals) -> io::Result<()> {
    writeln!(
        out,
        "frames      {} ({} bytes on the wire, {:.3} s)",
        t.frames,
        t.wire_bytes,
        span_seconds(t)
    )?;
    writeln!(
        out,
        "packets     {} decoded, {} skipped",
        t.packets,
        t.skipped.total()
    )?;
    for (reason, count) in t.skipped.iter() {
        writeln!(out, "              {reason}: {count}")?;
    }
    writeln!(out, "flows       {} ({} evicted)", t.flows, t.evicted)
}

/// Writes `title` with the total of `counts` and each reason under it; nothing when all are 0.
pub fn write_counts(out: &mut impl Write, title: &str, counts: &Counters) -> io::Result<()> {
    if counts.total() == 0 {
        return Ok(());
    }
    writeln!(out, "{title:<11} {}", counts.total())?;
    for (reason, count) in counts.iter() {
        writeln!(out, "              {reason}: {count}")?;
    }
    Ok(())
}

/// Seconds from the first frame to the last.
fn span_seconds(totals: &Totals) -> f64 {
    totals
        .span_ns
        .map_or(0.0, |(first, last)| (last - first) as f64 / 1e9)
}

fn top(counts: impl IntoIterator<Item = (String, u64)>, n: usize) -> Vec<(String, u64)> {
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts.truncate(n);
    counts
}
