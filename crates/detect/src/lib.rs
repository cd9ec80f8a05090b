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
//! - [`names`]: DNS names checked and split at their registrable domain (Public Suffix List).
//! - [`dns_tunnel`]: DNS tunnelling and exfiltration per (source, registrable domain): how
//!   many distinct, long, random subdomains, of which query types, how many bytes a minute.
//! - [`iforest`]: isolation forest (Liu, Ting and Zhou 2008), the anomaly score of a feature
//!   vector against the rows it was fitted on; serialisable, so models can be stored.
//! - [`dga`]: domain-generation-algorithm names: a character n-gram and lexical classifier
//!   of the registrable label, its shipped model, trainer and held-out-family evaluation.
//! - [`behaviour`]: per-application behaviour in five-minute windows, judged by isolation
//!   forests fitted on stored history; the model's trainer, evaluation and file format.
//! - [`model_file`]: the checked binary format models are stored in.
//! - [`metrics`]: how detectors are evaluated (ROC AUC, TPR at a set FPR).
//! - [`pipeline`]: the streaming pipeline the server, the evaluator and the Zeek import run:
//!   observations in, explained findings out.

pub mod beacon;
pub mod behaviour;
pub mod dga;
pub mod dns_tunnel;
pub mod iforest;
pub mod metrics;
pub mod model_file;
pub mod names;
pub mod pipeline;
pub mod zeek;
