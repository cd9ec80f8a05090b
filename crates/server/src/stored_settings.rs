//! Settings people change while the server runs, through `GET`/`PUT /api/v1/settings`. They
//! are stored in the database, so every node reads the same value, and every change is audited
//! with the old and the new value. (What an operator sets before the start, addresses and URLs,
//! is [`crate::settings`].)
//!
//! Each key is defined here with its default, which is in force until someone sets it. Admins
//! change them ([`Permission::ManageSettings`]); admins and auditors read them
//! ([`Permission::ReadSettings`]).

use jiff::Timestamp;
use serde_json::Value;

use crate::error::Error;
use crate::role::{Permission, Principal};
use crate::store::{SettingChange, Store, StoreError};

/// How many days connection events are kept; the retention timer removes older ones.
pub const RETENTION_DAYS: &str = "events.retention_days";

/// A setting as the API shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Setting {
    /// Its key.
    pub key: String,
    /// The value in force (the default when nobody set it).
    #[schema(value_type = Object)]
    pub value: Value,
    /// The value when nobody set it.
    #[schema(value_type = Object)]
    pub default: Value,
    /// What it does and which values it takes.
    pub description: String,
    /// When it was last changed; none when it was never set.
    pub updated_at: Option<String>,
    /// Who changed it last; none when it was never set.
    pub updated_by: Option<String>,
}

/// A known setting: an integer in a range.
struct Definition {
    key: &'static str,
    description: &'static str,
    default: i64,
    min: i64,
    max: i64,
}

const RETENTION: Definition = Definition {
    key: RETENTION_DAYS,
    description: "days connection events are kept (an integer from 1 to 3650); older ones are \
                  removed by the retention timer",
    default: 30,
    min: 1,
    max: 3650,
};

/// Every known setting.
const DEFINITIONS: &[Definition] = &[RETENTION];

impl Definition {
    /// `value` if it is an integer this setting takes, else the refusal naming the key.
    fn check(&self, value: &Value) -> Result<i64, String> {
        value
            .as_i64()
            .filter(|n| (self.min..=self.max).contains(n))
            .ok_or_else(|| {
                format!(
                    "{}: expected an integer from {} to {}, found {value}",
                    self.key, self.min, self.max
                )
            })
    }

    /// The value in force given what is stored (JSON text, if anything).
    fn in_force(&self, stored: Option<&str>) -> Result<i64, StoreError> {
        let Some(text) = stored else {
            return Ok(self.default);
        };
        serde_json::from_str::<Value>(text)
            .map_err(|e| e.to_string())
            .and_then(|v| self.check(&v))
            .map_err(|e| StoreError::Corrupt(format!("setting {}: {e}", self.key)))
    }
}

fn definition(key: &str) -> Option<&'static Definition> {
    DEFINITIONS.iter().find(|d| d.key == key)
}

/// Every known setting with its value in force.
pub async fn list(store: &Store, who: &Principal) -> Result<Vec<Setting>, Error> {
    who.require(Permission::ReadSettings)?;
    let stored = store.settings().await?;
    let mut out = Vec::with_capacity(DEFINITIONS.len());
    for d in DEFINITIONS {
        let row = stored.iter().find(|s| s.key == d.key);
        out.push(Setting {
            key: d.key.to_owned(),
            value: Value::from(d.in_force(row.map(|r| r.value.as_str()))?),
            default: Value::from(d.default),
            description: d.description.to_owned(),
            updated_at: row.map(|r| r.updated_at.clone()),
            updated_by: row.map(|r| r.updated_by.clone()),
        });
    }
    Ok(out)
}

/// Sets each key of `changes` to its value: every one is checked first (an unknown key or a
/// value the setting does not take is [`Error::BadRequest`] naming the key, and nothing is
/// stored), then all are stored in one transaction. A value equal to the one in force changes
/// nothing and is not audited. Returns every setting as it is now.
pub async fn update(
    store: &Store,
    who: &Principal,
    changes: &serde_json::Map<String, Value>,
    now: Timestamp,
) -> Result<Vec<Setting>, Error> {
    who.require(Permission::ManageSettings)?;
    let mut checked = Vec::with_capacity(changes.len());
    for (key, value) in changes {
        let Some(d) = definition(key) else {
            let known: Vec<&str> = DEFINITIONS.iter().map(|d| d.key).collect();
            return Err(Error::BadRequest(format!(
                "unknown setting {key:?} (known: {})",
                known.join(", ")
            )));
        };
        let n = d.check(value).map_err(Error::BadRequest)?;
        checked.push((d, n.to_string()));
    }
    let defaults: Vec<String> = checked.iter().map(|(d, _)| d.default.to_string()).collect();
    let stored: Vec<SettingChange<'_>> = checked
        .iter()
        .zip(&defaults)
        .map(|((d, value), default)| SettingChange {
            key: d.key,
            default,
            value,
        })
        .collect();
    store
        .update_settings(&stored, &who.actor, &now.to_string())
        .await?;
    list(store, who).await
}

/// How many days events are kept now ([`RETENTION_DAYS`]).
pub async fn retention_days(store: &Store) -> Result<i64, StoreError> {
    let stored = store.setting(RETENTION_DAYS).await?;
    RETENTION.in_force(stored.as_ref().map(|s| s.value.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_outside_the_range_or_of_another_type_are_refused_naming_the_key() {
        let d = RETENTION;
        assert_eq!(d.check(&Value::from(1)), Ok(1));
        assert_eq!(d.check(&Value::from(3650)), Ok(3650));
        for bad in [
            Value::from(0),
            Value::from(3651),
            Value::from(-5),
            Value::from(7.5),
            Value::from("7"),
            Value::Null,
        ] {
            let err = d.check(&bad).unwrap_err();
            assert!(err.starts_with("events.retention_days: "), "{err}");
        }
    }

    #[test]
    fn a_stored_value_in_force_and_the_default_without_one() {
        let d = RETENTION;
        assert_eq!(d.in_force(None).unwrap(), 30);
        assert_eq!(d.in_force(Some("7")).unwrap(), 7);
        assert!(d.in_force(Some("\"x\"")).is_err());
    }
}
