//! Authentication by API token, and the token service.

use jiff::Timestamp;

use crate::credentials::{Secret, random_token, token_hash};
use crate::error::Error;
use crate::role::{Permission, Principal, Role};
use crate::store::Store;

/// Longest token name accepted.
pub const MAX_TOKEN_NAME_LEN: usize = 64;

/// Who holds `token`; [`Error::Unauthenticated`] when nobody does.
pub async fn authenticate(store: &Store, token: &str) -> Result<Principal, Error> {
    store
        .token_principal(&token_hash(token))
        .await?
        .ok_or(Error::Unauthenticated)
}

/// Creates an API token with `role`; the returned value is shown once and never stored.
pub async fn create_token(
    store: &Store,
    who: &Principal,
    name: &str,
    role: Role,
    now: Timestamp,
) -> Result<Secret, Error> {
    who.require(Permission::ManageTokens)?;
    if name.is_empty() || name.len() > MAX_TOKEN_NAME_LEN || name.chars().any(char::is_control) {
        return Err(Error::BadRequest(format!(
            "token name: 1 to {MAX_TOKEN_NAME_LEN} printable characters"
        )));
    }
    let token = random_token()?;
    store
        .create_token(
            name,
            &token_hash(token.expose()),
            role,
            &who.actor,
            &now.to_string(),
        )
        .await?;
    Ok(token)
}
