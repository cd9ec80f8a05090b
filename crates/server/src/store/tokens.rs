//! Queries for API tokens: create, find by hash, list, revoke. Only the SHA-256 of a token is
//! stored; nothing here returns it.

use jiff::Timestamp;

use super::{GENESIS, Pool, Store, StoreError, WRITE_LOCK, chain_hash};
use crate::role::Role;

/// An API token as listed (never its secret nor its hash).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ApiToken {
    /// Identifier in the API.
    pub id: i64,
    /// Its name (the audit log records it as `token:NAME`).
    pub name: String,
    /// Its role.
    pub role: String,
    /// When it was created, RFC 3339 UTC.
    pub created_at: String,
    /// Who created it (`system` for the bootstrap token); none for tokens created before
    /// this was recorded.
    pub created_by: Option<String>,
    /// When it stops working, RFC 3339 UTC; none: never.
    pub expires_at: Option<String>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<String>,
}

impl ApiToken {
    /// Whether it authenticates at `now`: not revoked and not expired (an expiry that does
    /// not parse counts as expired).
    pub fn works_at(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && expiry_allows(self.expires_at.as_deref(), now)
    }
}

/// What revoking a token did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRevocation {
    /// It is revoked now (audited).
    Revoked,
    /// It was revoked before; nothing changed.
    AlreadyRevoked,
    /// No token has this id.
    NotFound,
    /// It is the last working admin token; nothing changed.
    LastAdmin,
}

type Row = (
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

const COLUMNS: &str = "id, name, role, created_at, created_by, expires_at, revoked_at";

fn token(row: Row) -> ApiToken {
    let (id, name, role, created_at, created_by, expires_at, revoked_at) = row;
    ApiToken {
        id,
        name,
        role,
        created_at,
        created_by,
        expires_at,
        revoked_at,
    }
}

fn expiry_allows(expires_at: Option<&str>, now: Timestamp) -> bool {
    expires_at.is_none_or(|e| e.parse::<Timestamp>().is_ok_and(|e| e > now))
}

impl Store {
    /// Stores a new API token (its hash) and audits it.
    pub async fn create_token(
        &self,
        name: &str,
        token_hash: &str,
        role: Role,
        expires_at: Option<&str>,
        actor: &str,
        at: &str,
    ) -> Result<ApiToken, StoreError> {
        let id = write_tx!(self, tx => {
            let id = insert_token!(tx, name, token_hash, role, expires_at, actor, at);
            let expiry = expires_at.map_or_else(String::new, |e| format!(" expires:{e}"));
            append_audit!(
                tx,
                at,
                actor,
                "token.create",
                &format!("token:{id} name:{name} role:{role}{expiry}")
            );
            id
        });
        Ok(ApiToken {
            id,
            name: name.to_owned(),
            role: role.as_str().to_owned(),
            created_at: at.to_owned(),
            created_by: Some(actor.to_owned()),
            expires_at: expires_at.map(str::to_owned),
            revoked_at: None,
        })
    }

    /// The token with this hash, if any (revoked and expired ones too).
    pub async fn token_by_hash(&self, token_hash: &str) -> Result<Option<ApiToken>, StoreError> {
        let row: Option<Row> = with_pool!(self, pool => {
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM api_tokens WHERE token_hash = $1"))
                .bind(token_hash)
                .fetch_optional(pool)
                .await
        })?;
        Ok(row.map(token))
    }

    /// Every API token, oldest first.
    pub async fn list_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        let rows: Vec<Row> = with_pool!(self, pool => {
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM api_tokens ORDER BY id"))
                .fetch_all(pool)
                .await
        })?;
        Ok(rows.into_iter().map(token).collect())
    }

    /// Revokes token `id` at `now` and audits it, unless it is the last admin token that works
    /// at `now` (then nobody could manage the server through the API any more). Decided in one
    /// write transaction, so two nodes revoking the last two admin tokens at once cannot both
    /// succeed.
    pub async fn revoke_token(
        &self,
        id: i64,
        actor: &str,
        now: Timestamp,
    ) -> Result<TokenRevocation, StoreError> {
        let at = now.to_string();
        let outcome = write_tx!(self, tx => {
            let row: Option<Row> =
                sqlx::query_as(&format!("SELECT {COLUMNS} FROM api_tokens WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            match row.map(token) {
                None => TokenRevocation::NotFound,
                Some(t) if t.revoked_at.is_some() => TokenRevocation::AlreadyRevoked,
                Some(t) => {
                    let other_admins: Vec<(Option<String>,)> = sqlx::query_as(
                        "SELECT expires_at FROM api_tokens \
                         WHERE role = $1 AND revoked_at IS NULL AND id <> $2",
                    )
                    .bind(Role::Admin.as_str())
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await?;
                    let others_work = other_admins
                        .iter()
                        .any(|(e,)| expiry_allows(e.as_deref(), now));
                    if t.role == Role::Admin.as_str() && t.works_at(now) && !others_work {
                        TokenRevocation::LastAdmin
                    } else {
                        sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2")
                            .bind(&at)
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                        append_audit!(
                            tx,
                            &at,
                            actor,
                            "token.revoke",
                            &format!("token:{id} name:{} role:{}", t.name, t.role)
                        );
                        TokenRevocation::Revoked
                    }
                }
            }
        });
        Ok(outcome)
    }
}
