//! The audit log's hash chain. Each entry's hash is the SHA-256 of the previous entry's hash and
//! this entry's content, so changing or removing any stored entry breaks every hash after it.
//! Reading the log is for admins and auditors; a [`Filter`] picks the entries to show, while the
//! chain is always verified over the whole log.

use jiff::Timestamp;
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::role::{Permission, Principal};
use crate::store::Store;

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One change, as it is recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Entry {
    /// Position in the log, from 1.
    pub id: i64,
    /// When, RFC 3339 UTC.
    pub at: String,
    /// Who: `user:NAME`, `token:NAME` or `system`.
    pub actor: String,
    /// What, e.g. `policy.version.create`.
    pub action: String,
    /// On what, e.g. `policy:workstation@3`.
    pub subject: String,
    /// The previous entry's hash ([`GENESIS`] for the first).
    pub prev_hash: String,
    /// SHA-256 of `prev_hash` and this entry's content, hex.
    pub hash: String,
}

/// The chain is broken at this entry: its stored hash is not what its content gives.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit log entry {id} does not match its hash chain")]
pub struct Broken {
    /// The first entry that does not verify.
    pub id: i64,
}

/// The hash of an entry with this content following `prev_hash`.
pub fn chain_hash(prev_hash: &str, at: &str, actor: &str, action: &str, subject: &str) -> String {
    let mut h = Sha256::new();
    for part in [prev_hash, at, actor, action, subject] {
        // Length-prefixed, so that no two different entries hash the same text.
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex(&h.finalize())
}

/// Checks every entry against the one before it; entries must be in log order.
pub fn verify(entries: &[Entry]) -> Result<(), Broken> {
    let mut prev = GENESIS;
    for e in entries {
        let expected = chain_hash(prev, &e.at, &e.actor, &e.action, &e.subject);
        if e.prev_hash != prev || e.hash != expected {
            return Err(Broken { id: e.id });
        }
        prev = &e.hash;
    }
    Ok(())
}

/// Which entries to show. Text filters match anywhere in their field, ignoring case; an empty
/// filter matches everything.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Who made the change, e.g. `user:alice` or just `alice`.
    pub actor: Option<String>,
    /// What was done, e.g. `policy.` for every policy change.
    pub action: Option<String>,
    /// On what, e.g. `workstation`.
    pub subject: Option<String>,
    /// At or after this time, RFC 3339.
    pub from: Option<String>,
    /// Before this time, RFC 3339.
    pub to: Option<String>,
}

impl Filter {
    /// The entries of `entries` this filter selects, in their order; a bad time is refused.
    pub fn select<'a>(&self, entries: &'a [Entry]) -> Result<Vec<&'a Entry>, Error> {
        let from = time_bound("from", self.from.as_deref())?;
        let to = time_bound("to", self.to.as_deref())?;
        let contains = |wanted: &Option<String>, field: &str| match wanted.as_deref() {
            None | Some("") => true,
            Some(wanted) => field.to_lowercase().contains(&wanted.to_lowercase()),
        };
        Ok(entries
            .iter()
            .filter(|e| {
                let at = e.at.parse::<Timestamp>().ok();
                contains(&self.actor, &e.actor)
                    && contains(&self.action, &e.action)
                    && contains(&self.subject, &e.subject)
                    && from.is_none_or(|from| at.is_some_and(|at| at >= from))
                    && to.is_none_or(|to| at.is_some_and(|at| at < to))
            })
            .collect())
    }
}

fn time_bound(name: &str, value: Option<&str>) -> Result<Option<Timestamp>, Error> {
    match value {
        None | Some("") => Ok(None),
        Some(text) => text.parse::<Timestamp>().map(Some).map_err(|_| {
            Error::BadRequest(format!(
                "{name}: {text:?} is not an RFC 3339 time such as 2026-12-07T10:00:00Z"
            ))
        }),
    }
}

/// The whole audit log, oldest first, for a role that may read it.
pub async fn entries(store: &Store, who: &Principal) -> Result<Vec<Entry>, Error> {
    who.require(Permission::ReadAudit)?;
    Ok(store.audit_entries().await?)
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: i64, prev: &str, subject: &str) -> Entry {
        let at = "2026-01-01T00:00:00Z".to_owned();
        Entry {
            id,
            hash: chain_hash(prev, &at, "system", "x", subject),
            at,
            actor: "system".to_owned(),
            action: "x".to_owned(),
            subject: subject.to_owned(),
            prev_hash: prev.to_owned(),
        }
    }

    #[test]
    fn a_changed_entry_breaks_the_chain() {
        let a = entry(1, GENESIS, "a");
        let b = entry(2, &a.hash, "b");
        let mut log = vec![a, b];
        assert_eq!(verify(&log), Ok(()));
        log[0].subject = "changed".to_owned();
        assert_eq!(verify(&log), Err(Broken { id: 1 }));
    }

    #[test]
    fn a_filter_selects_by_text_ignoring_case_and_by_time() {
        let mut a = entry(1, GENESIS, "policy:Workstation@1");
        a.action = "policy.version.create".to_owned();
        let mut b = entry(2, &a.hash, "user:bob");
        b.at = "2026-01-02T00:00:00Z".to_owned();
        b.actor = "user:alice".to_owned();
        let log = [a, b];
        let ids = |filter: Filter| -> Vec<i64> {
            filter.select(&log).unwrap().iter().map(|e| e.id).collect()
        };
        assert_eq!(ids(Filter::default()), [1, 2]);
        let subject = Some("workstation".to_owned());
        assert_eq!(
            ids(Filter {
                subject,
                ..Filter::default()
            }),
            [1]
        );
        let actor = Some("ALICE".to_owned());
        assert_eq!(
            ids(Filter {
                actor,
                ..Filter::default()
            }),
            [2]
        );
        let action = Some("policy.".to_owned());
        assert_eq!(
            ids(Filter {
                action,
                ..Filter::default()
            }),
            [1]
        );
        let from = Some("2026-01-01T12:00:00Z".to_owned());
        assert_eq!(
            ids(Filter {
                from,
                ..Filter::default()
            }),
            [2]
        );
        let to = Some("2026-01-01T12:00:00Z".to_owned());
        assert_eq!(
            ids(Filter {
                to,
                ..Filter::default()
            }),
            [1]
        );
        let empty = Some(String::new());
        assert_eq!(
            ids(Filter {
                actor: empty,
                ..Filter::default()
            }),
            [1, 2]
        );
        let bad = Filter {
            from: Some("yesterday".to_owned()),
            ..Filter::default()
        };
        assert!(matches!(bad.select(&log), Err(Error::BadRequest(m)) if m.contains("from")));
    }

    #[test]
    fn a_removed_entry_breaks_the_chain() {
        let a = entry(1, GENESIS, "a");
        let b = entry(2, &a.hash, "b");
        assert_eq!(verify(&[b]), Err(Broken { id: 2 }));
    }
}
