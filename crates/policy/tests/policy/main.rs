//! Integration tests of the policy language through its public API. One test binary with a
//! module per concern (see STYLE.md: every file directly in `tests/` links a separate binary).

mod equivalence;
mod examples;
mod generate;
mod invalid;
mod roundtrip;
mod support;
