//! Queries for the settings people change through the API: key to JSON value, with when and by
//! whom each was last changed. What the keys mean and which values they take is
//! `crate::stored_settings`'s business; here values are JSON text.

use super::{GENESIS, Pool, Store, StoreError, WRITE_LOCK, chain_hash};

/// A setting as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSetting {
    /// Its key, e.g. `events.retention_days`.
    pub key: String,
    /// Its value, JSON text.
    pub value: String,
    /// When it was last changed, RFC 3339 UTC.
    pub updated_at: String,
    /// Who changed it last.
    pub updated_by: String,
}

/// One change to store: the key, the value it has when nothing is stored (JSON text, for the
/// audit log), and the new value (JSON text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingChange<'a> {
    /// The key.
    pub key: &'a str,
    /// The value in force when nothing is stored.
    pub default: &'a str,
    /// The new value.
    pub value: &'a str,
}

type Row = (String, String, String, String);

fn setting((key, value, updated_at, updated_by): Row) -> StoredSetting {
    StoredSetting {
        key,
        value,
        updated_at,
        updated_by,
    }
}

impl Store {
    /// Every stored setting, by key.
    pub async fn settings(&self) -> Result<Vec<StoredSetting>, StoreError> {
        let rows: Vec<Row> = with_pool!(self, pool => {
            sqlx::query_as("SELECT key, value, updated_at, updated_by FROM settings ORDER BY key")
                .fetch_all(pool)
                .await
        })?;
        Ok(rows.into_iter().map(setting).collect())
    }

    /// The stored setting `key`, if it was ever set.
    pub async fn setting(&self, key: &str) -> Result<Option<StoredSetting>, StoreError> {
        let row: Option<Row> = with_pool!(self, pool => {
            sqlx::query_as("SELECT key, value, updated_at, updated_by FROM settings WHERE key = $1")
                .bind(key)
                .fetch_optional(pool)
                .await
        })?;
        Ok(row.map(setting))
    }

    /// Stores every change whose value differs from the one in force, each audited as
    /// `setting.update` with the old and the new value, all in one transaction. Returns how
    /// many changed.
    pub async fn update_settings(
        &self,
        changes: &[SettingChange<'_>],
        actor: &str,
        at: &str,
    ) -> Result<usize, StoreError> {
        let changed = write_tx!(self, tx => {
            let mut changed = 0;
            for change in changes {
                let old: Option<(String,)> =
                    sqlx::query_as("SELECT value FROM settings WHERE key = $1")
                        .bind(change.key)
                        .fetch_optional(&mut *tx)
                        .await?;
                let old = old.map_or_else(|| change.default.to_owned(), |(v,)| v);
                if old == change.value {
                    continue;
                }
                sqlx::query(
                    "INSERT INTO settings (key, value, updated_at, updated_by) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO UPDATE SET \
                     value = excluded.value, updated_at = excluded.updated_at, \
                     updated_by = excluded.updated_by",
                )
                .bind(change.key)
                .bind(change.value)
                .bind(at)
                .bind(actor)
                .execute(&mut *tx)
                .await?;
                append_audit!(
                    tx,
                    at,
                    actor,
                    "setting.update",
                    &format!("setting:{} from:{old} to:{}", change.key, change.value)
                );
                changed += 1;
            }
            changed
        });
        Ok(changed)
    }
}
