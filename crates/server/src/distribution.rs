//! Policy distribution: "this is now the policy of group G", "agent A moved", "agent A was
//! revoked", delivered at once to every open `Policies` stream, on every node.
//!
//! A small interface ([`Distribution::publish`], [`Distribution::subscribe`]). Locally it is a
//! broadcast channel; [`Distribution::over_bus`] also routes every update through the bus
//! (JSON; [`FanoutTopic::Commands`] for commands to one agent — isolate, release, revoke — and
//! [`FanoutTopic::PolicyUpdates`] for the rest, see [`Update::topic`]): a node delivers its own change to its own streams at
//! once and publishes it for the others; each node subscribes and re-publishes into its local
//! channel what other nodes published (its own messages, recognised by the node id, are
//! skipped, so a change is delivered once per node). A stream that falls behind by more than
//! the channel holds (`Lagged`), or that may have missed updates because the bus subscription
//! lost its broker connection ([`Update::Resync`]), re-reads its agent's current policy from the
//! store instead of missing a change.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::bus::{Bus, BusError, FanoutTopic};
use crate::store::PolicyVersion;

/// How many updates a slow stream may fall behind before it resynchronises from the store; also
/// how many updates may wait to be published on the bus.
pub const CAPACITY: usize = 1024;

/// How long to wait before publishing again an update the bus refused.
const REPUBLISH_AFTER: Duration = Duration::from_secs(1);

/// One change that open streams must hear of.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Update {
    /// `policy` is now the current policy of `group` (a new version, or a new assignment).
    GroupPolicy {
        /// The group.
        group: String,
        /// Its policy's newest version.
        policy: PolicyVersion,
    },
    /// The agent now belongs to `group`.
    AgentMoved {
        /// The agent.
        agent_id: String,
        /// Its new group.
        group: String,
    },
    /// The agent's certificate is no longer accepted.
    AgentRevoked {
        /// The agent.
        agent_id: String,
    },
    /// The agent is isolated: its stream sends the isolation policy instead of its group's.
    AgentIsolated {
        /// The agent.
        agent_id: String,
    },
    /// The agent is released from isolation: its stream sends its group's policy again.
    AgentReleased {
        /// The agent.
        agent_id: String,
    },
    /// Updates may have been missed (the bus lost its broker connection): every stream re-reads
    /// its agent's group and policy from the store.
    Resync,
}

impl Update {
    /// The bus topic the update travels on: commands for one agent on
    /// [`FanoutTopic::Commands`] (the node holding its stream acts), policy changes on
    /// [`FanoutTopic::PolicyUpdates`].
    pub fn topic(&self) -> FanoutTopic {
        match self {
            Update::AgentRevoked { .. }
            | Update::AgentIsolated { .. }
            | Update::AgentReleased { .. } => FanoutTopic::Commands,
            Update::GroupPolicy { .. } | Update::AgentMoved { .. } | Update::Resync => {
                FanoutTopic::PolicyUpdates
            }
        }
    }
}

/// An update as it travels on the bus: with the node that published it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Envelope {
    origin: String,
    update: Update,
}

/// The fan-out of [`Update`]s to this node's streams (and, over the bus, to every node's).
#[derive(Debug, Clone)]
pub struct Distribution {
    sender: broadcast::Sender<Arc<Update>>,
    /// To the task that publishes this node's updates on the bus; none: this node only.
    outbound: Option<mpsc::Sender<Update>>,
}

impl Default for Distribution {
    /// This node's streams only, no bus.
    fn default() -> Self {
        Distribution {
            sender: broadcast::channel(CAPACITY).0,
            outbound: None,
        }
    }
}

impl Distribution {
    /// A hub whose updates also reach, through `bus`, the streams of every node subscribed to
    /// it, and that delivers theirs to this node's streams. `node_id` must differ between nodes.
    /// Subscribed (to both topics) before this returns. The tasks (publishing, one receiving
    /// per topic) run until aborted or the bus closes.
    pub async fn over_bus(bus: Bus, node_id: String) -> (Distribution, Vec<JoinHandle<()>>) {
        let sender = broadcast::channel(CAPACITY).0;
        let (outbound, queue) = mpsc::channel(CAPACITY);
        let mut tasks = Vec::new();
        for topic in [FanoutTopic::PolicyUpdates, FanoutTopic::Commands] {
            let subscription = bus.subscribe(topic).await;
            tasks.push(tokio::spawn(receive(
                subscription,
                sender.clone(),
                node_id.clone(),
            )));
        }
        tasks.push(tokio::spawn(publish_on_bus(bus, queue, node_id)));
        (
            Distribution {
                sender,
                outbound: Some(outbound),
            },
            tasks,
        )
    }

    /// Delivers `update` to every current subscriber on this node (none is fine) and queues it
    /// for the other nodes.
    pub fn publish(&self, update: Update) {
        if let Some(outbound) = &self.outbound {
            if let Err(e) = outbound.try_send(update.clone()) {
                // The bus has been away for a long while: the other nodes' subscriptions were
                // interrupted too and will re-read the store once it is back.
                tracing::warn!(cause = %e, "policy update not queued for the other nodes");
            }
        }
        // An error only means nobody is listening.
        let _ = self.sender.send(Arc::new(update));
    }

    /// Every update published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Update>> {
        self.sender.subscribe()
    }
}

/// Publishes this node's updates on the bus (each on its [`Update::topic`]), in order; an update the bus refuses (broker away)
/// is published again until it is accepted, so the other nodes hear of it once the broker is
/// back.
async fn publish_on_bus(bus: Bus, mut queue: mpsc::Receiver<Update>, origin: String) {
    while let Some(update) = queue.recv().await {
        let topic = update.topic();
        let envelope = Envelope {
            origin: origin.clone(),
            update,
        };
        let payload = match serde_json::to_vec(&envelope) {
            Ok(payload) => payload,
            Err(e) => {
                tracing::error!(cause = %e, "policy update not serialised");
                continue;
            }
        };
        loop {
            match bus.publish(topic, payload.clone()).await {
                Ok(()) => break,
                Err(BusError::Closed) => return,
                Err(e) => {
                    tracing::warn!(cause = %e, "policy update not published on the bus; retrying");
                    tokio::time::sleep(REPUBLISH_AFTER).await;
                }
            }
        }
    }
}

/// Delivers to this node's streams what other nodes published; after an interruption, tells
/// every stream to re-read the store.
async fn receive(
    mut subscription: crate::bus::Subscription,
    local: broadcast::Sender<Arc<Update>>,
    node_id: String,
) {
    loop {
        let update = match subscription.next().await {
            Ok(payload) => match serde_json::from_slice::<Envelope>(&payload) {
                Ok(envelope) if envelope.origin == node_id => continue,
                Ok(envelope) => envelope.update,
                Err(e) => {
                    tracing::warn!(cause = %e, "ignored a malformed policy update from the bus");
                    continue;
                }
            },
            Err(BusError::Interrupted) => {
                tracing::warn!("policy updates may have been missed; agents' streams re-read");
                Update::Resync
            }
            Err(BusError::Closed) => return,
            Err(e) => {
                tracing::warn!(cause = %e, "policy update subscription");
                continue;
            }
        };
        let _ = local.send(Arc::new(update));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_subscriber_receives_what_is_published_after_it_subscribed() {
        let hub = Distribution::default();
        hub.publish(Update::AgentRevoked {
            agent_id: "before".into(),
        });
        let mut a = hub.subscribe();
        let mut b = hub.clone().subscribe();
        hub.publish(Update::AgentMoved {
            agent_id: "agent-1".into(),
            group: "lab".into(),
        });
        for rx in [&mut a, &mut b] {
            let got = rx.recv().await.unwrap();
            assert_eq!(
                *got,
                Update::AgentMoved {
                    agent_id: "agent-1".into(),
                    group: "lab".into()
                }
            );
            assert!(rx.try_recv().is_err());
        }
    }

    fn moved(agent: &str) -> Update {
        Update::AgentMoved {
            agent_id: agent.into(),
            group: "lab".into(),
        }
    }

    #[tokio::test]
    async fn over_the_bus_each_node_delivers_every_change_once() {
        let bus = Bus::in_process(&crate::bus::BusOptions::default());
        let (a, tasks_a) = Distribution::over_bus(bus.clone(), "node-a".into()).await;
        let (b, tasks_b) = Distribution::over_bus(bus, "node-b".into()).await;
        let mut on_a = a.subscribe();
        let mut on_b = b.subscribe();
        a.publish(moved("agent-1"));
        b.publish(moved("agent-2"));
        for rx in [&mut on_a, &mut on_b] {
            let mut got = Vec::new();
            for _ in 0..2 {
                let update = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                    .await
                    .unwrap()
                    .unwrap();
                got.push((*update).clone());
            }
            got.sort_by_key(|u| format!("{u:?}"));
            assert_eq!(got, vec![moved("agent-1"), moved("agent-2")]);
            // Nothing twice.
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(rx.try_recv().is_err());
        }
        for task in tasks_a.into_iter().chain(tasks_b) {
            task.abort();
        }
    }

    #[tokio::test]
    async fn commands_travel_on_the_commands_topic_and_reach_the_other_node() {
        let bus = Bus::in_process(&crate::bus::BusOptions::default());
        let mut commands = bus.subscribe(FanoutTopic::Commands).await;
        let mut policy_updates = bus.subscribe(FanoutTopic::PolicyUpdates).await;
        let (a, tasks_a) = Distribution::over_bus(bus.clone(), "node-a".into()).await;
        let (b, tasks_b) = Distribution::over_bus(bus, "node-b".into()).await;
        let mut on_b = b.subscribe();
        let isolate = Update::AgentIsolated {
            agent_id: "agent-1".into(),
        };
        a.publish(isolate.clone());
        let got = tokio::time::timeout(Duration::from_secs(5), on_b.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(*got, isolate);
        let raw = tokio::time::timeout(Duration::from_secs(5), commands.next())
            .await
            .unwrap()
            .unwrap();
        let envelope: Envelope = serde_json::from_slice(&raw).unwrap();
        assert_eq!(envelope.update, isolate);
        let quiet = tokio::time::timeout(Duration::from_millis(100), policy_updates.next()).await;
        assert!(quiet.is_err(), "a command went to the policy updates topic");
        for task in tasks_a.into_iter().chain(tasks_b) {
            task.abort();
        }
    }

    #[test]
    fn updates_travel_as_json_with_their_kind() {
        let envelope = Envelope {
            origin: "n".into(),
            update: Update::Resync,
        };
        let text = serde_json::to_string(&envelope).unwrap();
        assert_eq!(text, r#"{"origin":"n","update":{"kind":"resync"}}"#);
    }

    #[tokio::test]
    async fn after_losing_the_broker_every_stream_is_told_to_re_read() {
        let Ok(url) = std::env::var("PALISADE_TEST_AMQP_URL") else {
            eprintln!("skipped: set PALISADE_TEST_AMQP_URL to run this case on RabbitMQ");
            return;
        };
        let prefix = "palisade-test-distribution";
        let options = crate::bus::BusOptions {
            prefix: prefix.to_owned(),
            backoff_initial: Duration::from_millis(20),
            ..crate::bus::BusOptions::default()
        };
        let bus = Bus::connect(Some(&url), options).await.unwrap();
        let (hub, tasks) = Distribution::over_bus(bus.clone(), "node-a".into()).await;
        let mut rx = hub.subscribe();
        bus.drop_connection().await;
        let got = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                // Another run sharing the prefix may publish; only the resync matters here.
                let update = rx.recv().await.unwrap();
                if *update == Update::Resync {
                    return update;
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(*got, Update::Resync);
        // And updates flow again afterwards, through the bus, to the other nodes.
        let (other, other_tasks) = Distribution::over_bus(bus.clone(), "node-b".into()).await;
        let mut on_other = other.subscribe();
        hub.publish(moved("agent-9"));
        let got = tokio::time::timeout(Duration::from_secs(10), on_other.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(*got, moved("agent-9"));
        for task in tasks.into_iter().chain(other_tasks) {
            task.abort();
        }
        delete_topology(&url, prefix).await;
    }

    async fn delete_topology(url: &str, prefix: &str) {
        use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
        let properties = lapin::ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio::current());
        let connection = lapin::Connection::connect(url, properties).await.unwrap();
        let channel = connection.create_channel().await.unwrap();
        for topic in crate::bus::WorkTopic::ALL {
            let name = format!("{prefix}.{}", topic.name());
            channel
                .queue_delete(&name, QueueDeleteOptions::default())
                .await
                .unwrap();
        }
        for topic in FanoutTopic::ALL {
            let name = format!("{prefix}.{}", topic.name());
            channel
                .exchange_delete(&name, ExchangeDeleteOptions::default())
                .await
                .unwrap();
        }
        connection.close(200, "done").await.unwrap();
    }
}
