//! The agent service: groups and the policy assigned to each, agents (list, get, revoke, move
//! to another group, isolate and release), and what agents report in their heartbeats. Whether an agent is online
//! is computed from its last heartbeat and the clock passed in ([`is_online`]), so listing needs
//! no background job (the [`crate::watchdog`] uses the same rule to raise `agent_offline`).
//! Every change is audited (in the store, in the same transaction) and published to the
//! agents' policy streams ([`Distribution`]).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use jiff::Timestamp;

use crate::distribution::{Distribution, Update};
use crate::error::Error;
use crate::role::{Permission, Principal};
use crate::store::{AgentRecord, AppDestination, Group, Store};

/// Longest group name accepted.
pub const MAX_GROUP_NAME_LEN: usize = 64;

/// Longest text an agent may report for its version, OS or host name.
pub const MAX_REPORT_LEN: usize = 255;

/// Most counters one heartbeat may carry.
pub const MAX_COUNTERS: usize = 256;

/// When an agent counts as offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// How often agents send a heartbeat.
    pub heartbeat_interval: Duration,
    /// How many intervals may pass without one before the agent is shown offline.
    pub missed_heartbeats: u32,
}

impl Liveness {
    /// How long an agent may stay silent and still count as online.
    pub fn window(&self) -> Duration {
        self.heartbeat_interval
            .saturating_mul(self.missed_heartbeats)
    }
}

impl Default for Liveness {
    /// Offline after 3 missed heartbeats of 10 s.
    fn default() -> Self {
        Liveness {
            heartbeat_interval: Duration::from_secs(10),
            missed_heartbeats: 3,
        }
    }
}

/// Whether an agent is heard from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// A heartbeat arrived within the allowed interval.
    Online,
    /// No heartbeat for longer (or never).
    Offline,
    /// Its certificate is refused.
    Revoked,
}

/// An agent as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Agent {
    /// The agent id.
    pub id: String,
    /// Online, offline or revoked, at the time of the request.
    pub status: Status,
    /// Host name given at enrollment.
    pub hostname: String,
    /// Operating system, as last reported.
    pub os: String,
    /// Agent software version, as last reported.
    pub version: String,
    /// Its group.
    pub group: String,
    /// The policy version it reported enforcing.
    pub policy_version: Option<i64>,
    /// Its counters, as last reported.
    pub counters: BTreeMap<String, u64>,
    /// When it enrolled, RFC 3339 UTC.
    pub enrolled_at: String,
    /// Its last heartbeat.
    pub last_seen: Option<String>,
    /// When it was revoked.
    pub revoked_at: Option<String>,
    /// Whether it is isolated: it enforces the server's isolation policy instead of its
    /// group's.
    pub isolated: bool,
    /// Since when it is isolated.
    pub isolated_at: Option<String>,
}

/// What a heartbeat reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Agent software version.
    pub version: String,
    /// Operating system.
    pub os: String,
    /// The policy version it enforces; `None` when it enforces none.
    pub policy_version: Option<i64>,
    /// Counters by name.
    pub counters: BTreeMap<String, u64>,
}

/// Every group.
pub async fn list_groups(store: &Store, who: &Principal) -> Result<Vec<Group>, Error> {
    who.require(Permission::ReadAgents)?;
    Ok(store.list_groups().await?)
}

/// Creates a group.
pub async fn create_group(
    store: &Store,
    who: &Principal,
    name: &str,
    now: Timestamp,
) -> Result<(), Error> {
    who.require(Permission::ManageAgents)?;
    check_group_name(name)?;
    if store
        .create_group(name, &who.actor, &now.to_string())
        .await?
    {
        Ok(())
    } else {
        Err(Error::Conflict(format!("group {name:?} already exists")))
    }
}

/// Assigns the policy `policy_id` to `group`; its agents receive the policy's newest version
/// at once.
pub async fn assign_policy(
    store: &Store,
    hub: &Distribution,
    who: &Principal,
    group: &str,
    policy_id: i64,
    now: Timestamp,
) -> Result<(), Error> {
    who.require(Permission::ManageAgents)?;
    match store
        .assign_policy(group, policy_id, &who.actor, &now.to_string())
        .await?
    {
        None => Err(Error::NotFound(format!("group {group:?}"))),
        Some(None) => Err(Error::NotFound(format!("policy {policy_id}"))),
        Some(Some(policy)) => {
            tracing::info!(group, policy = %policy.name, version = policy.version, actor = %who.actor, "policy assigned");
            hub.publish(Update::GroupPolicy {
                group: group.to_owned(),
                policy,
            });
            Ok(())
        }
    }
}

/// Every agent, with its status at `now`.
pub async fn list(
    store: &Store,
    who: &Principal,
    liveness: Liveness,
    now: Timestamp,
) -> Result<Vec<Agent>, Error> {
    who.require(Permission::ReadAgents)?;
    Ok(store
        .list_agents()
        .await?
        .into_iter()
        .map(|a| view(a, liveness, now))
        .collect())
}

/// One agent, with its status at `now`.
pub async fn get(
    store: &Store,
    who: &Principal,
    id: &str,
    liveness: Liveness,
    now: Timestamp,
) -> Result<Agent, Error> {
    who.require(Permission::ReadAgents)?;
    store
        .agent(id)
        .await?
        .map(|a| view(a, liveness, now))
        .ok_or_else(|| Error::NotFound(format!("agent {id:?}")))
}

/// An application an agent ran, and where it connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    /// Its path, else its name, else `(unknown)`.
    pub app: String,
    /// Its connections (to the destinations listed).
    pub connections: i64,
    /// Of those, blocked.
    pub blocks: i64,
    /// Where it connected, busiest first.
    pub destinations: Vec<AppDestination>,
}

/// Most (application, destination) pairs [`applications`] reads.
const MAX_APP_DESTINATIONS: i64 = 500;

/// The applications agent `id` ran since `since`, busiest first, each with its destinations;
/// at most [`MAX_APP_DESTINATIONS`] pairs in all, the busiest.
pub async fn applications(
    store: &Store,
    who: &Principal,
    id: &str,
    since: Timestamp,
) -> Result<Vec<Application>, Error> {
    who.require(Permission::ReadEvents)?;
    let pairs = store
        .app_destinations(id, since.as_millisecond(), MAX_APP_DESTINATIONS)
        .await?;
    let mut by_app: HashMap<String, Application> = HashMap::new();
    for pair in pairs {
        let app = by_app
            .entry(pair.app.clone())
            .or_insert_with(|| Application {
                app: pair.app.clone(),
                connections: 0,
                blocks: 0,
                destinations: Vec::new(),
            });
        app.connections += pair.connections;
        app.blocks += pair.blocks;
        app.destinations.push(pair);
    }
    let mut apps: Vec<Application> = by_app.into_values().collect();
    apps.sort_by(|a, b| b.connections.cmp(&a.connections).then(a.app.cmp(&b.app)));
    Ok(apps)
}

/// Revokes an agent: its certificate is refused from now on, and its open policy stream ends.
pub async fn revoke(
    store: &Store,
    hub: &Distribution,
    who: &Principal,
    id: &str,
    now: Timestamp,
) -> Result<(), Error> {
    who.require(Permission::ManageAgents)?;
    if !store.revoke_agent(id, &who.actor, &now.to_string()).await? {
        return Err(Error::NotFound(format!("agent {id:?}")));
    }
    tracing::info!(agent = id, actor = %who.actor, "agent revoked");
    hub.publish(Update::AgentRevoked {
        agent_id: id.to_owned(),
    });
    Ok(())
}

/// Isolates an agent: from now on its policy stream, on whichever node holds it, sends the
/// isolation policy instead of its group's, also after a reconnect, until it is released.
/// Isolating an isolated agent changes nothing (and is not an error).
pub async fn isolate(
    store: &Store,
    hub: &Distribution,
    who: &Principal,
    id: &str,
    now: Timestamp,
) -> Result<(), Error> {
    set_isolation(store, hub, who, id, true, now).await
}

/// Releases an isolated agent: it receives its group's current policy again. Releasing an
/// agent that is not isolated changes nothing (and is not an error).
pub async fn release(
    store: &Store,
    hub: &Distribution,
    who: &Principal,
    id: &str,
    now: Timestamp,
) -> Result<(), Error> {
    set_isolation(store, hub, who, id, false, now).await
}

/// Moves an agent to `group`; it receives that group's policy at once.
pub async fn move_to_group(
    store: &Store,
    hub: &Distribution,
    who: &Principal,
    id: &str,
    group: &str,
    now: Timestamp,
) -> Result<(), Error> {
    who.require(Permission::ManageAgents)?;
    match store
        .move_agent(id, group, &who.actor, &now.to_string())
        .await?
    {
        None => Err(Error::NotFound(format!("agent {id:?}"))),
        Some(false) => Err(Error::NotFound(format!("group {group:?}"))),
        Some(true) => {
            hub.publish(Update::AgentMoved {
                agent_id: id.to_owned(),
                group: group.to_owned(),
            });
            Ok(())
        }
    }
}

/// Stores what an (authenticated) agent reports.
pub async fn heartbeat(
    store: &Store,
    agent_id: &str,
    report: &Report,
    now: Timestamp,
) -> Result<(), Error> {
    for (field, value) in [("version", &report.version), ("os", &report.os)] {
        check_report(field, value)?;
    }
    if report.counters.len() > MAX_COUNTERS {
        return Err(Error::BadRequest(format!(
            "{} counters; at most {MAX_COUNTERS} are accepted",
            report.counters.len()
        )));
    }
    for name in report.counters.keys() {
        check_report("counter name", name)?;
    }
    store
        .heartbeat(
            agent_id,
            &report.version,
            &report.os,
            report.policy_version,
            &report.counters,
            &now.to_string(),
        )
        .await?;
    Ok(())
}

async fn set_isolation(
    store: &Store,
    hub: &Distribution,
    who: &Principal,
    id: &str,
    isolated: bool,
    now: Timestamp,
) -> Result<(), Error> {
    who.require(Permission::ManageAgents)?;
    match store
        .set_isolation(id, isolated, &who.actor, &now.to_string())
        .await?
    {
        None => Err(Error::NotFound(format!("agent {id:?}"))),
        // Already so: nothing to tell the streams.
        Some(false) => Ok(()),
        Some(true) => {
            tracing::info!(agent = id, isolated, actor = %who.actor, "agent isolation changed");
            let agent_id = id.to_owned();
            hub.publish(if isolated {
                Update::AgentIsolated { agent_id }
            } else {
                Update::AgentReleased { agent_id }
            });
            Ok(())
        }
    }
}

/// Refuses text an agent reports that is empty, too long or has control characters.
pub fn check_report(field: &str, value: &str) -> Result<(), Error> {
    if value.is_empty() || value.len() > MAX_REPORT_LEN || value.chars().any(char::is_control) {
        Err(Error::BadRequest(format!(
            "{field}: 1 to {MAX_REPORT_LEN} printable characters"
        )))
    } else {
        Ok(())
    }
}

/// Whether an agent last heard from at `last_seen` counts as online at `now`.
pub fn is_online(last_seen: Option<Timestamp>, liveness: Liveness, now: Timestamp) -> bool {
    last_seen
        .and_then(|seen| {
            jiff::SignedDuration::try_from(liveness.window())
                .ok()
                .and_then(|w| seen.checked_add(w).ok())
        })
        .is_some_and(|until| until > now)
}

fn view(a: AgentRecord, liveness: Liveness, now: Timestamp) -> Agent {
    let seen = a
        .last_seen
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok());
    let heard = is_online(seen, liveness, now);
    let status = if a.revoked_at.is_some() {
        Status::Revoked
    } else if heard {
        Status::Online
    } else {
        Status::Offline
    };
    Agent {
        id: a.id,
        status,
        hostname: a.hostname,
        os: a.os,
        version: a.agent_version,
        group: a.group,
        policy_version: a.policy_version,
        counters: a.counters,
        enrolled_at: a.enrolled_at,
        last_seen: a.last_seen,
        revoked_at: a.revoked_at,
        isolated: a.isolated_at.is_some(),
        isolated_at: a.isolated_at,
    }
}

/// Group names: like policy names, 1 to 64 of `a-z`, `0-9`, `-`, `_`, `.`.
fn check_group_name(name: &str) -> Result<(), Error> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c);
    let starts_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.len() <= MAX_GROUP_NAME_LEN && starts_ok && name.chars().all(ok_char) {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "group name {name:?}: use 1 to {MAX_GROUP_NAME_LEN} of a-z, 0-9, '-', '_', '.', starting with a letter or digit"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(last_seen: Option<&str>, revoked: bool) -> AgentRecord {
        AgentRecord {
            id: "agent-1".into(),
            hostname: "h".into(),
            os: "linux".into(),
            agent_version: "1".into(),
            group: "default".into(),
            enrolled_at: "2026-01-01T00:00:00Z".into(),
            revoked_at: revoked.then(|| "2026-01-01T00:00:00Z".into()),
            last_seen: last_seen.map(str::to_owned),
            policy_version: None,
            counters: BTreeMap::new(),
            isolated_at: None,
        }
    }

    #[test]
    fn offline_after_the_missed_heartbeats() {
        let now: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let l = Liveness::default();
        let status = |seen, revoked| view(record(seen, revoked), l, now).status;
        assert_eq!(status(Some("2026-01-01T00:00:35Z"), false), Status::Online);
        assert_eq!(status(Some("2026-01-01T00:00:30Z"), false), Status::Offline);
        assert_eq!(status(None, false), Status::Offline);
        assert_eq!(status(Some("2026-01-01T00:00:59Z"), true), Status::Revoked);
    }
}
