//! Integration tests of `palisade-dpi`: one test binary for the crate, one module per subject.

// Test code may panic: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod corpus;
