//! Counts by reason: why packets were skipped, why content was refused. Every drop is counted
//! under a stable snake_case name that the user sees.

use std::collections::BTreeMap;

use serde::Serialize;

/// Counts keyed by a reason name, listed in name order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Counters(BTreeMap<&'static str, u64>);

impl Counters {
    /// Counts one more for `reason`.
    pub fn add(&mut self, reason: &'static str) {
        *self.0.entry(reason).or_default() += 1;
    }

    /// The count for `reason`.
    pub fn get(&self, reason: &str) -> u64 {
        self.0.get(reason).copied().unwrap_or_default()
    }

    /// All counts.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// Each reason with its count, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.0.iter().map(|(&reason, &count)| (reason, count))
    }
}
