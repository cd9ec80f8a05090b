//! Policy distribution inside one node: "this is now the policy of group G", "agent A moved",
//! "agent A was revoked", delivered at once to every open `Policies` stream.
//!
//! A small interface on purpose ([`Distribution::publish`], [`Distribution::subscribe`]) so that
//! updates can later be routed through the bus to every node; here it is an in-process
//! broadcast. A stream that falls behind by more than the channel holds is told so (`Lagged`)
//! and re-reads its agent's current policy from the store instead of missing a change.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::store::PolicyVersion;

/// How many updates a slow stream may fall behind before it resynchronises from the store.
pub const CAPACITY: usize = 1024;

/// One change that open streams must hear of.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

/// The in-process fan-out of [`Update`]s.
#[derive(Debug, Clone)]
pub struct Distribution {
    sender: broadcast::Sender<Arc<Update>>,
}

impl Default for Distribution {
    fn default() -> Self {
        Distribution {
            sender: broadcast::channel(CAPACITY).0,
        }
    }
}

impl Distribution {
    /// Delivers `update` to every current subscriber (none is fine).
    pub fn publish(&self, update: Update) {
        // An error only means nobody is listening.
        let _ = self.sender.send(Arc::new(update));
    }

    /// Every update published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Update>> {
        self.sender.subscribe()
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
}
