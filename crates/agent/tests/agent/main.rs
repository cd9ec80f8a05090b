//! Integration tests of the agent, one binary for the crate.

// Test helpers fail the test by panicking, as the tests themselves do.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[cfg(target_os = "linux")]
mod identity;
