//! Copies of packets that the kernel logs to an NFLOG group: the agent reads the first data
//! packets of allowed outbound TCP connections this way, to learn the TLS server name or HTTP
//! host each one asks for (see [`crate::server_name`]).
//!
//! Unlike a queue, NFLOG does not hold the packet: the kernel copies its first bytes (up to
//! [`COPY_LEN`]) to the netlink group and lets it go on, so reading names adds no latency to a
//! connection. A copy can be lost (a full socket buffer, counted as an overflow); the connection
//! is unaffected, it only goes unnamed.
//!
//! [`parse`] reads the messages of one netlink datagram and works on any platform; the socket
//! ([`Listener`]) exists on Linux only.

#[cfg(target_os = "linux")]
mod listener;
mod parse;

#[cfg(target_os = "linux")]
pub use listener::{Listener, RECV_BUFFER_LEN};
pub use parse::{NflogError, parse};

/// How many bytes of each logged packet the kernel copies, IP header included: the rule's
/// `--nflog-size` and the group's copy range. Enough for the IP and TCP headers and a
/// ClientHello of ordinary size; a longer packet is cut here.
pub const COPY_LEN: u16 = 4096;
