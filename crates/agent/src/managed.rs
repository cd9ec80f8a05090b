//! A managed agent's conversation with its server: the policy stream applied as it comes (and
//! kept on disk, so a restarted agent enforces its last policy before it reaches the server),
//! on top of the heartbeats and uploads every managed endpoint has ([`crate::session`]).
//! Enforcement never waits for the server.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use palisade_proto::gateway::policy_signed_bytes;
use palisade_proto::gateway::v1::Policy;
use prost::Message;

use crate::daemon::Agent;
use crate::decide::ActivePolicy;
use crate::session::{self, Endpoint, Link};
use crate::spool::Spool;
use crate::uplink::Identity;

/// Where the last policy received is kept.
pub fn policy_file(data: &Path) -> PathBuf {
    data.join("policy.pb")
}

/// The last policy received from the server, if one was kept and its signature is the CA's in
/// `ca_pem`; a changed or unsigned file is refused with a warning.
pub fn saved_policy(data: &Path, ca_pem: &str) -> Option<Policy> {
    let bytes = std::fs::read(policy_file(data)).ok()?;
    let policy = Policy::decode(bytes.as_slice()).ok()?;
    if signed_by(&policy, ca_pem) {
        Some(policy)
    } else {
        tracing::warn!(file = %policy_file(data).display(), "the kept policy is not signed by the server; refused");
        None
    }
}

/// Whether `policy` carries a valid signature by the CA certificate `ca_pem` (ECDSA P-256 with
/// SHA-256 over [`policy_signed_bytes`]).
pub fn signed_by(policy: &Policy, ca_pem: &str) -> bool {
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()) else {
        return false;
    };
    let Ok(ca) = pem.parse_x509() else {
        return false;
    };
    let key = &ca.public_key().subject_public_key.data;
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, key)
        .verify(&policy_signed_bytes(policy), &policy.signature)
        .is_ok()
}

/// Validates and compiles a policy from the server; `None` (with a warning) when it is invalid.
pub fn compile(policy: &Policy) -> Option<ActivePolicy> {
    let file = format!("{}.{}", policy.name, policy.format);
    match palisade_policy::load(&file, &policy.source, &|_| {
        Err("a policy from the server cannot name list files".to_owned())
    }) {
        Ok(loaded) => Some(ActivePolicy::new(
            &loaded.policy,
            (!policy.isolation).then_some(policy.version),
        )),
        Err(invalid) => {
            tracing::warn!(policy = %policy.name, error = %invalid, "policy refused");
            None
        }
    }
}

/// Talks to the server until the task is dropped: the agent's policy stream, heartbeats and
/// uploads ([`session::run`]).
pub async fn run(
    server: String,
    identity: Identity,
    data: PathBuf,
    os: String,
    agent: Arc<Agent>,
    spool: Arc<Mutex<Spool>>,
) {
    let enforcer = Arc::new(Enforcer {
        ca_pem: identity.ca_pem.clone(),
        data,
        agent,
    });
    let link = Link {
        server,
        identity,
        os,
    };
    session::run(link, enforcer, spool).await;
}

/// The agent as its server sees it: counters, the policy in force, and where new policies go.
struct Enforcer {
    agent: Arc<Agent>,
    data: PathBuf,
    ca_pem: String,
}

impl Endpoint for Enforcer {
    fn counters(&self) -> Vec<(&'static str, u64)> {
        self.agent.counters().snapshot()
    }

    fn policy_version(&self) -> Option<i64> {
        self.agent.policy_version()
    }

    fn enforces(&self) -> bool {
        true
    }

    async fn receive(&self, policy: Policy) {
        receive(policy, &self.data, &self.ca_pem, &self.agent).await;
    }
}

async fn receive(policy: Policy, data: &Path, ca_pem: &str, agent: &Arc<Agent>) {
    if !signed_by(&policy, ca_pem) {
        tracing::warn!(policy = %policy.name, "a policy without the server's signature; refused");
        return;
    }
    let Some(active) = compile(&policy) else {
        return;
    };
    if let Err(e) = crate::files::write_private(&policy_file(data), &policy.encode_to_vec()) {
        tracing::warn!(error = %e, "the policy could not be kept on disk");
    }
    let agent = agent.clone();
    let applied = tokio::task::spawn_blocking(move || agent.apply(active)).await;
    match applied {
        Ok(Ok(())) => {
            tracing::info!(policy = %policy.name, version = policy.version, "policy in force")
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "the kernel refused the policy's chains"),
        Err(e) => tracing::warn!(error = %e, "applying the policy failed"),
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, IsCa, KeyPair, SigningKey};

    use super::*;

    fn ca() -> (String, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key)
    }

    fn signed(key: &KeyPair) -> Policy {
        let mut policy = Policy {
            policy_id: 3,
            name: "office".into(),
            version: 7,
            format: "yaml".into(),
            source: "version: 1\nname: office\ndefault_action: allow\n".into(),
            isolation: false,
            signature: Vec::new(),
        };
        policy.signature = key.sign(&policy_signed_bytes(&policy)).unwrap();
        policy
    }

    #[test]
    fn only_a_policy_signed_by_the_agents_ca_and_unchanged_is_trusted() {
        let (ca_pem, key) = ca();
        let policy = signed(&key);
        assert!(signed_by(&policy, &ca_pem));

        let mut changed = policy.clone();
        changed.version = 8;
        assert!(!signed_by(&changed, &ca_pem));
        let mut unsigned = policy.clone();
        unsigned.signature.clear();
        assert!(!signed_by(&unsigned, &ca_pem));
        let (other_ca, _) = ca();
        assert!(!signed_by(&policy, &other_ca));
        assert!(!signed_by(&policy, "not a certificate"));
    }

    #[test]
    fn a_kept_policy_is_read_back_only_while_its_signature_holds() {
        let (ca_pem, key) = ca();
        let dir = tempfile::tempdir().unwrap();
        let policy = signed(&key);
        crate::files::write_private(&policy_file(dir.path()), &policy.encode_to_vec()).unwrap();
        assert_eq!(saved_policy(dir.path(), &ca_pem), Some(policy.clone()));

        let mut tampered = policy;
        tampered.source.push_str("rules: []\n");
        crate::files::write_private(&policy_file(dir.path()), &tampered.encode_to_vec()).unwrap();
        assert_eq!(saved_policy(dir.path(), &ca_pem), None);
    }
}
