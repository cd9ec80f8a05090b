//! Detection model queries: the trainer stores each candidate as the next version of its kind
//! (with its evaluation, and its body when promoted); detection reads the newest promoted one.

use super::{GENESIS, Pool, Store, StoreError, WRITE_LOCK, chain_hash};

/// A trained model as the API shows it (without its body).
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct DetectionModel {
    /// Which detector it is for, e.g. `app_behaviour`.
    pub kind: String,
    /// From 1, one more than the kind's version before.
    pub version: i64,
    /// When it was trained, RFC 3339 UTC.
    pub created_at: String,
    /// The oldest and newest event time it was trained on, ms since the epoch.
    pub trained_from_ms: i64,
    /// See `trained_from_ms`.
    pub trained_to_ms: i64,
    /// Events read.
    pub events: i64,
    /// Feature windows built from them.
    pub windows: i64,
    /// Applications with a profile of their own.
    pub applications: i64,
    /// Its figures on held-out windows, and the current model's on the same windows.
    #[schema(value_type = Object)]
    pub evaluation: serde_json::Value,
    /// Whether it replaced the current model.
    pub promoted: bool,
    /// Why (or why not).
    pub reason: String,
}

/// A candidate to store.
#[derive(Debug, Clone)]
pub struct NewModel<'a> {
    /// See [`DetectionModel`].
    pub kind: &'a str,
    /// When, RFC 3339 UTC.
    pub created_at: &'a str,
    /// See [`DetectionModel`].
    pub trained_from_ms: i64,
    /// See [`DetectionModel`].
    pub trained_to_ms: i64,
    /// See [`DetectionModel`].
    pub events: i64,
    /// See [`DetectionModel`].
    pub windows: i64,
    /// See [`DetectionModel`].
    pub applications: i64,
    /// See [`DetectionModel`].
    pub evaluation: &'a serde_json::Value,
    /// See [`DetectionModel`].
    pub promoted: bool,
    /// See [`DetectionModel`].
    pub reason: &'a str,
    /// The model file; kept only when promoted.
    pub body: &'a [u8],
    /// Who trained it, for the audit log: `system:trainer`, or the user or token who asked.
    pub actor: &'a str,
}

type Row = (
    String,
    i64,
    String,
    i64,
    i64,
    i64,
    i64,
    i64,
    String,
    bool,
    String,
);

const COLUMNS: &str = "kind, version, created_at, trained_from_ms, trained_to_ms, events, \
                       windows, applications, evaluation, promoted, reason";

fn model(row: Row) -> Result<DetectionModel, StoreError> {
    let (
        kind,
        version,
        created_at,
        trained_from_ms,
        trained_to_ms,
        events,
        windows,
        applications,
        evaluation,
        promoted,
        reason,
    ) = row;
    let evaluation = serde_json::from_str(&evaluation)
        .map_err(|e| StoreError::Corrupt(format!("model evaluation: {e}")))?;
    Ok(DetectionModel {
        kind,
        version,
        created_at,
        trained_from_ms,
        trained_to_ms,
        events,
        windows,
        applications,
        evaluation,
        promoted,
        reason,
    })
}

impl Store {
    /// Stores `m` as the next version of its kind, in one transaction with an audit entry
    /// (`detection_model.promote` or `detection_model.reject`, by `m.actor`).
    pub async fn insert_model(&self, m: &NewModel<'_>) -> Result<DetectionModel, StoreError> {
        let evaluation = m.evaluation.to_string();
        let body = m.promoted.then_some(m.body);
        let version = write_tx!(self, tx => {
            let (version,): (i64,) = sqlx::query_as(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM detection_models WHERE kind = $1",
            )
            .bind(m.kind)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO detection_models (kind, version, created_at, trained_from_ms, \
                 trained_to_ms, events, windows, applications, evaluation, promoted, reason, body) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(m.kind)
            .bind(version)
            .bind(m.created_at)
            .bind(m.trained_from_ms)
            .bind(m.trained_to_ms)
            .bind(m.events)
            .bind(m.windows)
            .bind(m.applications)
            .bind(&evaluation)
            .bind(m.promoted)
            .bind(m.reason)
            .bind(body)
            .execute(&mut *tx)
            .await?;
            let action = if m.promoted {
                "detection_model.promote"
            } else {
                "detection_model.reject"
            };
            let subject = format!("{} v{version}: {}", m.kind, m.reason);
            append_audit!(tx, m.created_at, m.actor, action, &subject);
            version
        });
        Ok(DetectionModel {
            kind: m.kind.to_owned(),
            version,
            created_at: m.created_at.to_owned(),
            trained_from_ms: m.trained_from_ms,
            trained_to_ms: m.trained_to_ms,
            events: m.events,
            windows: m.windows,
            applications: m.applications,
            evaluation: m.evaluation.clone(),
            promoted: m.promoted,
            reason: m.reason.to_owned(),
        })
    }

    /// The newest `limit` models of `kind`, newest first.
    pub async fn models(&self, kind: &str, limit: i64) -> Result<Vec<DetectionModel>, StoreError> {
        let rows: Vec<Row> = with_pool!(self, pool => {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM detection_models WHERE kind = $1 \
                 ORDER BY version DESC LIMIT $2"
            ))
            .bind(kind)
            .bind(limit)
            .fetch_all(pool)
            .await
        })?;
        rows.into_iter().map(model).collect()
    }

    /// The version of the newest promoted model of `kind`, if any (cheap: detection polls it).
    pub async fn promoted_model_version(&self, kind: &str) -> Result<Option<i64>, StoreError> {
        let row: (Option<i64>,) = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT MAX(version) FROM detection_models WHERE kind = $1 AND promoted",
            )
            .bind(kind)
            .fetch_one(pool)
            .await
        })?;
        Ok(row.0)
    }

    /// The newest promoted model of `kind`: its version and file.
    pub async fn promoted_model(&self, kind: &str) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
        let row: Option<(i64, Option<Vec<u8>>)> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT version, body FROM detection_models WHERE kind = $1 AND promoted \
                 ORDER BY version DESC LIMIT 1",
            )
            .bind(kind)
            .fetch_optional(pool)
            .await
        })?;
        match row {
            None => Ok(None),
            Some((version, Some(body))) => Ok(Some((version, body))),
            Some((version, None)) => Err(StoreError::Corrupt(format!(
                "promoted model {kind} v{version} has no body"
            ))),
        }
    }
}
