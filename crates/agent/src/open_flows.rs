//! The connections the agent let through and recorded, until they end: what is learned about a
//! connection after its event was spooled (its counters when it ends, the TLS server name or
//! HTTP host of its first request) goes to the server as an update of that event
//! ([`palisade_proto::ConnectionEvent::update_of`]), and this table knows which event that is.
//!
//! The table is bounded: it keeps two generations of entries and, when the newer one is full,
//! forgets the older one (counted). A connection that outlives that many newer connections ends
//! without an update; its event keeps zero counters. Flows are kept by a 64-bit hash of their
//! key (24 bytes an entry instead of 96): two open connections whose hashes collide, about once
//! in 10^11 tables of 16,384, would swap their updates.

use std::collections::HashMap;
use std::hash::BuildHasher;

use foldhash::fast::RandomState;

use palisade_proto::{Action, ConnectionEvent, Traffic, Verdict};

use crate::flow::FlowKey;

/// A recorded connection's event: what an update of it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// The event's sequence number.
    pub seq: u64,
    /// The event's time (ms since the epoch).
    pub time_ms: i64,
    /// What the policy decided.
    pub action: Action,
    /// What happened to the connection.
    pub verdict: Verdict,
}

/// What was learned about a connection after its event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Learned {
    /// The connection ended; these are its counters.
    Ended(Traffic),
    /// Its first request named the server: a TLS server name, an HTTP host, or both.
    Named {
        /// TLS server name.
        sni: Option<String>,
        /// HTTP `Host`.
        http_host: Option<String>,
    },
}

/// Recorded connections that have not ended, by flow.
#[derive(Debug)]
pub struct OpenFlows {
    hasher: RandomState,
    newer: HashMap<u64, Opened, RandomState>,
    older: HashMap<u64, Opened, RandomState>,
    generation: usize,
    forgotten: u64,
}

impl OpenFlows {
    /// A table of about `capacity` connections at most (at least 2).
    pub fn new(capacity: usize) -> OpenFlows {
        OpenFlows {
            hasher: RandomState::default(),
            newer: HashMap::default(),
            older: HashMap::default(),
            generation: (capacity / 2).max(1),
            forgotten: 0,
        }
    }

    /// Remembers that `flow`'s event is `opened`.
    pub fn opened(&mut self, flow: FlowKey, opened: Opened) {
        if self.newer.len() >= self.generation {
            self.forgotten = self.forgotten.saturating_add(self.older.len() as u64);
            self.older = std::mem::take(&mut self.newer);
        }
        self.newer.insert(self.hasher.hash_one(flow), opened);
    }

    /// The update record (numbered `seq`) that tells the server what was `learned` about
    /// `flow`, or `None` when the flow's event is unknown (never recorded, blocked, or
    /// forgotten). An ended flow is forgotten.
    pub fn update(
        &mut self,
        flow: &FlowKey,
        learned: Learned,
        seq: u64,
    ) -> Option<ConnectionEvent> {
        let key = self.hasher.hash_one(flow);
        let opened = match learned {
            Learned::Ended(_) => self.newer.remove(&key).or_else(|| self.older.remove(&key)),
            Learned::Named { .. } => self
                .newer
                .get(&key)
                .or_else(|| self.older.get(&key))
                .copied(),
        }?;
        let (sni, http_host, traffic) = match learned {
            Learned::Ended(traffic) => (None, None, traffic),
            Learned::Named { sni, http_host } => (sni, http_host, Traffic::default()),
        };
        Some(ConnectionEvent {
            seq,
            time_ms: opened.time_ms,
            connection: flow.addresses(),
            pid: None,
            sni,
            http_host,
            action: opened.action,
            verdict: opened.verdict,
            rule: None,
            policy_version: None,
            traffic,
            update_of: Some(opened.seq),
        })
    }

    /// Connections forgotten before they ended, because the table was full.
    pub fn forgotten(&self) -> u64 {
        self.forgotten
    }

    /// Connections in the table.
    pub fn len(&self) -> usize {
        self.newer.len() + self.older.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use palisade_proto::{Direction, Protocol};

    use super::*;

    fn flow(port: u16) -> FlowKey {
        FlowKey {
            protocol: Protocol::Tcp,
            local: format!("10.0.0.2:{port}").parse().unwrap(),
            remote: "93.184.216.34:443".parse().unwrap(),
            direction: Direction::Outbound,
        }
    }

    fn opened(seq: u64) -> Opened {
        Opened {
            seq,
            time_ms: 1_700_000_000_000,
            action: Action::Alert,
            verdict: Verdict::Allow,
        }
    }

    fn ended(bytes_out: u64) -> Learned {
        Learned::Ended(Traffic {
            bytes_out,
            ..Traffic::default()
        })
    }

    #[test]
    fn a_name_and_the_end_update_the_event_once_each() {
        let mut flows = OpenFlows::new(8);
        flows.opened(flow(40_000), opened(7));
        let named = Learned::Named {
            sni: Some("example.com".into()),
            http_host: None,
        };
        let update = flows.update(&flow(40_000), named, 9).unwrap();
        assert_eq!((update.seq, update.update_of), (9, Some(7)));
        assert_eq!(update.sni.as_deref(), Some("example.com"));
        assert_eq!(update.time_ms, 1_700_000_000_000);
        assert_eq!(update.action, Action::Alert);
        assert_eq!(update.connection.src_port, Some(40_000));
        assert_eq!(update.connection.dst_port, Some(443));

        let end = flows.update(&flow(40_000), ended(1_500), 10).unwrap();
        assert_eq!(end.update_of, Some(7));
        assert_eq!(end.traffic.bytes_out, 1_500);
        assert!(flows.is_empty());
        assert_eq!(flows.update(&flow(40_000), ended(1), 11), None);
        assert_eq!(flows.update(&flow(40_001), ended(1), 11), None);
    }

    #[test]
    fn a_full_table_forgets_its_oldest_generation_and_counts_it() {
        let mut flows = OpenFlows::new(4);
        for port in 0..6 {
            flows.opened(flow(port), opened(u64::from(port) + 1));
        }
        assert!(flows.len() <= 4);
        assert_eq!(flows.forgotten(), 2);
        assert_eq!(flows.update(&flow(0), ended(1), 20), None);
        assert!(flows.update(&flow(5), ended(1), 21).is_some());
        assert!(flows.update(&flow(3), ended(1), 22).is_some());
    }
}
