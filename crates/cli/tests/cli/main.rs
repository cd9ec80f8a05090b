//! The `palisade` binary as a user runs it: exit codes, messages and output formats.

// Test code may panic: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod agent;
mod analyze;
mod crash;
mod detect_beacons;
mod detect_dga;
mod detect_pipeline;
mod install;
mod lab;
mod nodes;
mod policy;
mod sensor;
mod server;
mod tshark;
