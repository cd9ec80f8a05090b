//! Running a policy's embedded test cases.

use jiff::Timestamp;

use crate::Decision;
use crate::compile::CompiledPolicy;
use crate::model::Policy;

/// The outcome of one embedded test case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The case's name, or `tests[N]` when it has none.
    pub name: String,
    /// Line of the case in the document.
    pub line: u32,
    /// Whether the decision was the expected one.
    pub passed: bool,
    /// What the policy decided.
    pub decision: Decision,
    /// Expected and actual action and rule, in words.
    pub detail: String,
}

/// Decides every test case with the compiled policy; cases without `at` are decided at `now`.
pub fn run(policy: &Policy, compiled: &CompiledPolicy, now: Timestamp) -> Vec<CaseResult> {
    policy
        .tests
        .iter()
        .enumerate()
        .map(|(i, case)| {
            let conn = case.conn.clone().normalize();
            let decision = compiled.decide(&conn, case.at.unwrap_or(now));
            let decided_rule = decision
                .rule
                .and_then(|r| policy.rules.get(r))
                .map(|r| r.id.as_str());
            let rule_ok = case
                .rule
                .as_deref()
                .is_none_or(|want| decided_rule == Some(want));
            let passed = decision.action == case.expect && rule_ok;
            let by = decided_rule.map_or_else(
                || "the default action".to_owned(),
                |id| format!("rule {id:?}"),
            );
            let wanted_rule = case
                .rule
                .as_deref()
                .map(|r| format!(" by rule {r:?}"))
                .unwrap_or_default();
            let detail = format!(
                "expected {}{wanted_rule}, got {} by {by}",
                case.expect, decision.action
            );
            CaseResult {
                name: case.name.clone().unwrap_or_else(|| format!("tests[{i}]")),
                line: case.line,
                passed,
                decision,
                detail,
            }
        })
        .collect()
}
