//! Queries for users and their console sessions: create and list users, failed sign-ins and
//! lockouts, TOTP enrolment and the last step accepted, sessions by the hash of their cookie;
//! users provisioned by single sign-on.

use super::{GENESIS, Pool, Store, StoreError, WRITE_LOCK, chain_hash};
use crate::role::Role;

/// A user as the sign-in service sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Identifier.
    pub id: i64,
    /// Sign-in name.
    pub name: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Role name.
    pub role: String,
    /// Base32 TOTP secret, once enrolled.
    pub totp_secret: Option<String>,
    /// The last TOTP step accepted.
    pub totp_last_step: Option<i64>,
    /// Failed attempts since the last successful sign-in.
    pub failed_logins: i64,
    /// Until when sign-in is refused, RFC 3339 UTC.
    pub locked_until: Option<String>,
    /// For a user provisioned by single sign-on, the provider's `ISSUER#SUB`; such a user has
    /// no password.
    pub sso_subject: Option<String>,
}

/// A user as listed (never a secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct User {
    /// Identifier.
    pub id: i64,
    /// Sign-in name.
    pub name: String,
    /// Role name.
    pub role: String,
    /// When it was created, RFC 3339 UTC.
    pub created_at: String,
    /// Whether a second factor is enrolled.
    pub totp_enrolled: bool,
    /// Until when sign-in is refused after failed attempts, RFC 3339 UTC.
    pub locked_until: Option<String>,
}

/// A stored console session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The user it belongs to.
    pub user_id: i64,
    /// `enrol`, `totp` or `signed_in`.
    pub stage: String,
    /// The token forms and scripts must send back.
    pub csrf: String,
    /// The TOTP secret offered while enrolling.
    pub pending_secret: Option<String>,
    /// When it stops working, RFC 3339 UTC.
    pub expires_at: String,
}

/// A change an admin makes to a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserEdit<'a> {
    /// Give the user this role.
    Role(Role),
    /// Replace the password with this argon2id PHC string; clears the lockout.
    Password(&'a str),
    /// Forget the enrolled authenticator: the user enrols a new one at the next sign-in.
    ResetSecondFactor,
    /// Clear failed attempts and the lockout.
    Unlock,
    /// Remove the user.
    Remove,
}

/// What a [`UserEdit`] came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserEditOutcome {
    /// Done and audited. A password, a reset second factor or a removal also ended the
    /// user's sessions.
    Done,
    /// No user has this id.
    NotFound,
    /// It would leave no admin; nothing changed.
    LastAdmin,
}

type UserRow = (
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<i64>,
    i64,
    Option<String>,
    Option<String>,
);

const USER_COLUMNS: &str = "id, name, password_hash, role, totp_secret, totp_last_step, \
                            CAST(failed_logins AS BIGINT), locked_until, sso_subject";

fn user_record(row: UserRow) -> UserRecord {
    let (
        id,
        name,
        password_hash,
        role,
        totp_secret,
        totp_last_step,
        failed_logins,
        locked_until,
        sso_subject,
    ) = row;
    UserRecord {
        id,
        name,
        password_hash,
        role,
        totp_secret,
        totp_last_step,
        failed_logins,
        locked_until,
        sso_subject,
    }
}

impl Store {
    /// The user called `name`, if any.
    pub async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let row: Option<UserRow> = with_pool!(self, pool => {
            sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1"))
                .bind(name)
                .fetch_optional(pool)
                .await
        })?;
        Ok(row.map(user_record))
    }

    /// The user with this id, if any.
    pub async fn user_by_id(&self, id: i64) -> Result<Option<UserRecord>, StoreError> {
        let row: Option<UserRow> = with_pool!(self, pool => {
            sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
                .bind(id)
                .fetch_optional(pool)
                .await
        })?;
        Ok(row.map(user_record))
    }

    /// Every user, by name.
    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        type Listed = (i64, String, String, String, Option<String>, Option<String>);
        let rows: Vec<Listed> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, name, role, created_at, totp_secret, locked_until \
                 FROM users ORDER BY name",
            )
            .fetch_all(pool)
            .await
        })?;
        Ok(rows
            .into_iter()
            .map(|(id, name, role, created_at, totp, locked_until)| User {
                id,
                name,
                role,
                created_at,
                totp_enrolled: totp.is_some(),
                locked_until,
            })
            .collect())
    }

    /// Stores a new user and audits it; `None` when the name is taken.
    pub async fn create_user(
        &self,
        name: &str,
        password_hash: &str,
        role: Role,
        actor: &str,
        at: &str,
    ) -> Result<Option<User>, StoreError> {
        let id = write_tx!(self, tx => {
            let taken: Option<(i64,)> = sqlx::query_as("SELECT id FROM users WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
            if taken.is_some() {
                None
            } else {
                let (id,): (i64,) = sqlx::query_as(
                    "INSERT INTO users (name, password_hash, role, created_at) \
                     VALUES ($1, $2, $3, $4) RETURNING id",
                )
                .bind(name)
                .bind(password_hash)
                .bind(role.as_str())
                .bind(at)
                .fetch_one(&mut *tx)
                .await?;
                append_audit!(tx, at, actor, "user.create", &format!("user:{name} role:{role}"));
                Some(id)
            }
        });
        Ok(id.map(|id| User {
            id,
            name: name.to_owned(),
            role: role.as_str().to_owned(),
            created_at: at.to_owned(),
            totp_enrolled: false,
            locked_until: None,
        }))
    }

    /// The user `name` signing in through single sign-on as `subject` (`ISSUER#SUB`) with
    /// `role`: created on the first sign-in, its role brought up to date on later ones (both
    /// audited, by `actor`). `None` when the name belongs to a local user or to another
    /// subject: the provider cannot take over an account it did not create.
    pub async fn sso_user(
        &self,
        name: &str,
        subject: &str,
        role: Role,
        actor: &str,
        at: &str,
    ) -> Result<Option<UserRecord>, StoreError> {
        let id = write_tx!(self, tx => {
            let existing: Option<(i64, String, Option<String>)> =
                sqlx::query_as("SELECT id, role, sso_subject FROM users WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?;
            match existing {
                None => {
                    // No password hash: the empty string is no valid PHC string, so no
                    // password ever matches it.
                    let (id,): (i64,) = sqlx::query_as(
                        "INSERT INTO users (name, password_hash, role, created_at, sso_subject) \
                         VALUES ($1, '', $2, $3, $4) RETURNING id",
                    )
                    .bind(name)
                    .bind(role.as_str())
                    .bind(at)
                    .bind(subject)
                    .fetch_one(&mut *tx)
                    .await?;
                    append_audit!(tx, at, actor, "user.create", &format!("user:{name} role:{role} sso"));
                    Some(id)
                }
                Some((id, stored_role, Some(stored))) if stored == subject => {
                    if stored_role != role.as_str() {
                        sqlx::query("UPDATE users SET role = $1 WHERE id = $2")
                            .bind(role.as_str())
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                        append_audit!(tx, at, actor, "user.role", &format!("user:{name} role:{role}"));
                    }
                    Some(id)
                }
                Some(_) => None,
            }
        });
        match id {
            Some(id) => self.user_by_id(id).await,
            None => Ok(None),
        }
    }

    /// Applies `edit` to user `id` and audits it, in one transaction, unless it would demote
    /// or remove the last admin. A new password, a reset second factor and a removal end the
    /// user's sessions, so they take effect at once on every node.
    pub async fn edit_user(
        &self,
        id: i64,
        edit: UserEdit<'_>,
        actor: &str,
        at: &str,
    ) -> Result<UserEditOutcome, StoreError> {
        let admin = Role::Admin.as_str();
        let outcome = write_tx!(self, tx => {
            let found: Option<(String, String)> =
                sqlx::query_as("SELECT name, role FROM users WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let other_admins: (i64,) =
                sqlx::query_as("SELECT COUNT(*) FROM users WHERE role = $1 AND id <> $2")
                    .bind(admin)
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
            let demotes = match edit {
                UserEdit::Role(role) => role != Role::Admin,
                UserEdit::Remove => true,
                _ => false,
            };
            match found {
                None => UserEditOutcome::NotFound,
                Some((_, role)) if role == admin && demotes && other_admins.0 == 0 => {
                    UserEditOutcome::LastAdmin
                }
                Some((name, _)) => {
                    let (sql, action, subject) = match edit {
                        UserEdit::Role(role) => (
                            "UPDATE users SET role = $2 WHERE id = $1",
                            "user.role",
                            format!("user:{name} role:{role}"),
                        ),
                        UserEdit::Password(_) => (
                            "UPDATE users SET password_hash = $2, failed_logins = 0, \
                             locked_until = NULL WHERE id = $1",
                            "user.password",
                            format!("user:{name}"),
                        ),
                        UserEdit::ResetSecondFactor => (
                            "UPDATE users SET totp_secret = NULL, totp_last_step = NULL \
                             WHERE id = $1",
                            "user.second_factor.reset",
                            format!("user:{name}"),
                        ),
                        UserEdit::Unlock => (
                            "UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = $1",
                            "user.unlock",
                            format!("user:{name}"),
                        ),
                        UserEdit::Remove => (
                            "DELETE FROM users WHERE id = $1",
                            "user.remove",
                            format!("user:{name}"),
                        ),
                    };
                    if matches!(
                        edit,
                        UserEdit::Password(_) | UserEdit::ResetSecondFactor | UserEdit::Remove
                    ) {
                        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    let statement = sqlx::query(sql).bind(id);
                    let statement = match edit {
                        UserEdit::Role(role) => statement.bind(role.as_str()),
                        UserEdit::Password(hash) => statement.bind(hash),
                        _ => statement,
                    };
                    statement.execute(&mut *tx).await?;
                    append_audit!(tx, at, actor, action, &subject);
                    UserEditOutcome::Done
                }
            }
        });
        Ok(outcome)
    }

    /// Records a failed sign-in: the count of failures and the lockout it leads to.
    pub async fn record_failed_login(
        &self,
        user_id: i64,
        failed_logins: i64,
        locked_until: Option<&str>,
    ) -> Result<(), StoreError> {
        with_writer!(self, pool => {
            sqlx::query("UPDATE users SET failed_logins = $1, locked_until = $2 WHERE id = $3")
                .bind(failed_logins)
                .bind(locked_until)
                .bind(user_id)
                .execute(pool)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }

    /// Accepts TOTP `step` for the user (and, enrolling, stores `secret`) unless a step as late
    /// was accepted before; clears failed attempts. Returns whether it was accepted: of two
    /// sign-ins with the same code, on any node, one wins.
    pub async fn accept_totp_step(
        &self,
        user_id: i64,
        step: i64,
        secret: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = with_writer!(self, pool => {
            sqlx::query(
                "UPDATE users SET totp_last_step = $1, totp_secret = COALESCE($2, totp_secret), \
                 failed_logins = 0, locked_until = NULL \
                 WHERE id = $3 AND (totp_last_step IS NULL OR totp_last_step < $1)",
            )
            .bind(step)
            .bind(secret)
            .bind(user_id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(done == 1)
    }

    /// Stores a session.
    pub async fn create_session(
        &self,
        token_hash: &str,
        session: &SessionRecord,
        at: &str,
    ) -> Result<(), StoreError> {
        with_writer!(self, pool => {
            sqlx::query(
                "INSERT INTO sessions \
                 (token_hash, user_id, stage, csrf, pending_secret, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(token_hash)
            .bind(session.user_id)
            .bind(&session.stage)
            .bind(&session.csrf)
            .bind(&session.pending_secret)
            .bind(at)
            .bind(&session.expires_at)
            .execute(pool)
            .await
            .map(|_| ())
        })?;
        Ok(())
    }

    /// The session with this cookie hash, if any (expired ones too).
    pub async fn session(&self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        let row: Option<(i64, String, String, Option<String>, String)> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT user_id, stage, csrf, pending_secret, expires_at \
                 FROM sessions WHERE token_hash = $1",
            )
            .bind(token_hash)
            .fetch_optional(pool)
            .await
        })?;
        Ok(row.map(
            |(user_id, stage, csrf, pending_secret, expires_at)| SessionRecord {
                user_id,
                stage,
                csrf,
                pending_secret,
                expires_at,
            },
        ))
    }

    /// Removes a session (signing out, or replacing it after the second factor).
    pub async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        with_writer!(self, pool => {
            sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
                .bind(token_hash)
                .execute(pool)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }
}
