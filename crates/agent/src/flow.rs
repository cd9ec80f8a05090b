//! The key that names one connection on an endpoint, free of any operating system's types so
//! that every interceptor (netfilter here, the Windows Filtering Platform later) speaks it.

use std::net::SocketAddr;

use palisade_proto::{Direction, Protocol};

/// One connection as the endpoint sees it: its transport, both ends and who opened it.
///
/// `local` is this host's end and `remote` the peer's, whatever the direction; for ICMP both
/// ports are 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Transport protocol.
    pub protocol: Protocol,
    /// This host's address and port.
    pub local: SocketAddr,
    /// The peer's address and port.
    pub remote: SocketAddr,
    /// Whether this host opened the connection.
    pub direction: Direction,
}
