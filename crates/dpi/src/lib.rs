//! Packet and protocol decoders: what the agent, the network sensor and `palisade analyze` read
//! from the wire. Every decoder takes hostile bytes: it returns a value or an error that says
//! whether more bytes would help, and never panics.
//!
//! Layout:
//! - [`capture`]: pcap and pcapng files, streamed frame by frame from any reader.
//! - [`packet`]: link, network and transport layers and tunnels, from a frame to its innermost
//!   IP packet, without copying.
//! - [`dns`]: DNS messages over UDP and TCP (queries, answers, name compression).

pub mod capture;
pub mod dns;
pub mod packet;
