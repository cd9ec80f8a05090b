//! Load time, compile time and memory per rule for each policy size; prints a Markdown table.
//!
//! `cargo bench -p palisade-policy --bench scale`

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::disallowed_methods
)]

#[allow(dead_code)] // shared with the other benches, which use the rest
mod synth;

use std::alloc::System;
use std::time::{Duration, Instant};

use palisade_policy::{CompiledPolicy, decode, lint, source};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn live_bytes(region: &Region<'_, System>) -> isize {
    let stats = region.change();
    stats.bytes_allocated as isize - stats.bytes_deallocated as isize
}

fn main() {
    // Ignore the arguments `cargo bench` passes (e.g. `--bench`).
    println!(
        "| rules | document | parse + validate | shadow check | compile (median of 5) | compiled bytes/rule | model bytes/rule |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for rules in [10, 1_000, 10_000, 100_000] {
        let text = synth::policy_text(rules);
        let no_files = |_: &str| Err("no files".to_owned());

        let start = Instant::now();
        let model_region = Region::new(GLOBAL);
        let tree = source::parse(&text, source::Format::Json).unwrap();
        let policy = decode::policy("synthetic.json", &tree, &no_files).unwrap();
        drop(tree);
        let model_bytes = live_bytes(&model_region);
        let parse = start.elapsed();

        let start = Instant::now();
        let warnings = lint::shadowed_rules(&policy, "synthetic.json");
        let shadow = start.elapsed();
        assert!(
            warnings.is_empty(),
            "synthetic policy has shadowed rules: {:?}",
            warnings.first()
        );

        let mut times = Vec::new();
        let mut compiled_bytes = 0;
        for _ in 0..5 {
            let region = Region::new(GLOBAL);
            let start = Instant::now();
            let compiled = CompiledPolicy::new(&policy);
            times.push(start.elapsed());
            compiled_bytes = live_bytes(&region);
            drop(compiled);
        }
        println!(
            "| {rules} | {:.1} MB | {:.0} ms | {:.0} ms | {:.1} ms | {} | {} |",
            text.len() as f64 / 1e6,
            parse.as_secs_f64() * 1e3,
            shadow.as_secs_f64() * 1e3,
            median(times).as_secs_f64() * 1e3,
            compiled_bytes / rules as isize,
            model_bytes / rules as isize,
        );
    }
}
