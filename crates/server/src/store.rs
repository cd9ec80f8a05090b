//! The database: SQLite (one file, WAL) or PostgreSQL, migrated on open, and every query the
//! services make. The SQL text is the same for both back ends (`$N` parameters, `RETURNING`);
//! what differs is how writers are serialised: SQLite has one writer, so writes take turns on
//! one connection kept for them; PostgreSQL transactions that append to the audit chain take
//! an advisory lock so that several server nodes append one after another.
//!
//! Agents, groups and enrollment tokens have their queries in `store/agents.rs`, API tokens in
//! `store/tokens.rs`, the settings people change in `store/settings.rs`.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::audit::{self, GENESIS, chain_hash};
use crate::metrics::IngestCounters;
use crate::role::Role;

/// The file name of the SQLite database inside the data directory.
pub const SQLITE_FILE: &str = "palisade.db";

/// SQLite: the write-ahead log pages (4 KiB each) beyond which a checkpoint restarts the log
/// while writers wait, so that it stays within about 256 MiB.
const WAL_RESET_PAGES: i64 = 65_536;

/// The advisory lock key (PostgreSQL) that serialises writers of the audit chain.
const WRITE_LOCK: i64 = 0x7061_6c69_7361_6465; // "palisade"

/// Storage failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or could not be reached.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value is not one this version understands (e.g. an unknown role).
    #[error("stored data not understood: {0}")]
    Corrupt(String),
}

/// The database of one server node.
pub struct Store {
    pool: Pool,
    /// What event ingestion stored, skipped and refused (shown on `/metrics`).
    ingest_counters: IngestCounters,
}

/// A policy and its newest version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct PolicySummary {
    /// Identifier in the API.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Newest version number.
    pub latest_version: i64,
    /// When the newest version was created.
    pub updated_at: String,
}

/// One immutable version of a policy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct PolicyVersion {
    /// The policy's identifier.
    pub policy_id: i64,
    /// The policy's name.
    pub name: String,
    /// Version number, from 1, one more than the version before.
    pub version: i64,
    /// `yaml` or `json`.
    pub format: String,
    /// The document exactly as submitted.
    pub source: String,
    /// When, RFC 3339 UTC.
    pub created_at: String,
    /// Who: `user:NAME` or `token:NAME`.
    pub created_by: String,
}

/// A policy version to store (already validated).
#[derive(Debug, Clone)]
pub struct NewVersion<'a> {
    /// The policy's name; the policy is created with its first version.
    pub name: &'a str,
    /// `yaml` or `json`.
    pub format: &'a str,
    /// The document.
    pub source: &'a str,
}

/// What the first start stores.
#[derive(Debug, Clone)]
pub struct Bootstrap<'a> {
    /// The admin user's name.
    pub admin: &'a str,
    /// Its argon2id hash.
    pub password_hash: &'a str,
    /// An admin API token (name, SHA-256 hex), when one was asked for.
    pub token: Option<(&'a str, &'a str)>,
}

/// The migrations, compiled into the binary: (version, description, SQL). Kept in
/// `migrations/sqlite` and `migrations/postgres`; a test checks that every file there is listed.
/// (Listed by hand rather than with `sqlx::migrate!`, which needs sqlx's proc-macro feature.)
pub const SQLITE_MIGRATIONS: Embedded = Embedded(&[
    (
        1,
        "initial",
        include_str!("../migrations/sqlite/0001_initial.sql"),
    ),
    (
        2,
        "agents",
        include_str!("../migrations/sqlite/0002_agents.sql"),
    ),
    (
        3,
        "events",
        include_str!("../migrations/sqlite/0003_events.sql"),
    ),
    (
        4,
        "alerts",
        include_str!("../migrations/sqlite/0004_alerts.sql"),
    ),
    (
        5,
        "tokens_and_settings",
        include_str!("../migrations/sqlite/0005_tokens_and_settings.sql"),
    ),
    (
        6,
        "agent_isolation",
        include_str!("../migrations/sqlite/0006_agent_isolation.sql"),
    ),
    (
        7,
        "fewer_event_indexes",
        include_str!("../migrations/sqlite/0007_fewer_event_indexes.sql"),
    ),
    (
        8,
        "http_host",
        include_str!("../migrations/sqlite/0008_http_host.sql"),
    ),
    (
        9,
        "console",
        include_str!("../migrations/sqlite/0009_console.sql"),
    ),
    (
        10,
        "event_rollups",
        include_str!("../migrations/sqlite/0010_event_rollups.sql"),
    ),
    (
        11,
        "oidc",
        include_str!("../migrations/sqlite/0011_oidc.sql"),
    ),
    (
        12,
        "detection_models",
        include_str!("../migrations/sqlite/0012_detection_models.sql"),
    ),
]);

/// See [`SQLITE_MIGRATIONS`].
pub const POSTGRES_MIGRATIONS: Embedded = Embedded(&[
    (
        1,
        "initial",
        include_str!("../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "agents",
        include_str!("../migrations/postgres/0002_agents.sql"),
    ),
    (
        3,
        "events",
        include_str!("../migrations/postgres/0003_events.sql"),
    ),
    (
        4,
        "alerts",
        include_str!("../migrations/postgres/0004_alerts.sql"),
    ),
    (
        5,
        "tokens_and_settings",
        include_str!("../migrations/postgres/0005_tokens_and_settings.sql"),
    ),
    (
        6,
        "agent_isolation",
        include_str!("../migrations/postgres/0006_agent_isolation.sql"),
    ),
    (
        7,
        "fewer_event_indexes",
        include_str!("../migrations/postgres/0007_fewer_event_indexes.sql"),
    ),
    (
        8,
        "http_host",
        include_str!("../migrations/postgres/0008_http_host.sql"),
    ),
    (
        9,
        "console",
        include_str!("../migrations/postgres/0009_console.sql"),
    ),
    (
        10,
        "event_rollups",
        include_str!("../migrations/postgres/0010_event_rollups.sql"),
    ),
    (
        11,
        "oidc",
        include_str!("../migrations/postgres/0011_oidc.sql"),
    ),
    (
        12,
        "detection_models",
        include_str!("../migrations/postgres/0012_detection_models.sql"),
    ),
]);

/// Migrations compiled into the binary, for sqlx's migrator.
#[derive(Debug, Clone, Copy)]
pub struct Embedded(pub &'static [(i64, &'static str, &'static str)]);

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 's>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|&(version, description, sql)| {
                    Migration::new(
                        version,
                        Cow::Borrowed(description),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

enum Pool {
    Sqlite {
        /// Readers, several at once.
        reads: SqlitePool,
        /// The one writer: a single connection, which write transactions take in turn, so
        /// that its page cache stays warm from one transaction to the next.
        writes: SqlitePool,
    },
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to this store's pool for reading (on SQLite the readers');
/// the body is compiled once per back end.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            Pool::Sqlite { reads: $pool, .. } => $body,
            Pool::Postgres($pool) => $body,
        }
    };
}

/// Like [`with_pool!`] for a single writing statement that needs no transaction of its own: on
/// SQLite `$pool` is the writer connection, so that it takes its turn with the other writes
/// instead of waiting for SQLite's file lock.
macro_rules! with_writer {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            Pool::Sqlite { writes: $pool, .. } => $body,
            Pool::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` inside a write transaction `$tx`, serialised with every other writer, and
/// commits it; an error (`?`) inside the body rolls it back.
macro_rules! write_tx {
    ($store:expr, $tx:ident => $body:expr) => {
        match &$store.pool {
            Pool::Sqlite { writes, .. } => {
                let mut $tx = writes.begin().await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
            Pool::Postgres(pool) => {
                let mut $tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(WRITE_LOCK)
                    .execute(&mut *$tx)
                    .await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
        }
    };
}

/// Appends one entry to the audit chain inside the transaction `$tx`.
macro_rules! append_audit {
    ($tx:ident, $at:expr, $actor:expr, $action:expr, $subject:expr) => {{
        let (at, actor, action, subject): (&str, &str, &str, &str) =
            ($at, $actor, $action, $subject);
        let prev: Option<(String,)> =
            sqlx::query_as("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1")
                .fetch_optional(&mut *$tx)
                .await?;
        let prev = prev.map_or_else(|| GENESIS.to_owned(), |(h,)| h);
        let hash = chain_hash(&prev, at, actor, action, subject);
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, subject, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(at)
        .bind(actor)
        .bind(action)
        .bind(subject)
        .bind(&prev)
        .bind(&hash)
        .execute(&mut *$tx)
        .await?;
    }};
}

/// Inserts an API token row inside the transaction `$tx`; evaluates to its id.
macro_rules! insert_token {
    ($tx:ident, $name:expr, $hash:expr, $role:expr, $expires_at:expr, $by:expr, $at:expr) => {{
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO api_tokens (name, token_hash, role, expires_at, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind($name)
        .bind($hash)
        .bind($role.as_str())
        .bind($expires_at)
        .bind($by)
        .bind($at)
        .fetch_one(&mut *$tx)
        .await?;
        id
    }};
}

pub mod alerts;

mod events;

pub use events::{
    BatchesStored, EventCondition, EventKey, EventTest, NewBatch, RetentionReport, StoredEvent,
    ip_key, rfc3339, verdict_keyword,
};

impl Store {
    /// Opens (creating if missing) `DIR/palisade.db` in WAL mode and migrates it.
    pub async fn open_sqlite(data_dir: &Path) -> Result<Store, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(data_dir.join(SQLITE_FILE))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            // Statement journals in memory; the log is copied into the database by the
            // checkpoint timer, never by a writer.
            .pragma("temp_store", "memory")
            .pragma("wal_autocheckpoint", "0")
            .busy_timeout(Duration::from_secs(5));
        let writes = SqlitePoolOptions::new()
            .max_connections(1)
            // A writer may wait for ingestion's transactions and a checkpoint before its turn.
            .acquire_timeout(Duration::from_secs(60))
            // 64 MiB of page cache: what a group of event batches changes stays in memory.
            .connect_with(options.clone().pragma("cache_size", "-65536"))
            .await?;
        Migrator::new(SQLITE_MIGRATIONS).await?.run(&writes).await?;
        let reads = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        Ok(Store::new(Pool::Sqlite { reads, writes }))
    }

    /// Connects to PostgreSQL (`postgres://...`) and migrates the database (in the first schema
    /// of the connection's `search_path`).
    pub async fn open_postgres(url: &str) -> Result<Store, StoreError> {
        let options = sqlx::postgres::PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        Migrator::new(POSTGRES_MIGRATIONS).await?.run(&pool).await?;
        Ok(Store::new(Pool::Postgres(pool)))
    }

    fn new(pool: Pool) -> Store {
        Store {
            pool,
            ingest_counters: IngestCounters::default(),
        }
    }

    /// The event ingestion counters of this node.
    pub fn ingest_counters(&self) -> &IngestCounters {
        &self.ingest_counters
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite { .. } => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// Whether the database answers a query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(drop))?;
        Ok(())
    }

    /// SQLite: copies the write-ahead log into the database file as far as readers allow,
    /// without holding up writers. When the log still holds more than `WAL_RESET_PAGES`
    /// pages after that (it restarts from its beginning only once wholly copied, which a busy
    /// writer never leaves time for), writers wait while the rest is copied and the log
    /// restarts. Nothing to do on PostgreSQL.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        let Pool::Sqlite { reads, writes } = &self.pool else {
            return Ok(());
        };
        let (_, pages, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(reads)
            .await?;
        if pages > WAL_RESET_PAGES {
            sqlx::query("PRAGMA wal_checkpoint(RESTART)")
                .execute(writes)
                .await?;
        }
        Ok(())
    }

    /// Closes every connection; later queries fail.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite { reads, writes } => {
                reads.close().await;
                writes.close().await;
            }
            Pool::Postgres(pool) => pool.close().await,
        }
    }

    /// Whether any user exists (the first start has happened).
    pub async fn has_users(&self) -> Result<bool, StoreError> {
        let (n,): (i64,) = with_pool!(self, pool => {
            sqlx::query_as("SELECT COUNT(*) FROM users").fetch_one(pool).await
        })?;
        Ok(n > 0)
    }

    /// Stores the first admin (and token) unless any user exists; returns whether it did.
    pub async fn bootstrap(&self, b: &Bootstrap<'_>, at: &str) -> Result<bool, StoreError> {
        let created = write_tx!(self, tx => {
            let (users,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users")
                .fetch_one(&mut *tx)
                .await?;
            if users > 0 {
                false
            } else {
                sqlx::query(
                    "INSERT INTO users (name, password_hash, role, created_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(b.admin)
                .bind(b.password_hash)
                .bind(Role::Admin.as_str())
                .bind(at)
                .execute(&mut *tx)
                .await?;
                append_audit!(tx, at, "system", "user.create", &format!("user:{}", b.admin));
                if let Some((name, hash)) = b.token {
                    let no_expiry: Option<&str> = None;
                    let id = insert_token!(tx, name, hash, Role::Admin, no_expiry, "system", at);
                    append_audit!(
                        tx,
                        at,
                        "system",
                        "token.create",
                        &format!("token:{id} name:{name} role:{}", Role::Admin)
                    );
                }
                true
            }
        });
        Ok(created)
    }

    /// Every policy with its newest version, by name.
    pub async fn list_policies(&self) -> Result<Vec<PolicySummary>, StoreError> {
        let rows: Vec<(i64, String, i64, String)> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT p.id, p.name, v.version, v.created_at FROM policies p \
                 JOIN policy_versions v ON v.policy_id = p.id \
                 AND v.version = (SELECT MAX(version) FROM policy_versions WHERE policy_id = p.id) \
                 ORDER BY p.name",
            )
            .fetch_all(pool)
            .await
        })?;
        Ok(rows
            .into_iter()
            .map(|(id, name, latest_version, updated_at)| PolicySummary {
                id,
                name,
                latest_version,
                updated_at,
            })
            .collect())
    }

    /// Stores the next version of the policy `new.name` (creating the policy with version 1) and
    /// audits it, in one transaction.
    pub async fn create_policy_version(
        &self,
        new: &NewVersion<'_>,
        actor: &str,
        at: &str,
    ) -> Result<PolicyVersion, StoreError> {
        let (policy_id, version) = write_tx!(self, tx => {
            let existing: Option<(i64,)> = sqlx::query_as("SELECT id FROM policies WHERE name = $1")
                .bind(new.name)
                .fetch_optional(&mut *tx)
                .await?;
            let policy_id = match existing {
                Some((id,)) => id,
                None => {
                    let (id,): (i64,) = sqlx::query_as(
                        "INSERT INTO policies (name, created_at) VALUES ($1, $2) RETURNING id",
                    )
                    .bind(new.name)
                    .bind(at)
                    .fetch_one(&mut *tx)
                    .await?;
                    id
                }
            };
            let (version,): (i64,) = sqlx::query_as(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM policy_versions WHERE policy_id = $1",
            )
            .bind(policy_id)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO policy_versions \
                 (policy_id, version, format, source, created_at, created_by) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(policy_id)
            .bind(version)
            .bind(new.format)
            .bind(new.source)
            .bind(at)
            .bind(actor)
            .execute(&mut *tx)
            .await?;
            append_audit!(
                tx,
                at,
                actor,
                "policy.version.create",
                &format!("policy:{}@{version}", new.name)
            );
            (policy_id, version)
        });
        Ok(PolicyVersion {
            policy_id,
            name: new.name.to_owned(),
            version,
            format: new.format.to_owned(),
            source: new.source.to_owned(),
            created_at: at.to_owned(),
            created_by: actor.to_owned(),
        })
    }

    /// Every version of one policy, oldest first; `None` when there is no such policy.
    pub async fn policy_versions(
        &self,
        policy_id: i64,
    ) -> Result<Option<Vec<PolicyVersion>>, StoreError> {
        type Row = (String, i64, String, String, String, String);
        let (name, rows): (Option<(String,)>, Vec<Row>) = with_pool!(self, pool => {
            let name = sqlx::query_as("SELECT name FROM policies WHERE id = $1")
                .bind(policy_id)
                .fetch_optional(pool)
                .await?;
            let rows = sqlx::query_as(
                "SELECT p.name, v.version, v.format, v.source, v.created_at, v.created_by \
                 FROM policy_versions v JOIN policies p ON p.id = v.policy_id \
                 WHERE v.policy_id = $1 ORDER BY v.version",
            )
            .bind(policy_id)
            .fetch_all(pool)
            .await?;
            (name, rows)
        });
        if name.is_none() {
            return Ok(None);
        }
        Ok(Some(
            rows.into_iter()
                .map(
                    |(name, version, format, source, created_at, created_by)| PolicyVersion {
                        policy_id,
                        name,
                        version,
                        format,
                        source,
                        created_at,
                        created_by,
                    },
                )
                .collect(),
        ))
    }

    /// How many policy versions exist, over all policies.
    pub async fn count_policy_versions(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) = with_pool!(self, pool => {
            sqlx::query_as("SELECT COUNT(*) FROM policy_versions")
                .fetch_one(pool)
                .await
        })?;
        Ok(n)
    }

    /// The whole audit log, oldest first.
    pub async fn audit_entries(&self) -> Result<Vec<audit::Entry>, StoreError> {
        type Row = (i64, String, String, String, String, String, String);
        let rows: Vec<Row> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, at, actor, action, subject, prev_hash, hash FROM audit_log ORDER BY id",
            )
            .fetch_all(pool)
            .await
        })?;
        Ok(rows
            .into_iter()
            .map(
                |(id, at, actor, action, subject, prev_hash, hash)| audit::Entry {
                    id,
                    at,
                    actor,
                    action,
                    subject,
                    prev_hash,
                    hash,
                },
            )
            .collect())
    }
}

mod agents;
mod applications;
mod dashboard;
mod models;
mod rollups;
mod settings;
mod tokens;
mod users;

pub use agents::{AgentRecord, CertifiedAgent, EnrollmentToken, Group, NewAgent, TokenRefusal};
pub use applications::AppDestination;
pub use dashboard::{Minute, Ranked};
pub use models::{DetectionModel, NewModel};
pub use rollups::RuleHits;
pub use settings::{SettingChange, StoredSetting};
pub use tokens::{ApiToken, TokenRevocation};
pub use users::{SessionRecord, User, UserEdit, UserEditOutcome, UserRecord};

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file in the migration folders is compiled in, in order, under its own version.
    #[test]
    fn every_migration_file_is_embedded() {
        for (dir, embedded) in [
            ("sqlite", SQLITE_MIGRATIONS),
            ("postgres", POSTGRES_MIGRATIONS),
        ] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(dir);
            let mut files: Vec<String> = std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            files.sort();
            let listed: Vec<String> = embedded
                .0
                .iter()
                .map(|(v, d, _)| format!("{v:04}_{d}.sql"))
                .collect();
            assert_eq!(files, listed, "{dir}");
            for (file, (_, _, sql)) in files.iter().zip(embedded.0) {
                assert_eq!(std::fs::read_to_string(path.join(file)).unwrap(), *sql);
            }
        }
    }
}
