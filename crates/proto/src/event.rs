//! One connection event: what an endpoint reports for every connection it decided.
//!
//! The agent writes one event per connection into its spool and sends them to the server in
//! batches; the server stores them, the connection log and the detectors read them. The
//! connection's facts use the policy language's field names ([`Connection`]); the decision and
//! the traffic counters are added here.

use serde::{Deserialize, Serialize};

use crate::{Action, Connection, Verdict};

/// One connection and what was decided for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionEvent {
    /// Number of the event on its endpoint, from 1, never reused; with the agent's id it names
    /// the event everywhere (so a re-sent event is recognised).
    pub seq: u64,
    /// When the connection was decided, milliseconds since the Unix epoch (UTC).
    pub time_ms: i64,
    /// The application, the user and the destination.
    pub connection: Connection,
    /// Process id of the application, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// TLS server name, when seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// `Host` of the first HTTP request, when seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_host: Option<String>,
    /// What the policy decided.
    pub action: Action,
    /// What happened to the packets (`allow` for a monitor-mode block: "would block").
    pub verdict: Verdict,
    /// The rule that decided, or none when the policy's default did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Version of the policy that decided, when the endpoint is managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<i64>,
    /// Traffic, once the connection has ended (zero before).
    #[serde(default)]
    pub traffic: Traffic,
    /// When set, this record is no connection of its own but completes the event with this
    /// sequence number from the same endpoint, with what was seen after it was decided: its
    /// `sni` and `http_host` when set, its `traffic` when not zero. Its `time_ms` is that
    /// event's time, its `seq` its own (records are numbered together).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_of: Option<u64>,
}

impl ConnectionEvent {
    /// A block that was only recorded because the policy is in monitor mode.
    pub fn would_block(&self) -> bool {
        self.action == Action::Block && self.verdict == Verdict::Allow
    }
}

/// Bytes and packets each way, and how long the connection lasted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    /// Bytes sent by the local side.
    pub bytes_out: u64,
    /// Bytes received by the local side.
    pub bytes_in: u64,
    /// Packets sent by the local side.
    pub packets_out: u64,
    /// Packets received by the local side.
    pub packets_in: u64,
    /// From the first to the last packet, in milliseconds.
    pub duration_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names_match_the_policy_language() {
        let event: ConnectionEvent = serde_json::from_value(serde_json::json!({
            "seq": 7,
            "time_ms": 1_700_000_000_000_i64,
            "connection": {"app_path": "/usr/bin/curl", "domain": "example.com", "dst_port": 443},
            "action": "block",
            "verdict": "allow",
            "rule": "no-curl"
        }))
        .unwrap();
        assert!(event.would_block());
        assert_eq!(event.connection.dst_port, Some(443));
        assert_eq!(event.traffic, Traffic::default());
        let unknown = serde_json::json!({
            "seq": 1, "time_ms": 0, "connection": {}, "action": "allow", "verdict": "allow",
            "bytes": 3
        });
        assert!(serde_json::from_value::<ConnectionEvent>(unknown).is_err());
    }
}
