//! The Palisade endpoint daemon: it holds every new connection in the kernel, finds the
//! process behind it and the domain it goes to, decides it with the compiled policy, records it
//! in a local spool, and sends the spool to its server. The simulated fleet runs its uplink too.
//!
//! Layout:
//! - [`conntrack`]: kernel connection tracking events (new and ended connections with their
//!   counters) over netlink.
//! - [`daemon`] (Linux): the running agent: queue threads, the recorder, the chains.
//! - [`decide`]: one connection to an enforcement and an event.
//! - [`dns_capture`] (Linux): DNS answers read by a filtered packet socket, for monitor mode.
//! - [`files`]: files only root may read.
//! - [`flow`]: the key that names a connection, free of any operating system's types.
//! - [`identity`]: the Linux process lookup: the socket by netlink `sock_diag`, its owner from a
//!   warm `/proc` index, the process's facts from a per-process cache.
//! - [`intercept`]: the [`intercept::Interceptor`] interface: held packets in, verdicts out.
//! - [`managed`] (Linux): a managed agent's policies, over its [`session`] with the server.
//! - [`names`]: the address → domain-name cache learned from DNS answers, TLS server names and
//!   HTTP hosts, so domain rules apply to connections made to addresses.
//! - `netlink`: netlink framing shared by the conntrack and NFLOG readers.
//! - [`netfilter`] (Linux): the agent's own firewall chains, installed and removed.
//! - [`nflog`]: copies of the first data packets of allowed outbound connections, which the
//!   kernel sends over netlink (NFLOG) without holding them.
//! - [`nfqueue`] (Linux): serving one NFQUEUE queue.
//! - [`open_flows`]: the recorded connections that have not ended, so that what is learned
//!   later (counters, server names) updates their events.
//! - [`packet`]: the outermost IP and transport headers of a raw packet.
//! - [`process`]: the application behind a connection and the [`process::ProcessLookup`]
//!   interface.
//! - [`server_name`]: the TLS server name or HTTP host in copies of a connection's first data
//!   packets.
//! - [`session`]: a managed endpoint's (agent's or sensor's) conversation with its server:
//!   heartbeats with its counters, the spool uploaded and acknowledged, the policy stream.
//! - [`spool`]: the durable local queue of connection events between enforcement and the
//!   uplink: checksummed segment files, a size bound, deletion on the server's acknowledgement.
//! - [`uplink`]: enrollment, the identity directory, and the mutual-TLS connection (heartbeats,
//!   the policy stream, event batches).

pub mod conntrack;
#[cfg(target_os = "linux")]
pub mod daemon;
pub mod decide;
#[cfg(target_os = "linux")]
pub mod dns_capture;
pub mod files;
pub mod flow;
pub mod identity;
pub mod intercept;
#[cfg(target_os = "linux")]
pub mod managed;
pub mod names;
#[cfg(target_os = "linux")]
pub mod netfilter;
mod netlink;
pub mod nflog;
#[cfg(target_os = "linux")]
pub mod nfqueue;
pub mod open_flows;
pub mod packet;
pub mod process;
pub mod server_name;
pub mod session;
pub mod spool;
pub mod uplink;
