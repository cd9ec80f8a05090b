//! The compiled policy decides exactly as the reference evaluator, for random policies and
//! connections (10,000 policies, each with 16 connections at 3 instants).

use palisade_policy::{CompiledPolicy, naive};
use proptest::prelude::*;

use crate::generate;
use crate::support::load_ok;

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    #[test]
    fn compiled_equals_naive(
        doc in generate::policy(),
        conns in prop::collection::vec(generate::connection(), 16),
    ) {
        let loaded = load_ok("generated.json", &doc.to_string());
        let compiled = CompiledPolicy::new(&loaded.policy);
        for conn in &conns {
            let conn = palisade_policy::parse_connection("conn", &conn.to_string()).unwrap();
            for now in generate::instants() {
                let fast = compiled.decide(&conn, now);
                let slow = naive::decide(&loaded.policy, &conn, now);
                prop_assert_eq!(fast, slow, "connection {:?} at {}", conn, now);
            }
        }
    }
}

#[test]
fn generated_policies_reach_rules_and_defaults() {
    // Guards the generator: if connections never met rules the property above would prove
    // little. Over a fixed sample, both rule decisions and default decisions must be common.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut by_rule, mut by_default) = (0, 0);
    for _ in 0..200 {
        let doc = generate::policy().new_tree(&mut runner).unwrap().current();
        let conn = generate::connection()
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let loaded = load_ok("generated.json", &doc.to_string());
        let conn = palisade_policy::parse_connection("conn", &conn.to_string()).unwrap();
        let decision = naive::decide(&loaded.policy, &conn, generate::instants()[0]);
        if decision.rule.is_some() {
            by_rule += 1
        } else {
            by_default += 1
        }
    }
    assert!(
        by_rule > 20 && by_default > 20,
        "by rule {by_rule}, by default {by_default}"
    );
}
