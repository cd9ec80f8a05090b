//! Authentication by API token, and the token service: create (optionally expiring), list,
//! revoke. Admins only ([`Permission::ManageTokens`]).
//!
//! A revoked or expired token is refused exactly like one nobody holds. Every request looks the
//! token up in the database, so a revocation holds at once, on every node. The bootstrap token
//! (`PALISADE_BOOTSTRAP_TOKEN`) is an ordinary admin token named `bootstrap` and can be revoked
//! like any other, except that the last admin token that works cannot be revoked: until people
//! can sign in with a password, nobody could manage the server through the API without it.

use jiff::{SignedDuration, Timestamp};

use crate::credentials::{Secret, random_token, token_hash};
use crate::error::Error;
use crate::role::{Permission, Principal, Role};
use crate::store::{ApiToken, Store, TokenRevocation};

/// Longest token name accepted.
pub const MAX_TOKEN_NAME_LEN: usize = 64;

/// Longest lifetime a token may be given: 3650 days (none at all is allowed too).
pub const MAX_TOKEN_LIFETIME: SignedDuration = SignedDuration::from_hours(3650 * 24);

/// Who holds `token` at `now`; [`Error::Unauthenticated`] when nobody does, or when the token
/// is revoked or expired.
pub async fn authenticate(store: &Store, token: &str, now: Timestamp) -> Result<Principal, Error> {
    let Some(found) = store.token_by_hash(&token_hash(token)).await? else {
        return Err(Error::Unauthenticated);
    };
    if !found.works_at(now) {
        tracing::debug!(token = found.id, "revoked or expired API token refused");
        return Err(Error::Unauthenticated);
    }
    let role = found
        .role
        .parse::<Role>()
        .map_err(|e| crate::StoreError::Corrupt(e.to_string()))?;
    Ok(Principal {
        actor: format!("token:{}", found.name),
        role,
    })
}

/// Creates an API token with `role`, working for `lifetime` from `now` (for ever without one).
/// The returned secret is shown once and never stored.
pub async fn create_token(
    store: &Store,
    who: &Principal,
    name: &str,
    role: Role,
    lifetime: Option<SignedDuration>,
    now: Timestamp,
) -> Result<(ApiToken, Secret), Error> {
    who.require(Permission::ManageTokens)?;
    if name.is_empty() || name.len() > MAX_TOKEN_NAME_LEN || name.chars().any(char::is_control) {
        return Err(Error::BadRequest(format!(
            "token name: 1 to {MAX_TOKEN_NAME_LEN} printable characters"
        )));
    }
    let expires_at = match lifetime {
        None => None,
        Some(l) if l <= SignedDuration::ZERO || l > MAX_TOKEN_LIFETIME => {
            return Err(Error::BadRequest(
                "expires_in_seconds: more than 0 and at most 3650 days".to_owned(),
            ));
        }
        Some(l) => Some(
            now.checked_add(l)
                .map_err(|e| Error::BadRequest(format!("expires_in_seconds: {e}")))?
                .to_string(),
        ),
    };
    let secret = random_token()?;
    let token = store
        .create_token(
            name,
            &token_hash(secret.expose()),
            role,
            expires_at.as_deref(),
            &who.actor,
            &now.to_string(),
        )
        .await?;
    Ok((token, secret))
}

/// Every API token, oldest first (never a secret or a hash).
pub async fn list_tokens(store: &Store, who: &Principal) -> Result<Vec<ApiToken>, Error> {
    who.require(Permission::ManageTokens)?;
    Ok(store.list_tokens().await?)
}

/// Revokes token `id`: it authenticates nobody from now on. Revoking a revoked token changes
/// nothing; the last admin token that works is not revoked ([`Error::Conflict`]).
pub async fn revoke_token(
    store: &Store,
    who: &Principal,
    id: i64,
    now: Timestamp,
) -> Result<(), Error> {
    who.require(Permission::ManageTokens)?;
    match store.revoke_token(id, &who.actor, now).await? {
        TokenRevocation::Revoked | TokenRevocation::AlreadyRevoked => Ok(()),
        TokenRevocation::NotFound => Err(Error::NotFound(format!("API token {id}"))),
        TokenRevocation::LastAdmin => Err(Error::Conflict(format!(
            "API token {id} is the last admin token that works; create another admin token \
             before revoking it"
        ))),
    }
}
