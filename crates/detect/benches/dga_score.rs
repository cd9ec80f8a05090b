//! Scoring time of the shipped DGA model: every name of the corpus's benign list (100k names,
//! or synthetic names when the corpus is not beside the repository), five passes, in a plain
//! loop; prints nanoseconds per name.
//!
//! `cargo bench -p palisade-detect --bench dga_score`

#![allow(missing_docs, clippy::unwrap_used, clippy::disallowed_methods)]

use std::hint::black_box;
use std::time::Instant;

use palisade_detect::dga::Model;

const BENIGN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/corpus/domains/benign.txt"
);

fn main() {
    let names: Vec<String> = match std::fs::read_to_string(BENIGN) {
        Ok(text) => text.lines().map(str::to_owned).collect(),
        Err(_) => (0..100_000u32)
            .map(|i| format!("host{}.example{}.com", i % 97, i))
            .collect(),
    };
    let model = Model::shipped();
    let mut total = 0.0;
    for name in &names {
        total += model.score(name);
    }
    let passes = 5;
    let started = Instant::now();
    for _ in 0..passes {
        for name in &names {
            total += model.score(black_box(name));
        }
    }
    let elapsed = started.elapsed();
    let per_name = elapsed.as_nanos() as f64 / (passes * names.len()) as f64;
    println!(
        "{} names x {passes}: {per_name:.0} ns per name (checksum {total:.3})",
        names.len()
    );
}
