//! Wire and API types shared by every part of Palisade.
//!
//! The agent, the server, the console and the offline tools all speak about the same things: a
//! connection with the application behind it, and the action a policy decides for it. Those types
//! live here so that every part agrees on their names and their JSON form.
//!
//! Layout:
//! - [`connection`]: the facts about one connection that a policy can match on.
//! - [`action`]: what a policy decides (`allow`, `block`, `alert`, `log`) and how it is enforced.
//! - [`event`]: what an endpoint reports for each connection: the facts, the decision, the traffic.
//! - `gateway` (feature `gateway`): the agent gateway's gRPC protocol and its event mapping.

pub mod action;
pub mod connection;
pub mod event;
#[cfg(feature = "gateway")]
pub mod gateway;

pub use action::{Action, Mode, Verdict};
pub use connection::{Connection, Direction, Protocol, Scope};
pub use event::{ConnectionEvent, Traffic};
