//! The policy service: every new version is validated by the policy engine before it is stored,
//! stored as an immutable version (one more than the newest), and written to the audit log in
//! the same transaction. A new version is published at once to the agents of every group the
//! policy is assigned to.

use jiff::Timestamp;

use crate::distribution::{Distribution, Update};
use crate::error::Error;
use crate::role::{Permission, Principal};
use crate::store::{NewVersion, PolicySummary, PolicyVersion, RuleHits, Store};

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

    /// The format of a file named `name`: `.json` is JSON, `.yaml` and `.yml` are YAML.
    pub fn of_file(name: &str) -> Option<Format> {
        let extension = name.rsplit_once('.')?.1.to_ascii_lowercase();
        match extension.as_str() {
            "json" => Some(Format::Json),
            "yaml" | "yml" => Some(Format::Yaml),
            _ => None,
        }
    }
}

impl std::str::FromStr for Format {
    type Err = Error;

    fn from_str(text: &str) -> Result<Format, Error> {
        match text {
            "yaml" => Ok(Format::Yaml),
            "json" => Ok(Format::Json),
            _ => Err(Error::BadRequest(format!(
                "format {text:?}: expected yaml or json"
            ))),
        }
    }
}

/// Longest policy name accepted.
pub const MAX_NAME_LEN: usize = 64;

/// Largest policy document accepted, in bytes.
pub const MAX_SOURCE_LEN: usize = 1 << 20;

/// Every policy with its newest version.
pub async fn list(store: &Store, who: &Principal) -> Result<Vec<PolicySummary>, Error> {
    who.require(Permission::ReadPolicies)?;
    Ok(store.list_policies().await?)
}

/// Every version of the policy `id`, oldest first.
pub async fn versions(
    store: &Store,
    who: &Principal,
    id: i64,
) -> Result<Vec<PolicyVersion>, Error> {
    who.require(Permission::ReadPolicies)?;
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
    hub: &Distribution,
    who: &Principal,
    name: &str,
    format: Format,
    source: &str,
    now: Timestamp,
) -> Result<PolicyVersion, Error> {
    who.require(Permission::WritePolicies)?;
    check_name(name)?;
    load(name, format, source)?.map_err(|invalid| {
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
    match store.groups_with_policy(version.policy_id).await {
        Ok(groups) => {
            for group in groups {
                hub.publish(Update::GroupPolicy {
                    group,
                    policy: version.clone(),
                });
            }
        }
        // The version is stored; agents that reconnect receive it.
        Err(e) => {
            tracing::error!(policy = name, cause = %e, "new version stored but not distributed")
        }
    }
    Ok(version)
}

/// What the engine says about a document: errors (the document cannot be used) and warnings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Validation {
    /// Whether the document has no errors (it would be accepted as a version).
    pub valid: bool,
    /// The errors, in document order.
    pub errors: Vec<Finding>,
    /// The warnings (only when there are no errors: the engine lints a valid policy).
    pub warnings: Vec<Finding>,
}

/// One error or warning, where it is and what it says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Finding {
    /// The document's name, `NAME.yaml` or `NAME.json`.
    pub file: String,
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1.
    pub column: u32,
    /// The field's path, e.g. `rules[2].action` (empty for the document as a whole).
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// The whole finding as one line: `file:line:col: error: field: message`.
    pub text: String,
}

/// Validates a document with the policy engine and stores nothing. `name` only names the
/// document in the findings (default `candidate`).
pub fn validate(
    who: &Principal,
    name: Option<&str>,
    format: Format,
    source: &str,
) -> Result<Validation, Error> {
    who.require(Permission::ReadPolicies)?;
    let name = name.unwrap_or("candidate");
    check_name(name)?;
    Ok(match load(name, format, source)? {
        Ok(loaded) => Validation {
            valid: true,
            errors: Vec::new(),
            warnings: loaded.warnings.iter().map(finding).collect(),
        },
        Err(invalid) => Validation {
            valid: false,
            errors: invalid.errors.iter().map(finding).collect(),
            warnings: Vec::new(),
        },
    })
}

/// The difference between two stored versions of a policy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct PolicyDiff {
    /// The policy's identifier.
    pub policy_id: i64,
    /// The policy's name.
    pub name: String,
    /// The older side's version.
    pub from: i64,
    /// The newer side's version.
    pub to: i64,
    /// A unified line diff of the two sources (`--- NAME@FROM`, `+++ NAME@TO`, hunks with three
    /// lines of context); empty when the sources are equal.
    pub diff: String,
}

/// A unified diff of versions `from` and `to` of policy `id`; `to` defaults to the newest
/// version and `from` to the one before `to`.
pub async fn diff(
    store: &Store,
    who: &Principal,
    id: i64,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<PolicyDiff, Error> {
    let versions = versions(store, who, id).await?;
    let newest = versions.last().map_or(0, |v| v.version);
    let to = to.unwrap_or(newest);
    let from = from.unwrap_or(to - 1);
    let find = |n: i64| {
        versions
            .iter()
            .find(|v| v.version == n)
            .ok_or_else(|| Error::NotFound(format!("version {n} of policy {id}")))
    };
    let (old, new) = (find(from)?, find(to)?);
    let diff = similar::TextDiff::from_lines(&old.source, &new.source)
        .unified_diff()
        .context_radius(3)
        .header(
            &format!("{}@{from}", old.name),
            &format!("{}@{to}", new.name),
        )
        .to_string();
    Ok(PolicyDiff {
        policy_id: id,
        name: new.name.clone(),
        from,
        to,
        diff,
    })
}

/// How often each rule of policy `id` decided a connection on the agents of the groups it is
/// assigned to, and when last; rules never hit are left out.
pub async fn rule_hits(store: &Store, who: &Principal, id: i64) -> Result<Vec<RuleHits>, Error> {
    who.require(Permission::ReadPolicies)?;
    who.require(Permission::ReadEvents)?;
    Ok(store.rule_hits(id).await?)
}

/// One rule of a stored version, as the console lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSummary {
    /// The rule's id.
    pub id: String,
    /// What it decides.
    pub action: &'static str,
    /// Whether it takes part in decisions.
    pub enabled: bool,
    /// What it is for, if the document says.
    pub description: Option<String>,
}

/// The rules of a stored version, in their order. Stored versions were valid when they were
/// stored; one this engine no longer reads is a conflict that names the first error.
pub fn rules(version: &PolicyVersion) -> Result<Vec<RuleSummary>, Error> {
    let format: Format = version.format.parse()?;
    let loaded = load(&version.name, format, &version.source)?.map_err(|invalid| {
        Error::Conflict(format!(
            "stored version {} of policy {} no longer loads: {}",
            version.version,
            version.name,
            invalid
                .errors
                .first()
                .map(ToString::to_string)
                .unwrap_or_default()
        ))
    })?;
    Ok(loaded
        .policy
        .rules
        .into_iter()
        .map(|rule| RuleSummary {
            id: rule.id,
            action: rule.action.as_str(),
            enabled: rule.enabled,
            description: rule.description,
        })
        .collect())
}

/// Reads and validates a document named `NAME.FORMAT` as the server does: list files are
/// refused (the server has no files to read them from). The outer error is a request the
/// server does not take at all (too large).
pub(crate) fn load(
    name: &str,
    format: Format,
    source: &str,
) -> Result<Result<palisade_policy::Loaded, palisade_policy::Invalid>, Error> {
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
    Ok(palisade_policy::load(&file, source, &no_files))
}

fn finding(d: &palisade_policy::Diagnostic) -> Finding {
    Finding {
        file: d.file.clone(),
        line: d.pos.line,
        column: d.pos.col,
        field: d.field.clone(),
        message: d.message.clone(),
        text: d.to_string(),
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
