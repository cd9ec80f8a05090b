//! Packet and protocol decoders: what the agent, the network sensor and `palisade analyze` read
//! from the wire. Every decoder takes hostile bytes: it returns a value or an error that says
//! whether more bytes would help, and never panics.
//!
//! Layout:
//! - [`capture`]: pcap and pcapng files, streamed frame by frame from any reader.
//! - [`packet`]: link, network and transport layers and tunnels, from a frame to its innermost
//!   IP packet, without copying.
//! - [`reassembly`]: the first bytes of each direction of a TCP stream, in order.
//! - [`dns`]: DNS messages over UDP and TCP (queries, answers, name compression).
//! - [`http`]: HTTP/1.x request heads (method, host, path, user agent).
//! - [`tls`]: TLS ClientHello and ServerHello; JA3 and JA4 (client) fingerprints.
//! - [`quic`]: QUIC v1 client Initial packets, decrypted and reassembled into the TLS ClientHello.
//! - [`socks`]: SOCKS4/4a/5 handshakes, skipped to read the proxied stream.
//! - [`dhcp`]: DHCPv4 messages (device MAC, host name, address).
//! - [`devices`]: devices on the local network (MAC, address, host name from DHCP and mDNS),
//!   learned from decoded packets, for the network sensor.
//! - `inspect`: per-flow content inspection (protocol recognition, calling the decoders).
//! - [`record`]: the flow record, as written by `palisade analyze` and `palisade sensor`.
//! - [`flow`]: the flow table (5-tuple flows, counters, TCP state, timeouts, eviction).
//! - [`analyzer`]: frames in, flow records out (and decoded packets, for device learning).
//! - [`counters`]: counts by reason, for everything skipped or refused.

pub mod analyzer;
pub mod capture;
pub mod counters;
pub mod devices;
pub mod dhcp;
pub mod dns;
pub mod flow;
pub mod http;
mod inspect;
pub mod packet;
pub mod quic;
pub mod reassembly;
pub mod record;
pub mod socks;
pub mod tls;
