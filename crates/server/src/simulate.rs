//! Policy simulation: replay a candidate policy over the stored connection events of a time
//! range with the policy engine and report what it would have decided differently, in total
//! and per application. Events are read a page at a time, so memory depends on the number of
//! applications (capped), not on the number of events.

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};
use palisade_policy::CompiledPolicy;
use palisade_proto::Action;

use crate::error::Error;
use crate::policies::{self, Format};
use crate::role::{Permission, Principal};
use crate::store::{EventCondition, EventTest, Store, StoredEvent};

/// Events read per query.
const PAGE: i64 = 1000;

/// Examples kept per application.
pub const EXAMPLES_PER_APP: usize = 3;

/// Applications counted one by one; events of any further application are counted under
/// [`OTHER_APPS`].
pub const MAX_APPS: usize = 10_000;

/// The application name for events of applications beyond [`MAX_APPS`].
pub const OTHER_APPS: &str = "(other applications)";

/// The application name for events without an application path or name.
pub const UNKNOWN_APP: &str = "(unknown)";

/// What replaying a candidate policy found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct SimulationReport {
    /// Start of the range replayed (inclusive), RFC 3339.
    pub from: String,
    /// End of the range replayed (exclusive), RFC 3339.
    pub to: String,
    /// Events replayed.
    pub evaluated: u64,
    /// Events the candidate would block (its action is `block`, whatever its mode).
    pub would_block: u64,
    /// Events for which the candidate's action differs from the recorded one.
    pub would_change: u64,
    /// Per application (path, else process name), most changes first.
    pub apps: Vec<AppReport>,
}

/// The findings for one application.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct AppReport {
    /// The application's path (or name when the path is unknown).
    pub app: String,
    /// Its events replayed.
    pub evaluated: u64,
    /// Of those, how many the candidate would block.
    pub would_block: u64,
    /// Of those, how many would get another action.
    pub would_change: u64,
    /// Up to [`EXAMPLES_PER_APP`] events whose action would change, newest first.
    pub examples: Vec<Example>,
}

/// One event whose action would change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Example {
    /// The agent that reported it.
    pub agent_id: String,
    /// Its sequence number on that agent.
    pub seq: u64,
    /// Its time, RFC 3339.
    pub time: String,
    /// Where it went.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Destination address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_ip: Option<String>,
    /// Destination port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_port: Option<u16>,
    /// What was decided when it happened.
    #[schema(value_type = String)]
    pub recorded_action: Action,
    /// The rule that decided then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_rule: Option<String>,
    /// What the candidate decides.
    #[schema(value_type = String)]
    pub candidate_action: Action,
    /// The candidate's deciding rule (none for its default action).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate_rule: Option<String>,
}

/// Replays the candidate document over the events in `[from, to)` (RFC 3339 times; default:
/// the 24 hours before `to`, which defaults to `now`). An invalid candidate is [`Error::InvalidPolicy`]; nothing is stored.
/// Each event is decided as of its own time (schedules apply as they would have).
pub async fn simulate(
    store: &Store,
    who: &Principal,
    format: Format,
    source: &str,
    from: Option<&str>,
    to: Option<&str>,
    now: Timestamp,
) -> Result<SimulationReport, Error> {
    let time = |field: &str, value: Option<&str>| -> Result<Option<Timestamp>, Error> {
        value
            .map(|v| {
                v.parse::<Timestamp>().map_err(|_| {
                    Error::BadRequest(format!(
                        "{field}: expected an RFC 3339 time, e.g. 2026-03-02T09:30:00Z"
                    ))
                })
            })
            .transpose()
    };
    let (from, to) = (time("from", from)?, time("to", to)?);
    for permission in [Permission::ReadPolicies, Permission::ReadEvents] {
        if !who.role.may(permission) {
            return Err(Error::Forbidden(permission));
        }
    }
    let to = to.unwrap_or(now);
    let from = match from {
        Some(from) => from,
        None => to
            .checked_sub(SignedDuration::from_hours(24))
            .map_err(|e| Error::BadRequest(format!("to: {e}")))?,
    };
    if from >= to {
        return Err(Error::BadRequest("from must be before to".to_owned()));
    }
    let loaded = policies::load("candidate", format, source)?.map_err(|invalid| {
        Error::InvalidPolicy(invalid.errors.iter().map(ToString::to_string).collect())
    })?;
    let policy = loaded.policy;
    let compiled = CompiledPolicy::new(&policy);
    let conditions = [
        EventCondition {
            negated: false,
            test: EventTest::From(from.as_millisecond()),
        },
        EventCondition {
            negated: false,
            test: EventTest::To(to.as_millisecond()),
        },
    ];
    let mut totals = Counts::default();
    let mut apps: HashMap<String, AppReport> = HashMap::new();
    let mut after = None;
    loop {
        let page = store
            .query_events(&conditions, after.as_ref(), PAGE)
            .await?;
        for event in &page {
            let at = Timestamp::from_millisecond(event.event.time_ms).unwrap_or(from);
            let decision = compiled.decide(&event.event.connection, at);
            let blocks = decision.action == Action::Block;
            let changes = decision.action != event.event.action;
            totals.add(blocks, changes);
            let app = app_key(event, &apps);
            let report = apps.entry(app.clone()).or_insert_with(|| AppReport {
                app,
                evaluated: 0,
                would_block: 0,
                would_change: 0,
                examples: Vec::new(),
            });
            report.evaluated += 1;
            report.would_block += u64::from(blocks);
            report.would_change += u64::from(changes);
            if changes && report.examples.len() < EXAMPLES_PER_APP {
                let rule = decision
                    .rule
                    .and_then(|i| policy.rules.get(i))
                    .map(|r| r.id.clone());
                report.examples.push(example(event, decision.action, rule));
            }
        }
        if i64::try_from(page.len()).unwrap_or(i64::MAX) < PAGE {
            break;
        }
        after = page.last().map(|e| crate::store::EventKey {
            time_ms: e.event.time_ms,
            agent_id: e.agent_id.clone(),
            seq: i64::try_from(e.event.seq).unwrap_or(i64::MAX),
        });
    }
    let mut apps: Vec<AppReport> = apps.into_values().collect();
    apps.sort_by(|a, b| {
        (b.would_change, b.would_block, &a.app).cmp(&(a.would_change, a.would_block, &b.app))
    });
    Ok(SimulationReport {
        from: from.to_string(),
        to: to.to_string(),
        evaluated: totals.evaluated,
        would_block: totals.would_block,
        would_change: totals.would_change,
        apps,
    })
}

#[derive(Default)]
struct Counts {
    evaluated: u64,
    would_block: u64,
    would_change: u64,
}

impl Counts {
    fn add(&mut self, blocks: bool, changes: bool) {
        self.evaluated += 1;
        self.would_block += u64::from(blocks);
        self.would_change += u64::from(changes);
    }
}

fn app_key(event: &StoredEvent, apps: &HashMap<String, AppReport>) -> String {
    let c = &event.event.connection;
    let app = c
        .app_path
        .as_deref()
        .or(c.app_name.as_deref())
        .unwrap_or(UNKNOWN_APP);
    if apps.contains_key(app) || apps.len() < MAX_APPS {
        app.to_owned()
    } else {
        OTHER_APPS.to_owned()
    }
}

fn example(event: &StoredEvent, action: Action, rule: Option<String>) -> Example {
    let c = &event.event.connection;
    Example {
        agent_id: event.agent_id.clone(),
        seq: event.event.seq,
        time: event.time.clone(),
        domain: c.domain.clone(),
        dst_ip: c.dst_ip.map(|ip| ip.to_string()),
        dst_port: c.dst_port,
        recorded_action: event.event.action,
        recorded_rule: event.event.rule.clone(),
        candidate_action: action,
        candidate_rule: rule,
    }
}
