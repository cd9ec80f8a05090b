//! A managed agent's conversation with its server: the policy stream applied as it comes (and
//! kept on disk, so a restarted agent enforces its last policy before it reaches the server),
//! heartbeats with the agent's counters, and the spool sent in batches and deleted only once
//! acknowledged. Reconnects with a capped backoff; enforcement never waits for the server.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_proto::gateway::v1::Policy;
use prost::Message;

use crate::daemon::Enforcer;
use crate::decide::ActivePolicy;
use crate::spool::Spool;
use crate::uplink::{Heartbeat, Identity, Uplink, UplinkError};

/// How often the agent reports.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// How often the spool is checked for events to send.
const UPLOAD_TICK: Duration = Duration::from_millis(200);
/// Events per batch.
const BATCH: usize = 1_000;
/// The agent's software version, as heartbeats report it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where the last policy received is kept.
pub fn policy_file(data: &Path) -> PathBuf {
    data.join("policy.pb")
}

/// The last policy received from the server, if one was kept.
pub fn saved_policy(data: &Path) -> Option<Policy> {
    let bytes = std::fs::read(policy_file(data)).ok()?;
    Policy::decode(bytes.as_slice()).ok()
}

/// Validates and compiles a policy from the server; `None` (with a warning) when it is invalid.
pub fn compile(policy: &Policy) -> Option<ActivePolicy> {
    let file = format!("{}.{}", policy.name, policy.format);
    match palisade_policy::load(&file, &policy.source, &|_| {
        Err("a policy from the server cannot name list files".to_owned())
    }) {
        Ok(loaded) => Some(ActivePolicy::new(
            &loaded.policy,
            (!policy.isolation).then_some(policy.version),
        )),
        Err(invalid) => {
            tracing::warn!(policy = %policy.name, error = %invalid, "policy refused");
            None
        }
    }
}

/// Talks to the server until the task is dropped.
pub async fn run(
    server: String,
    identity: Identity,
    data: PathBuf,
    os: String,
    enforcer: Arc<Enforcer>,
    spool: Arc<Mutex<Spool>>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match Uplink::connect(&server, &identity).await {
            Ok(uplink) => {
                backoff = Duration::from_millis(200);
                let error = serve(uplink, &data, &os, &enforcer, &spool).await;
                tracing::warn!(%error, "connection to the server lost");
            }
            Err(error) => tracing::warn!(%error, "cannot reach the server"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

async fn serve(
    uplink: Uplink,
    data: &Path,
    os: &str,
    enforcer: &Arc<Enforcer>,
    spool: &Arc<Mutex<Spool>>,
) -> String {
    let mut stream = match uplink.clone().policies().await {
        Ok(s) => s,
        Err(e) => return e.to_string(),
    };
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    let mut upload = tokio::time::interval(UPLOAD_TICK);
    let mut sender = uplink.clone();
    loop {
        tokio::select! {
            policy = stream.next() => match policy {
                Ok(Some(policy)) => receive(policy, data, enforcer).await,
                Ok(None) => return "the server closed the policy stream".to_owned(),
                Err(e) => return e.to_string(),
            },
            _ = heartbeat.tick() => {
                let report = Heartbeat {
                    version: VERSION.to_owned(),
                    os: os.to_owned(),
                    policy_version: enforcer.policy_version(),
                    counters: report_counters(enforcer, spool),
                };
                if let Err(e) = uplink.clone().heartbeat(&report).await {
                    return e.to_string();
                }
            },
            _ = upload.tick() => {
                if let Err(e) = send_spooled(&mut sender, spool).await {
                    return e.to_string();
                }
            },
        }
    }
}

async fn receive(policy: Policy, data: &Path, enforcer: &Arc<Enforcer>) {
    let Some(active) = compile(&policy) else {
        return;
    };
    if let Err(e) = crate::files::write_private(&policy_file(data), &policy.encode_to_vec()) {
        tracing::warn!(error = %e, "the policy could not be kept on disk");
    }
    let enforcer = enforcer.clone();
    let applied = tokio::task::spawn_blocking(move || enforcer.apply(active)).await;
    match applied {
        Ok(Ok(())) => {
            tracing::info!(policy = %policy.name, version = policy.version, "policy in force")
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "the kernel refused the policy's chains"),
        Err(e) => tracing::warn!(error = %e, "applying the policy failed"),
    }
}

/// Sends everything in the spool, a batch at a time, each deleted once acknowledged.
async fn send_spooled(uplink: &mut Uplink, spool: &Mutex<Spool>) -> Result<(), UplinkError> {
    loop {
        let batch = match spool.lock() {
            Ok(mut spool) => spool.peek(BATCH).unwrap_or_default(),
            Err(_) => return Ok(()),
        };
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            return Ok(());
        };
        let (first, last) = (first.seq, last.seq);
        uplink.send_batch(first, &batch).await?;
        if let Ok(mut spool) = spool.lock() {
            if let Err(e) = spool.ack(last) {
                tracing::warn!(error = %e, "acknowledged events could not be deleted");
            }
        }
    }
}

fn report_counters(enforcer: &Enforcer, spool: &Mutex<Spool>) -> HashMap<String, u64> {
    let mut counters: HashMap<String, u64> = enforcer
        .counters()
        .snapshot()
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
    if let Ok(spool) = spool.lock() {
        let stats = spool.stats();
        counters.insert("spool_pending".to_owned(), stats.pending_events);
        counters.insert("spool_evicted".to_owned(), stats.evicted_events);
    }
    counters
}
