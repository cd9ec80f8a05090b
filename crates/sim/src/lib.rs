//! A simulated fleet of endpoints: realistic application traffic with labelled attacks.
//!
//! Each endpoint has a person with working hours, a set of installed applications (browsers,
//! updaters, chat, mail, development tools, system services) that connect where such
//! applications connect, and possibly an attack (DGA lookups, beaconing, exfiltration bursts, a
//! port scan, DNS tunnelling, a compromised application contacting new destinations) whose
//! connections are labelled. The traffic is a pure function of the seed and the time, so a demo,
//! a load test and a detector evaluation can all ask for exactly the same connections.
//!
//! Layout:
//! - [`catalog`]: the applications and where they connect.
//! - [`attack`]: the attack families, their connections and their labels.
//! - [`endpoint`]: one endpoint and the connections it makes in a stretch of time.
//! - [`fleet`]: many endpoints, some attacked.
//! - [`live`]: the fleet against a real server, each endpoint running the agent's uplink.
//! - [`load`]: a load test: endpoints send as fast as the server acknowledges.

pub mod attack;
pub mod catalog;
pub mod endpoint;
pub mod fleet;
pub mod live;
pub mod load;

pub use attack::{Family, Label};
pub use endpoint::{Endpoint, Observed};
pub use fleet::Fleet;
