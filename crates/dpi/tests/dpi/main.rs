//! Integration tests of `palisade-dpi`: one test binary for the crate, one module per subject.

// Test code may panic: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod corpus;
mod ja4;

use std::path::{Path, PathBuf};

/// The shared captures, beside the checkout.
const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/corpus/pcap");

/// The corpus folder, or `None` (and a note) when it is absent. CI sets `PALISADE_CORPUS_TESTS=1`,
/// and then an absent corpus is a failure rather than a skip.
fn corpus() -> Option<PathBuf> {
    let dir = Path::new(CORPUS);
    if dir.is_dir() {
        Some(dir.to_path_buf())
    } else if std::env::var_os("PALISADE_CORPUS_TESTS").is_some_and(|v| v == "1") {
        panic!("PALISADE_CORPUS_TESTS=1 but the corpus is not at {CORPUS}");
    } else {
        println!("skipped: corpus not found at {CORPUS}");
        None
    }
}
