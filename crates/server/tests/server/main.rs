//! Integration tests of the server: the real node on port 0 with a throwaway data directory,
//! driven over HTTP the way a user or script would. Every case runs on SQLite with the in-process
//! bus, and on PostgreSQL when `PALISADE_TEST_DATABASE_URL` is set (each run in a fresh schema
//! that is dropped afterwards), with RabbitMQ when `PALISADE_TEST_AMQP_URL` is set too (queues
//! and exchanges of its own, deleted afterwards).
//!
//! Layout:
//! - `helpers`: `spawn_server()`, the typed client, the throwaway PostgreSQL schema.
//! - `api`: health, readiness, metrics, authentication and roles, policies, the audit chain.
//! - `gateway`: the agent gateway through the real agent client: enrollment, certificates,
//!   heartbeats, policy distribution, and the REST routes for agents, groups and tokens.
//! - `events`: connection events (ingest, filters, cursor, exports, retention) and policy
//!   validate, diff and simulate.
//! - `alerts`: raising, merging and working alerts.
//! - `detection`: events an agent reports become explained alerts, once per behaviour.
//! - `tokens`: API tokens: expiry, listing without secrets, revocation, who may manage them.
//! - `settings`: settings stored in the database, and the retention timer that applies
//!   `events.retention_days`.
//! - `isolation`: isolating and releasing agents, through the real agent client and the
//!   simulated endpoint.
//! - `offline`: the watchdog's `agent_offline` alert.
//! - `openapi`: the OpenAPI document matches the routes that are served.
//! - `rollups`: the event roll-ups agree with the events after re-sent batches and retention;
//!   rule hits per policy.
//! - `browser`: the console in a real headless Chromium (with `PALISADE_BROWSER_TESTS=1`).
//! - `console`: the web console: sign-in with password and TOTP, lockout, CSRF, security
//!   headers, every page with every role.
//! - `alert_pages`, `admin_pages`: the console's alert pages (filters, explanation, working an
//!   alert), and its API token, enrollment token and settings pages.
//! - `endpoint_pages`: the console's endpoint page: applications and destinations, recent
//!   connections, alerts, and the actions isolate, release, move and revoke.
//! - `policy_pages`: the console's policy pages: editor (validate, dry run, save), versions,
//!   diff, export, import, assignment, and what a viewer may not do.
//! - `https`: HTTPS on the HTTP address, with a certificate from the internal CA or the
//!   operator's files, and `Secure` cookies.
//! - `user_pages`: managing users in the console and the API (role, password, second factor,
//!   lockout, removal, never the last admin) and the audit log's filters.
//! - `live_dashboard`: the dashboard's figures over Server-Sent Events.
//! - `oidc`: single sign-on with OpenID Connect, against a provider inside the tests that can
//!   misbehave and (with `PALISADE_OIDC_TESTS=1`) the real `oidc-provider-mock` process.
//! - `bus`: the message bus, in-process and (with `PALISADE_TEST_AMQP_URL`) on RabbitMQ.

// Test code may panic: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[macro_use]
mod helpers;

mod admin_pages;
mod alert_pages;
mod alerts;
mod api;
mod browser;
mod bus;
mod console;
mod detection;
mod endpoint_pages;
mod events;
mod gateway;
mod https;
mod isolation;
mod live_dashboard;
mod offline;
mod oidc;
mod openapi;
mod policy_pages;
mod rollups;
mod settings;
mod tokens;
mod user_pages;
