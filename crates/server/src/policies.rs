//! The policy service: every new version is validated by the policy engine before it is stored,
//! stored as an immutable version (one more than the newest), and written to the audit log in
//! the same transaction.

use jiff::Timestamp;

use crate::error::Error;
use crate::role::{Permission, Principal};
use crate::store::{NewVersion, PolicySummary, PolicyVersion, Store};

/// The syntax of a policy document.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// YAML.
    Yaml,
    /// JSON.
    Json,
}

impl Format {
    /// `yaml` or `json`, as stored; also the file extension messages name.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Yaml => "yaml",
            Format::Json => "json",
        }
    }
}

/// Longest policy name accepted.
pub const MAX_NAME_LEN: usize = 64;

/// Largest policy document accepted, in bytes.
pub const MAX_SOURCE_LEN: usize = 1 << 20;

/// Every policy with its newest version.
pub async fn list(store: &Store, who: &Principal) -> Result<Vec<PolicySummary>, Error> {
    require(who, Permission::ReadPolicies)?;
    Ok(store.list_policies().await?)
}

/// Every version of the policy `id`, oldest first.
pub async fn versions(
    store: &Store,
    who: &Principal,
    id: i64,
) -> Result<Vec<PolicyVersion>, Error> {
    require(who, Permission::ReadPolicies)?;
    store
        .policy_versions(id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("policy {id}")))
}

/// Validates `source` with the policy engine and, if it is valid, stores it as the next version
/// of the policy `name` (version 1 creates the policy).
///
/// Messages name the document `NAME.yaml` or `NAME.json`. List files (`file:` in a list) are
/// refused: the server has no files to read them from, so the entries belong in the document.
pub async fn create_version(
    store: &Store,
    who: &Principal,
    name: &str,
    format: Format,
    source: &str,
    now: Timestamp,
) -> Result<PolicyVersion, Error> {
    require(who, Permission::WritePolicies)?;
    check_name(name)?;
    if source.len() > MAX_SOURCE_LEN {
        return Err(Error::BadRequest(format!(
            "the policy document is {} bytes; at most {MAX_SOURCE_LEN} are accepted",
            source.len()
        )));
    }
    let file = format!("{name}.{}", format.as_str());
    let no_files = |list: &str| -> Result<String, String> {
        Err(format!(
            "list file {list:?} cannot be read on the server: put the entries in the document"
        ))
    };
    palisade_policy::load(&file, source, &no_files).map_err(|invalid| {
        Error::InvalidPolicy(invalid.errors.iter().map(ToString::to_string).collect())
    })?;
    let new = NewVersion {
        name,
        format: format.as_str(),
        source,
    };
    let version = store
        .create_policy_version(&new, &who.actor, &now.to_string())
        .await?;
    tracing::info!(policy = name, version = version.version, actor = %who.actor, "policy version stored");
    Ok(version)
}

fn require(who: &Principal, permission: Permission) -> Result<(), Error> {
    if who.role.may(permission) {
        Ok(())
    } else {
        Err(Error::Forbidden(permission))
    }
}

/// Policy names: 1 to 64 of `a-z`, `0-9`, `-`, `_`, `.`, starting with a letter or digit.
fn check_name(name: &str) -> Result<(), Error> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c);
    let starts_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.len() <= MAX_NAME_LEN && starts_ok && name.chars().all(ok_char) {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "policy name {name:?}: use 1 to {MAX_NAME_LEN} of a-z, 0-9, '-', '_', '.', starting with a letter or digit"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("workstation-2").is_ok());
        for bad in ["", "-x", "Work", "a/b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
