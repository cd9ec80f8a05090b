//! Deciding one held connection: who is behind it, where it goes, what the policy says, and
//! the event that records it.

use std::collections::HashMap;
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

/// How long the retries of a blocked connection are blocked without another event. The kernel
/// forgets a connection whose first packet was dropped, so a client's retries (TCP sends its
/// SYN again after 1, 2, 4 ... s) come as new connections with the same addresses and ports.
const RETRIES_MS: i64 = 120_000;
/// Blocked connections remembered for their retries, per decider; forgotten all at once when
/// full.
const RECENT_BLOCKS: usize = 1_024;

/// Decides connections for one interceptor thread.
pub struct Decider {
    shared: Arc<Shared>,
    lookup: Box<dyn ProcessLookup>,
    block: Enforcement,
    own_pid: u32,
    /// Blocked flows and when, under `blocked_by`.
    recent_blocks: HashMap<FlowKey, i64>,
    blocked_by: Option<Arc<ActivePolicy>>,
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
            recent_blocks: HashMap::new(),
            blocked_by: None,
        }
    }

    /// Decides `flow` at `now`: what the kernel does, and the event to record (none for the
    /// agent's own connections, and none for a retry of a connection blocked within
    /// [`RETRIES_MS`] by the same policy).
    pub fn decide(
        &mut self,
        flow: &FlowKey,
        now: Timestamp,
    ) -> (Enforcement, Option<ConnectionEvent>) {
        let now_ms = now.as_millisecond();
        let policy = self.shared.policy();
        let same_policy = match (&policy, &self.blocked_by) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if !same_policy {
            self.recent_blocks.clear();
            self.blocked_by.clone_from(&policy);
        }
        if self
            .recent_blocks
            .get(flow)
            .is_some_and(|&at| now_ms.saturating_sub(at) < RETRIES_MS)
        {
            return (self.block, None);
        }
        let process = self.lookup.lookup(flow);
        if process.as_ref().is_some_and(|p| p.pid == self.own_pid) {
            return (Enforcement::Allow, None);
        }
        let mut conn = flow.addresses();
        if let Some(p) = &process {
            p.fill(&mut conn);
        }
        conn.domain = self.name_of(flow.remote.ip(), now_ms);
        let conn = conn.normalize();
        let (action, verdict, rule, version) = match policy {
            Some(active) => {
                let decision = active.compiled.decide(&conn, now);
                let rule = decision.rule.and_then(|i| active.rule_ids.get(i)).cloned();
                (decision.action, decision.verdict, rule, active.version)
            }
            None => (Action::Allow, Verdict::Allow, None, None),
        };
        let enforcement = match verdict {
            Verdict::Allow => Enforcement::Allow,
            Verdict::Block => {
                if self.recent_blocks.len() >= RECENT_BLOCKS {
                    self.recent_blocks.clear();
                }
                self.recent_blocks.insert(*flow, now_ms);
                self.block
            }
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
    use crate::process::Process;

    use super::*;

    fn policy(yaml: &str) -> Policy {
        palisade_policy::load("p.yaml", yaml, &|_| Err("no files".to_owned()))
            .unwrap()
            .policy
    }

    /// Every connection belongs to one process.
    struct Curl;

    impl ProcessLookup for Curl {
        fn lookup(&mut self, _: &FlowKey) -> Option<Arc<Process>> {
            Some(Arc::new(Process {
                pid: 42,
                exe: Some("/usr/bin/curl".into()),
                ..Process::default()
            }))
        }
    }

    fn flow(port: u16) -> FlowKey {
        FlowKey {
            protocol: palisade_proto::Protocol::Tcp,
            local: "10.0.0.2:40000".parse().unwrap(),
            remote: format!("192.0.2.1:{port}").parse().unwrap(),
            direction: Direction::Outbound,
        }
    }

    #[test]
    fn retries_of_a_blocked_connection_are_blocked_without_more_events() {
        let shared = Arc::new(Shared::new(16));
        let head = "version: 1\nname: p\ndefault_action: allow\n";
        let block_8080 = policy(&format!(
            "{head}rules:\n  - id: no-8080\n    action: block\n    match:\n      dst_port: 8080\n"
        ));
        shared.set_policy(ActivePolicy::new(&block_8080, None));
        let mut decider = Decider::new(shared.clone(), Box::new(Curl), Enforcement::Drop, 1);
        let t = |s: i64| Timestamp::from_second(1_700_000_000 + s).unwrap();

        let (first, event) = decider.decide(&flow(8080), t(0));
        assert_eq!(first, Enforcement::Drop);
        assert_eq!(event.unwrap().rule.as_deref(), Some("no-8080"));
        // SYN sent again after 1 s and 3 s: blocked, not recorded again.
        for retry in [1, 3] {
            assert_eq!(
                decider.decide(&flow(8080), t(retry)),
                (Enforcement::Drop, None)
            );
        }
        // Allowed connections are recorded every time.
        assert!(decider.decide(&flow(443), t(4)).1.is_some());
        assert!(decider.decide(&flow(443), t(5)).1.is_some());
        // Long after, the same addresses are a new connection.
        assert!(decider.decide(&flow(8080), t(200)).1.is_some());
        // A new policy decides again at once.
        shared.set_policy(ActivePolicy::new(&policy(head), None));
        let (allowed, event) = decider.decide(&flow(8080), t(201));
        assert_eq!(allowed, Enforcement::Allow);
        assert!(event.is_some());
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
