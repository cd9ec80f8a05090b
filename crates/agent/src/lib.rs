//! The Palisade endpoint daemon. It will hold interception, process identity, the DNS cache,
//! enforcement, the spool and the updater; for now it holds the uplink to the central server,
//! which the simulated fleet runs too.
//!
//! Layout:
//! - [`uplink`]: enrollment, the identity directory, and the mutual-TLS connection (heartbeats,
//!   the policy stream, event batches).

pub mod uplink;
