//! The agent's connection to the central server's gateway.
//!
//! - First contact: [`enroll`] generates a key on the endpoint (it never leaves it), sends a
//!   certificate request with the enrollment token, and trusts the server only if it presents a
//!   certificate signed by the CA the operator handed over (the server's `DIR/ca.pem`).
//! - The returned [`Identity`] (key, certificate, CA, agent id) is kept in a directory of files
//!   readable only by their owner ([`Identity::save`], [`Identity::load`]).
//! - [`Uplink::connect`] opens one mutual-TLS connection on which the agent sends heartbeats,
//!   receives its policy stream and sends event batches, each acknowledged once stored.
//!
//! No global state: a simulated fleet runs thousands of [`Uplink`]s in one process, each one
//! connection and a few small buffers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::files::{create_private_dir, write_private};
use palisade_proto::ConnectionEvent;
use palisade_proto::gateway::v1::gateway_client::GatewayClient;
use palisade_proto::gateway::v1::{
    EnrollRequest, EventBatch, HeartbeatRequest, PoliciesRequest, Policy,
};
use palisade_proto::gateway::{MAX_MESSAGE_BYTES, SERVER_NAME};
use rcgen::{CertificateParams, KeyPair};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// The key file in the identity directory.
pub const KEY_FILE: &str = "key.pem";
/// The certificate file in the identity directory.
pub const CERT_FILE: &str = "cert.pem";
/// The CA certificate file in the identity directory.
pub const CA_FILE: &str = "ca.pem";
/// The file holding the agent id in the identity directory.
pub const ID_FILE: &str = "agent-id";

/// What went wrong talking to the server or keeping the identity.
#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    /// The server address is not a URL, or the connection could not be made.
    #[error("cannot connect to {server}: {source}")]
    Connect {
        /// The address.
        server: String,
        /// Why.
        source: tonic::transport::Error,
    },
    /// The server refused or failed the call (code and message as it sent them).
    #[error("the server refused: {}: {}", .0.code(), .0.message())]
    Refused(tonic::Status),
    /// The key or certificate request could not be made.
    #[error("key: {0}")]
    Key(#[from] rcgen::Error),
    /// An identity file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The acknowledgement named another batch than the one sent.
    #[error("sent batch {sent}, the server acknowledged batch {acked}")]
    WrongAck {
        /// The batch sent.
        sent: u64,
        /// The batch acknowledged.
        acked: u64,
    },
}

impl From<tonic::Status> for UplinkError {
    fn from(status: tonic::Status) -> Self {
        UplinkError::Refused(status)
    }
}

impl UplinkError {
    /// The gRPC status code, when the server answered with one.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            UplinkError::Refused(s) => Some(s.code()),
            _ => None,
        }
    }
}

/// What an agent says about itself when it enrolls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct About {
    /// Host name.
    pub hostname: String,
    /// Operating system.
    pub os: String,
    /// Agent software version.
    pub version: String,
}

/// Everything an enrolled agent needs to connect.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    /// The agent id (its certificate's subject).
    pub agent_id: String,
    /// Its certificate (PEM).
    pub cert_pem: String,
    /// Its private key (PKCS#8 PEM).
    pub key_pem: String,
    /// The CA certificate the server's certificate must chain to (PEM).
    pub ca_pem: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("agent_id", &self.agent_id)
            .field("key_pem", &"***")
            .finish_non_exhaustive()
    }
}

/// An enrollment's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    /// The identity to keep.
    pub identity: Identity,
    /// The group the agent joined.
    pub group: String,
}

/// What a heartbeat reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Heartbeat {
    /// Agent software version.
    pub version: String,
    /// Operating system.
    pub os: String,
    /// The policy version enforced, if any.
    pub policy_version: Option<i64>,
    /// Counters by name.
    pub counters: HashMap<String, u64>,
}

/// Enrolls at `server` (`https://HOST:PORT`) with `token`, trusting only a server whose
/// certificate chains to `ca_pem` (the server's `ca.pem`, handed over by the operator).
pub async fn enroll(
    server: &str,
    ca_pem: &str,
    token: &str,
    about: &About,
) -> Result<Enrolled, UplinkError> {
    let key = KeyPair::generate()?;
    let csr = CertificateParams::new(Vec::<String>::new())?
        .serialize_request(&key)?
        .pem()?;
    let channel = channel(server, tls(ca_pem)).await?;
    let mut client = client(channel);
    let response = client
        .enroll(EnrollRequest {
            token: token.to_owned(),
            csr_pem: csr,
            hostname: about.hostname.clone(),
            os: about.os.clone(),
            agent_version: about.version.clone(),
        })
        .await?
        .into_inner();
    Ok(Enrolled {
        identity: Identity {
            agent_id: response.agent_id,
            cert_pem: response.certificate_pem,
            key_pem: key.serialize_pem(),
            ca_pem: response.ca_pem,
        },
        group: response.group,
    })
}

impl Identity {
    /// Writes the identity into `dir` (created, mode 0700), every file mode 0600.
    pub fn save(&self, dir: &Path) -> Result<(), UplinkError> {
        create_private_dir(dir).map_err(|source| UplinkError::File {
            path: dir.to_owned(),
            source,
        })?;
        for (name, contents) in [
            (KEY_FILE, &self.key_pem),
            (CERT_FILE, &self.cert_pem),
            (CA_FILE, &self.ca_pem),
            (ID_FILE, &self.agent_id),
        ] {
            let path = dir.join(name);
            write_private(&path, contents.as_bytes())
                .map_err(|source| UplinkError::File { path, source })?;
        }
        Ok(())
    }

    /// Reads an identity saved with [`Identity::save`].
    pub fn load(dir: &Path) -> Result<Identity, UplinkError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| UplinkError::File { path, source })
        };
        Ok(Identity {
            agent_id: read(ID_FILE)?.trim().to_owned(),
            cert_pem: read(CERT_FILE)?,
            key_pem: read(KEY_FILE)?,
            ca_pem: read(CA_FILE)?,
        })
    }
}

/// One mutual-TLS connection to the gateway. Cloning is cheap and shares the connection.
#[derive(Debug, Clone)]
pub struct Uplink {
    client: GatewayClient<Channel>,
}

impl Uplink {
    /// Connects to `server` (`https://HOST:PORT`) as `identity`.
    pub async fn connect(server: &str, identity: &Identity) -> Result<Uplink, UplinkError> {
        let tls = tls(&identity.ca_pem).identity(tonic::transport::Identity::from_pem(
            &identity.cert_pem,
            &identity.key_pem,
        ));
        Ok(Uplink {
            client: client(channel(server, tls).await?),
        })
    }

    /// Reports that the agent is alive, what it runs and what it enforces.
    pub async fn heartbeat(&mut self, report: &Heartbeat) -> Result<(), UplinkError> {
        self.client
            .heartbeat(HeartbeatRequest {
                agent_version: report.version.clone(),
                os: report.os.clone(),
                policy_version: report.policy_version.unwrap_or(0),
                counters: report.counters.clone(),
            })
            .await?;
        Ok(())
    }

    /// The policy stream: the current policy of the agent's group at once (when it has one),
    /// then every new version or re-assignment. It ends with an error when the agent is revoked.
    pub async fn policies(&mut self) -> Result<PolicyStream, UplinkError> {
        let inner = self.client.policies(PoliciesRequest {}).await?.into_inner();
        Ok(PolicyStream { inner })
    }

    /// Sends one batch and waits for its acknowledgement (given once the batch is stored).
    pub async fn send_batch(
        &mut self,
        batch_seq: u64,
        events: &[ConnectionEvent],
    ) -> Result<(), UplinkError> {
        let ack = self
            .client
            .send_events(EventBatch {
                batch_seq,
                events: events.iter().map(Into::into).collect(),
            })
            .await?
            .into_inner();
        if ack.batch_seq == batch_seq {
            Ok(())
        } else {
            Err(UplinkError::WrongAck {
                sent: batch_seq,
                acked: ack.batch_seq,
            })
        }
    }
}

/// The policies pushed to one agent.
#[derive(Debug)]
pub struct PolicyStream {
    inner: tonic::Streaming<Policy>,
}

impl PolicyStream {
    /// The next policy; `None` when the server closed the stream.
    pub async fn next(&mut self) -> Result<Option<Policy>, UplinkError> {
        Ok(self.inner.message().await?)
    }
}

fn tls(ca_pem: &str) -> ClientTlsConfig {
    ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(SERVER_NAME)
}

async fn channel(server: &str, tls: ClientTlsConfig) -> Result<Channel, UplinkError> {
    let fail = |source| UplinkError::Connect {
        server: server.to_owned(),
        source,
    };
    Endpoint::from_shared(server.to_owned())
        .map_err(fail)?
        .tls_config(tls)
        .map_err(fail)?
        .connect()
        .await
        .map_err(fail)
}

fn client(channel: Channel) -> GatewayClient<Channel> {
    GatewayClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_is_kept_in_private_files() {
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity {
            agent_id: "agent-1".into(),
            cert_pem: "cert".into(),
            key_pem: "key".into(),
            ca_pem: "ca".into(),
        };
        let at = dir.path().join("identity");
        identity.save(&at).unwrap();
        assert_eq!(Identity::load(&at).unwrap(), identity);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for name in [KEY_FILE, CERT_FILE, CA_FILE, ID_FILE] {
                let mode = std::fs::metadata(at.join(name))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{name}");
            }
        }
        assert!(!format!("{identity:?}").contains("key\""));
    }
}
