//! `palisade agent`: the endpoint daemon, standalone with a policy file (reloaded when it
//! changes) or managed by a server (enrolled once with a token).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use palisade_agent::daemon::{Agent, LookupFactory, Mode, Settings};
use palisade_agent::decide::{ActivePolicy, Shared};
use palisade_agent::identity::ProcIdentity;
use palisade_agent::intercept::Enforcement;
use palisade_agent::process::ProcessLookup;
use palisade_agent::{files, managed};

use crate::enroll::{self, ServerArgs};

/// How often a standalone agent looks whether its policy file changed.
const RELOAD_CHECK: Duration = Duration::from_secs(1);
/// Addresses the name cache remembers.
const NAMES: usize = 100_000;

/// Arguments of `palisade agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Run standalone with this policy file, reloaded whenever it changes.
    #[arg(long, conflicts_with = "server", required_unless_present = "server")]
    policy: Option<PathBuf>,
    /// The server, enrollment and spool options.
    #[command(flatten)]
    managed: ServerArgs,
    /// `enforce`: hold and decide every new connection in the kernel; `monitor`: change nothing
    /// in the kernel, observe new connections (conntrack events) and record what the policy
    /// would decide.
    #[arg(long, value_enum, default_value_t = AgentMode::Enforce)]
    mode: AgentMode,
    /// Where the agent keeps its identity, last policy and spool (mode 0700).
    #[arg(long, default_value = "/var/lib/palisade")]
    data: PathBuf,
    /// Kernel queues (threads) deciding connections.
    #[arg(long, default_value_t = 2)]
    queues: u16,
    /// What a block does: `reject` answers with a TCP reset or ICMP unreachable, `drop` is
    /// silent.
    #[arg(long, value_enum, default_value_t = Block::Reject)]
    block: Block,
}

/// How the agent treats the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AgentMode {
    /// Hold new connections and enforce the policy.
    Enforce,
    /// Observe and record only.
    Monitor,
}

/// What a block does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Block {
    /// Answer with a TCP reset or ICMP "port unreachable".
    Reject,
    /// Drop silently.
    Drop,
}

/// Runs the agent until SIGTERM or Ctrl-C, then removes its chains.
pub fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .try_init()
        .ok();
    files::create_private_dir(&args.data)
        .with_context(|| format!("creating {}", args.data.display()))?;
    // One thread is plenty for the uplink and the policy file: the work is on the queue threads.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let spool = Arc::new(Mutex::new(enroll::open_spool(&args.data, &args.managed)?));
    let shared = Arc::new(Shared::new(NAMES));
    let identity = match &args.managed.server {
        Some(server) => {
            let (identity, joined) =
                runtime.block_on(enroll::identity(server, &args.managed, &args.data))?;
            if let Some(group) = joined {
                println!("enrolled as {} in group {group}", identity.agent_id);
            }
            Some(identity)
        }
        None => None,
    };
    if let Some(path) = &args.policy {
        let loaded = crate::policy::load(path).context("the policy is invalid")?;
        shared.set_policy(ActivePolicy::new(&loaded.1.policy, None));
    } else if let Some(active) = identity
        .as_ref()
        .and_then(|i| managed::saved_policy(&args.data, &i.ca_pem))
        .and_then(|p| managed::compile(&p))
    {
        shared.set_policy(active);
    }
    let settings = Settings {
        mode: match args.mode {
            AgentMode::Enforce => Mode::Enforce,
            AgentMode::Monitor => Mode::Observe,
        },
        queues: args.queues,
        block: match args.block {
            Block::Reject => Enforcement::Reject,
            Block::Drop => Enforcement::Drop,
        },
    };
    let lookups: LookupFactory = Box::new(|| {
        let mut lookup = ProcIdentity::new().map_err(std::io::Error::other)?;
        // Sockets opened before the agent started are in the index from the first lookup.
        lookup.warm();
        Ok(Box::new(lookup) as Box<dyn ProcessLookup>)
    });
    let agent = Arc::new(
        Agent::start(
            settings,
            shared,
            &lookups,
            spool.clone(),
            Arc::new(crate::server::now),
        )
        .context("starting the agent (it must run as root)")?,
    );
    let doing = match args.mode {
        AgentMode::Enforce => "enforcing",
        AgentMode::Monitor => "monitoring",
    };
    println!("palisade agent {doing}; data in {}", args.data.display());
    let outcome = runtime.block_on(async {
        match (&args.policy, &args.managed.server, identity) {
            (Some(path), _, _) => {
                tokio::select! {
                    r = crate::server::shutdown_signal() => r,
                    () = watch(path.clone(), agent.clone()) => Ok(()),
                }
            }
            (None, Some(server), Some(identity)) => {
                let talk = managed::run(
                    server.clone(),
                    identity,
                    args.data.clone(),
                    std::env::consts::OS.to_owned(),
                    agent.clone(),
                    spool.clone(),
                );
                tokio::select! {
                    r = crate::server::shutdown_signal() => r,
                    () = talk => Ok(()),
                }
            }
            _ => Ok(()),
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    let agent = Arc::try_unwrap(agent).map_err(|_| anyhow::anyhow!("the agent is still in use"))?;
    agent.stop().context("removing the agent's chains")?;
    outcome?;
    Ok(ExitCode::SUCCESS)
}

/// Reloads the policy file whenever its modification time changes; an invalid new version is
/// reported and the one in force stays.
async fn watch(path: PathBuf, agent: Arc<Agent>) {
    let mut seen = modified(&path);
    let mut tick = tokio::time::interval(RELOAD_CHECK);
    loop {
        tick.tick().await;
        let now = modified(&path);
        if now == seen {
            continue;
        }
        seen = now;
        let Some((_, loaded)) = crate::policy::load(&path) else {
            eprintln!(
                "{}: the new version is invalid; the previous one stays in force",
                path.display()
            );
            continue;
        };
        let agent = agent.clone();
        let applied = tokio::task::spawn_blocking(move || {
            agent.apply(ActivePolicy::new(&loaded.policy, None))
        })
        .await;
        match applied {
            Ok(Ok(())) => println!("{}: reloaded", path.display()),
            Ok(Err(e)) => eprintln!("{}: the kernel refused the chains: {e}", path.display()),
            Err(e) => eprintln!("{}: reloading failed: {e}", path.display()),
        }
    }
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
