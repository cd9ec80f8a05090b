//! Enrollment: tokens that admins and editors create (expiry, how many agents each may enroll,
//! the group those agents join; the secret is shown once and stored only as its SHA-256), and
//! the exchange an agent makes of a token and a certificate request for a certificate signed by
//! the internal CA. A refused token stores nothing.

use jiff::{SignedDuration, Timestamp};

use crate::agents::check_report;
use crate::audit::hex;
use crate::ca::Ca;
use crate::credentials::{CredentialError, Secret, token_hash};
use crate::error::Error;
use crate::role::{Permission, Principal};
use crate::store::{EnrollmentToken, NewAgent, Store, TokenRefusal};

/// Longest lifetime of an enrollment token: 365 days.
pub const MAX_TOKEN_LIFETIME: SignedDuration = SignedDuration::from_hours(365 * 24);

/// Most agents one token may enroll.
pub const MAX_USES: i64 = 1_000_000;

/// Largest certificate request accepted, in bytes.
pub const MAX_CSR_LEN: usize = 16 * 1024;

/// A token to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    /// The group enrolled agents join.
    pub group: String,
    /// How many agents it may enroll (1 for single use).
    pub max_uses: i64,
    /// How long it works, from now.
    pub lifetime: SignedDuration,
}

/// A created token, with its secret (shown once).
#[derive(Debug, Clone)]
pub struct CreatedToken {
    /// The token as listed.
    pub token: EnrollmentToken,
    /// The secret the agent presents.
    pub secret: Secret,
}

/// What an agent sends to enroll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The token's secret.
    pub token: String,
    /// Its certificate request (PEM).
    pub csr_pem: String,
    /// Its host name.
    pub hostname: String,
    /// Its operating system.
    pub os: String,
    /// Its software version.
    pub agent_version: String,
}

/// What an enrolled agent receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    /// Its id.
    pub agent_id: String,
    /// Its certificate (PEM).
    pub certificate_pem: String,
    /// The CA certificate (PEM).
    pub ca_pem: String,
    /// Its group.
    pub group: String,
}

/// Creates an enrollment token.
pub async fn create_token(
    store: &Store,
    who: &Principal,
    new: &NewToken,
    now: Timestamp,
) -> Result<CreatedToken, Error> {
    who.require(Permission::ManageAgents)?;
    if !(1..=MAX_USES).contains(&new.max_uses) {
        return Err(Error::BadRequest(format!(
            "max_uses: 1 to {MAX_USES} (1 is a single-use token)"
        )));
    }
    if new.lifetime <= SignedDuration::ZERO || new.lifetime > MAX_TOKEN_LIFETIME {
        return Err(Error::BadRequest(
            "expires_in_seconds: more than 0 and at most 365 days".to_owned(),
        ));
    }
    let expires_at = now
        .checked_add(new.lifetime)
        .map_err(|e| Error::BadRequest(format!("expiry: {e}")))?;
    let secret = random_enrollment_secret()?;
    let token = store
        .create_enrollment_token(
            &token_hash(secret.expose()),
            &new.group,
            new.max_uses,
            &expires_at.to_string(),
            &who.actor,
            &now.to_string(),
        )
        .await?
        .ok_or_else(|| Error::NotFound(format!("group {:?}", new.group)))?;
    Ok(CreatedToken { token, secret })
}

/// Every enrollment token (never their secrets).
pub async fn list_tokens(store: &Store, who: &Principal) -> Result<Vec<EnrollmentToken>, Error> {
    who.require(Permission::ReadAgents)?;
    Ok(store.list_enrollment_tokens().await?)
}

/// Revokes an enrollment token: it enrolls nobody from now on (agents it enrolled stay).
pub async fn revoke_token(
    store: &Store,
    who: &Principal,
    id: i64,
    now: Timestamp,
) -> Result<(), Error> {
    who.require(Permission::ManageAgents)?;
    if store
        .revoke_enrollment_token(id, &who.actor, &now.to_string())
        .await?
    {
        Ok(())
    } else {
        Err(Error::NotFound(format!("enrollment token {id}")))
    }
}

/// Enrolls an agent: checks the request, signs its key for a new agent id, and stores the agent
/// if the token allows it.
pub async fn enroll(
    store: &Store,
    ca: &Ca,
    request: &Request,
    now: Timestamp,
) -> Result<Enrolled, Error> {
    check_report("hostname", &request.hostname)?;
    check_report("os", &request.os)?;
    check_report("agent_version", &request.agent_version)?;
    if request.csr_pem.len() > MAX_CSR_LEN {
        return Err(Error::BadRequest(format!(
            "the certificate request is longer than {MAX_CSR_LEN} bytes"
        )));
    }
    if request.token.is_empty() {
        return Err(Error::AgentRefused("enrollment token missing".to_owned()));
    }
    let agent_id = new_agent_id()?;
    let (certificate_pem, fingerprint) = ca
        .sign_agent(&request.csr_pem, &agent_id, now)
        .map_err(|e| Error::BadRequest(e.to_string()))?;
    let agent = NewAgent {
        id: &agent_id,
        hostname: &request.hostname,
        os: &request.os,
        agent_version: &request.agent_version,
        cert_fingerprint: &fingerprint,
    };
    match store
        .enroll(&token_hash(&request.token), &agent, now)
        .await?
    {
        Ok(group) => {
            tracing::info!(agent = %agent_id, %group, hostname = %request.hostname, "agent enrolled");
            Ok(Enrolled {
                agent_id,
                certificate_pem,
                ca_pem: ca.cert_pem().to_owned(),
                group,
            })
        }
        Err(refusal) => {
            let why = match refusal {
                TokenRefusal::Unknown => "enrollment token unknown",
                TokenRefusal::Expired => "enrollment token expired",
                TokenRefusal::UsedUp => "enrollment token used up",
                TokenRefusal::Revoked => "enrollment token revoked",
            };
            tracing::warn!(hostname = %request.hostname, cause = why, "enrollment refused");
            Err(Error::AgentRefused(why.to_owned()))
        }
    }
}

fn random_enrollment_secret() -> Result<Secret, CredentialError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| CredentialError::Random(e.to_string()))?;
    Ok(Secret::new(format!("pal_enroll_{}", hex(&bytes))))
}

fn new_agent_id() -> Result<String, CredentialError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| CredentialError::Random(e.to_string()))?;
    Ok(format!("agent-{}", hex(&bytes)))
}
