//! Integration tests of the policy language through its public API. One test binary with a
//! module per concern (see STYLE.md: every file directly in `tests/` links a separate binary).

// Test code may panic: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod docs;
mod equivalence;
mod examples;
mod generate;
mod invalid;
mod roundtrip;
mod support;
