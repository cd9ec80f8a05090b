//! `palisade server`: one central node. Reads the command line and the environment, starts the
//! node, prints where it listens, and stops it on Ctrl-C or SIGTERM.
//!
//! Environment: `PALISADE_DATABASE_URL` (`postgres://...`; SQLite in the data directory when
//! unset) and `PALISADE_BOOTSTRAP_TOKEN` (first start only: an admin API token with that value).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use jiff::Timestamp;
use palisade_server::credentials::Secret;
use palisade_server::{Config, Database};

/// Arguments of `palisade server`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Data directory (SQLite database, initial credentials).
    #[arg(long, default_value = "./palisade-data")]
    data: PathBuf,
    /// Address for the console, REST API and decision API; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Address for the agent gateway (gRPC over mutual TLS); port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8443")]
    grpc: SocketAddr,
}

/// Runs the node until Ctrl-C or SIGTERM.
pub fn run(args: ServerArgs) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .try_init()
        .ok();
    let database_url = std::env::var("PALISADE_DATABASE_URL").ok();
    let database = match Database::from_url(database_url.as_deref()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: PALISADE_DATABASE_URL: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let config = Config {
        data_dir: args.data,
        database,
        http: args.http,
        grpc: args.grpc,
        liveness: palisade_server::agents::Liveness::default(),
        bootstrap_token: std::env::var("PALISADE_BOOTSTRAP_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .map(Secret::new),
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let server = palisade_server::start(config, Arc::new(now))
            .await
            .context("starting the server")?;
        println!("http: http://{}", server.http);
        println!("grpc: https://{}", server.grpc);
        println!("ca: {}", server.ca_cert.display());
        if let Some(path) = &server.initial_credentials {
            println!("credentials: {}", path.display());
        }
        shutdown_signal().await?;
        server.stop().await.context("stopping the server")?;
        Ok(ExitCode::SUCCESS)
    })
}

async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("listening for Ctrl-C"),
        _ = term.recv() => Ok(()),
    }
}

/// The one place `palisade server` reads the clock.
#[allow(clippy::disallowed_methods)]
fn now() -> Timestamp {
    Timestamp::now()
}
