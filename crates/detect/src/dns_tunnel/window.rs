//! What one (source, registrable domain) key holds for its current window: counters, bounded
//! sets of the distinct subdomains and labels seen, and the evidence ids.

use std::collections::HashSet;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

/// The running figures of one key's window. Every update is O(length of the name).
#[derive(Debug, Clone)]
pub(super) struct Window {
    pub start_ms: i64,
    pub last_ms: i64,
    pub queries: u32,
    /// Queries whose type was known.
    pub typed: u32,
    /// Of those, TXT, NULL, CNAME, MX, SRV or PRIVATE: types that carry data back.
    pub data_typed: u32,
    /// Hashes of the distinct subdomains, at most `cap` of them.
    subdomains: HashSet<u64>,
    /// Hashes of the distinct labels, at most `2 * cap` of them.
    labels: HashSet<u64>,
    /// Whether a set was full and later names could not be told new or repeated (the counts
    /// are then lower bounds).
    pub saturated: bool,
    /// Total length of the distinct subdomains.
    pub subdomain_bytes: u64,
    pub max_subdomain_len: usize,
    /// Total length of the distinct labels, and the same weighted by each label's entropy.
    pub label_bytes: u64,
    pub label_entropy_bytes: f64,
    pub evidence: Vec<String>,
    pub reported: bool,
}

impl Window {
    pub fn new(start_ms: i64) -> Window {
        Window {
            start_ms,
            last_ms: start_ms,
            queries: 0,
            typed: 0,
            data_typed: 0,
            subdomains: HashSet::new(),
            labels: HashSet::new(),
            saturated: false,
            subdomain_bytes: 0,
            max_subdomain_len: 0,
            label_bytes: 0,
            label_entropy_bytes: 0.0,
            evidence: Vec::new(),
            reported: false,
        }
    }

    /// Counts one query for `subdomain` (case kept: tunnels such as iodine's base64 and base128
    /// encodings use case to carry bits). Returns whether the subdomain was new in the window.
    pub fn add(&mut self, time_ms: i64, subdomain: &str, qtype: Option<&str>, cap: usize) -> bool {
        self.last_ms = self.last_ms.max(time_ms);
        self.queries = self.queries.saturating_add(1);
        if let Some(qtype) = qtype {
            self.typed = self.typed.saturating_add(1);
            if is_data_type(qtype) {
                self.data_typed = self.data_typed.saturating_add(1);
            }
        }
        if subdomain.is_empty() {
            return false;
        }
        let h = hash(subdomain);
        if self.subdomains.contains(&h) {
            return false;
        }
        if self.subdomains.len() >= cap {
            self.saturated = true;
            return false;
        }
        self.subdomains.insert(h);
        self.subdomain_bytes = self
            .subdomain_bytes
            .saturating_add(len_u64(subdomain.len()));
        self.max_subdomain_len = self.max_subdomain_len.max(subdomain.len());
        for label in subdomain.split('.') {
            let h = hash(label);
            if self.labels.contains(&h) {
                continue;
            }
            if self.labels.len() >= cap.saturating_mul(2) {
                self.saturated = true;
                break;
            }
            self.labels.insert(h);
            self.label_bytes = self.label_bytes.saturating_add(len_u64(label.len()));
            self.label_entropy_bytes += entropy(label) * f64_len(label.len());
        }
        true
    }

    pub fn distinct_subdomains(&self) -> usize {
        self.subdomains.len()
    }
}

/// Shannon entropy of the bytes of `s`, bits per byte (0 for the empty string).
pub(super) fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        if let Some(c) = counts.get_mut(usize::from(b)) {
            *c = c.saturating_add(1);
        }
    }
    let n = f64_len(s.len());
    if n == 0.0 {
        return 0.0;
    }
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Query types whose answers carry data back to the client.
fn is_data_type(qtype: &str) -> bool {
    ["TXT", "NULL", "CNAME", "MX", "SRV", "PRIVATE"]
        .iter()
        .any(|t| t.eq_ignore_ascii_case(qtype))
}

fn hash(s: &str) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

fn len_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// A length as a float (names are short: exact).
pub(super) fn f64_len(n: usize) -> f64 {
    u32::try_from(n).map_or(f64::from(u32::MAX), f64::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_of_simple_strings() {
        assert_eq!(entropy(""), 0.0);
        assert_eq!(entropy("aaaa"), 0.0);
        assert!((entropy("abab") - 1.0).abs() < 1e-12);
        assert!((entropy("0123456789abcdef") - 4.0).abs() < 1e-12);
    }

    #[test]
    fn counts_distinct_names_and_labels_up_to_the_cap() {
        let mut w = Window::new(0);
        assert!(w.add(0, "a.x", Some("TXT"), 3));
        assert!(!w.add(1, "a.x", Some("A"), 3));
        assert!(w.add(2, "b.x", None, 3));
        assert_eq!((w.queries, w.typed, w.data_typed), (3, 2, 1));
        assert_eq!(w.distinct_subdomains(), 2);
        // Labels a, x, b: 3 bytes; subdomains 3 + 3 bytes.
        assert_eq!((w.label_bytes, w.subdomain_bytes), (3, 6));
        assert!(w.add(3, "c.x", None, 3));
        assert!(!w.add(4, "d.x", None, 3));
        assert!(w.saturated);
        assert_eq!(w.distinct_subdomains(), 3);
    }
}
