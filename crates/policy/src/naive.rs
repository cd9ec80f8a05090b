//! The reference evaluator: every enabled rule in order, every matcher value by value.
//!
//! Slow on purpose and obviously right; the compiled policy must always agree with it.

use jiff::Timestamp;
use palisade_proto::Connection;

use crate::Decision;
use crate::model::{Policy, Rule};

/// Decides `conn` by checking the rules one by one.
pub fn decide(policy: &Policy, conn: &Connection, now: Timestamp) -> Decision {
    let found = policy
        .rules
        .iter()
        .position(|rule| rule_matches(policy, rule, conn, now));
    let action = found
        .and_then(|i| policy.rules.get(i))
        .map_or(policy.default_action, |r| r.action);
    Decision {
        action,
        rule: found,
        verdict: policy.mode.verdict(action),
    }
}

/// Whether `rule` is enabled, in its schedule, and all its conditions hold for `conn`.
pub fn rule_matches(policy: &Policy, rule: &Rule, conn: &Connection, now: Timestamp) -> bool {
    rule.enabled
        && rule.schedule.as_ref().is_none_or(|s| s.is_active(now))
        && rule.matchers.iter().all(|m| m.matches(conn, &policy.lists))
        && rule.when.as_ref().is_none_or(|c| c.holds(conn))
}
