//! Interception: how the kernel hands the agent each new connection, and takes back the verdict.
//!
//! The interface is free of any operating system's types. On Linux, [`crate::netfilter`] installs
//! the agent's own firewall chains and [`crate::nfqueue`] serves the queues they feed; a Windows
//! agent would implement [`Interceptor`] over the Windows Filtering Platform (docs/windows.md).

use crate::flow::FlowKey;

/// What the agent does with a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Enforcement {
    /// Let it through; its later packets never reach the agent.
    Allow,
    /// Drop its packets silently.
    Drop,
    /// Refuse it: a TCP reset, or an ICMP "port unreachable" for other protocols.
    Reject,
}

/// Something the kernel holds until the agent has looked at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held<'a> {
    /// The first packet of a new connection: it waits for an [`Enforcement`].
    Connection(FlowKey),
    /// A DNS response on its way to an application (the DNS message, without any TCP length
    /// prefix): the agent learns names from it, and the response then goes on.
    DnsAnswer(&'a [u8]),
    /// A packet the agent could not read (counted; it is let through, or dropped when the
    /// policy fails closed).
    Unreadable,
}

/// A source of held packets. Each call of [`Interceptor::serve`] waits for one packet, asks
/// `decide` about it and applies the answer; several interceptors (one per kernel queue) may run
/// on their own threads.
pub trait Interceptor: Send {
    /// Waits for the next held packet and answers it.
    fn serve(
        &mut self,
        decide: &mut dyn FnMut(Held<'_>) -> Enforcement,
    ) -> Result<(), std::io::Error>;
}
