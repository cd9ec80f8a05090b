//! Deciding one held connection: who is behind it, where it goes, what the policy says, and
//! the event that records it.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use jiff::Timestamp;
use palisade_policy::model::{Fail, Matcher};
use palisade_policy::{CompiledPolicy, Policy};
use palisade_proto::{Action, ConnectionEvent, Direction, Traffic, Verdict};

use crate::flow::FlowKey;
use crate::intercept::Enforcement;
use crate::names::NameCache;
use crate::process::ProcessLookup;

/// A policy ready to decide with.
pub struct ActivePolicy {
    /// The compiled rules.
    pub compiled: CompiledPolicy,
    /// Rule ids by position, for events.
    pub rule_ids: Vec<String>,
    /// The server's version number, when the agent is managed.
    pub version: Option<i64>,
    /// What the kernel does while the agent is away.
    pub fail: Fail,
    /// Whether some enabled rule is about inbound connections, so they must be held too.
    pub inbound: bool,
}

impl ActivePolicy {
    /// Compiles `policy`.
    pub fn new(policy: &Policy, version: Option<i64>) -> ActivePolicy {
        let inbound = policy.rules.iter().filter(|r| r.enabled).any(|r| {
            r.matchers.iter().any(
                |m| matches!(m, Matcher::Direction(directions) if directions.contains(&Direction::Inbound)),
            )
        });
        ActivePolicy {
            compiled: CompiledPolicy::new(policy),
            rule_ids: policy.rules.iter().map(|r| r.id.clone()).collect(),
            version,
            fail: policy.fail,
            inbound,
        }
    }
}

/// What every decider shares: the policy in force and the names learned from DNS.
pub struct Shared {
    /// The policy in force; none until the first one is loaded (then everything is allowed and
    /// recorded).
    pub policy: RwLock<Option<Arc<ActivePolicy>>>,
    /// Addresses to domain names.
    pub names: RwLock<NameCache>,
}

impl Shared {
    /// Shared state with an empty name cache of `names` addresses at most.
    pub fn new(names: usize) -> Shared {
        Shared {
            policy: RwLock::new(None),
            names: RwLock::new(NameCache::new(names)),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> Option<Arc<ActivePolicy>> {
        self.policy.read().ok().and_then(|p| p.clone())
    }

    /// Puts `policy` in force.
    pub fn set_policy(&self, policy: ActivePolicy) {
        if let Ok(mut slot) = self.policy.write() {
            *slot = Some(Arc::new(policy));
        }
    }
}

/// Decides connections for one interceptor thread.
pub struct Decider {
    shared: Arc<Shared>,
    lookup: Box<dyn ProcessLookup>,
    block: Enforcement,
    own_pid: u32,
}

impl Decider {
    /// A decider that blocks with `block` (drop or reject) and never holds back the agent's own
    /// connections (process `own_pid`).
    pub fn new(
        shared: Arc<Shared>,
        lookup: Box<dyn ProcessLookup>,
        block: Enforcement,
        own_pid: u32,
    ) -> Decider {
        Decider {
            shared,
            lookup,
            block,
            own_pid,
        }
    }

    /// Decides `flow` at `now`: what the kernel does, and the event to record (none for the
    /// agent's own connections).
    pub fn decide(
        &mut self,
        flow: &FlowKey,
        now: Timestamp,
    ) -> (Enforcement, Option<ConnectionEvent>) {
        let process = self.lookup.lookup(flow);
        if process.as_ref().is_some_and(|p| p.pid == self.own_pid) {
            return (Enforcement::Allow, None);
        }
        let now_ms = now.as_millisecond();
        let mut conn = flow.addresses();
        if let Some(p) = &process {
            p.fill(&mut conn);
        }
        conn.domain = self.name_of(flow.remote.ip(), now_ms);
        let conn = conn.normalize();
        let (action, verdict, rule, version) = match self.shared.policy() {
            Some(active) => {
                let decision = active.compiled.decide(&conn, now);
                let rule = decision.rule.and_then(|i| active.rule_ids.get(i)).cloned();
                (decision.action, decision.verdict, rule, active.version)
            }
            None => (Action::Allow, Verdict::Allow, None, None),
        };
        let enforcement = match verdict {
            Verdict::Allow => Enforcement::Allow,
            Verdict::Block => self.block,
        };
        let event = ConnectionEvent {
            seq: 0,
            time_ms: now_ms,
            connection: conn,
            pid: process.map(|p| p.pid),
            sni: None,
            http_host: None,
            action,
            verdict,
            rule,
            policy_version: version,
            update_of: None,
            traffic: Traffic::default(),
        };
        (enforcement, Some(event))
    }

    fn name_of(&self, ip: IpAddr, now_ms: i64) -> Option<String> {
        let names = self.shared.names.read().ok()?;
        names.name_of(ip, now_ms).map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> Policy {
        palisade_policy::load("p.yaml", yaml, &|_| Err("no files".to_owned()))
            .unwrap()
            .policy
    }

    #[test]
    fn inbound_connections_are_held_only_for_an_enabled_inbound_rule() {
        let head = "version: 1\nname: p\ndefault_action: allow\n";
        let none = policy(&format!(
            "{head}rules:\n  - id: out\n    action: block\n    match:\n      direction: outbound\n"
        ));
        assert!(!ActivePolicy::new(&none, None).inbound);
        let disabled = policy(&format!(
            "{head}rules:\n  - id: in\n    action: block\n    enabled: false\n    match:\n      direction: inbound\n"
        ));
        assert!(!ActivePolicy::new(&disabled, None).inbound);
        let inbound = policy(&format!(
            "{head}fail: closed\nrules:\n  - id: in\n    action: block\n    match:\n      direction: [inbound]\n"
        ));
        let active = ActivePolicy::new(&inbound, Some(4));
        assert!(active.inbound);
        assert_eq!(active.fail, Fail::Closed);
        assert_eq!(active.rule_ids, ["in"]);
        assert_eq!(active.version, Some(4));
    }
}
