//! The Palisade central node: it keeps users, API tokens and policies (each change an immutable
//! version, validated by the policy engine before it is accepted), writes every change to a
//! hash-chained audit log, and serves the REST API. Storage is SQLite by default (one file in the
//! data directory) or PostgreSQL. Services know nothing of HTTP; the web layer only extracts,
//! calls a service and maps the error. The clock is passed in ([`Clock`]), never read here.
//!
//! Layout:
//! - [`store`]: the database (SQLite or PostgreSQL), migrations and every query.
//! - [`role`]: roles and what each may do.
//! - [`credentials`]: passwords (argon2id), API tokens and their hashes, random secrets.
//! - [`audit`]: the audit log's hash chain, its verification, and reading the log.
//! - [`auth`]: authentication by API token, and the token service (create, list, revoke).
//! - [`signin`]: console sign-in (password, then TOTP), sessions, and the user service.
//! - [`oidc`]: single sign-on to the console with an OpenID Connect provider.
//! - [`totp`]: time-based one-time passwords (RFC 6238).
//! - [`dashboard`]: the fleet at a glance: agents, traffic per minute, top applications and
//!   blocked destinations, open alerts.
//! - [`console`]: the web console (server-rendered pages over the same services as the API).
//! - [`error`]: what services refuse or fail with.
//! - [`alerts`]: the alert service: raise (merging repeats), list, acknowledge, resolve, assign.
//! - [`policies`]: the policy service: validate with the engine, store a new version, audit it,
//!   validate without storing, diff two versions.
//! - [`events`]: connection events: ingest batches exactly once, query, export, retention.
//! - [`retention`]: the timer that applies event retention on every node.
//! - [`checkpoint`]: the timer that copies SQLite's write-ahead log into the database file.
//! - [`simulate`]: replay a candidate policy over stored events, per application.
//! - [`agents`]: agents, groups and policy assignment; heartbeats and online/offline.
//! - [`enrollment`]: enrollment tokens and enrolling an agent.
//! - [`ca`]: the internal certificate authority (agent and gateway certificates).
//! - [`distribution`]: in-process fan-out of policy updates to the agents' streams.
//! - [`isolation`]: the policy the server generates for an isolated agent.
//! - [`detection`]: the detection pipeline over every stored event, and the alerts it raises.
//! - [`training`]: the timer that trains the behaviour model on stored events and promotes it
//!   when it evaluates at least as well as the current one.
//! - [`watchdog`]: the task that raises (and resolves) `agent_offline` alerts.
//! - [`gateway`]: the agent gateway (gRPC over mutual TLS).
//! - [`ingest`]: the way of event batches from the gateway to storage: grouped commits,
//!   backpressure, and the bus's work topic when several nodes share the work.
//! - [`bus`]: the message bus between parts and nodes: in-process, or RabbitMQ for several nodes.
//! - [`bootstrap`]: what the first start creates (the admin, its password file, a bootstrap token).
//! - [`metrics`]: request counters and the Prometheus text.
//! - [`http`]: the axum router, bearer-token authentication and the one error-to-status mapping.
//! - [`settings`]: what an operator sets: defaults, a TOML file, `PALISADE_*` variables.
//! - [`stored_settings`]: what people change at run time through the API, kept in the
//!   database (event retention).
//! - [`server`]: starting the whole node (HTTP and the agent gateway) and stopping it.

pub mod agents;
pub mod alerts;
pub mod audit;
pub mod auth;
pub mod bootstrap;
pub mod bus;
pub mod ca;
pub mod checkpoint;
pub mod console;
pub mod credentials;
pub mod dashboard;
pub mod detection;
pub mod distribution;
pub mod enrollment;
pub mod error;
pub mod events;
pub mod gateway;
pub mod http;
pub mod https;
pub mod ingest;
pub mod isolation;
pub mod metrics;
pub mod oidc;
pub mod policies;
pub mod retention;
pub mod role;
pub mod server;
pub mod settings;
pub mod signin;
pub mod simulate;
pub mod store;
pub mod stored_settings;
pub mod totp;
pub mod training;
pub mod watchdog;

use std::sync::Arc;

use jiff::Timestamp;

pub use error::Error;
pub use role::Role;
pub use server::{Config, Database, RunningServer, StartError, start};
pub use store::{Store, StoreError};

/// The source of the current time, read at the edge (the binary) and passed in.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;
