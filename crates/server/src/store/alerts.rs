//! Alert queries: raise (or merge into the active alert of the same behaviour), read, and change
//! an alert's status or assignee.

use super::{GENESIS, Pool, Store, StoreError, WRITE_LOCK, chain_hash};

/// How many evidence references an alert keeps (the newest).
pub const MAX_EVIDENCE: usize = 100;

/// An alert as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Alert {
    /// Identifier in the API.
    pub id: i64,
    /// What was detected, e.g. `beacon`, `dga`, `agent_offline`.
    pub kind: String,
    /// `low`, `medium`, `high` or `critical`.
    pub severity: String,
    /// How sure or how far from normal, in [0, 1].
    pub score: f64,
    /// One line for people.
    pub title: String,
    /// The endpoint concerned, when there is one.
    pub agent_id: Option<String>,
    /// The application concerned, when there is one.
    pub app: Option<String>,
    /// The features that drove the alert, their values and the baseline.
    #[schema(value_type = Object)]
    pub explanation: serde_json::Value,
    /// References to the events behind it (newest last, at most [`MAX_EVIDENCE`]).
    pub evidence: Vec<String>,
    /// How many times the behaviour was raised while this alert was active.
    pub occurrences: i64,
    /// `open`, `acknowledged` or `resolved`.
    pub status: String,
    /// Who works on it.
    pub assignee: Option<String>,
    /// First raised, RFC 3339 UTC.
    pub first_seen: String,
    /// Last raised.
    pub last_seen: String,
    /// Last changed by anyone.
    pub updated_at: String,
}

/// An alert to raise.
#[derive(Debug, Clone)]
pub struct NewAlert<'a> {
    /// What was detected.
    pub kind: &'a str,
    /// `low`, `medium`, `high` or `critical`.
    pub severity: &'a str,
    /// In [0, 1].
    pub score: f64,
    /// One line for people.
    pub title: &'a str,
    /// The endpoint concerned.
    pub agent_id: Option<&'a str>,
    /// The application concerned.
    pub app: Option<&'a str>,
    /// The same behaviour raised again has the same key and is merged into the active alert.
    pub dedupe_key: &'a str,
    /// Why.
    pub explanation: &'a serde_json::Value,
    /// The events behind it.
    pub evidence: &'a [String],
}

/// A change a person makes to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    /// Status to `acknowledged`.
    Acknowledge,
    /// Status to `resolved`.
    Resolve,
    /// Set the assignee.
    Assign(&'a str),
}

type Row = (
    i64,
    String,
    String,
    f64,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    i64,
    String,
    Option<String>,
    String,
    String,
    String,
);

const COLUMNS: &str = "id, kind, severity, score, title, agent_id, app, explanation, evidence, \
     occurrences, status, assignee, first_seen, last_seen, updated_at";

fn alert(row: Row) -> Result<Alert, StoreError> {
    let (
        id,
        kind,
        severity,
        score,
        title,
        agent_id,
        app,
        explanation,
        evidence,
        occurrences,
        status,
        assignee,
        first_seen,
        last_seen,
        updated_at,
    ) = row;
    let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("alert {id}: {e}"));
    Ok(Alert {
        id,
        kind,
        severity,
        score,
        title,
        agent_id,
        app,
        explanation: serde_json::from_str(&explanation).map_err(corrupt)?,
        evidence: serde_json::from_str(&evidence).map_err(corrupt)?,
        occurrences,
        status,
        assignee,
        first_seen,
        last_seen,
        updated_at,
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl Store {
    /// Raises an alert, or merges it into the active (not resolved) alert with the same
    /// `dedupe_key`: one more occurrence, the newest explanation, the higher score and severity
    /// given, the evidence appended (the newest [`MAX_EVIDENCE`] kept). Returns the alert and
    /// whether it is new.
    pub async fn raise_alert(
        &self,
        new: &NewAlert<'_>,
        at: &str,
    ) -> Result<(Alert, bool), StoreError> {
        let explanation = to_json(new.explanation)?;
        let (row, created): (Row, bool) = write_tx!(self, tx => {
            let active: Option<Row> = sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM alerts WHERE dedupe_key = $1 AND status <> 'resolved'"
            ))
            .bind(new.dedupe_key)
            .fetch_optional(&mut *tx)
            .await?;
            match active {
                Some(row) => {
                    let old = alert(row)?;
                    let mut evidence = old.evidence;
                    evidence.extend(new.evidence.iter().cloned());
                    let excess = evidence.len().saturating_sub(MAX_EVIDENCE);
                    evidence.drain(..excess);
                    let severity = if rank(new.severity) > rank(&old.severity) {
                        new.severity
                    } else {
                        old.severity.as_str()
                    };
                    let row: Row = sqlx::query_as(&format!(
                        "UPDATE alerts SET occurrences = occurrences + 1, last_seen = $2, \
                         updated_at = $2, explanation = $3, evidence = $4, score = $5, \
                         severity = $6 WHERE id = $1 RETURNING {COLUMNS}"
                    ))
                    .bind(old.id)
                    .bind(at)
                    .bind(&explanation)
                    .bind(to_json(&evidence)?)
                    .bind(new.score.max(old.score))
                    .bind(severity)
                    .fetch_one(&mut *tx)
                    .await?;
                    (row, false)
                }
                None => {
                    let evidence = new.evidence.get(new.evidence.len().saturating_sub(MAX_EVIDENCE)..)
                        .unwrap_or_default();
                    let row: Row = sqlx::query_as(&format!(
                        "INSERT INTO alerts (kind, severity, score, title, agent_id, app, \
                         dedupe_key, explanation, evidence, occurrences, status, first_seen, \
                         last_seen, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, 'open', $10, $10, $10) \
                         RETURNING {COLUMNS}"
                    ))
                    .bind(new.kind)
                    .bind(new.severity)
                    .bind(new.score)
                    .bind(new.title)
                    .bind(new.agent_id)
                    .bind(new.app)
                    .bind(new.dedupe_key)
                    .bind(&explanation)
                    .bind(to_json(&evidence)?)
                    .bind(at)
                    .fetch_one(&mut *tx)
                    .await?;
                    (row, true)
                }
            }
        });
        Ok((alert(row)?, created))
    }

    /// Alerts newest first, optionally only those with `status`, older than `before` (an id),
    /// at most `limit`.
    pub async fn list_alerts(
        &self,
        status: Option<&str>,
        severity: Option<&str>,
        agent: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Alert>, StoreError> {
        let rows: Vec<Row> = with_pool!(self, pool => {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM alerts WHERE ($1 IS NULL OR status = $1) \
                 AND ($2 IS NULL OR severity = $2) AND ($3 IS NULL OR agent_id = $3) \
                 AND ($4 IS NULL OR id < $4) ORDER BY id DESC LIMIT $5"
            ))
            .bind(status)
            .bind(severity)
            .bind(agent)
            .bind(before)
            .bind(limit)
            .fetch_all(pool)
            .await
        })?;
        rows.into_iter().map(alert).collect()
    }

    /// One alert.
    pub async fn alert(&self, id: i64) -> Result<Option<Alert>, StoreError> {
        let row: Option<Row> = with_pool!(self, pool => {
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM alerts WHERE id = $1"))
                .bind(id)
                .fetch_optional(pool)
                .await
        })?;
        row.map(alert).transpose()
    }

    /// For each dedupe key of alerts of `kind`, its newest alert (whatever its status).
    pub async fn newest_alerts_of_kind(&self, kind: &str) -> Result<Vec<Alert>, StoreError> {
        let rows: Vec<Row> = with_pool!(self, pool => {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM alerts WHERE id IN \
                 (SELECT MAX(id) FROM alerts WHERE kind = $1 GROUP BY dedupe_key) ORDER BY id"
            ))
            .bind(kind)
            .fetch_all(pool)
            .await
        })?;
        rows.into_iter().map(alert).collect()
    }

    /// Resolves the alert `id` on the server's own account (the condition it reports has
    /// ended): not audited, like raising. `false` when it was already resolved or is gone.
    pub async fn resolve_alert_by_server(&self, id: i64, at: &str) -> Result<bool, StoreError> {
        let changed = with_writer!(self, pool => {
            sqlx::query(
                "UPDATE alerts SET status = 'resolved', updated_at = $2 \
                 WHERE id = $1 AND status <> 'resolved'",
            )
            .bind(id)
            .bind(at)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(changed > 0)
    }

    /// Applies a person's change and audits it, in one transaction. `None` when there is no
    /// such alert; the alert unchanged with `false` when the change is not allowed from its
    /// status (nothing resolved can change).
    pub async fn change_alert(
        &self,
        id: i64,
        change: Change<'_>,
        actor: &str,
        at: &str,
    ) -> Result<Option<(Alert, bool)>, StoreError> {
        let outcome: Option<(Row, bool)> = write_tx!(self, tx => {
            let current: Option<Row> =
                sqlx::query_as(&format!("SELECT {COLUMNS} FROM alerts WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            match current {
                None => None,
                Some(row) if row.10 == "resolved" => Some((row, false)),
                Some(_) => {
                    let (set, value, action) = match change {
                        Change::Acknowledge => ("status", "acknowledged", "alert.acknowledge"),
                        Change::Resolve => ("status", "resolved", "alert.resolve"),
                        Change::Assign(who) => ("assignee", who, "alert.assign"),
                    };
                    let row: Row = sqlx::query_as(&format!(
                        "UPDATE alerts SET {set} = $2, updated_at = $3 WHERE id = $1 \
                         RETURNING {COLUMNS}"
                    ))
                    .bind(id)
                    .bind(value)
                    .bind(at)
                    .fetch_one(&mut *tx)
                    .await?;
                    let subject = match change {
                        Change::Assign(who) => format!("alert:{id} to {who}"),
                        _ => format!("alert:{id}"),
                    };
                    append_audit!(tx, at, actor, action, &subject);
                    Some((row, true))
                }
            }
        });
        outcome
            .map(|(row, changed)| Ok((alert(row)?, changed)))
            .transpose()
    }
}

/// Orders severities; unknown ones lowest.
fn rank(severity: &str) -> u8 {
    match severity {
        "critical" => 4,
        "high" => 3,
        "medium" => 2,
        "low" => 1,
        _ => 0,
    }
}
