//! Decision time per policy size: the compiled policy and the reference evaluator side by side.
//!
//! `cargo bench -p palisade-policy --bench decide`

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

mod synth;

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use jiff::Timestamp;
use palisade_policy::{CompiledPolicy, naive};

const SIZES: [usize; 4] = [10, 1_000, 10_000, 100_000];

fn decide(c: &mut Criterion) {
    let now = Timestamp::UNIX_EPOCH;
    let mut group = c.benchmark_group("decide");
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for rules in SIZES {
        let policy = synth::policy(rules);
        let compiled = CompiledPolicy::new(&policy);
        let conns = synth::connections(rules, 1024);
        let mut i = 0;
        group.bench_function(BenchmarkId::new("compiled", rules), |b| {
            b.iter(|| {
                i = (i + 1) & 1023;
                compiled.decide(black_box(&conns[i]), now)
            })
        });
        if rules > 10_000 {
            group.sample_size(10);
        }
        group.bench_function(BenchmarkId::new("naive", rules), |b| {
            b.iter(|| {
                i = (i + 1) & 1023;
                naive::decide(&policy, black_box(&conns[i]), now)
            })
        });
        group.sample_size(100);
    }
    group.finish();
}

criterion_group!(benches, decide);
criterion_main!(benches);
