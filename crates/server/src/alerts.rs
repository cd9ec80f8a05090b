//! The alert service: raising (merging repeats of the same behaviour into one active alert),
//! reading, and the changes people make — acknowledge, resolve, assign — each audited.

use jiff::Timestamp;

use crate::error::Error;
use crate::role::{Permission, Principal};
use crate::store::Store;
use crate::store::alerts::{Alert, Change, NewAlert};

/// Severities, lowest first.
pub const SEVERITIES: [&str; 4] = ["low", "medium", "high", "critical"];

/// Statuses an alert moves through: open, then acknowledged, then resolved (or open straight to
/// resolved). A resolved alert does not change; the same behaviour raised again opens a new one.
pub const STATUSES: [&str; 3] = ["open", "acknowledged", "resolved"];

/// Longest assignee name accepted.
pub const MAX_ASSIGNEE_LEN: usize = 64;

/// Most alerts in one page.
pub const MAX_PAGE: i64 = 500;

/// Raises an alert for the server itself (detectors, the agent watchdog): no person acts, so
/// nothing is audited. Returns the alert and whether it is new rather than merged.
pub async fn raise(
    store: &Store,
    new: &NewAlert<'_>,
    at: Timestamp,
) -> Result<(Alert, bool), Error> {
    if !SEVERITIES.contains(&new.severity) {
        return Err(Error::BadRequest(format!(
            "severity {:?}: expected one of {}",
            new.severity,
            SEVERITIES.join(", ")
        )));
    }
    if !(0.0..=1.0).contains(&new.score) {
        return Err(Error::BadRequest(format!(
            "score {} is not in [0, 1]",
            new.score
        )));
    }
    Ok(store.raise_alert(new, &at.to_string()).await?)
}

/// Which alerts to list.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Only alerts with this status.
    pub status: Option<String>,
    /// Only alerts with this severity.
    pub severity: Option<String>,
    /// Only alerts about this agent.
    pub agent: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// At most this many (default 100, at most 500).
    pub limit: Option<i64>,
}

/// One page of alerts, newest first.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Page {
    /// The alerts.
    pub alerts: Vec<Alert>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Alerts newest first, a page at a time.
pub async fn list(store: &Store, who: &Principal, filter: &Filter) -> Result<Page, Error> {
    who.require(Permission::ReadAlerts)?;
    let one_of = |name: &str, value: &Option<String>, allowed: &[&str]| match value {
        Some(v) if !allowed.contains(&v.as_str()) => Err(Error::BadRequest(format!(
            "{name}={v:?}: expected one of {}",
            allowed.join(", ")
        ))),
        _ => Ok(()),
    };
    one_of("status", &filter.status, &STATUSES)?;
    one_of("severity", &filter.severity, &SEVERITIES)?;
    let before = match &filter.cursor {
        None => None,
        Some(c) => Some(
            c.parse::<i64>()
                .map_err(|_| Error::BadRequest(format!("cursor={c:?} is not one this API gave")))?,
        ),
    };
    let limit = filter.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Error::BadRequest(format!(
            "limit={limit}: expected 1 to {MAX_PAGE}"
        )));
    }
    let alerts = store
        .list_alerts(
            filter.status.as_deref(),
            filter.severity.as_deref(),
            filter.agent.as_deref(),
            before,
            limit,
        )
        .await?;
    let full = i64::try_from(alerts.len()).is_ok_and(|n| n == limit);
    let next_cursor = alerts
        .last()
        .filter(|_| full)
        .map(|last| last.id.to_string());
    Ok(Page {
        alerts,
        next_cursor,
    })
}

/// One alert.
pub async fn get(store: &Store, who: &Principal, id: i64) -> Result<Alert, Error> {
    who.require(Permission::ReadAlerts)?;
    store
        .alert(id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("alert {id}")))
}

/// Acknowledges, resolves or assigns an alert. A resolved alert cannot change.
pub async fn change(
    store: &Store,
    who: &Principal,
    id: i64,
    change: Change<'_>,
    at: Timestamp,
) -> Result<Alert, Error> {
    who.require(Permission::WorkAlerts)?;
    if let Change::Assign(name) = change {
        if name.trim().is_empty() || name.len() > MAX_ASSIGNEE_LEN {
            return Err(Error::BadRequest(format!(
                "assignee: 1 to {MAX_ASSIGNEE_LEN} characters"
            )));
        }
    }
    match store
        .change_alert(id, change, &who.actor, &at.to_string())
        .await?
    {
        None => Err(Error::NotFound(format!("alert {id}"))),
        Some((_, false)) => Err(Error::Conflict(format!(
            "alert {id} is resolved and cannot change"
        ))),
        Some((alert, true)) => Ok(alert),
    }
}
