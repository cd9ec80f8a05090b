//! Packet and protocol decoders: what the agent, the network sensor and `palisade analyze` read
//! from the wire. Every decoder takes hostile bytes: it returns a value or an error that says
//! whether more bytes would help, and never panics.
//!
//! Layout:
//! - [`dns`]: DNS messages over UDP and TCP (queries, answers, name compression).
//! - [`http`]: HTTP/1.x request heads (method, host, path, user agent).
//! - [`reassembly`]: the first bytes of each direction of a TCP stream, in order.
//! - [`record`]: the flow record, as written by `palisade analyze` and `palisade sensor`.
//! - [`flow`]: the flow table (5-tuple flows, counters, TCP state, timeouts, eviction).
//! - `inspect`: per-flow content inspection (protocol recognition, calling the decoders).
//! - [`analyzer`]: frames in, flow records out.
//! - [`counters`]: counts by reason, for everything skipped or refused.
//! - [`quic`]: QUIC v1 client Initial packets, decrypted and reassembled into the TLS ClientHello.

pub mod analyzer;
pub mod counters;
pub mod dns;
pub mod flow;
pub mod http;
mod inspect;
pub mod quic;
pub mod reassembly;
pub mod record;
