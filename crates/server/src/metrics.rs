//! Request counters and the Prometheus text exposition.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Mutex, PoisonError};

/// Counters of one server node.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
}

impl Metrics {
    /// Counts one answered request on `route` (the route pattern, not the path) with `status`.
    pub fn count_request(&self, route: &str, status: u16) {
        let mut requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        *requests.entry((route.to_owned(), status)).or_insert(0) += 1;
    }

    /// The Prometheus text format (version 0.0.4) of every counter; `policy_versions` is read
    /// from the database by the caller.
    pub fn render(&self, policy_versions: i64) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP palisade_http_requests_total HTTP requests answered, by route and status.\n\
             # TYPE palisade_http_requests_total counter\n",
        );
        let requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        for ((route, status), n) in requests.iter() {
            let _ = writeln!(
                out,
                "palisade_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        drop(requests);
        let _ = write!(
            out,
            "# HELP palisade_policy_versions_total Policy versions stored (versions are never removed).\n\
             # TYPE palisade_policy_versions_total counter\n\
             palisade_policy_versions_total {policy_versions}\n"
        );
        out
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_route_and_status() {
        let m = Metrics::default();
        m.count_request("/healthz", 200);
        m.count_request("/healthz", 200);
        m.count_request("/api/v1/policies", 401);
        let text = m.render(3);
        assert!(
            text.contains("palisade_http_requests_total{route=\"/healthz\",status=\"200\"} 2\n")
        );
        assert!(text.contains("route=\"/api/v1/policies\",status=\"401\"} 1\n"));
        assert!(text.contains("palisade_policy_versions_total 3\n"));
    }
}
