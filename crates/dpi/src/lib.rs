//! Packet and protocol decoders: what the agent, the network sensor and `palisade analyze` read
//! from the wire. Every decoder takes hostile bytes: it returns a value or an error that says
//! whether more bytes would help, and never panics.
//!
//! Layout:
//! - [`dns`]: DNS messages over UDP and TCP (queries, answers, name compression).
//! - [`quic`]: QUIC v1 client Initial packets, decrypted and reassembled into the TLS ClientHello.

pub mod dns;
pub mod quic;
