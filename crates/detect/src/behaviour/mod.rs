//! Per-application behaviour: what an application does on an agent in each five-minute window
//! (connections, DNS queries, distinct addresses, domains and ports, inbound connections, bytes
//! each way), judged by an isolation forest fitted on that application's stored history, or the
//! fleet's when it has too little of its own.
//!
//! - [`window`]: the features of a window, the same whatever order its events came in.
//! - [`model`]: the fitted model, its judgements (score, threshold, the features furthest from
//!   their baseline) and its file format.
//! - [`training`]: fitting on history, evaluating on held-out windows with synthetic anomalies,
//!   and whether a candidate replaces the current model.
//!
//! The server's trainer fits it on stored events and the pipeline's `app_behaviour` detector
//! judges each window as it closes.

pub mod model;
pub mod training;
pub mod window;

pub use model::{Basis, Driver, Judgement, Model};
pub use training::{Candidate, Evaluation, TrainError, TrainSettings, evaluate, fit, train};
pub use window::{FEATURES, Features, WINDOW_MS, Window, WindowCounts, Windows};

#[cfg(test)]
mod tests;
