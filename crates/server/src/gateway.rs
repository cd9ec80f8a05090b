//! The agent gateway: gRPC over mutual TLS. `Enroll` is the one call accepted without a client
//! certificate; every other call must present a certificate the internal CA signed (rustls
//! checks the chain during the handshake) whose fingerprint names a known agent that is not
//! revoked (checked here on every call). Methods only extract, call a service and map the
//! error; [`status`] is the one mapping from service errors to gRPC statuses.

use std::pin::Pin;
use std::sync::Arc;

use palisade_proto::ConnectionEvent;
use palisade_proto::gateway::v1::gateway_server::{Gateway, GatewayServer};
use palisade_proto::gateway::v1::{
    EnrollRequest, EnrollResponse, EventAck, EventBatch, HeartbeatRequest, HeartbeatResponse,
    PoliciesRequest, Policy,
};
use palisade_proto::gateway::{MAX_MESSAGE_BYTES, policy_signed_bytes};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::Clock;
use crate::agents::{self, Report};
use crate::ca::{Ca, fingerprint};
use crate::distribution::{Distribution, Update};
use crate::enrollment;
use crate::error::Error;
use crate::ingest::Pipeline;
use crate::store::{CertifiedAgent, PolicyVersion, Store};

/// What every gateway call shares.
#[derive(Clone)]
pub struct GatewayService {
    /// The database.
    pub store: Arc<Store>,
    /// The internal CA (signs enrollments).
    pub ca: Arc<Ca>,
    /// Policy updates for the open streams.
    pub hub: Distribution,
    /// Where event batches go to be stored.
    pub pipeline: Pipeline,
    /// The current time.
    pub clock: Clock,
    /// What isolated agents connected to this node enforce ([`crate::isolation::policy`]).
    pub isolation: Policy,
    /// Becomes `true` when the node stops: open policy streams end, so that the graceful
    /// shutdown does not wait for them forever.
    pub stopping: watch::Receiver<bool>,
}

impl GatewayService {
    /// The tonic service, refusing messages over [`MAX_MESSAGE_BYTES`].
    pub fn into_server(self) -> GatewayServer<GatewayService> {
        GatewayServer::new(self).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// The agent whose certificate made this call, if it is known and not revoked.
    async fn authenticate<T>(&self, request: &Request<T>) -> Result<CertifiedAgent, Status> {
        let certs = request.peer_certs().ok_or_else(|| {
            Status::unauthenticated("a client certificate is required (enroll first)")
        })?;
        let leaf = certs
            .first()
            .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
        let agent = self
            .store
            .agent_by_certificate(&fingerprint(leaf))
            .await
            .map_err(|e| status(Error::Store(e)))?
            .ok_or_else(|| {
                tracing::warn!("refused a certificate that names no agent");
                Status::unauthenticated("the client certificate names no known agent")
            })?;
        if agent.revoked {
            tracing::warn!(agent = %agent.id, "refused a revoked agent");
            return Err(Status::permission_denied(format!(
                "agent {} is revoked",
                agent.id
            )));
        }
        Ok(agent)
    }
}

/// The stream of policies one agent receives.
pub type PolicyStream = Pin<Box<dyn Stream<Item = Result<Policy, Status>> + Send>>;

#[tonic::async_trait]
impl Gateway for GatewayService {
    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let r = request.into_inner();
        let enrolled = enrollment::enroll(
            &self.store,
            &self.ca,
            &enrollment::Request {
                token: r.token,
                csr_pem: r.csr_pem,
                hostname: r.hostname,
                os: r.os,
                agent_version: r.agent_version,
            },
            (self.clock)(),
        )
        .await
        .map_err(status)?;
        Ok(Response::new(EnrollResponse {
            agent_id: enrolled.agent_id,
            certificate_pem: enrolled.certificate_pem,
            ca_pem: enrolled.ca_pem,
            group: enrolled.group,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let agent = self.authenticate(&request).await?;
        let r = request.into_inner();
        let report = Report {
            version: r.agent_version,
            os: r.os,
            policy_version: (r.policy_version > 0).then_some(r.policy_version),
            counters: r.counters.into_iter().collect(),
        };
        agents::heartbeat(&self.store, &agent.id, &report, (self.clock)())
            .await
            .map_err(status)?;
        Ok(Response::new(HeartbeatResponse { ok: true }))
    }

    type PoliciesStream = PolicyStream;

    async fn policies(
        &self,
        request: Request<PoliciesRequest>,
    ) -> Result<Response<PolicyStream>, Status> {
        let agent = self.authenticate(&request).await?;
        // Subscribe before reading where the agent stands, so no change falls in between.
        let updates = self.hub.subscribe();
        let start = standing(&self.store, &agent.id)
            .await
            .map_err(status)?
            .ok_or_else(|| Status::permission_denied(format!("agent {} is revoked", agent.id)))?;
        let (out, rx) = mpsc::channel(4);
        tokio::spawn(feed(
            self.store.clone(),
            agent.id,
            start,
            self.isolation.clone(),
            updates,
            Outbox {
                out,
                ca: self.ca.clone(),
            },
            self.stopping.clone(),
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn send_events(
        &self,
        request: Request<EventBatch>,
    ) -> Result<Response<EventAck>, Status> {
        let agent = self.authenticate(&request).await?;
        let batch = request.into_inner();
        let events = batch
            .events
            .into_iter()
            .map(ConnectionEvent::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                tracing::warn!(agent = %agent.id, batch = batch.batch_seq, cause = %e, "refused a malformed batch");
                Status::invalid_argument(e.to_string())
            })?;
        match self
            .pipeline
            .submit(&agent.id, batch.batch_seq, events, (self.clock)())
            .await
        {
            Ok(()) => Ok(Response::new(EventAck {
                batch_seq: batch.batch_seq,
            })),
            // The batch itself is refused (too old, too many events...): sending it again
            // would not help.
            Err(e @ Error::BadRequest(_)) => Err(status(e)),
            Err(Error::Busy) => Err(status(Error::Busy)),
            Err(e) => {
                tracing::warn!(agent = %agent.id, batch = batch.batch_seq, cause = %e, "batch not stored");
                Err(Status::unavailable(
                    "the batch was not stored; send it again later",
                ))
            }
        }
    }
}

/// The one mapping from service errors to gRPC statuses.
pub fn status(e: Error) -> Status {
    match e {
        Error::Unauthenticated => Status::unauthenticated(e.to_string()),
        Error::AgentRefused(why) => Status::permission_denied(why),
        Error::Forbidden(_) => Status::permission_denied(e.to_string()),
        Error::NotFound(_) => Status::not_found(e.to_string()),
        Error::BadRequest(_) | Error::InvalidPolicy(_) => Status::invalid_argument(e.to_string()),
        Error::Conflict(_) => Status::already_exists(e.to_string()),
        Error::Busy => Status::resource_exhausted(e.to_string()),
        Error::Store(_) | Error::Credential(_) | Error::Unavailable(_) => {
            tracing::error!(cause = %e, "gateway call failed");
            Status::unavailable("the server cannot answer now; try again later")
        }
    }
}

/// Feeds one agent's policy stream: the current policy (the isolation policy while the agent is
/// isolated, else its group's), then every change for it, until the agent goes away or is
/// revoked. While isolated, changes of its group's policy are not sent; releasing it sends the
/// group's current policy.
async fn feed(
    store: Arc<Store>,
    agent_id: String,
    start: Standing,
    isolation: Policy,
    mut updates: broadcast::Receiver<Arc<Update>>,
    outbox: Outbox,
    mut stopping: watch::Receiver<bool>,
) {
    let Standing {
        mut group,
        mut isolated,
        policy,
    } = start;
    let mut sent: Option<(i64, i64)> = None;
    let first = if isolated {
        Some(isolation.clone())
    } else {
        policy.map(message)
    };
    if !send(&outbox, &mut sent, first).await {
        return;
    }
    loop {
        let update = tokio::select! {
            update = updates.recv() => update,
            () = outbox.out.closed() => return,
            () = async {
                // Also ends when the node's stop handle is gone.
                let _ = stopping.wait_for(|stop| *stop).await;
            } => {
                let _ = outbox.out.send(Err(Status::unavailable("the server is stopping"))).await;
                return;
            }
        };
        let update = match update {
            Ok(update) => update,
            // Missed updates: re-read where this agent stands.
            Err(broadcast::error::RecvError::Lagged(_)) => Arc::new(Update::Resync),
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let next = match &*update {
            Update::GroupPolicy { group: g, policy } if *g == group && !isolated => {
                Some(policy.clone())
            }
            Update::AgentMoved {
                agent_id: a,
                group: g,
            } if *a == agent_id => {
                group.clone_from(g);
                if isolated {
                    continue;
                }
                match store.group_policy(&group).await {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = outbox.out.send(Err(status(Error::Store(e)))).await;
                        return;
                    }
                }
            }
            Update::AgentRevoked { agent_id: a } if *a == agent_id => {
                let _ = outbox
                    .out
                    .send(Err(Status::permission_denied(format!(
                        "agent {agent_id} is revoked"
                    ))))
                    .await;
                return;
            }
            Update::AgentIsolated { agent_id: a } if *a == agent_id => {
                isolated = true;
                if !send(&outbox, &mut sent, Some(isolation.clone())).await {
                    return;
                }
                continue;
            }
            Update::AgentReleased { agent_id: a } if *a == agent_id && isolated => {
                isolated = false;
                match store.group_policy(&group).await {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = outbox.out.send(Err(status(Error::Store(e)))).await;
                        return;
                    }
                }
            }
            Update::Resync => match standing(&store, &agent_id).await {
                Ok(Some(now)) => {
                    group = now.group;
                    isolated = now.isolated;
                    if isolated {
                        if !send(&outbox, &mut sent, Some(isolation.clone())).await {
                            return;
                        }
                        continue;
                    }
                    now.policy
                }
                Ok(None) => {
                    let _ = outbox
                        .out
                        .send(Err(Status::permission_denied("the agent is revoked")))
                        .await;
                    return;
                }
                Err(e) => {
                    let _ = outbox.out.send(Err(status(e))).await;
                    return;
                }
            },
            _ => continue,
        };
        if !send(&outbox, &mut sent, next.map(message)).await {
            return;
        }
    }
}

/// Where an agent stands: its group, whether it is isolated, its group's current policy.
#[derive(Debug)]
struct Standing {
    group: String,
    isolated: bool,
    policy: Option<PolicyVersion>,
}

/// The agent's standing now; `None` when it is gone or revoked.
async fn standing(store: &Store, agent_id: &str) -> Result<Option<Standing>, Error> {
    let Some(agent) = store.agent(agent_id).await? else {
        return Ok(None);
    };
    if agent.revoked_at.is_some() {
        return Ok(None);
    }
    let policy = store.group_policy(&agent.group).await?;
    Ok(Some(Standing {
        group: agent.group,
        isolated: agent.isolated_at.is_some(),
        policy,
    }))
}

/// A stored policy version as the agent receives it.
fn message(p: PolicyVersion) -> Policy {
    Policy {
        policy_id: p.policy_id,
        name: p.name,
        version: p.version,
        format: p.format,
        source: p.source,
        isolation: false,
        signature: Vec::new(),
    }
}

/// One agent's policy stream and the CA that signs what goes on it.
struct Outbox {
    out: mpsc::Sender<Result<Policy, Status>>,
    ca: Arc<Ca>,
}

/// Sends `policy`, signed, unless it is the one sent last; `false` when the agent has gone. The
/// isolation policy is policy 0 version 0, so it is sent once when isolation starts, and the
/// group's policy is sent again when it ends.
async fn send(outbox: &Outbox, sent: &mut Option<(i64, i64)>, policy: Option<Policy>) -> bool {
    let Some(mut p) = policy else { return true };
    let key = (p.policy_id, p.version);
    // Never the same version twice, nor an older version of the policy just sent (an update
    // from another node can arrive after a re-read of the store that already had a newer one).
    if let Some((policy_id, version)) = *sent
        && policy_id == p.policy_id
        && p.version <= version
    {
        return true;
    }
    p.signature = match outbox.ca.sign(&policy_signed_bytes(&p)) {
        Ok(signature) => signature,
        Err(e) => {
            tracing::error!(cause = %e, "a policy could not be signed");
            let refusal = Status::unavailable("the server cannot sign the policy now");
            let _ = outbox.out.send(Err(refusal)).await;
            return false;
        }
    };
    *sent = Some(key);
    outbox.out.send(Ok(p)).await.is_ok()
}
