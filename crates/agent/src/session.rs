//! A managed endpoint's conversation with its server, the same for the agent and the network
//! sensor: heartbeats with the endpoint's counters (and the spool's), the spool sent in batches
//! and deleted only once acknowledged, and, for an endpoint that enforces, the policy stream.
//! Reconnects with a capped backoff; the endpoint's work never waits for the server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_proto::gateway::v1::Policy;

use crate::spool::Spool;
use crate::uplink::{Heartbeat, Identity, PolicyStream, Uplink, UplinkError};

/// How often the endpoint reports.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// How often the spool is checked for events to send.
const UPLOAD_TICK: Duration = Duration::from_millis(200);
/// Events per batch.
const BATCH: usize = 1_000;
/// The software version, as heartbeats and enrollment report it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What an endpoint tells its server, and what it does with the policies the server sends.
pub trait Endpoint: Send + Sync {
    /// Its counters, reported in every heartbeat next to the spool's.
    fn counters(&self) -> Vec<(&'static str, u64)>;

    /// The version of the server's policy it enforces, reported in every heartbeat.
    fn policy_version(&self) -> Option<i64> {
        None
    }

    /// Whether it enforces the server's policies: only then is the policy stream opened.
    fn enforces(&self) -> bool {
        false
    }

    /// Takes a policy the server sent (called only when [`Endpoint::enforces`]).
    fn receive(&self, policy: Policy) -> impl Future<Output = ()> + Send {
        let _ = policy;
        async {}
    }
}

/// Where the endpoint's server is and how it is reached.
#[derive(Debug, Clone)]
pub struct Link {
    /// The gateway's address (`https://HOST:PORT`).
    pub server: String,
    /// The endpoint's enrolled identity.
    pub identity: Identity,
    /// The operating system, as heartbeats report it.
    pub os: String,
}

/// Talks to the server until the task is dropped.
pub async fn run<E: Endpoint>(link: Link, endpoint: Arc<E>, spool: Arc<Mutex<Spool>>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match Uplink::connect(&link.server, &link.identity).await {
            Ok(uplink) => {
                backoff = Duration::from_millis(200);
                let error = serve(uplink, &link.os, endpoint.as_ref(), &spool).await;
                tracing::warn!(%error, "connection to the server lost");
            }
            Err(error) => tracing::warn!(%error, "cannot reach the server"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// Connects once and sends everything in the spool (for an endpoint that is stopping).
pub async fn send_all(link: &Link, spool: &Mutex<Spool>) -> Result<(), UplinkError> {
    let mut uplink = Uplink::connect(&link.server, &link.identity).await?;
    send_spooled(&mut uplink, spool).await
}

async fn serve<E: Endpoint>(
    uplink: Uplink,
    os: &str,
    endpoint: &E,
    spool: &Mutex<Spool>,
) -> String {
    let mut stream = if endpoint.enforces() {
        match uplink.clone().policies().await {
            Ok(s) => Some(s),
            Err(e) => return e.to_string(),
        }
    } else {
        None
    };
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    let mut upload = tokio::time::interval(UPLOAD_TICK);
    let mut sender = uplink.clone();
    loop {
        tokio::select! {
            policy = next_policy(stream.as_mut()) => match policy {
                Ok(Some(policy)) => endpoint.receive(policy).await,
                Ok(None) => return "the server closed the policy stream".to_owned(),
                Err(e) => return e.to_string(),
            },
            _ = heartbeat.tick() => {
                let report = Heartbeat {
                    version: VERSION.to_owned(),
                    os: os.to_owned(),
                    policy_version: endpoint.policy_version(),
                    counters: report_counters(endpoint, spool),
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

/// The next policy of the stream; without a stream, never.
async fn next_policy(stream: Option<&mut PolicyStream>) -> Result<Option<Policy>, UplinkError> {
    match stream {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
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

fn report_counters<E: Endpoint>(endpoint: &E, spool: &Mutex<Spool>) -> HashMap<String, u64> {
    let mut counters: HashMap<String, u64> = endpoint
        .counters()
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

#[cfg(test)]
mod tests {
    use palisade_proto::{Action, Connection, ConnectionEvent, Traffic, Verdict};

    use super::*;
    use crate::spool::SpoolConfig;

    struct Sensor;

    impl Endpoint for Sensor {
        fn counters(&self) -> Vec<(&'static str, u64)> {
            vec![("frames", 12), ("flows", 3)]
        }
    }

    fn event(seq: u64) -> ConnectionEvent {
        ConnectionEvent {
            seq,
            time_ms: 1_700_000_000_000,
            connection: Connection::default(),
            pid: None,
            sni: None,
            http_host: None,
            action: Action::Allow,
            verdict: Verdict::Allow,
            rule: None,
            policy_version: None,
            traffic: Traffic::default(),
            update_of: None,
        }
    }

    #[test]
    fn a_heartbeat_carries_the_endpoints_counters_and_the_spools() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), SpoolConfig::default()).unwrap();
        for seq in 1..=4 {
            spool.append(&event(seq)).unwrap();
        }
        spool.ack(1).unwrap();
        let counters = report_counters(&Sensor, &Mutex::new(spool));
        let expected: HashMap<String, u64> = [
            ("frames", 12),
            ("flows", 3),
            ("spool_pending", 3),
            ("spool_evicted", 0),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
        assert_eq!(counters, expected);
        // An endpoint that says nothing about policies enforces none.
        assert!(!Sensor.enforces());
        assert_eq!(Sensor.policy_version(), None);
    }
}
