//! `palisade sensor --interface IF`: live capture on a mirror (SPAN) port or a gateway's
//! interface with AF_PACKET, no agent on the devices. It writes the same flow records as
//! `palisade analyze`, each naming its client as a device (MAC address, IP address, and the host
//! name learned from DHCP or mDNS: `palisade_dpi::devices`), one JSON line per flow as it ends,
//! to standard output or appended to `--output FILE`. SIGINT or SIGTERM writes the flows still
//! open, prints the totals to standard error and exits 0 (a second signal exits at once).
//!
//! Frames are stamped with the clock when they are read (the only clock read). When no frame
//! comes for [`TICK`], the flow table is moved to the current time so idle flows still end.
//!
//! Exit codes: 0 after SIGINT or SIGTERM; 2 for an unknown or non-Ethernet interface; 1 when the
//! capture cannot start (not root, no CAP_NET_RAW) or stops, or the output cannot be written.
//!
//! Not yet: enrollment with the server (step 4); records are only written locally.

use std::fs::{self, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use palisade_dpi::analyzer::{Analyzer, Totals};
use palisade_dpi::capture::{Frame, LinkType};
use palisade_dpi::devices::{self, Devices};
use palisade_dpi::flow::FlowConfig;
use palisade_dpi::record::FlowRecord;
use pnet_datalink::{Channel, NetworkInterface};
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::analyze::{write_counts, write_json_line, write_totals};

/// How long a read waits for a frame before idle flows are expired and signals checked.
pub const TICK: Duration = Duration::from_millis(500);

/// Largest frame read whole: a 64 KiB packet that the kernel merged (GRO) plus headers. Longer
/// frames are cut to this length (their flows count what their IP headers say).
const READ_BUFFER: usize = 256 * 1024;

/// Linux interface types (`ARPHRD_*`, /sys/class/net/IF/type) whose frames are Ethernet.
const ARPHRD_ETHER: u32 = 1;
const ARPHRD_LOOPBACK: u32 = 772;

/// Arguments of `palisade sensor`.
#[derive(Debug, Args)]
pub struct SensorArgs {
    /// The interface to capture on: an Ethernet interface (a mirror port, a gateway's LAN side),
    /// or `lo`.
    #[arg(long, short = 'i')]
    interface: String,
    /// Append the records to this file instead of writing them to standard output.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Most flows tracked at once; the least recently seen is evicted (and counted) beyond it.
    #[arg(long, default_value_t = FlowConfig::default().max_flows)]
    max_flows: usize,
    /// Most devices remembered at once (addresses plus named MAC addresses); the least recently
    /// seen is forgotten (and counted) beyond it.
    #[arg(long, default_value_t = devices::DEFAULT_MAX_ENTRIES)]
    max_devices: usize,
}

/// Runs `palisade sensor`.
pub fn run(args: SensorArgs) -> anyhow::Result<ExitCode> {
    let name = &args.interface;
    let interfaces = pnet_datalink::interfaces();
    let Some(interface) = interfaces.iter().find(|i| &i.name == name) else {
        let known: Vec<&str> = interfaces.iter().map(|i| i.name.as_str()).collect();
        eprintln!(
            "error: no network interface named {name:?} (there are: {})",
            known.join(", ")
        );
        return Ok(ExitCode::from(2));
    };
    let loopback = match arphrd(name)? {
        ARPHRD_ETHER => false,
        ARPHRD_LOOPBACK => true,
        other => {
            eprintln!(
                "error: interface {name} is not Ethernet (Linux interface type {other}); the \
                 sensor reads Ethernet frames: capture on a mirror port or the gateway's LAN side"
            );
            return Ok(ExitCode::from(2));
        }
    };

    // The first signal asks for a clean stop; a second one, while stopping, exits at once.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&stop))
            .context("cannot handle signals")?;
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("cannot handle signals")?;
    }

    let config = pnet_datalink::Config {
        read_buffer_size: READ_BUFFER,
        read_timeout: Some(TICK),
        promiscuous: true,
        ..pnet_datalink::Config::default()
    };
    let mut receiver = match pnet_datalink::channel(interface, config) {
        Ok(Channel::Ethernet(_sender, receiver)) => receiver,
        Ok(_) => anyhow::bail!("capturing on {name}: the interface gives no Ethernet channel"),
        Err(err) if err.kind() == io::ErrorKind::PermissionDenied => {
            eprintln!(
                "error: capturing on {name} needs root or the CAP_NET_RAW capability ({err})"
            );
            return Ok(ExitCode::from(1));
        }
        Err(err) => return Err(err).with_context(|| format!("cannot capture on {name}")),
    };

    let mut output = Output::open(args.output.as_ref())?;
    let mut analyzer = Analyzer::new(FlowConfig {
        max_flows: args.max_flows.max(1),
        ..FlowConfig::default()
    });
    let mut devices = Devices::new(args.max_devices);
    let mut ended = Vec::new();
    // On loopback every packet is read twice, as sent and as received, one right after the
    // other; the second copy is skipped (libpcap drops the sent one, which it can tell apart).
    let mut loopback_last: Option<Vec<u8>> = loopback.then(Vec::new);
    let mut loopback_copies = 0u64;
    eprintln!(
        "palisade sensor: capturing on {name} {}",
        describe(interface)
    );

    let mut failure = None;
    while !stop.load(Ordering::SeqCst) {
        match receiver.next() {
            Ok(data) => {
                if let Some(last) = &mut loopback_last {
                    if last.as_slice() == data {
                        last.clear();
                        loopback_copies += 1;
                        continue;
                    }
                    last.clear();
                    last.extend_from_slice(data);
                }
                let frame = Frame {
                    ts_ns: now_ns(),
                    link: LinkType::Ethernet,
                    data,
                    orig_len: u32::try_from(data.len()).unwrap_or(u32::MAX),
                    offset: 0,
                };
                analyzer.frame_with(&frame, &mut |packet| devices.learn(packet), &mut |record| {
                    ended.push(record)
                });
            }
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                        | io::ErrorKind::WouldBlock
                ) =>
            {
                analyzer.advance(now_ns(), &mut |record| ended.push(record));
            }
            Err(err) => {
                failure = Some(err);
                break;
            }
        }
        if !ended.is_empty() {
            output.write(&devices, ended.drain(..))?;
        }
    }

    let totals = analyzer.finish(&mut |record| ended.push(record));
    output.write(&devices, ended.drain(..))?;
    print_totals(&totals, &devices, loopback_copies).context("cannot write the totals")?;
    match failure {
        None => Ok(ExitCode::SUCCESS),
        Some(err) => Err(err).with_context(|| format!("capture on {name} stopped")),
    }
}

/// Where records go, each with its client device, flushed after every batch so that a reader
/// sees a flow as soon as it ends.
struct Output {
    sink: BufWriter<Box<dyn Write>>,
}

impl Output {
    fn open(path: Option<&PathBuf>) -> anyhow::Result<Self> {
        let sink: Box<dyn Write> = match path {
            None => Box::new(io::stdout().lock()),
            Some(path) => Box::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("cannot open {}", path.display()))?,
            ),
        };
        Ok(Output {
            sink: BufWriter::with_capacity(1 << 16, sink),
        })
    }

    fn write(
        &mut self,
        devices: &Devices,
        records: impl Iterator<Item = FlowRecord>,
    ) -> anyhow::Result<()> {
        for mut record in records {
            record.device = Some(devices.device(record.src_ip));
            write_json_line(&mut self.sink, &record).context("cannot write the output")?;
        }
        self.sink.flush().context("cannot write the output")
    }
}

/// The interface's Linux type (`ARPHRD_*`).
fn arphrd(name: &str) -> anyhow::Result<u32> {
    let path = format!("/sys/class/net/{name}/type");
    let text =
        fs::read_to_string(&path).with_context(|| format!("cannot read the type of {name}"))?;
    text.trim()
        .parse()
        .with_context(|| format!("{path}: not an interface type: {:?}", text.trim()))
}

/// "(MAC, addresses)" of an interface, for the start message.
fn describe(interface: &NetworkInterface) -> String {
    let mut parts = Vec::new();
    if let Some(mac) = interface.mac {
        parts.push(mac.to_string());
    }
    parts.extend(interface.ips.iter().map(ToString::to_string));
    if !interface.is_up() {
        parts.push("down".to_owned());
    }
    format!("({})", parts.join(", "))
}

fn print_totals(totals: &Totals, devices: &Devices, loopback_copies: u64) -> io::Result<()> {
    let mut err = io::stderr().lock();
    write_totals(&mut err, totals)?;
    if loopback_copies > 0 {
        writeln!(
            err,
            "loopback    {loopback_copies} second copies of frames skipped"
        )?;
    }
    write_counts(&mut err, "refused", &totals.decode_errors)?;
    let stats = devices.stats();
    writeln!(
        err,
        "devices     {} addresses ({} with MAC, {} named), {} evicted",
        stats.addresses, stats.with_mac, stats.named, stats.evicted
    )?;
    for (reason, count) in stats.decode_errors.iter() {
        writeln!(err, "              {reason}: {count}")?;
    }
    Ok(())
}

/// Now, in nanoseconds since the Unix epoch: the one place the sensor reads the clock.
#[allow(clippy::disallowed_methods)]
fn now_ns() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_nanos()).unwrap_or(i64::MAX)
}
