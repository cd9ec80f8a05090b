//! The Palisade endpoint daemon. It will hold interception, process identity, the DNS cache,
//! enforcement, the spool and the updater; for now it holds the uplink to the central server,
//! which the simulated fleet runs too.
//!
//! Layout:
//! - [`conntrack`]: kernel connection tracking events (new and ended connections with their
//!   counters) over netlink.
//! - [`flow`]: the key that names a connection, free of any operating system's types.
//! - [`identity`]: the Linux process lookup: the socket by netlink `sock_diag`, its owner from a
//!   warm `/proc` index, the process's facts from a per-process cache.
//! - [`names`]: the address → domain-name cache learned from DNS answers, TLS server names and
//!   HTTP hosts, so domain rules apply to connections made to addresses.
//! - [`process`]: the application behind a connection and the [`process::ProcessLookup`]
//!   interface.
//! - [`spool`]: the durable local queue of connection events between enforcement and the
//!   uplink: checksummed segment files, a size bound, deletion on the server's acknowledgement.
//! - [`uplink`]: enrollment, the identity directory, and the mutual-TLS connection (heartbeats,
//!   the policy stream, event batches).

pub mod conntrack;
pub mod flow;
pub mod identity;
pub mod names;
pub mod process;
pub mod spool;
pub mod uplink;
