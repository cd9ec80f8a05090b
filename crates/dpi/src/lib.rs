//! Packet and protocol decoders: what the agent, the network sensor and `palisade analyze` read
//! from the wire. Every decoder takes hostile bytes: it returns a value or an error that says
//! whether more bytes would help, and never panics.
//!
//! Layout:
//! - [`dns`]: DNS messages over UDP and TCP (queries, answers, name compression).
//! - [`tls`]: TLS ClientHello and ServerHello from the start of a stream, JA3 and JA4 fingerprints.

pub mod dns;
pub mod tls;
