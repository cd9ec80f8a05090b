//! Signing in to the console: a password (argon2id), then a TOTP code — enrolled at the first
//! sign-in, asked for at every later one — and a server-side session known by the SHA-256 of
//! its cookie. Users provisioned by single sign-on ([`single_sign_on`], the OpenID provider
//! owns their second factor) have no password sign-in. Also the user service (create, list,
//! change a role, set a password, reset a second factor, unlock, remove; admins only, and
//! never the last admin away).
//!
//! Failed attempts (a wrong password or a wrong code) are counted per user; from the fifth on,
//! each locks the user out for twice as long as the one before (30 s, 1 min, … up to 15 min).
//! An unknown name is refused exactly like a wrong password, after the same work. A TOTP step
//! is accepted once per user, so an observed code cannot be replayed.

use jiff::{SignedDuration, Timestamp};

use crate::credentials::{Secret, hash_password, random_token, token_hash, verify_password};
use crate::error::Error;
use crate::role::{Permission, Principal, Role};
use crate::store::{SessionRecord, Store, User, UserEdit, UserEditOutcome, UserRecord};
use crate::totp;

/// How long a signed-in session lasts.
pub const SESSION_LIFETIME: SignedDuration = SignedDuration::from_hours(12);
/// How long a session may wait between the password and the second factor.
const SECOND_FACTOR_LIFETIME: SignedDuration = SignedDuration::from_mins(10);
/// Failed attempts allowed before each further one locks the user out.
const FREE_ATTEMPTS: i64 = 4;
/// The first lockout; each further failure doubles it.
const FIRST_LOCKOUT: SignedDuration = SignedDuration::from_secs(30);
/// The longest lockout.
const LONGEST_LOCKOUT: SignedDuration = SignedDuration::from_mins(15);
/// Shortest password accepted for a new user.
pub const MIN_PASSWORD_LEN: usize = 12;
/// What authenticator apps show as the account's issuer.
const ISSUER: &str = "Palisade";
/// A valid argon2id hash of nothing anyone knows: an unknown name costs the same work as a
/// known one.
const DECOY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$cGFsaXNhZGVkZWNveQ$Xq3V8Sx2yH3oJkq9m8QJ8q5dJqkz1w6yS1S1m5dJq0A";

/// Where a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The password was right; the user has no second factor yet and must enrol one.
    Enrol,
    /// The password was right; the TOTP code is next.
    Totp,
    /// Signed in.
    SignedIn,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Stage::Enrol => "enrol",
            Stage::Totp => "totp",
            Stage::SignedIn => "signed_in",
        }
    }

    fn parse(text: &str) -> Option<Stage> {
        match text {
            "enrol" => Some(Stage::Enrol),
            "totp" => Some(Stage::Totp),
            "signed_in" => Some(Stage::SignedIn),
            _ => None,
        }
    }
}

/// A session presented with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The user's id.
    pub user_id: i64,
    /// The user's name.
    pub user: String,
    /// The user's role.
    pub role: Role,
    /// How far sign-in has come.
    pub stage: Stage,
    /// The token every state-changing request must carry.
    pub csrf: String,
    /// While enrolling: the secret to add to an authenticator app.
    pub pending_secret: Option<String>,
}

impl Session {
    /// Who acts through this session.
    pub fn principal(&self) -> Principal {
        Principal {
            actor: format!("user:{}", self.user),
            role: self.role,
        }
    }

    /// While enrolling: the `otpauth://` URI of the secret offered.
    pub fn enrolment_uri(&self) -> Option<String> {
        self.pending_secret
            .as_deref()
            .map(|secret| totp::uri(ISSUER, &self.user, secret))
    }
}

/// Why a sign-in step was refused.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// Wrong name or password, or wrong code (deliberately not saying which).
    #[error("the name, password or code is not right")]
    Refused,
    /// Too many failed attempts.
    #[error("too many failed attempts: try again after {until}")]
    Locked {
        /// When the lockout ends, RFC 3339 UTC.
        until: String,
    },
    /// The code was right but was used before.
    #[error("this code was used already: wait for the next one")]
    Replayed,
    /// The session is missing, expired, or not at this step.
    #[error("the sign-in expired: start again")]
    Expired,
    /// Storage or randomness failed.
    #[error(transparent)]
    Failed(#[from] Error),
}

impl From<crate::StoreError> for SignInError {
    fn from(e: crate::StoreError) -> SignInError {
        SignInError::Failed(e.into())
    }
}

/// Checks `name` and `password` at `now`; on success starts a session at its second factor and
/// returns the cookie value (shown once, only its hash is stored) with the session.
pub async fn password(
    store: &Store,
    name: &str,
    password: &Secret,
    now: Timestamp,
) -> Result<(Secret, Session), SignInError> {
    let Some(user) = store.user_by_name(name).await? else {
        verify_password(password, DECOY_HASH);
        return Err(SignInError::Refused);
    };
    if user.sso_subject.is_some() {
        verify_password(password, DECOY_HASH);
        return Err(SignInError::Refused);
    }
    refuse_if_locked(&user, now)?;
    if !verify_password(password, &user.password_hash) {
        return Err(fail(store, &user, now).await?);
    }
    let (stage, pending_secret) = match user.totp_secret {
        Some(_) => (Stage::Totp, None),
        None => (Stage::Enrol, Some(totp::new_secret().map_err(Error::from)?)),
    };
    start(store, &user, stage, pending_secret, now).await
}

/// The session behind cookie value `cookie` at `now`, if it exists and has not expired.
pub async fn current(
    store: &Store,
    cookie: &str,
    now: Timestamp,
) -> Result<Option<Session>, Error> {
    let hash = token_hash(cookie);
    let Some(record) = store.session(&hash).await? else {
        return Ok(None);
    };
    let expired = record
        .expires_at
        .parse::<Timestamp>()
        .map_or(true, |e| e <= now);
    if expired {
        store.delete_session(&hash).await?;
        return Ok(None);
    }
    let Some(user) = store.user_by_id(record.user_id).await? else {
        return Ok(None);
    };
    let (Some(stage), Ok(role)) = (Stage::parse(&record.stage), user.role.parse::<Role>()) else {
        return Err(crate::StoreError::Corrupt(format!("session of user {}", user.name)).into());
    };
    Ok(Some(Session {
        user_id: user.id,
        user: user.name,
        role,
        stage,
        csrf: record.csrf,
        pending_secret: record.pending_secret,
    }))
}

/// Checks the TOTP `code` of the session behind `cookie` (enrolling: against the secret
/// offered, which is then stored). On success the session is replaced by a signed-in one with
/// a new cookie value, returned with it.
pub async fn second_factor(
    store: &Store,
    cookie: &str,
    code: &str,
    now: Timestamp,
) -> Result<(Secret, Session), SignInError> {
    let session = current(store, cookie, now)
        .await?
        .filter(|s| s.stage != Stage::SignedIn)
        .ok_or(SignInError::Expired)?;
    let user = store
        .user_by_id(session.user_id)
        .await?
        .ok_or(SignInError::Expired)?;
    refuse_if_locked(&user, now)?;
    let (secret, enrolling) = match (&session.stage, &session.pending_secret, &user.totp_secret) {
        (Stage::Enrol, Some(pending), None) => (pending.as_str(), true),
        (Stage::Totp, _, Some(stored)) => (stored.as_str(), false),
        _ => return Err(SignInError::Expired),
    };
    let Some(step) = totp::verify(secret, code, now, user.totp_last_step) else {
        let used = totp::verify(secret, code, now, None).is_some();
        let refusal = fail(store, &user, now).await?;
        return Err(if used { SignInError::Replayed } else { refusal });
    };
    let enrolled = enrolling.then_some(secret);
    if !store.accept_totp_step(user.id, step, enrolled).await? {
        return Err(SignInError::Replayed);
    }
    store.delete_session(&token_hash(cookie)).await?;
    start(store, &user, Stage::SignedIn, None, now).await
}

/// Signs in `name`, whom the OpenID provider vouched for as `subject` (`ISSUER#SUB`) with
/// `role`: the user is created at the first sign-in and its role updated at every one (audited
/// as `actor`), and a signed-in session starts. `None` when `name` belongs to a local user or to
/// another subject.
pub async fn single_sign_on(
    store: &Store,
    name: &str,
    subject: &str,
    role: Role,
    actor: &str,
    now: Timestamp,
) -> Result<Option<(Secret, Session)>, SignInError> {
    if !valid_user_name(name) {
        return Err(Error::BadRequest(format!(
            "{NAME_RULE}; the provider named the user {name:?}"
        ))
        .into());
    }
    let Some(user) = store
        .sso_user(name, subject, role, actor, &now.to_string())
        .await?
    else {
        return Ok(None);
    };
    start(store, &user, Stage::SignedIn, None, now)
        .await
        .map(Some)
}

/// Ends the session behind `cookie`.
pub async fn sign_out(store: &Store, cookie: &str) -> Result<(), Error> {
    Ok(store.delete_session(&token_hash(cookie)).await?)
}

/// Creates a user with `role` and an initial `password`; admins only, audited.
pub async fn create_user(
    store: &Store,
    who: &Principal,
    name: &str,
    role: Role,
    password: &Secret,
    now: Timestamp,
) -> Result<User, Error> {
    who.require(Permission::ManageUsers)?;
    if !valid_user_name(name) {
        return Err(Error::BadRequest(NAME_RULE.into()));
    }
    if role == Role::Decision {
        return Err(Error::BadRequest(
            "the decision role is for API tokens, not people".into(),
        ));
    }
    check_password_length(password)?;
    let hash = hash_password(password)?;
    store
        .create_user(name, &hash, role, &who.actor, &now.to_string())
        .await?
        .ok_or_else(|| Error::Conflict(format!("a user named {name:?} exists")))
}

/// Every user; admins and auditors.
pub async fn list_users(store: &Store, who: &Principal) -> Result<Vec<User>, Error> {
    who.require(Permission::ReadUsers)?;
    Ok(store.list_users().await?)
}

/// What an admin does to a user (see [`edit_user`]).
#[derive(Debug)]
pub enum UserAction {
    /// Give the user another role (`decision` is for API tokens only).
    Role(Role),
    /// Set a new password (at least [`MIN_PASSWORD_LEN`] characters); not for users of
    /// single sign-on, whose provider checks who they are.
    Password(Secret),
    /// Forget the user's authenticator; the user enrols a new one at the next sign-in.
    ResetSecondFactor,
    /// Clear failed attempts and the lockout.
    Unlock,
    /// Remove the user.
    Remove,
}

/// Applies `action` to user `id`; admins only, audited. A new password, a reset second factor
/// and a removal end the user's sessions at once. The last admin can be neither demoted nor
/// removed ([`Error::Conflict`]).
pub async fn edit_user(
    store: &Store,
    who: &Principal,
    id: i64,
    action: UserAction,
    now: Timestamp,
) -> Result<(), Error> {
    who.require(Permission::ManageUsers)?;
    let Some(user) = store.user_by_id(id).await? else {
        return Err(Error::NotFound(format!("no user {id}")));
    };
    let hash;
    let edit = match &action {
        UserAction::Role(Role::Decision) => {
            return Err(Error::BadRequest(
                "the decision role is for API tokens, not people".into(),
            ));
        }
        UserAction::Role(role) => UserEdit::Role(*role),
        UserAction::Password(_) if user.sso_subject.is_some() => {
            return Err(Error::BadRequest(format!(
                "{} signs in through single sign-on and has no password here",
                user.name
            )));
        }
        UserAction::Password(password) => {
            check_password_length(password)?;
            hash = hash_password(password)?;
            UserEdit::Password(&hash)
        }
        UserAction::ResetSecondFactor => UserEdit::ResetSecondFactor,
        UserAction::Unlock => UserEdit::Unlock,
        UserAction::Remove => UserEdit::Remove,
    };
    match store
        .edit_user(id, edit, &who.actor, &now.to_string())
        .await?
    {
        UserEditOutcome::Done => Ok(()),
        UserEditOutcome::NotFound => Err(Error::NotFound(format!("no user {id}"))),
        UserEditOutcome::LastAdmin => Err(Error::Conflict(format!(
            "{} is the last admin; make another user admin first",
            user.name
        ))),
    }
}

fn check_password_length(password: &Secret) -> Result<(), Error> {
    if password.expose().chars().count() < MIN_PASSWORD_LEN {
        return Err(Error::BadRequest(format!(
            "a password has at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    Ok(())
}

/// What a user name may be.
const NAME_RULE: &str = "a user name is 1 to 64 letters, digits, '.', '_', '-' or '@'";

fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
}

fn refuse_if_locked(user: &UserRecord, now: Timestamp) -> Result<(), SignInError> {
    match &user.locked_until {
        Some(until) if until.parse::<Timestamp>().is_ok_and(|u| u > now) => {
            Err(SignInError::Locked {
                until: until.clone(),
            })
        }
        _ => Ok(()),
    }
}

/// Counts a failed attempt and returns the refusal to give: locked out from the fifth on.
async fn fail(store: &Store, user: &UserRecord, now: Timestamp) -> Result<SignInError, Error> {
    let failed = user.failed_logins.saturating_add(1);
    let until = lockout(failed).map(|d| later(now, d));
    store
        .record_failed_login(user.id, failed, until.as_deref())
        .await?;
    tracing::info!(user = %user.name, failed, "failed sign-in");
    Ok(match until {
        Some(until) => SignInError::Locked { until },
        None => SignInError::Refused,
    })
}

/// The lockout after `failed` consecutive failures.
fn lockout(failed: i64) -> Option<SignedDuration> {
    if failed <= FREE_ATTEMPTS {
        return None;
    }
    let doublings = u32::try_from((failed - FREE_ATTEMPTS - 1).min(10)).unwrap_or(10);
    let lockout = FIRST_LOCKOUT
        .checked_mul(1i32 << doublings)
        .unwrap_or(LONGEST_LOCKOUT);
    Some(lockout.min(LONGEST_LOCKOUT))
}

/// `now` + `duration`, RFC 3339 UTC (the latest time there is when that overflows).
fn later(now: Timestamp, duration: SignedDuration) -> String {
    now.checked_add(duration)
        .unwrap_or(Timestamp::MAX)
        .to_string()
}

async fn start(
    store: &Store,
    user: &UserRecord,
    stage: Stage,
    pending_secret: Option<String>,
    now: Timestamp,
) -> Result<(Secret, Session), SignInError> {
    let role = user
        .role
        .parse::<Role>()
        .map_err(|e| crate::StoreError::Corrupt(e.to_string()))?;
    let cookie = random_token().map_err(Error::from)?;
    let csrf = random_token().map_err(Error::from)?;
    let lifetime = match stage {
        Stage::SignedIn => SESSION_LIFETIME,
        Stage::Enrol | Stage::Totp => SECOND_FACTOR_LIFETIME,
    };
    let record = SessionRecord {
        user_id: user.id,
        stage: stage.as_str().to_owned(),
        csrf: csrf.expose().to_owned(),
        pending_secret: pending_secret.clone(),
        expires_at: later(now, lifetime),
    };
    store
        .create_session(&token_hash(cookie.expose()), &record, &now.to_string())
        .await?;
    let session = Session {
        user_id: user.id,
        user: user.name.clone(),
        role,
        stage,
        csrf: record.csrf,
        pending_secret,
    };
    Ok((cookie, session))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockouts_start_at_the_fifth_failure_and_double_up_to_fifteen_minutes() {
        assert_eq!(lockout(4), None);
        assert_eq!(lockout(5), Some(SignedDuration::from_secs(30)));
        assert_eq!(lockout(6), Some(SignedDuration::from_secs(60)));
        assert_eq!(lockout(9), Some(SignedDuration::from_secs(480)));
        assert_eq!(lockout(10), Some(LONGEST_LOCKOUT));
        assert_eq!(lockout(1_000), Some(LONGEST_LOCKOUT));
    }

    #[test]
    fn the_decoy_hash_is_a_valid_argon2id_hash() {
        assert!(argon2::PasswordHash::new(DECOY_HASH).is_ok());
        assert!(!verify_password(&Secret::new("x".into()), DECOY_HASH));
    }
}
