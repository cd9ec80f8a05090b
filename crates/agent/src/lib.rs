//! The Palisade endpoint daemon. It will hold interception, process identity, the DNS cache,
//! enforcement, the spool and the updater; for now it holds the uplink to the central server,
//! which the simulated fleet runs too.
//!
//! Layout:
//! - [`flow`]: the key that names a connection, free of any operating system's types.
//! - [`names`]: the address → domain-name cache learned from DNS answers, TLS server names and
//!   HTTP hosts, so domain rules apply to connections made to addresses.
//! - [`process`]: the application behind a connection and the [`process::ProcessLookup`]
//!   interface.
//! - [`uplink`]: enrollment, the identity directory, and the mutual-TLS connection (heartbeats,
//!   the policy stream, event batches).

pub mod flow;
pub mod names;
pub mod process;
pub mod uplink;
