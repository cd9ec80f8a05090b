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
    /// Load test: for this many seconds every endpoint sends as fast as the server
    /// acknowledges, then the events per second and acknowledgement latencies are printed.
    #[arg(long, value_name = "SECONDS")]
    load: Option<u64>,
    /// Print a line `policy NAME VERSION HOSTNAME TIME` for every policy an endpoint receives
    /// (to measure how fast a change reaches the fleet).
    #[arg(long, conflicts_with = "load")]
    print_policies: bool,
    /// Events per batch in a load test.
    #[arg(long, default_value_t = 1_000, requires = "load")]
    batch: usize,
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
        url: args.server.clone(),
        ca_pem,
        token: args.token.clone(),
        state: args.state.clone(),
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    if let Some(seconds) = args.load {
        return runtime.block_on(load(server, &args, seconds));
    }
    runtime.block_on(async {
        let (receipts, mut printed) = tokio::sync::mpsc::unbounded_channel();
        let counters = Counters {
            receipts: args.print_policies.then_some(receipts),
            ..Counters::default()
        };
        let counters = start(
            server,
            args.endpoints,
            args.seed,
            Arc::new(crate::server::now),
            counters,
        );
        println!("simulating {} endpoints", args.endpoints);
        tokio::spawn(async move {
            while let Some(r) = printed.recv().await {
                println!("policy {} {} {} {}", r.policy, r.version, r.hostname, r.at);
            }
        });
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

/// Runs a load test and prints what it measured.
async fn load(server: Server, args: &SimulateArgs, seconds: u64) -> anyhow::Result<ExitCode> {
    let clock: Clock = Arc::new(crate::server::now);
    let fleet = Fleet::new(args.seed, args.endpoints, clock().as_millisecond());
    let report = palisade_sim::load::run(
        fleet.endpoints,
        &server,
        clock,
        args.batch.max(1),
        std::time::Duration::from_secs(seconds),
    )
    .await
    .map_err(anyhow::Error::msg)?;
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1_000.0;
    println!(
        "endpoints {} batch {} events {} batches {} failed {} seconds {:.1} events/s {:.0} \
         ack p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
        args.endpoints,
        args.batch,
        report.events,
        report.batches,
        report.failures,
        report.elapsed.as_secs_f64(),
        report.rate(),
        ms(report.percentile(500)),
        ms(report.percentile(990)),
        ms(report.percentile(1_000)),
    );
    Ok(if report.failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Starts `count` endpoints on the current runtime; they run until the runtime stops.
pub fn start(
    server: Server,
    count: u32,
    seed: u64,
    clock: Clock,
    counters: Counters,
) -> Arc<Counters> {
    let counters = Arc::new(counters);
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
