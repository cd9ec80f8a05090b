//! Queries for agents, their groups, policy assignment and enrollment tokens.

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::{GENESIS, PolicyVersion, Pool, Store, StoreError, WRITE_LOCK, chain_hash};

/// A group of agents and the policy assigned to it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Group {
    /// Unique name.
    pub name: String,
    /// The assigned policy's id, if any.
    pub policy_id: Option<i64>,
    /// The assigned policy's name, if any.
    pub policy_name: Option<String>,
    /// How many agents (revoked ones included) are in it.
    pub agents: i64,
    /// When, RFC 3339 UTC.
    pub created_at: String,
}

/// An enrollment token as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct EnrollmentToken {
    /// Identifier in the API.
    pub id: i64,
    /// The group enrolled agents join.
    pub group: String,
    /// How many enrollments it allows.
    pub max_uses: i64,
    /// How many it has done.
    pub uses: i64,
    /// When it stops working, RFC 3339 UTC.
    pub expires_at: String,
    /// When it was revoked, if it was.
    pub revoked_at: Option<String>,
    /// When it was created.
    pub created_at: String,
    /// Who created it.
    pub created_by: String,
}

/// An agent as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    /// The agent id (also its certificate's subject).
    pub id: String,
    /// Host name given at enrollment.
    pub hostname: String,
    /// Operating system, as last reported.
    pub os: String,
    /// Agent software version, as last reported.
    pub agent_version: String,
    /// Its group.
    pub group: String,
    /// When it enrolled.
    pub enrolled_at: String,
    /// When it was revoked, if it was.
    pub revoked_at: Option<String>,
    /// Its last heartbeat.
    pub last_seen: Option<String>,
    /// The policy version it reported enforcing.
    pub policy_version: Option<i64>,
    /// Its counters, as last reported.
    pub counters: BTreeMap<String, u64>,
    /// Since when it is isolated, if it is.
    pub isolated_at: Option<String>,
}

/// A new agent to store with its enrollment.
#[derive(Debug, Clone)]
pub struct NewAgent<'a> {
    /// The agent id.
    pub id: &'a str,
    /// Host name.
    pub hostname: &'a str,
    /// Operating system.
    pub os: &'a str,
    /// Agent software version.
    pub agent_version: &'a str,
    /// SHA-256 of its certificate.
    pub cert_fingerprint: &'a str,
}

/// Why an enrollment token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    /// No token has this secret.
    Unknown,
    /// The token's expiry has passed.
    Expired,
    /// The token has enrolled as many agents as it allows.
    UsedUp,
    /// The token was revoked.
    Revoked,
}

/// What a certificate's fingerprint names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertifiedAgent {
    /// The agent id.
    pub id: String,
    /// Its group now.
    pub group: String,
    /// Whether it was revoked.
    pub revoked: bool,
}

/// The newest version of the policy `$policy_id` inside the transaction `$tx`, if the policy
/// exists.
macro_rules! newest_version {
    ($tx:ident, $policy_id:expr) => {{
        let row: Option<(String, i64, String, String, String, String)> = sqlx::query_as(
            "SELECT p.name, v.version, v.format, v.source, v.created_at, v.created_by \
             FROM policy_versions v JOIN policies p ON p.id = v.policy_id \
             WHERE v.policy_id = $1 ORDER BY v.version DESC LIMIT 1",
        )
        .bind($policy_id)
        .fetch_optional(&mut *$tx)
        .await?;
        row.map(
            |(name, version, format, source, created_at, created_by)| PolicyVersion {
                policy_id: $policy_id,
                name,
                version,
                format,
                source,
                created_at,
                created_by,
            },
        )
    }};
}

type AgentRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    String,
    Option<String>,
);

const AGENT_COLUMNS: &str = "a.id, a.hostname, a.os, a.agent_version, g.name, a.enrolled_at, \
     a.revoked_at, a.last_seen, a.policy_version, a.counters, a.isolated_at \
     FROM agents a JOIN agent_groups g ON g.id = a.group_id";

impl Store {
    /// Every group, by name.
    pub async fn list_groups(&self) -> Result<Vec<Group>, StoreError> {
        type Row = (String, Option<i64>, Option<String>, i64, String);
        let rows: Vec<Row> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT g.name, g.policy_id, p.name, \
                 (SELECT COUNT(*) FROM agents a WHERE a.group_id = g.id), g.created_at \
                 FROM agent_groups g LEFT JOIN policies p ON p.id = g.policy_id ORDER BY g.name",
            )
            .fetch_all(pool)
            .await
        })?;
        Ok(rows
            .into_iter()
            .map(|(name, policy_id, policy_name, agents, created_at)| Group {
                name,
                policy_id,
                policy_name,
                agents,
                created_at,
            })
            .collect())
    }

    /// Creates a group; `false` when one of that name exists (nothing stored then).
    pub async fn create_group(
        &self,
        name: &str,
        actor: &str,
        at: &str,
    ) -> Result<bool, StoreError> {
        let created = write_tx!(self, tx => {
            let existing: Option<(i64,)> =
                sqlx::query_as("SELECT id FROM agent_groups WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?;
            if existing.is_some() {
                false
            } else {
                sqlx::query("INSERT INTO agent_groups (name, created_at) VALUES ($1, $2)")
                    .bind(name)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                append_audit!(tx, at, actor, "group.create", &format!("group:{name}"));
                true
            }
        });
        Ok(created)
    }

    /// Assigns the policy `policy_id` to the group `group` and audits it. `None` when the group
    /// does not exist, `Some(None)` when the policy does not; otherwise the policy's newest
    /// version, which the group's agents now enforce.
    pub async fn assign_policy(
        &self,
        group: &str,
        policy_id: i64,
        actor: &str,
        at: &str,
    ) -> Result<Option<Option<PolicyVersion>>, StoreError> {
        let outcome = write_tx!(self, tx => {
            let group_id: Option<(i64,)> =
                sqlx::query_as("SELECT id FROM agent_groups WHERE name = $1")
                    .bind(group)
                    .fetch_optional(&mut *tx)
                    .await?;
            match group_id {
                None => None,
                Some((group_id,)) => {
                    let newest = newest_version!(tx, policy_id);
                    if let Some(version) = &newest {
                        sqlx::query("UPDATE agent_groups SET policy_id = $1 WHERE id = $2")
                            .bind(policy_id)
                            .bind(group_id)
                            .execute(&mut *tx)
                            .await?;
                        append_audit!(
                            tx,
                            at,
                            actor,
                            "group.policy.assign",
                            &format!("group:{group} policy:{}", version.name)
                        );
                    }
                    Some(newest)
                }
            }
        });
        Ok(outcome)
    }

    /// The newest version of the policy assigned to `group`, if it has one.
    pub async fn group_policy(&self, group: &str) -> Result<Option<PolicyVersion>, StoreError> {
        let policy: Option<(Option<i64>,)> = with_pool!(self, pool => {
            sqlx::query_as("SELECT policy_id FROM agent_groups WHERE name = $1")
                .bind(group)
                .fetch_optional(pool)
                .await
        })?;
        let Some((Some(policy_id),)) = policy else {
            return Ok(None);
        };
        Ok(self
            .policy_versions(policy_id)
            .await?
            .and_then(|mut versions| versions.pop()))
    }

    /// The names of the groups the policy `policy_id` is assigned to.
    pub async fn groups_with_policy(&self, policy_id: i64) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = with_pool!(self, pool => {
            sqlx::query_as("SELECT name FROM agent_groups WHERE policy_id = $1 ORDER BY name")
                .bind(policy_id)
                .fetch_all(pool)
                .await
        })?;
        Ok(rows.into_iter().map(|(n,)| n).collect())
    }

    /// Stores an enrollment token (its hash) for `group` and audits it; `None` when the group
    /// does not exist.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_enrollment_token(
        &self,
        token_hash: &str,
        group: &str,
        max_uses: i64,
        expires_at: &str,
        actor: &str,
        at: &str,
    ) -> Result<Option<EnrollmentToken>, StoreError> {
        let token = write_tx!(self, tx => {
            let group_id: Option<(i64,)> =
                sqlx::query_as("SELECT id FROM agent_groups WHERE name = $1")
                    .bind(group)
                    .fetch_optional(&mut *tx)
                    .await?;
            match group_id {
                None => None,
                Some((group_id,)) => {
                    let (id,): (i64,) = sqlx::query_as(
                        "INSERT INTO enrollment_tokens \
                         (token_hash, group_id, max_uses, expires_at, created_at, created_by) \
                         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                    )
                    .bind(token_hash)
                    .bind(group_id)
                    .bind(max_uses)
                    .bind(expires_at)
                    .bind(at)
                    .bind(actor)
                    .fetch_one(&mut *tx)
                    .await?;
                    append_audit!(
                        tx,
                        at,
                        actor,
                        "enrollment_token.create",
                        &format!("enrollment_token:{id} group:{group} max_uses:{max_uses}")
                    );
                    Some(EnrollmentToken {
                        id,
                        group: group.to_owned(),
                        max_uses,
                        uses: 0,
                        expires_at: expires_at.to_owned(),
                        revoked_at: None,
                        created_at: at.to_owned(),
                        created_by: actor.to_owned(),
                    })
                }
            }
        });
        Ok(token)
    }

    /// Every enrollment token, newest first.
    pub async fn list_enrollment_tokens(&self) -> Result<Vec<EnrollmentToken>, StoreError> {
        type Row = (
            i64,
            String,
            i64,
            i64,
            String,
            Option<String>,
            String,
            String,
        );
        let rows: Vec<Row> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT t.id, g.name, t.max_uses, t.uses, t.expires_at, t.revoked_at, \
                 t.created_at, t.created_by FROM enrollment_tokens t \
                 JOIN agent_groups g ON g.id = t.group_id ORDER BY t.id DESC",
            )
            .fetch_all(pool)
            .await
        })?;
        Ok(rows
            .into_iter()
            .map(
                |(id, group, max_uses, uses, expires_at, revoked_at, created_at, created_by)| {
                    EnrollmentToken {
                        id,
                        group,
                        max_uses,
                        uses,
                        expires_at,
                        revoked_at,
                        created_at,
                        created_by,
                    }
                },
            )
            .collect())
    }

    /// Revokes an enrollment token and audits it; `false` when there is no such token.
    /// Revoking a revoked token changes nothing.
    pub async fn revoke_enrollment_token(
        &self,
        id: i64,
        actor: &str,
        at: &str,
    ) -> Result<bool, StoreError> {
        let found = write_tx!(self, tx => {
            let row: Option<(Option<String>,)> =
                sqlx::query_as("SELECT revoked_at FROM enrollment_tokens WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            match row {
                None => false,
                Some((Some(_),)) => true,
                Some((None,)) => {
                    sqlx::query("UPDATE enrollment_tokens SET revoked_at = $1 WHERE id = $2")
                        .bind(at)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    append_audit!(
                        tx,
                        at,
                        actor,
                        "enrollment_token.revoke",
                        &format!("enrollment_token:{id}")
                    );
                    true
                }
            }
        });
        Ok(found)
    }

    /// Uses the enrollment token with this hash to store `agent`, in one transaction: the
    /// token must be known, not revoked, not expired at `now` and not used up. Returns the
    /// agent's group, or why the token was refused (nothing is stored then).
    pub async fn enroll(
        &self,
        token_hash: &str,
        agent: &NewAgent<'_>,
        now: Timestamp,
    ) -> Result<Result<String, TokenRefusal>, StoreError> {
        let at = now.to_string();
        let outcome = write_tx!(self, tx => {
            type Row = (i64, i64, i64, String, Option<String>, String);
            let row: Option<Row> = sqlx::query_as(
                "SELECT t.id, t.max_uses, t.uses, t.expires_at, t.revoked_at, g.name \
                 FROM enrollment_tokens t JOIN agent_groups g ON g.id = t.group_id \
                 WHERE t.token_hash = $1",
            )
            .bind(token_hash)
            .fetch_optional(&mut *tx)
            .await?;
            match row {
                None => Err(TokenRefusal::Unknown),
                Some((_, _, _, _, Some(_), _)) => Err(TokenRefusal::Revoked),
                Some((_, max_uses, uses, _, _, _)) if uses >= max_uses => {
                    Err(TokenRefusal::UsedUp)
                }
                Some((_, _, _, expires_at, _, _))
                    if expires_at.parse::<Timestamp>().map_or(true, |e| e <= now) =>
                {
                    Err(TokenRefusal::Expired)
                }
                Some((token_id, _, _, _, _, group)) => {
                    sqlx::query("UPDATE enrollment_tokens SET uses = uses + 1 WHERE id = $1")
                        .bind(token_id)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(
                        "INSERT INTO agents (id, hostname, os, agent_version, group_id, \
                         cert_fingerprint, enrolled_at, token_id) \
                         SELECT $1, $2, $3, $4, group_id, $5, $6, id \
                         FROM enrollment_tokens WHERE id = $7",
                    )
                    .bind(agent.id)
                    .bind(agent.hostname)
                    .bind(agent.os)
                    .bind(agent.agent_version)
                    .bind(agent.cert_fingerprint)
                    .bind(&at)
                    .bind(token_id)
                    .execute(&mut *tx)
                    .await?;
                    append_audit!(
                        tx,
                        &at,
                        &format!("enrollment_token:{token_id}"),
                        "agent.enroll",
                        &format!("agent:{} group:{group} host:{}", agent.id, agent.hostname)
                    );
                    Ok(group)
                }
            }
        });
        Ok(outcome)
    }

    /// The agent whose certificate has this fingerprint, if any.
    pub async fn agent_by_certificate(
        &self,
        fingerprint: &str,
    ) -> Result<Option<CertifiedAgent>, StoreError> {
        let row: Option<(String, String, Option<String>)> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT a.id, g.name, a.revoked_at FROM agents a \
                 JOIN agent_groups g ON g.id = a.group_id WHERE a.cert_fingerprint = $1",
            )
            .bind(fingerprint)
            .fetch_optional(pool)
            .await
        })?;
        Ok(row.map(|(id, group, revoked_at)| CertifiedAgent {
            id,
            group,
            revoked: revoked_at.is_some(),
        }))
    }

    /// Records a heartbeat. Not audited: it is the agent reporting, not a change.
    pub async fn heartbeat(
        &self,
        agent_id: &str,
        agent_version: &str,
        os: &str,
        policy_version: Option<i64>,
        counters: &BTreeMap<String, u64>,
        at: &str,
    ) -> Result<(), StoreError> {
        let counters =
            serde_json::to_string(counters).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        with_writer!(self, pool => {
            sqlx::query(
                "UPDATE agents SET agent_version = $1, os = $2, policy_version = $3, \
                 counters = $4, last_seen = $5 WHERE id = $6",
            )
            .bind(agent_version)
            .bind(os)
            .bind(policy_version)
            .bind(&counters)
            .bind(at)
            .bind(agent_id)
            .execute(pool)
            .await
            .map(drop)
        })?;
        Ok(())
    }

    /// Every agent, by id.
    pub async fn list_agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        let rows: Vec<AgentRow> = with_pool!(self, pool => {
            sqlx::query_as(&format!("SELECT {AGENT_COLUMNS} ORDER BY a.id"))
                .fetch_all(pool)
                .await
        })?;
        rows.into_iter().map(agent_record).collect()
    }

    /// One agent.
    pub async fn agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError> {
        let row: Option<AgentRow> = with_pool!(self, pool => {
            sqlx::query_as(&format!("SELECT {AGENT_COLUMNS} WHERE a.id = $1"))
                .bind(id)
                .fetch_optional(pool)
                .await
        })?;
        row.map(agent_record).transpose()
    }

    /// Revokes an agent and audits it; `false` when there is no such agent. Revoking a revoked
    /// agent changes nothing.
    pub async fn revoke_agent(&self, id: &str, actor: &str, at: &str) -> Result<bool, StoreError> {
        let found = write_tx!(self, tx => {
            let row: Option<(Option<String>,)> =
                sqlx::query_as("SELECT revoked_at FROM agents WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            match row {
                None => false,
                Some((Some(_),)) => true,
                Some((None,)) => {
                    sqlx::query("UPDATE agents SET revoked_at = $1 WHERE id = $2")
                        .bind(at)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    append_audit!(tx, at, actor, "agent.revoke", &format!("agent:{id}"));
                    true
                }
            }
        });
        Ok(found)
    }

    /// Isolates the agent (`isolated`) or releases it, and audits the change (`agent.isolate`,
    /// `agent.release`). `None` when there is no such agent; `Some(false)` when it already was
    /// in that state (nothing written, nothing audited).
    pub async fn set_isolation(
        &self,
        id: &str,
        isolated: bool,
        actor: &str,
        at: &str,
    ) -> Result<Option<bool>, StoreError> {
        let outcome = write_tx!(self, tx => {
            let row: Option<(Option<String>,)> =
                sqlx::query_as("SELECT isolated_at FROM agents WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            match row {
                None => None,
                Some((since,)) if since.is_some() == isolated => Some(false),
                Some(_) => {
                    sqlx::query("UPDATE agents SET isolated_at = $1 WHERE id = $2")
                        .bind(isolated.then_some(at))
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    let action = if isolated { "agent.isolate" } else { "agent.release" };
                    append_audit!(tx, at, actor, action, &format!("agent:{id}"));
                    Some(true)
                }
            }
        });
        Ok(outcome)
    }

    /// Moves an agent to `group` and audits it. `None` when the agent does not exist,
    /// `Some(false)` when the group does not.
    pub async fn move_agent(
        &self,
        id: &str,
        group: &str,
        actor: &str,
        at: &str,
    ) -> Result<Option<bool>, StoreError> {
        let outcome = write_tx!(self, tx => {
            let agent: Option<(String,)> = sqlx::query_as("SELECT id FROM agents WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            let group_id: Option<(i64,)> =
                sqlx::query_as("SELECT id FROM agent_groups WHERE name = $1")
                    .bind(group)
                    .fetch_optional(&mut *tx)
                    .await?;
            match (agent, group_id) {
                (None, _) => None,
                (Some(_), None) => Some(false),
                (Some(_), Some((group_id,))) => {
                    sqlx::query("UPDATE agents SET group_id = $1 WHERE id = $2")
                        .bind(group_id)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    append_audit!(
                        tx,
                        at,
                        actor,
                        "agent.move",
                        &format!("agent:{id} group:{group}")
                    );
                    Some(true)
                }
            }
        });
        Ok(outcome)
    }
}

fn agent_record(row: AgentRow) -> Result<AgentRecord, StoreError> {
    let (
        id,
        hostname,
        os,
        agent_version,
        group,
        enrolled_at,
        revoked_at,
        last_seen,
        policy_version,
        counters,
        isolated_at,
    ) = row;
    let counters = serde_json::from_str(&counters)
        .map_err(|e| StoreError::Corrupt(format!("agent {id} counters: {e}")))?;
    Ok(AgentRecord {
        id,
        hostname,
        os,
        agent_version,
        group,
        enrolled_at,
        revoked_at,
        last_seen,
        policy_version,
        counters,
        isolated_at,
    })
}
