//! The agent watchdog: a task on every node that, once per heartbeat interval, raises an
//! `agent_offline` alert for each agent that was online and has missed its heartbeats, and
//! resolves that alert when the agent reports again.
//!
//! One alert per offline spell and agent, whatever the number of nodes and ticks: the alert's
//! dedupe key is `agent_offline:AGENT`, and an agent whose newest such alert was raised after
//! its last heartbeat is not raised again (so one a person resolved while the agent is still
//! away stays resolved). Two nodes raising in the same instant merge into one alert (one more
//! occurrence). Agents that never sent a heartbeat, and revoked agents, are left alone.

use std::collections::HashMap;

use jiff::Timestamp;
use tokio::task::JoinHandle;

use crate::Clock;
use crate::agents::{self, Liveness};
use crate::alerts;
use crate::error::Error;
use crate::store::alerts::{Alert, NewAlert};
use crate::store::{AgentRecord, Store};

/// The kind of the alerts the watchdog raises.
pub const KIND: &str = "agent_offline";

/// Starts the watchdog: it looks at every agent once per `liveness.heartbeat_interval`, until
/// the task is aborted.
pub fn spawn(store: std::sync::Arc<Store>, liveness: Liveness, clock: Clock) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(liveness.heartbeat_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(e) = check(&store, liveness, clock()).await {
                tracing::warn!(cause = %e, "agent watchdog: check failed; trying again next tick");
            }
        }
    })
}

/// What one check did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// Alerts raised (or merged, when another node raised the same one at once).
    pub raised: usize,
    /// Alerts resolved because their agent reports again.
    pub resolved: usize,
}

/// Raises and resolves `agent_offline` alerts for every agent, as they stand at `now`.
pub async fn check(store: &Store, liveness: Liveness, now: Timestamp) -> Result<Checked, Error> {
    let newest: HashMap<String, Alert> = store
        .newest_alerts_of_kind(KIND)
        .await?
        .into_iter()
        .filter_map(|a| a.agent_id.clone().map(|id| (id, a)))
        .collect();
    let mut done = Checked::default();
    for agent in store.list_agents().await? {
        if agent.revoked_at.is_some() {
            continue;
        }
        let Some(last_seen) = agent
            .last_seen
            .as_deref()
            .and_then(|t| t.parse::<Timestamp>().ok())
        else {
            continue;
        };
        let alert = newest.get(&agent.id);
        if agents::is_online(Some(last_seen), liveness, now) {
            if let Some(alert) = alert.filter(|a| a.status != "resolved") {
                if store
                    .resolve_alert_by_server(alert.id, &now.to_string())
                    .await?
                {
                    tracing::info!(agent = %agent.id, alert = alert.id, "agent reports again; offline alert resolved");
                    done.resolved += 1;
                }
            }
            continue;
        }
        let raised_since = alert
            .and_then(|a| a.first_seen.parse::<Timestamp>().ok())
            .is_some_and(|first| first >= last_seen);
        if !raised_since {
            raise(store, &agent, last_seen, liveness, now).await?;
            done.raised += 1;
        }
    }
    Ok(done)
}

async fn raise(
    store: &Store,
    agent: &AgentRecord,
    last_seen: Timestamp,
    liveness: Liveness,
    now: Timestamp,
) -> Result<(), Error> {
    let threshold = liveness.window();
    let explanation = serde_json::json!({
        "last_heartbeat": last_seen.to_string(),
        "threshold_seconds": threshold.as_secs_f64(),
        "heartbeat_interval_seconds": liveness.heartbeat_interval.as_secs_f64(),
        "missed_heartbeats": liveness.missed_heartbeats,
        "silent_seconds": now.duration_since(last_seen).as_secs_f64(),
    });
    let title = format!("agent {} ({}) stopped reporting", agent.hostname, agent.id);
    let dedupe_key = format!("{KIND}:{}", agent.id);
    let (alert, new) = alerts::raise(
        store,
        &NewAlert {
            kind: KIND,
            severity: "medium",
            score: 0.5,
            title: &title,
            agent_id: Some(&agent.id),
            app: None,
            dedupe_key: &dedupe_key,
            explanation: &explanation,
            evidence: &[],
        },
        now,
    )
    .await?;
    tracing::warn!(agent = %agent.id, alert = alert.id, new, last_heartbeat = %last_seen, "agent stopped reporting");
    Ok(())
}
