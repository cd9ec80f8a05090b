//! Decides many connections in a plain loop, for instruction counting under callgrind (which
//! counts the same on a busy machine as on an idle one, unlike wall-clock time).
//!
//! `cargo bench -p palisade-policy --bench decide_loop -- RULES DECISIONS`; see
//! docs/benchmarks.md for the callgrind invocation. With DECISIONS = 0 it only builds the policy,
//! so the difference of two runs is the cost of the decisions alone.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::disallowed_methods
)]

mod synth;

use std::hint::black_box;
use std::time::Instant;

use jiff::Timestamp;
use palisade_policy::CompiledPolicy;

fn main() {
    let numbers: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (rules, decisions) = match numbers.as_slice() {
        [rules, decisions] => (*rules, *decisions),
        _ => (100_000, 1_000_000),
    };
    let policy = synth::policy(rules);
    let compiled = CompiledPolicy::new(&policy);
    let conns = synth::connections(rules, 1024);
    let start = Instant::now();
    let mut blocked = 0usize;
    for i in 0..decisions {
        let decision = compiled.decide(black_box(&conns[i & 1023]), Timestamp::UNIX_EPOCH);
        blocked += usize::from(decision.verdict == palisade_proto::Verdict::Block);
    }
    let per = start.elapsed().as_nanos() as f64 / decisions.max(1) as f64;
    println!("{rules} rules: {decisions} decisions, {per:.0} ns each, {blocked} blocked");
}
