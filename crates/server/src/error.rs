//! What the services refuse or fail with. The web layer maps each variant to a status in one
//! place (`http::ApiError`).

use crate::credentials::CredentialError;
use crate::role::Permission;
use crate::store::StoreError;

/// A service call that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No credentials, or credentials nobody holds.
    #[error("authentication required: send a valid API token as `Authorization: Bearer TOKEN`")]
    Unauthenticated,
    /// The caller's role may not do this.
    #[error("your role may not {0}")]
    Forbidden(Permission),
    /// No such thing (what is named in the message).
    #[error("{0} not found")]
    NotFound(String),
    /// The request itself is malformed (what is wrong is in the message).
    #[error("{0}")]
    BadRequest(String),
    /// The request conflicts with the current state (what is in the message).
    #[error("{0}")]
    Conflict(String),
    /// The policy document is invalid; each line is `file:line:col: error: field: message`.
    #[error("the policy is invalid")]
    InvalidPolicy(Vec<String>),
    /// An agent's credentials (enrollment token or certificate) are refused; the message says
    /// why.
    #[error("{0}")]
    AgentRefused(String),
    /// The server is overloaded and refuses for now; try again after backing off.
    #[error("the server is busy; send again later")]
    Busy,
    /// A part the call needs (the message bus, a background task) cannot be reached now.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No randomness or password hashing failed.
    #[error(transparent)]
    Credential(#[from] CredentialError),
}
