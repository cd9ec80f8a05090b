//! The `palisade` binary: argument parsing and wiring only. Each role is a subcommand; the work
//! is done by the library crates.
//!
//! Layout:
//! - `main`: the command line and exit codes.
//! - [`agent`]: `palisade agent`, the endpoint daemon, standalone or managed.
//! - [`enroll`]: the options, identity and spool that a managed agent and a managed sensor share.
//! - [`flow_event`]: a sensor's flow record as a connection event for its server.
//! - [`policy`]: `palisade policy check|eval|test|fmt`.
//! - [`detect`]: `palisade detect beacons`, the detectors offline over recorded traffic (Zeek
//!   logs).
//! - [`analyze`]: `palisade analyze FILE`, the flows of a capture file.
//! - [`sensor`]: `palisade sensor --interface IF`, the flows of a live interface (AF_PACKET), each
//!   naming its client device, written locally or sent to a server.
//! - [`server`]: `palisade server` and `palisade up`, one central node.
//! - [`simulate`]: `palisade simulate`, simulated endpoints against a server.

mod agent;
mod analyze;
mod detect;
mod enroll;
mod evaluate;
mod flow_event;
mod policy;
mod sensor;
mod server;
mod simulate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc rather than the system's allocator: the server's ingest path allocates and frees
/// every text field of every event, often on different threads, where glibc's allocator took
/// about 9 % of the server's CPU (docs/benchmarks.md, "Event ingestion"). Built without
/// transparent huge pages (feature `no_thp`): they made an idle agent 8 MB larger.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Run the detectors offline over recorded traffic (Zeek logs).
    #[command(subcommand)]
    Detect(detect::DetectCommand),
    /// Run the endpoint agent: decide every new connection by the application behind it.
    Agent(agent::AgentArgs),
    /// Read a pcap or pcapng capture and print its flows.
    Analyze(analyze::AnalyzeArgs),
    /// Capture on a network interface (mirror port, gateway) and print its flows as they end,
    /// each naming its client device, or send them to a server (`--server`).
    Sensor(sensor::SensorArgs),
    /// Run one central server node: storage, policies, REST API.
    Server(server::ServerArgs),
    /// Run everything on this machine with embedded defaults (SQLite, in-process bus) and a
    /// simulated fleet.
    Up(server::UpArgs),
    /// Run simulated endpoints (realistic traffic, labelled attacks) against a server.
    Simulate(simulate::SimulateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Policy(command) => policy::run(command),
        Command::Detect(command) => detect::run(command),
        Command::Agent(args) => agent::run(args),
        Command::Analyze(args) => analyze::run(args),
        Command::Sensor(args) => sensor::run(args),
        Command::Server(args) => server::run(args),
        Command::Up(args) => server::up(args),
        Command::Simulate(args) => simulate::run(args),
    };
    match outcome {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
