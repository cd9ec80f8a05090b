//! `palisade sensor --interface IF`: live capture on a mirror (SPAN) port or a gateway's
//! interface with AF_PACKET, no agent on the devices. It writes the same flow records as
//! `palisade analyze`, each naming its client as a device (MAC address, IP address, and the host
//! name learned from DHCP or mDNS: `palisade_dpi::devices`), one JSON line per flow as it ends,
//! to standard output or appended to `--output FILE`. SIGINT or SIGTERM writes the flows still
//! open, prints the totals to standard error and exits 0 (a second signal exits at once).
//!
//! With `--server` the sensor is managed like an agent ([`crate::enroll`]): enrolled once with
//! `--enroll-token`, its identity kept in `--data`, each ended flow becomes a connection event
//! ([`crate::flow_event`]) in the spool, sent and acknowledged over the same uplink as the
//! agent's ([`palisade_agent::session`]), with heartbeats carrying the sensor's counters. It
//! opens no policy stream: a sensor enforces nothing. Records then go to `--output` only, when
//! given, not to standard output. At the signal the last flows are spooled and sent (for up to
//! [`LAST_UPLOAD`]); what does not go stays in the spool for the next start.
//!
//! Frames are stamped with the clock when they are read (the only clock read). When no frame
//! comes for [`TICK`], the flow table is moved to the current time so idle flows still end.
//!
//! Exit codes: 0 after SIGINT or SIGTERM; 2 for an unknown or non-Ethernet interface; 1 when the
//! capture cannot start (not root, no CAP_NET_RAW) or stops, the output cannot be written, or
//! a managed sensor cannot open its spool or enroll.

use std::fs::{self, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use palisade_agent::files;
use palisade_agent::session::{self, Endpoint, Link};
use palisade_agent::spool::Spool;
use palisade_dpi::analyzer::{Analyzer, Totals};
use palisade_dpi::capture::{Frame, LinkType};
use palisade_dpi::devices::{self, Devices};
use palisade_dpi::flow::FlowConfig;
use palisade_dpi::record::FlowRecord;
use pnet_datalink::{Channel, NetworkInterface};
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::analyze::{write_counts, write_json_line, write_totals};
use crate::enroll::{self, ServerArgs};
use crate::flow_event::flow_event;

/// How long a read waits for a frame before idle flows are expired and signals checked.
pub const TICK: Duration = Duration::from_millis(500);

/// How long a stopping sensor tries to send what its spool holds.
pub const LAST_UPLOAD: Duration = Duration::from_secs(5);

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
    /// Append the records to this file instead of writing them to standard output (with
    /// `--server`, records are written only when this is given).
    #[arg(long)]
    output: Option<PathBuf>,
    /// The server, enrollment and spool options: with `--server`, flows go to the server.
    #[command(flatten)]
    managed: ServerArgs,
    /// Where a managed sensor keeps its identity and spool (mode 0700); not the agent's, so
    /// both can run on one host.
    #[arg(long, default_value = "/var/lib/palisade-sensor", requires = "server")]
    data: PathBuf,
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

    let mut shipping = match &args.managed.server {
        Some(server) => Some(Shipping::start(server, &args)?),
        None => None,
    };
    let mut output = match (&args.output, &shipping) {
        (None, Some(_)) => None,
        (path, _) => Some(Output::open(path.as_ref())?),
    };
    let counters = shipping.as_ref().map(|s| s.counters.clone());
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
                if let Some(counters) = &counters {
                    counters.frames.fetch_add(1, Ordering::Relaxed);
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
                if let Some(shipping) = &shipping {
                    shipping.idle();
                }
            }
            Err(err) => {
                failure = Some(err);
                break;
            }
        }
        if !ended.is_empty() {
            deliver(&mut ended, &devices, output.as_mut(), shipping.as_mut())?;
        }
    }

    let totals = analyzer.finish(&mut |record| ended.push(record));
    deliver(&mut ended, &devices, output.as_mut(), shipping.as_mut())?;
    if let Some(shipping) = shipping {
        shipping.stop();
    }
    print_totals(&totals, &devices, loopback_copies).context("cannot write the totals")?;
    match failure {
        None => Ok(ExitCode::SUCCESS),
        Some(err) => Err(err).with_context(|| format!("capture on {name} stopped")),
    }
}

/// Hands the ended flows to the server's spool and to the output, whichever there are.
fn deliver(
    ended: &mut Vec<FlowRecord>,
    devices: &Devices,
    output: Option<&mut Output>,
    shipping: Option<&mut Shipping>,
) -> anyhow::Result<()> {
    if let Some(shipping) = shipping {
        shipping.spool(ended);
    }
    match output {
        Some(output) => output.write(devices, ended.drain(..)),
        None => {
            ended.clear();
            Ok(())
        }
    }
}

/// A managed sensor's link to its server: the spool its flows go to and the session (on a
/// thread of its own) that sends them.
struct Shipping {
    runtime: tokio::runtime::Runtime,
    session: tokio::task::JoinHandle<()>,
    link: Link,
    spool: Arc<Mutex<Spool>>,
    counters: Arc<Counters>,
}

impl Shipping {
    /// Opens the spool, enrolls on the first start (or loads the identity kept) and starts the
    /// session.
    fn start(server: &str, args: &SensorArgs) -> anyhow::Result<Shipping> {
        // The session says on standard error when the server cannot be reached.
        tracing_subscriber::fmt()
            .with_writer(io::stderr)
            .try_init()
            .ok();
        files::create_private_dir(&args.data)
            .with_context(|| format!("creating {}", args.data.display()))?;
        let spool = Arc::new(Mutex::new(enroll::open_spool(&args.data, &args.managed)?));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let (identity, joined) =
            runtime.block_on(enroll::identity(server, &args.managed, &args.data))?;
        if let Some(group) = joined {
            eprintln!(
                "palisade sensor: enrolled as {} in group {group}",
                identity.agent_id
            );
        }
        let link = Link {
            server: server.to_owned(),
            identity,
            os: std::env::consts::OS.to_owned(),
        };
        let counters = Arc::new(Counters::default());
        let session = runtime.spawn(session::run(link.clone(), counters.clone(), spool.clone()));
        Ok(Shipping {
            runtime,
            session,
            link,
            spool,
            counters,
        })
    }

    /// Appends one event per flow to the spool; a flow that cannot be spooled is counted.
    fn spool(&mut self, records: &[FlowRecord]) {
        self.counters.flows.fetch_add(
            records.len().try_into().unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let Ok(mut spool) = self.spool.lock() else {
            return;
        };
        for record in records {
            let event = flow_event(record, spool.next_seq());
            match spool.append(&event) {
                Ok(()) => {
                    self.counters.events_spooled.fetch_add(1, Ordering::Relaxed);
                }
                // Said once; the heartbeats count them all.
                Err(e) => {
                    if self.counters.spool_errors.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("palisade sensor: a flow could not be spooled: {e}");
                    }
                }
            }
        }
    }

    /// Forces what was spooled to the disk once its interval has passed.
    fn idle(&self) {
        if let Ok(mut spool) = self.spool.lock() {
            if let Err(e) = spool.sync_if_due() {
                eprintln!("palisade sensor: the spool could not be written: {e}");
            }
        }
    }

    /// Stops the session and sends what the spool holds, for up to [`LAST_UPLOAD`]; what is
    /// not sent stays in the spool for the next start.
    fn stop(self) {
        self.session.abort();
        if let Ok(mut spool) = self.spool.lock() {
            if let Err(e) = spool.sync() {
                eprintln!("palisade sensor: the spool could not be written: {e}");
            }
        }
        let sent = self.runtime.block_on(async {
            tokio::time::timeout(LAST_UPLOAD, session::send_all(&self.link, &self.spool)).await
        });
        let left = self
            .spool
            .lock()
            .map(|s| s.stats().pending_events)
            .unwrap_or(0);
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("palisade sensor: {left} flows stay in the spool for the next start: {e}")
            }
            Err(_) => eprintln!(
                "palisade sensor: {left} flows stay in the spool for the next start: the server \
                 did not take them within {} s",
                LAST_UPLOAD.as_secs()
            ),
        }
        self.runtime.shutdown_timeout(Duration::from_secs(1));
    }
}

/// What a managed sensor reports in its heartbeats.
#[derive(Debug, Default)]
struct Counters {
    /// Frames read (a loopback frame's second copy not counted).
    frames: AtomicU64,
    /// Flows ended.
    flows: AtomicU64,
    /// Flows appended to the spool.
    events_spooled: AtomicU64,
    /// Flows that could not be written to the spool.
    spool_errors: AtomicU64,
}

impl Endpoint for Counters {
    fn counters(&self) -> Vec<(&'static str, u64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("frames", get(&self.frames)),
            ("flows", get(&self.flows)),
            ("events_spooled", get(&self.events_spooled)),
            ("spool_errors", get(&self.spool_errors)),
        ]
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
