//! Detection for Palisade: detectors over connection records, each score with its explanation
//! (which figures, how far from what a benign host does), and the readers of the logs they run on.
//! Pure code: no network, no storage, no clock (time comes in with the records).
//!
//! Layout:
//! - [`zeek`]: Zeek conn, dns, ssl and http logs (TSV or JSON lines, plain or gzip, dated
//!   folders) into typed records; bad lines counted and skipped with a reason.
//! - [`beacon`]: RITA-style beacon scoring per (source, destination) pair, the destination
//!   as a name (HTTP host, TLS server name) or an address, from Zeek logs or any stream of
//!   connection observations.

pub mod beacon;
pub mod zeek;
