//! The fleet live against a server: each simulated endpoint runs the real agent uplink
//! (enrollment, mutual TLS, the policy stream, heartbeats, event batches acknowledged once
//! stored) with the simulated traffic in place of an interceptor, and decides every connection
//! with the policy its server pushed, through the real policy engine.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use palisade_agent::uplink::{self, About, Heartbeat, Identity, Uplink};
use palisade_policy::{CompiledPolicy, Policy};
use palisade_proto::{Action, ConnectionEvent, Verdict};

use crate::endpoint::{Endpoint, Observed};

/// The source of the current time, passed in by the binary.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// Where the fleet connects and how it enrolls.
#[derive(Debug, Clone)]
pub struct Server {
    /// The gateway, `https://HOST:PORT`.
    pub url: String,
    /// The server's CA certificate (PEM), the only one trusted at enrollment.
    pub ca_pem: String,
    /// An enrollment token with enough uses for the fleet.
    pub token: String,
    /// Where each endpoint keeps its identity (`DIR/HOSTNAME/`), so that a restarted fleet is
    /// the same agents; none enrolls afresh every time.
    pub state: Option<PathBuf>,
}

/// How often endpoints speak.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// How often an endpoint sends what it saw.
pub const TICK: Duration = Duration::from_secs(1);
/// The agent version simulated endpoints report.
pub const VERSION: &str = concat!("sim-", env!("CARGO_PKG_VERSION"));

/// Event numbers per batch: event `n` of batch `b` is `b * BATCH_SPAN + n`.
pub const BATCH_SPAN: u64 = 100_000;

/// A policy version an endpoint received, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The endpoint.
    pub hostname: String,
    /// The policy's name.
    pub policy: String,
    /// Its version.
    pub version: i64,
    /// When it arrived.
    pub at: Timestamp,
}

/// Fleet-wide counters, and where policy receipts go when someone watches them.
#[derive(Debug, Default)]
pub struct Counters {
    /// Every policy an endpoint receives is sent here, when set (load tests of distribution).
    pub receipts: Option<tokio::sync::mpsc::UnboundedSender<Receipt>>,
    /// Endpoints enrolled (or whose saved identity was loaded) and connected.
    pub connected: AtomicU64,
    /// Events acknowledged by the server.
    pub events_acked: AtomicU64,
    /// Batches sent again after a failure.
    pub retries: AtomicU64,
    /// Policies received.
    pub policies: AtomicU64,
}

/// Runs one endpoint until the task is dropped: connect (enrolling the first time), then every
/// [`TICK`] send the connections of the elapsed time as one batch, re-sending it until
/// acknowledged; every [`HEARTBEAT`] report. Reconnects after failures with a capped backoff.
pub async fn run_endpoint(
    endpoint: Endpoint,
    server: Server,
    clock: Clock,
    counters: Arc<Counters>,
) {
    let mut backoff = Duration::from_millis(200);
    let mut since = clock().as_millisecond();
    // A batch that has not been acknowledged yet: (batch number, events).
    let mut pending: Option<(u64, Vec<ConnectionEvent>)> = None;
    // What this endpoint reports in its heartbeats.
    let mut acked = 0;
    loop {
        match connect(&endpoint, &server).await {
            Ok(uplink) => {
                counters.connected.fetch_add(1, Ordering::Relaxed);
                backoff = Duration::from_millis(200);
                let error = serve(
                    &endpoint,
                    uplink,
                    &clock,
                    &counters,
                    &mut since,
                    &mut pending,
                    &mut acked,
                )
                .await;
                counters.connected.fetch_sub(1, Ordering::Relaxed);
                tracing::debug!(host = %endpoint.hostname, %error, "uplink lost");
            }
            Err(error) => tracing::debug!(host = %endpoint.hostname, %error, "cannot connect"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// Connects `endpoint`, enrolling it first unless its identity was saved.
pub async fn connect(endpoint: &Endpoint, server: &Server) -> Result<Uplink, uplink::UplinkError> {
    let dir = server.state.as_ref().map(|d| d.join(&endpoint.hostname));
    let saved = dir.as_ref().and_then(|d| Identity::load(d).ok());
    let identity = match saved {
        Some(identity) => identity,
        None => {
            let about = About {
                hostname: endpoint.hostname.clone(),
                os: endpoint.os.clone(),
                version: VERSION.to_owned(),
            };
            let enrolled =
                uplink::enroll(&server.url, &server.ca_pem, &server.token, &about).await?;
            if let Some(d) = &dir {
                enrolled.identity.save(d)?;
            }
            enrolled.identity
        }
    };
    Uplink::connect(&server.url, &identity).await
}

/// The policy an endpoint enforces.
struct Active {
    /// The stored version; none for the isolation policy the server generates for an isolated
    /// agent, which is not a stored version (its events and heartbeats then name none).
    version: Option<i64>,
    policy: Policy,
    compiled: CompiledPolicy,
}

async fn serve(
    endpoint: &Endpoint,
    uplink: Uplink,
    clock: &Clock,
    counters: &Counters,
    since: &mut i64,
    pending: &mut Option<(u64, Vec<ConnectionEvent>)>,
    acked: &mut u64,
) -> String {
    let active: Arc<Mutex<Option<Active>>> = Arc::new(Mutex::new(None));
    let mut stream = match uplink.clone().policies().await {
        Ok(s) => s,
        Err(e) => return e.to_string(),
    };
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    let mut tick = tokio::time::interval(TICK);
    let mut sender = uplink.clone();
    loop {
        tokio::select! {
            policy = stream.next() => match policy {
                Ok(Some(p)) => {
                    counters.policies.fetch_add(1, Ordering::Relaxed);
                    if let Some(receipts) = &counters.receipts {
                        let _ = receipts.send(Receipt {
                            hostname: endpoint.hostname.clone(),
                            policy: p.name.clone(),
                            version: p.version,
                            at: clock(),
                        });
                    }
                    let file = format!("{}.{}", p.name, p.format);
                    match palisade_policy::load(&file, &p.source, &|_| Err("no list files".to_owned())) {
                        Ok(loaded) => {
                            let compiled = CompiledPolicy::new(&loaded.policy);
                            if let Ok(mut a) = active.lock() {
                                let version = (!p.isolation).then_some(p.version);
                                *a = Some(Active { version, policy: loaded.policy, compiled });
                            }
                        }
                        Err(e) => tracing::warn!(host = %endpoint.hostname, error = %e, "policy refused"),
                    }
                }
                Ok(None) => return "the server closed the policy stream".to_owned(),
                Err(e) => return e.to_string(),
            },
            _ = heartbeat.tick() => {
                let version = active.lock().ok().and_then(|a| a.as_ref().and_then(|a| a.version));
                let report = Heartbeat {
                    version: VERSION.to_owned(),
                    os: endpoint.os.clone(),
                    policy_version: version,
                    counters: HashMap::from([
                        ("events_acked".to_owned(), *acked),
                    ]),
                };
                if let Err(e) = uplink.clone().heartbeat(&report).await {
                    return e.to_string();
                }
            },
            _ = tick.tick() => {
                if pending.is_none() {
                    let now = clock().as_millisecond();
                    let seen = endpoint.traffic(*since, now);
                    *since = now;
                    if !seen.is_empty() {
                        // Batches are numbered by time and events by batch, so a restarted
                        // endpoint never reuses a number.
                        let seq = u64::try_from(now).unwrap_or(0);
                        *pending = Some((seq, decide(&active, seen, seq, clock())));
                    }
                }
                if let Some((seq, events)) = pending.as_ref() {
                    match sender.send_batch(*seq, events).await {
                        Ok(()) => {
                            counters.events_acked.fetch_add(events.len() as u64, Ordering::Relaxed);
                            *acked += events.len() as u64;
                            *pending = None;
                        }
                        Err(e) => {
                            counters.retries.fetch_add(1, Ordering::Relaxed);
                            return e.to_string();
                        }
                    }
                }
            },
        }
    }
}

/// Decides each connection with the active policy (allow everything without one) and numbers
/// the events after their batch.
fn decide(
    active: &Mutex<Option<Active>>,
    seen: Vec<Observed>,
    batch: u64,
    now: Timestamp,
) -> Vec<ConnectionEvent> {
    let guard = active.lock().ok();
    let policy = guard.as_ref().and_then(|g| g.as_ref());
    seen.into_iter()
        .enumerate()
        .map(|(n, o)| {
            let (action, verdict, rule, policy_version) = match policy {
                Some(a) => {
                    let d = a.compiled.decide(&o.connection, now);
                    let rule = d
                        .rule
                        .and_then(|i| a.policy.rules.get(i))
                        .map(|r| r.id.clone());
                    (d.action, d.verdict, rule, a.version)
                }
                None => (Action::Allow, Verdict::Allow, None, None),
            };
            ConnectionEvent {
                seq: batch * BATCH_SPAN + n as u64,
                time_ms: o.time_ms,
                connection: o.connection,
                pid: Some(o.pid),
                sni: o.sni,
                http_host: None,
                action,
                verdict,
                rule,
                policy_version,
                update_of: None,
                traffic: o.traffic,
            }
        })
        .collect()
}
