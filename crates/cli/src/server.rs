//! `palisade server` and `palisade up`: one central node. Reads the settings (defaults, then
//! `--config FILE`, then `PALISADE_*` variables, then the flags), starts the node, prints where
//! it listens, and stops it on Ctrl-C or SIGTERM.
//!
//! `PALISADE_BOOTSTRAP_TOKEN` (first start only: an admin API token with that value) is read from
//! the environment only, so the secret never sits in a configuration file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use jiff::Timestamp;
use palisade_server::credentials::Secret;
use palisade_server::enrollment;
use palisade_server::role::{Principal, Role};
use palisade_server::settings::Settings;
use palisade_server::{Config, Database};
use palisade_sim::live::Server;

/// Arguments of `palisade server` (and of `palisade up`).
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// TOML configuration file (docs/server.md lists the keys).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (SQLite database, initial credentials) [default: ./palisade-data].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Address for the console, REST API and decision API; port 0 picks a free port
    /// [default: 127.0.0.1:8080].
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Address for the agent gateway; port 0 picks a free port [default: 127.0.0.1:8443].
    #[arg(long)]
    grpc: Option<SocketAddr>,
}

/// Arguments of `palisade up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    node: ServerArgs,
    /// How many simulated endpoints join the server (0 for none), so the console and the API
    /// show live agents and events at once.
    #[arg(long, default_value_t = 30)]
    simulate: u32,
}

/// Runs everything on this machine until Ctrl-C or SIGTERM: the node and a simulated fleet.
pub fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    run_node(args.node, args.simulate)
}

/// Runs the node until Ctrl-C or SIGTERM.
pub fn run(args: ServerArgs) -> anyhow::Result<ExitCode> {
    run_node(args, 0)
}

fn run_node(args: ServerArgs, simulate: u32) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .try_init()
        .ok();
    let config = match config(args) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(ExitCode::from(2));
        }
    };
    let data_dir = config.data_dir.clone();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let server = palisade_server::start(config, Arc::new(now))
            .await
            .context("starting the server")?;
        println!("http: {}", server.http_url);
        if let Some(path) = &server.initial_credentials {
            println!("credentials: {}", path.display());
        }
        println!("grpc: https://{}", server.grpc);
        println!("ca: {}", server.ca_cert.display());
        if simulate > 0 {
            start_fleet(&server, simulate, &data_dir).await?;
            println!("simulated endpoints: {simulate}");
        }
        shutdown_signal().await?;
        server.stop().await.context("stopping the server")?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Starts `count` simulated endpoints against `server`, enrolled with a token made for them; they
/// keep their identities in `DIR/simulated-fleet` so that a restart brings back the same agents.
async fn start_fleet(
    server: &palisade_server::RunningServer,
    count: u32,
    data_dir: &std::path::Path,
) -> anyhow::Result<()> {
    let system = Principal {
        actor: "system".to_owned(),
        role: Role::Admin,
    };
    let token = enrollment::create_token(
        &server.store,
        &system,
        &enrollment::NewToken {
            group: "default".to_owned(),
            max_uses: i64::from(count),
            lifetime: jiff::SignedDuration::from_hours(24),
        },
        now(),
    )
    .await
    .context("creating the simulated fleet's enrollment token")?;
    let ca_pem = std::fs::read_to_string(&server.ca_cert)
        .with_context(|| format!("reading {}", server.ca_cert.display()))?;
    let gateway = Server {
        url: format!("https://{}", server.grpc),
        ca_pem,
        token: token.secret.expose().to_owned(),
        state: Some(data_dir.join("simulated-fleet")),
    };
    crate::simulate::start(
        gateway,
        count,
        1,
        Arc::new(now),
        palisade_sim::live::Counters::default(),
    );
    Ok(())
}

/// The node's configuration from the settings' four layers; an error is the operator's to fix.
fn config(args: ServerArgs) -> Result<Config, String> {
    let mut settings = match &args.config {
        Some(path) => Settings::from_file(path).map_err(|e| e.to_string())?,
        None => Settings::default(),
    };
    settings
        .apply_environment(std::env::vars())
        .map_err(|e| e.to_string())?;
    if let Some(data) = args.data {
        settings.data = data;
    }
    if let Some(http) = args.http {
        settings.http = http;
    }
    if let Some(grpc) = args.grpc {
        settings.grpc = grpc;
    }
    let oidc = settings.oidc().map_err(|e| e.to_string())?;
    let https = settings.https().map_err(|e| e.to_string())?;
    let database = Database::from_url(settings.database_url.as_deref())
        .map_err(|e| format!("database_url (configuration file or PALISADE_DATABASE_URL): {e}"))?;
    Ok(Config {
        data_dir: settings.data,
        database,
        http: settings.http,
        https,
        grpc: settings.grpc,
        liveness: palisade_server::agents::Liveness::default(),
        bootstrap_token: std::env::var("PALISADE_BOOTSTRAP_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .map(Secret::new),
        amqp_url: settings.amqp_url,
        amqp_prefix: settings.amqp_prefix,
        retention_interval: std::time::Duration::from_secs(
            settings.retention_interval_seconds.get(),
        ),
        training_interval: std::time::Duration::from_secs(settings.training_interval_seconds.get()),
        oidc,
    })
}

pub(crate) async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("listening for Ctrl-C"),
        _ = term.recv() => Ok(()),
    }
}

/// The one place the binary reads the clock.
#[allow(clippy::disallowed_methods)]
pub(crate) fn now() -> Timestamp {
    Timestamp::now()
}
