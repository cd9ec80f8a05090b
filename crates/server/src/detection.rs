//! The detection service of a node: the [`palisade_detect::pipeline`] over every stored event,
//! and the alerts it raises into storage.
//!
//! - **Detect**: one consumer of the work topic `stored-events` (batches the ingest writers
//!   committed) feeds each event to the pipeline, publishes the findings to the work topic
//!   `alerts` and only then acknowledges the batch: a batch whose findings were not handed on is
//!   delivered again, and the pipeline skips the events it has seen (at least once, idempotent
//!   by event id). Every [`TICK`] the periodic detectors (beacons, closed behaviour windows) run,
//!   and the newest promoted behaviour model (`crate::training`) is swapped in when there is a
//!   newer one than the pipeline judges with.
//! - **Store**: one consumer of `alerts` raises each finding as an alert, its title naming the
//!   agent by host name; findings with the same key merge into the active alert (one more occurrence, newest explanation, evidence
//!   appended). A finding that cannot be stored goes back to the queue.
//!
//! The pipeline's features live in the memory of the node (rebuilt from the stream after a
//! restart). With several nodes on RabbitMQ the nodes compete for the batches, so each sees part
//! of every agent's traffic; docs/detection.md says what that costs.

use std::sync::Arc;
use std::time::Duration;

use palisade_detect::behaviour::Model as BehaviourModel;
use palisade_detect::pipeline::{Finding, Observation, Pipeline, Settings};
use palisade_proto::{ConnectionEvent, Direction};
use tokio::task::JoinHandle;

use crate::Clock;
use crate::alerts;
use crate::bus::{Bus, WorkConsumer, WorkTopic};
use crate::ingest;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::store::alerts::NewAlert;

/// How often the periodic detectors run.
pub const TICK: Duration = Duration::from_secs(10);

/// How long a consumer waits before handing back a message it could not finish.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Starts this node's detection and alert storing; returns the tasks to abort at shutdown.
pub async fn spawn(
    bus: Bus,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    clock: Clock,
) -> Vec<JoinHandle<()>> {
    let batches = bus.consume_work(WorkTopic::StoredEvents).await;
    let findings = bus.consume_work(WorkTopic::Alerts).await;
    vec![
        tokio::spawn(detect(
            bus,
            store.clone(),
            batches,
            Pipeline::new(Settings::default()),
            metrics.clone(),
            clock.clone(),
        )),
        tokio::spawn(store_alerts(store, findings, metrics, clock)),
    ]
}

async fn detect(
    bus: Bus,
    store: Arc<Store>,
    mut batches: WorkConsumer,
    mut pipeline: Pipeline,
    metrics: Arc<Metrics>,
    clock: Clock,
) {
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut findings = Vec::new();
    let mut model_version = None;
    loop {
        tokio::select! {
            delivery = batches.next() => {
                match ingest::decode(delivery.payload()) {
                    Ok((agent_id, _, _, events)) => {
                        for event in &events {
                            pipeline.observe(&observation(&agent_id, event), &mut findings);
                        }
                        metrics.detection().observed(pipeline.counters());
                    }
                    Err(e) => {
                        tracing::warn!(cause = %e, "detection: dropped a stored-events message it cannot read");
                        metrics.detection().unreadable();
                    }
                }
                if publish(&bus, &mut findings, &metrics).await {
                    if let Err(e) = delivery.ack().await {
                        tracing::debug!(cause = %e, "detection: acknowledging a batch failed; it comes again");
                    }
                } else {
                    tokio::time::sleep(RETRY_DELAY).await;
                    drop(delivery);
                }
            }
            _ = ticks.tick() => {
                swap_model(&store, &mut pipeline, &mut model_version, &metrics).await;
                pipeline.tick(clock().as_millisecond(), &mut findings);
                metrics.detection().observed(pipeline.counters());
                while !publish(&bus, &mut findings, &metrics).await {
                    tokio::time::sleep(RETRY_DELAY).await;
                }
            }
        }
    }
}

/// Sets the newest promoted behaviour model on `pipeline` when it is newer than `version` (the
/// one it judges with). A model that cannot be read is logged and skipped; the pipeline keeps
/// the one it has.
async fn swap_model(
    store: &Store,
    pipeline: &mut Pipeline,
    version: &mut Option<i64>,
    metrics: &Metrics,
) {
    let newest = match store.promoted_model_version(crate::training::KIND).await {
        Ok(newest) => newest,
        Err(e) => {
            tracing::debug!(cause = %e, "detection: cannot look for a newer behaviour model");
            return;
        }
    };
    if newest.is_none() || newest <= *version {
        return;
    }
    match store.promoted_model(crate::training::KIND).await {
        Ok(Some((newest, body))) => {
            *version = Some(newest);
            match BehaviourModel::decode(&body) {
                Ok(model) => {
                    pipeline.set_behaviour_model(Arc::new(model));
                    metrics
                        .detection()
                        .model_in_use(u64::try_from(newest).unwrap_or(0));
                    tracing::info!(
                        version = newest,
                        "detection judges with a new behaviour model"
                    );
                }
                Err(e) => {
                    tracing::warn!(version = newest, cause = %e, "detection: the promoted behaviour model cannot be read; keeping the one in use");
                }
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(cause = %e, "detection: reading the behaviour model failed"),
    }
}

/// Publishes the findings to `alerts`, removing those published; whether all went (the rest
/// stay for the next try).
async fn publish(bus: &Bus, findings: &mut Vec<Finding>, metrics: &Metrics) -> bool {
    let mut done = 0;
    let mut all = true;
    for finding in findings.iter() {
        match serde_json::to_vec(finding) {
            Ok(payload) => {
                if let Err(e) = bus.publish_work(WorkTopic::Alerts, payload).await {
                    tracing::warn!(cause = %e, "detection: publishing a finding failed; trying again");
                    all = false;
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(cause = %e, "detection: a finding cannot be serialised; dropped");
                metrics.detection().unreadable();
            }
        }
        done += 1;
    }
    findings.drain(..done);
    all
}

/// The pipeline's view of a stored event.
pub(crate) fn observation<'a>(agent_id: &'a str, event: &'a ConnectionEvent) -> Observation<'a> {
    let c = &event.connection;
    Observation {
        agent: agent_id,
        seq: event.seq,
        time_ms: event.time_ms,
        app: c
            .app_path
            .as_deref()
            .or(c.app_name.as_deref())
            .unwrap_or_default(),
        domain: event
            .sni
            .as_deref()
            .or(event.http_host.as_deref())
            .or(c.domain.as_deref()),
        dst_ip: c.dst_ip,
        dst_port: c.dst_port.unwrap_or(0),
        inbound: c.direction == Direction::Inbound,
        bytes_out: event.traffic.bytes_out,
        bytes_in: event.traffic.bytes_in,
        update_of: event.update_of,
        query_type: None,
        reference: None,
    }
}

async fn store_alerts(
    store: Arc<Store>,
    mut findings: WorkConsumer,
    metrics: Arc<Metrics>,
    clock: Clock,
) {
    loop {
        let delivery = findings.next().await;
        let finding: Finding = match serde_json::from_slice(delivery.payload()) {
            Ok(finding) => finding,
            Err(e) => {
                tracing::warn!(cause = %e, "detection: dropped an alert message it cannot read");
                metrics.detection().unreadable();
                let _ = delivery.ack().await;
                continue;
            }
        };
        let title = titled_by_hostname(&store, &finding).await;
        let raised = alerts::raise(
            &store,
            &NewAlert {
                kind: &finding.kind,
                severity: finding.severity.as_str(),
                score: finding.score.clamp(0.0, 1.0),
                title: &title,
                agent_id: Some(&finding.agent),
                app: finding.app.as_deref(),
                dedupe_key: &finding.key,
                explanation: &finding.explanation,
                evidence: &finding.evidence,
            },
            clock(),
        )
        .await;
        match raised {
            Ok((alert, new)) => {
                metrics.detection().stored(new);
                tracing::info!(alert = alert.id, kind = %alert.kind, new, title = %alert.title, "detection raised an alert");
                if let Err(e) = delivery.ack().await {
                    tracing::debug!(cause = %e, "detection: acknowledging an alert failed; it comes again");
                }
            }
            Err(e) => {
                tracing::warn!(cause = %e, "detection: storing an alert failed; it goes back to the queue");
                tokio::time::sleep(RETRY_DELAY).await;
                drop(delivery);
            }
        }
    }
}

/// The finding's title with the agent named by its host name, as people know it (the id stays
/// in the alert's `agent_id`); the title as it is when the agent is not found.
async fn titled_by_hostname(store: &Store, finding: &Finding) -> String {
    match store.agent(&finding.agent).await {
        Ok(Some(agent)) if !agent.hostname.is_empty() => {
            finding.title.replace(&finding.agent, &agent.hostname)
        }
        _ => finding.title.clone(),
    }
}
