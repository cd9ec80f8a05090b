//! What one application did on one agent in one five-minute window, as the eight numbers the
//! behaviour model judges. The counts do not depend on the order the connections came in, so
//! the trainer (which reads stored events newest first) and the streaming detector (which
//! sees them as they arrive) get the same vector for the same window.

use std::collections::HashMap;

use crate::pipeline::Observation;

/// Length of a window, ms.
pub const WINDOW_MS: i64 = 5 * 60_000;

/// The features, in vector order.
pub const FEATURES: [&str; 8] = [
    "connections",
    "dns_queries",
    "destination_addresses",
    "domains",
    "destination_ports",
    "inbound",
    "bytes_out",
    "bytes_in",
];

/// A feature vector: each count `c` as `ln(1 + c)`, so that a tenfold change weighs the same
/// for an application that sends kilobytes as for one that sends gigabytes.
pub type Features = [f64; FEATURES.len()];

/// Distinct values counted up to this many; past it a window counts as this many.
const DISTINCT_CAP: usize = 256;

/// The counts of one window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowCounts {
    connections: u64,
    dns_queries: u64,
    inbound: u64,
    bytes_out: u64,
    bytes_in: u64,
    addresses: Distinct,
    domains: Distinct,
    ports: Distinct,
}

impl WindowCounts {
    /// Counts `o`: a connection or DNS query with its destination, or (an update) only the
    /// bytes it reports.
    pub fn add(&mut self, o: &Observation<'_>) {
        self.bytes_out = self.bytes_out.saturating_add(o.bytes_out);
        self.bytes_in = self.bytes_in.saturating_add(o.bytes_in);
        if o.update_of.is_some() {
            return;
        }
        if o.is_dns_query() {
            self.dns_queries += 1;
        } else {
            self.connections += 1;
            match o.dst_ip {
                Some(std::net::IpAddr::V4(ip)) => self.addresses.insert(fnv(&ip.octets())),
                Some(std::net::IpAddr::V6(ip)) => self.addresses.insert(fnv(&ip.octets())),
                None => {}
            }
            self.ports.insert(u64::from(o.dst_port));
        }
        if o.inbound {
            self.inbound += 1;
        }
        if let Some(domain) = o.domain {
            self.domains.insert(fnv(domain.as_bytes()));
        }
    }

    /// The feature vector.
    pub fn features(&self) -> Features {
        [
            self.connections,
            self.dns_queries,
            self.addresses.len(),
            self.domains.len(),
            self.ports.len(),
            self.inbound,
            self.bytes_out,
            self.bytes_in,
        ]
        .map(|c| (c as f64).ln_1p())
    }
}

/// A capped set of hashes, sorted.
#[derive(Debug, Clone, Default, PartialEq)]
struct Distinct(Vec<u64>);

impl Distinct {
    fn insert(&mut self, hash: u64) {
        if self.0.len() >= DISTINCT_CAP {
            return;
        }
        if let Err(at) = self.0.binary_search(&hash) {
            self.0.insert(at, hash);
        }
    }

    fn len(&self) -> u64 {
        self.0.len() as u64
    }
}

/// FNV-1a: a hash that is the same in every process, so a set is too.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One closed window of one application on one agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// The agent.
    pub agent: String,
    /// The application.
    pub app: String,
    /// When it starts, ms since the epoch (a multiple of [`WINDOW_MS`]).
    pub start_ms: i64,
    /// What it did.
    pub features: Features,
}

/// Windows built from observations in any order, for training.
#[derive(Debug, Default)]
pub struct Windows {
    open: HashMap<(String, String, i64), WindowCounts>,
}

impl Windows {
    /// Counts `o` in its window. An observation without an application (an update whose
    /// connection is unknown) is not counted.
    pub fn add(&mut self, o: &Observation<'_>) {
        if o.app.is_empty() {
            return;
        }
        let start = o.time_ms.div_euclid(WINDOW_MS) * WINDOW_MS;
        self.open
            .entry((o.agent.to_owned(), o.app.to_owned(), start))
            .or_default()
            .add(o);
    }

    /// The windows, oldest first (then by agent and application).
    pub fn into_windows(self) -> Vec<Window> {
        let mut windows: Vec<Window> = self
            .open
            .into_iter()
            .map(|((agent, app, start_ms), counts)| Window {
                agent,
                app,
                start_ms,
                features: counts.features(),
            })
            .collect();
        windows.sort_by(|a, b| (a.start_ms, &a.agent, &a.app).cmp(&(b.start_ms, &b.agent, &b.app)));
        windows
    }
}
