//! Packet and protocol decoders: what the agent, the network sensor and `palisade analyze` read
//! from the wire. Every decoder takes hostile bytes: it returns a value or an error that says
//! whether more bytes would help, and never panics.
//!
//! Layout:
//! - [`dns`]: DNS messages over UDP and TCP (queries, answers, name compression).
//! - [`http`]: HTTP/1.x request heads (method, host, path, user agent).
//! - [`reassembly`]: the first bytes of each direction of a TCP stream, in order.

pub mod dns;
pub mod http;
pub mod reassembly;
