//! `palisade simulate` and the fleet of `palisade up`: simulated endpoints that run the real
//! agent uplink against a server, with realistic traffic and labelled attacks.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use palisade_sim::Fleet;
use palisade_sim::live::{self, Clock, Counters, Server};

/// Arguments of `palisade simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The server's agent gateway, as `palisade server` prints it (`https://HOST:PORT`).
    #[arg(long)]
    server: String,
    /// The server's CA certificate (`DIR/ca.pem` of the server).
    #[arg(long)]
    ca: PathBuf,
    /// An enrollment token with at least as many uses as endpoints.
    #[arg(long, env = "PALISADE_ENROLL_TOKEN")]
    token: String,
    /// How many endpoints.
    #[arg(long, default_value_t = 30)]
    endpoints: u32,
    /// Chooses the fleet: the same seed gives the same endpoints and traffic.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Keep each endpoint's identity here, so a restarted fleet is the same agents.
    #[arg(long)]
    state: Option<PathBuf>,
}

/// Runs the fleet until Ctrl-C or SIGTERM.
pub fn run(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .try_init()
        .ok();
    let ca_pem = std::fs::read_to_string(&args.ca)
        .with_context(|| format!("reading the CA certificate {}", args.ca.display()))?;
    let server = Server {
        url: args.server,
        ca_pem,
        token: args.token,
        state: args.state,
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let counters = start(
            server,
            args.endpoints,
            args.seed,
            Arc::new(crate::server::now),
        );
        println!("simulating {} endpoints", args.endpoints);
        crate::server::shutdown_signal().await?;
        eprintln!(
            "events acknowledged: {}",
            counters
                .events_acked
                .load(std::sync::atomic::Ordering::Relaxed)
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// Starts `count` endpoints on the current runtime; they run until the runtime stops.
pub fn start(server: Server, count: u32, seed: u64, clock: Clock) -> Arc<Counters> {
    let counters = Arc::new(Counters::default());
    let fleet = Fleet::new(seed, count, clock().as_millisecond());
    for endpoint in fleet.endpoints {
        tokio::spawn(live::run_endpoint(
            endpoint,
            server.clone(),
            clock.clone(),
            counters.clone(),
        ));
    }
    counters
}
