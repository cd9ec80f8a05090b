//! The trainer of a node: fits the per-application behaviour model
//! ([`palisade_detect::behaviour`]) on stored events and stores each candidate as the next
//! version of the kind [`KIND`], promoted only when it evaluates at least as well as the
//! current model; detection on every node swaps in the newest promoted version
//! (`crate::detection`).
//!
//! - **When.** At start, then every interval (`training_interval_seconds`, six hours unless the
//!   operator sets it); every [`RETRY`] while there is too little history (a new install has
//!   none yet) or a run failed. A run is skipped when a candidate of the kind was stored less
//!   than an interval ago, promoted or not, so several nodes, or a restarted one, do not train
//!   again at once, and a rejected candidate is followed by the next an interval later.
//! - **On what.** The newest events of the last [`HISTORY`], at most [`MAX_EVENTS`], read
//!   newest first in pages and counted into five-minute windows per (agent, application); at
//!   least [`MIN_SPAN`] of them, and enough windows for the trainer.
//! - **Decision.** The candidate and the current model are judged on the same held-out
//!   windows ([`palisade_detect::behaviour::training`]). Either way the candidate is stored
//!   with its evaluation and the reason, and audited (`detection_model.promote` or
//!   `detection_model.reject`); the model file is kept only when it is promoted.
//!
//! The API lists the models ([`list`]) and trains one at once ([`train_now`]).

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use palisade_detect::behaviour::{self, Model, TrainError, TrainSettings, Windows};
use tokio::task::JoinHandle;

use crate::Clock;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::role::{Permission, Principal};
use crate::store::{DetectionModel, EventCondition, EventKey, EventTest, NewModel, Store};

/// The kind of model this trainer stores.
pub const KIND: &str = "app_behaviour";
/// The interval when the operator sets none: six hours.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(6 * 3600);
/// How soon a run is tried again while no model has been promoted.
pub const RETRY: Duration = Duration::from_secs(600);
/// How far back the events a model is trained on go.
pub const HISTORY: SignedDuration = SignedDuration::from_hours(7 * 24);
/// The actor the timer's trainings are audited as.
const TRAINER: &str = "system:trainer";
/// How many models [`list`] shows.
const LISTED: i64 = 50;
/// The most events one run reads (the newest).
pub const MAX_EVENTS: usize = 500_000;
/// The least time the events read must span: a model of a few minutes of traffic would flag
/// the rest of the day.
pub const MIN_SPAN: SignedDuration = SignedDuration::from_hours(2);
/// Events per page read.
const PAGE: i64 = 10_000;

/// What one run did.
#[derive(Debug)]
pub enum Outcome {
    /// A candidate was stored (promoted or not).
    Trained(DetectionModel),
    /// Nothing was stored; why.
    Skipped(String),
}

/// Starts the trainer; it runs until the returned task is aborted.
pub fn spawn(
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    clock: Clock,
    every: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let wait = match run(&store, clock(), every).await {
                Ok(Outcome::Trained(model)) => {
                    metrics.detection().trained(model.promoted);
                    tracing::info!(
                        version = model.version,
                        promoted = model.promoted,
                        reason = %model.reason,
                        windows = model.windows,
                        "trained a behaviour model"
                    );
                    every
                }
                Ok(Outcome::Skipped(why)) => {
                    tracing::debug!(%why, "behaviour model training skipped");
                    every
                }
                Err(e) => {
                    metrics.detection().training_failed();
                    tracing::warn!(cause = %e, "behaviour model training failed; trying again later");
                    RETRY
                }
            };
            let promoted = matches!(store.promoted_model_version(KIND).await, Ok(Some(_)));
            tokio::time::sleep(if promoted { wait } else { wait.min(RETRY) }).await;
        }
    })
}

/// One run at `now`: trains unless a candidate was stored less than `every` ago.
pub async fn run(store: &Store, now: Timestamp, every: Duration) -> Result<Outcome, Error> {
    if let Some(last) = store.models(KIND, 1).await?.first() {
        let at: Timestamp = last.created_at.parse().unwrap_or(Timestamp::UNIX_EPOCH);
        let every = SignedDuration::try_from(every).unwrap_or(SignedDuration::MAX);
        if now.duration_since(at) < every {
            return Ok(Outcome::Skipped(format!(
                "version {} was trained at {}",
                last.version, last.created_at
            )));
        }
    }
    train(store, now, TRAINER).await
}

/// The newest models, newest first, for someone who may read alerts.
pub async fn list(store: &Store, who: &Principal) -> Result<Vec<DetectionModel>, Error> {
    who.require(Permission::ReadAlerts)?;
    Ok(store.models(KIND, LISTED).await?)
}

/// Trains a candidate at once, for someone who may change settings; too little history is a
/// conflict that says how much there is.
pub async fn train_now(
    store: &Store,
    who: &Principal,
    now: Timestamp,
) -> Result<DetectionModel, Error> {
    who.require(Permission::ManageSettings)?;
    match train(store, now, &who.actor).await? {
        Outcome::Trained(model) => Ok(model),
        Outcome::Skipped(why) => Err(Error::Conflict(why)),
    }
}

/// Trains a candidate on the stored events before `now` and stores it, audited as `actor`.
pub async fn train(store: &Store, now: Timestamp, actor: &str) -> Result<Outcome, Error> {
    let to_ms = now.as_millisecond();
    let from_ms = now
        .checked_sub(HISTORY)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .as_millisecond();
    let (windows, events, oldest_ms) = read_windows(store, from_ms, to_ms).await?;
    let span_ms = oldest_ms.map_or(0, |oldest| to_ms - oldest);
    if span_ms < i64::try_from(MIN_SPAN.as_millis()).unwrap_or(i64::MAX) {
        return Ok(Outcome::Skipped(format!(
            "{} minutes of history; at least {} are needed",
            span_ms / 60_000,
            MIN_SPAN.as_mins()
        )));
    }
    let current = match store.promoted_model(KIND).await? {
        Some((version, body)) => match Model::decode(&body) {
            Ok(model) => Some(model),
            Err(e) => {
                tracing::warn!(version, cause = %e, "the promoted behaviour model cannot be read; judging the candidate alone");
                None
            }
        },
        None => None,
    };
    let windows = windows.into_windows();
    let window_count = windows.len();
    let fitted = tokio::task::spawn_blocking(move || {
        behaviour::train(&windows, current.as_ref(), &TrainSettings::default())
    })
    .await
    .map_err(|e| Error::Unavailable(format!("the training task stopped: {e}")))?;
    let candidate = match fitted {
        Ok(candidate) => candidate,
        Err(e @ TrainError::TooFew { .. }) => return Ok(Outcome::Skipped(e.to_string())),
        Err(e) => return Err(Error::Unavailable(format!("training: {e}"))),
    };
    let evaluation = serde_json::json!({
        "candidate": candidate.evaluation,
        "current": candidate.current,
        "trained_windows": candidate.trained_windows,
    });
    let body = candidate.model.encode();
    let created_at = now.to_string();
    let stored = store
        .insert_model(&NewModel {
            kind: KIND,
            created_at: &created_at,
            trained_from_ms: oldest_ms.unwrap_or(from_ms),
            trained_to_ms: to_ms,
            events: i64::try_from(events).unwrap_or(i64::MAX),
            windows: i64::try_from(window_count).unwrap_or(i64::MAX),
            applications: i64::try_from(candidate.model.applications()).unwrap_or(i64::MAX),
            evaluation: &evaluation,
            promoted: candidate.promote,
            reason: &candidate.reason,
            body: &body,
            actor,
        })
        .await?;
    Ok(Outcome::Trained(stored))
}

/// The windows of the newest events in `[from_ms, to_ms)`, how many events, and the oldest
/// event time read.
async fn read_windows(
    store: &Store,
    from_ms: i64,
    to_ms: i64,
) -> Result<(Windows, usize, Option<i64>), Error> {
    let conditions = [
        EventCondition {
            negated: false,
            test: EventTest::From(from_ms),
        },
        EventCondition {
            negated: false,
            test: EventTest::To(to_ms),
        },
    ];
    let mut windows = Windows::default();
    let mut after: Option<EventKey> = None;
    let mut events = 0;
    let mut oldest = None;
    while events < MAX_EVENTS {
        let page = store
            .query_events(&conditions, after.as_ref(), PAGE)
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(EventKey {
            time_ms: last.event.time_ms,
            agent_id: last.agent_id.clone(),
            seq: i64::try_from(last.event.seq).unwrap_or(i64::MAX),
        });
        oldest = Some(last.event.time_ms);
        for stored in &page {
            windows.add(&crate::detection::observation(
                &stored.agent_id,
                &stored.event,
            ));
        }
        events += page.len();
        if page.len() < usize::try_from(PAGE).unwrap_or(usize::MAX) {
            break;
        }
    }
    Ok((windows, events, oldest))
}
