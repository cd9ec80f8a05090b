//! The first start: an `admin` user with a random one-time password written to
//! `DIR/initial-credentials` (mode 0600), and, when the operator provides one, an admin API token
//! with exactly that value (for automation). Later starts change nothing.

use std::io::Write;
use std::path::{Path, PathBuf};

use jiff::Timestamp;

use crate::credentials::{CredentialError, Secret, hash_password, random_password, token_hash};
use crate::store::{Bootstrap, Store, StoreError};

/// The file, inside the data directory, that holds the first admin's password.
pub const CREDENTIALS_FILE: &str = "initial-credentials";

/// The first admin's user name.
pub const ADMIN: &str = "admin";

/// The name of the token created from `PALISADE_BOOTSTRAP_TOKEN`.
pub const BOOTSTRAP_TOKEN_NAME: &str = "bootstrap";

/// The first start could not complete.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No randomness, or hashing failed.
    #[error(transparent)]
    Credential(#[from] CredentialError),
    /// The credentials file could not be written.
    #[error("cannot write {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The bootstrap token is too short to be a secret.
    #[error("PALISADE_BOOTSTRAP_TOKEN must be at least 16 characters")]
    WeakToken,
}

/// Creates the first admin unless users exist. Returns the credentials file when it wrote one.
pub async fn first_start(
    store: &Store,
    data_dir: &Path,
    token: Option<&Secret>,
    now: Timestamp,
) -> Result<Option<PathBuf>, BootstrapError> {
    if token.is_some_and(|t| t.expose().len() < 16) {
        return Err(BootstrapError::WeakToken);
    }
    if store.has_users().await? {
        return Ok(None);
    }
    // Two nodes may get here at once on one PostgreSQL; `Store::bootstrap` decides, in one
    // transaction, which of them creates the admin.
    let password = random_password()?;
    let password_hash = hash_password(&password)?;
    let hashed_token = token.map(|t| token_hash(t.expose()));
    // Written under a temporary name first, so that a file named `initial-credentials` always
    // holds the password that is stored.
    let path = data_dir.join(CREDENTIALS_FILE);
    let pending = data_dir.join(format!("{CREDENTIALS_FILE}.pending"));
    let contents = format!(
        "# The first Palisade admin. Sign in and change the password; then delete this file.\n\
         user: {ADMIN}\npassword: {}\n",
        password.expose()
    );
    write_private(&pending, &contents).map_err(|source| BootstrapError::File {
        path: pending.clone(),
        source,
    })?;
    let created = store
        .bootstrap(
            &Bootstrap {
                admin: ADMIN,
                password_hash: &password_hash,
                token: hashed_token
                    .as_deref()
                    .map(|hash| (BOOTSTRAP_TOKEN_NAME, hash)),
            },
            &now.to_string(),
        )
        .await;
    let outcome = match created {
        Ok(true) => std::fs::rename(&pending, &path)
            .map(|()| Some(path.clone()))
            .map_err(|source| BootstrapError::File { path, source }),
        Ok(false) => Ok(None),
        Err(e) => Err(e.into()),
    };
    // Best effort: the pending file is gone after a successful rename anyway.
    let _ = std::fs::remove_file(&pending);
    outcome
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    // An existing file keeps its old mode through `open`; set it again.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}
