//! The key that names one connection on an endpoint, free of any operating system's types so
//! that every interceptor (netfilter here, the Windows Filtering Platform later) speaks it.

use std::net::SocketAddr;

use palisade_proto::{Connection, Direction, Protocol};

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

impl FlowKey {
    /// The connection's addresses in the policy language's terms: from the side that opened it
    /// to the side that accepted it (no ports for ICMP).
    pub fn addresses(&self) -> Connection {
        let (src, dst) = match self.direction {
            Direction::Outbound => (self.local, self.remote),
            Direction::Inbound => (self.remote, self.local),
        };
        let ports = self.protocol != Protocol::Icmp;
        Connection {
            src_ip: Some(src.ip()),
            src_port: ports.then_some(src.port()),
            dst_ip: Some(dst.ip()),
            dst_port: ports.then_some(dst.port()),
            protocol: Some(self.protocol),
            direction: self.direction,
            ..Connection::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(protocol: Protocol, direction: Direction) -> FlowKey {
        FlowKey {
            protocol,
            local: "10.0.0.2:40000".parse::<SocketAddr>().unwrap(),
            remote: "93.184.216.34:443".parse::<SocketAddr>().unwrap(),
            direction,
        }
    }

    #[test]
    fn an_outbound_connection_goes_from_here_and_an_inbound_one_comes_to_here() {
        let out = flow(Protocol::Tcp, Direction::Outbound).addresses();
        assert_eq!(out.src_ip, Some("10.0.0.2".parse().unwrap()));
        assert_eq!((out.src_port, out.dst_port), (Some(40000), Some(443)));
        let inbound = flow(Protocol::Tcp, Direction::Inbound).addresses();
        assert_eq!(inbound.src_ip, Some("93.184.216.34".parse().unwrap()));
        assert_eq!(inbound.dst_ip, Some("10.0.0.2".parse().unwrap()));
        assert_eq!(
            (inbound.src_port, inbound.dst_port),
            (Some(443), Some(40000))
        );
        let icmp = flow(Protocol::Icmp, Direction::Outbound).addresses();
        assert_eq!((icmp.src_port, icmp.dst_port), (None, None));
    }
}
