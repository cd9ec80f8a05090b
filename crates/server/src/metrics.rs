//! Request counters, event ingestion counters, the retention timer's counters, the bus's
//! counters, and the Prometheus text exposition.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::bus::Bus;
use crate::store::RetentionReport;

/// Counters of one server node.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    retention: RetentionCounters,
    detection: DetectionCounters,
    bus: Option<Bus>,
}

impl Metrics {
    /// Counters that also report `bus`'s reconnects and publish failures.
    pub fn with_bus(bus: Bus) -> Metrics {
        Metrics {
            requests: Mutex::default(),
            retention: RetentionCounters::default(),
            detection: DetectionCounters::default(),
            bus: Some(bus),
        }
    }

    /// What this node's retention timer removed.
    pub fn retention(&self) -> &RetentionCounters {
        &self.retention
    }

    /// What this node's detection pipeline did.
    pub fn detection(&self) -> &DetectionCounters {
        &self.detection
    }

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
        self.retention.render(&mut out);
        self.detection.render(&mut out);
        let bus = self.bus.as_ref().map(Bus::stats).unwrap_or_default();
        let _ = write!(
            out,
            "# HELP palisade_bus_reconnects_total Connections to the message broker re-established after one was lost.\n\
             # TYPE palisade_bus_reconnects_total counter\n\
             palisade_bus_reconnects_total {}\n\
             # HELP palisade_bus_publish_failures_total Publishes to the message bus that failed.\n\
             # TYPE palisade_bus_publish_failures_total counter\n\
             palisade_bus_publish_failures_total {}\n",
            bus.reconnects, bus.publish_failures
        );
        out
    }
}

/// What event ingestion stored, skipped and refused on this node since it started.
#[derive(Debug, Default)]
pub struct IngestCounters {
    batches_stored: AtomicU64,
    batches_duplicate: AtomicU64,
    batches_refused: AtomicU64,
    events_stored: AtomicU64,
    events_duplicate: AtomicU64,
    events_refused: AtomicU64,
    queued: AtomicI64,
    commits: AtomicU64,
    waited: AtomicU64,
    busy: AtomicU64,
}

impl IngestCounters {
    /// `batches` batches were stored with `stored` new events and `duplicate` already stored
    /// ones.
    pub fn stored(&self, batches: u64, stored: u64, duplicate: u64) {
        self.batches_stored.fetch_add(batches, Ordering::Relaxed);
        self.events_stored.fetch_add(stored, Ordering::Relaxed);
        self.events_duplicate
            .fetch_add(duplicate, Ordering::Relaxed);
    }

    /// A re-sent batch of `events` events was recognised and not stored again.
    pub fn duplicate(&self, events: u64) {
        self.batches_duplicate.fetch_add(1, Ordering::Relaxed);
        self.events_duplicate.fetch_add(events, Ordering::Relaxed);
    }

    /// A batch of `events` events was refused as invalid.
    pub fn refused(&self, events: u64) {
        self.batches_refused.fetch_add(1, Ordering::Relaxed);
        self.events_refused.fetch_add(events, Ordering::Relaxed);
    }

    /// `change` batches joined (positive) or left (negative) the queue for the writers.
    pub fn queued(&self, change: i64) {
        self.queued.fetch_add(change, Ordering::Relaxed);
    }

    /// A writer committed a group of batches.
    pub fn committed(&self) {
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    /// A batch found the writers' queue full and waited for room.
    pub fn waited(&self) {
        self.waited.fetch_add(1, Ordering::Relaxed);
    }

    /// A batch found no room in time and was refused as busy (the agent sends it again).
    pub fn busy(&self) {
        self.busy.fetch_add(1, Ordering::Relaxed);
    }

    /// Appends the counters in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = write!(
            out,
            "# HELP palisade_event_batches_total Event batches received, by outcome.\n\
             # TYPE palisade_event_batches_total counter\n\
             palisade_event_batches_total{{outcome=\"stored\"}} {}\n\
             palisade_event_batches_total{{outcome=\"duplicate\"}} {}\n\
             palisade_event_batches_total{{outcome=\"refused\"}} {}\n\
             # HELP palisade_events_total Connection events received, by outcome.\n\
             # TYPE palisade_events_total counter\n\
             palisade_events_total{{outcome=\"stored\"}} {}\n\
             palisade_events_total{{outcome=\"duplicate\"}} {}\n\
             palisade_events_total{{outcome=\"refused\"}} {}\n\
             # HELP palisade_ingest_queue_batches Event batches waiting for a writer on this node.\n\
             # TYPE palisade_ingest_queue_batches gauge\n\
             palisade_ingest_queue_batches {}\n\
             # HELP palisade_ingest_commits_total Transactions that stored event batches.\n\
             # TYPE palisade_ingest_commits_total counter\n\
             palisade_ingest_commits_total {}\n\
             # HELP palisade_ingest_waits_total Event batches that waited for room in the queue (backpressure).\n\
             # TYPE palisade_ingest_waits_total counter\n\
             palisade_ingest_waits_total {}\n\
             # HELP palisade_ingest_busy_total Event batches refused as busy after waiting too long; agents send them again.\n\
             # TYPE palisade_ingest_busy_total counter\n\
             palisade_ingest_busy_total {}\n",
            get(&self.batches_stored),
            get(&self.batches_duplicate),
            get(&self.batches_refused),
            get(&self.events_stored),
            get(&self.events_duplicate),
            get(&self.events_refused),
            self.queued.load(Ordering::Relaxed).max(0),
            get(&self.commits),
            get(&self.waited),
            get(&self.busy),
        );
    }
}

/// What this node's detection pipeline did since the node started.
#[derive(Debug, Default)]
pub struct DetectionCounters {
    observed: AtomicU64,
    repeated: AtomicU64,
    findings: AtomicU64,
    unreadable: AtomicU64,
    alerts_new: AtomicU64,
    alerts_merged: AtomicU64,
    models_promoted: AtomicU64,
    models_rejected: AtomicU64,
    trainings_failed: AtomicU64,
    model_version: AtomicU64,
}

impl DetectionCounters {
    /// The pipeline's own counters, as they stand.
    pub fn observed(&self, pipeline: palisade_detect::pipeline::Counters) {
        self.observed.store(pipeline.observed, Ordering::Relaxed);
        self.repeated.store(pipeline.repeated, Ordering::Relaxed);
        self.findings.store(pipeline.findings, Ordering::Relaxed);
    }

    /// A message (a batch of stored events, a finding) could not be read and was dropped.
    pub fn unreadable(&self) {
        self.unreadable.fetch_add(1, Ordering::Relaxed);
    }

    /// A finding was stored as a new alert or merged into an active one.
    pub fn stored(&self, new: bool) {
        let counter = if new {
            &self.alerts_new
        } else {
            &self.alerts_merged
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The trainer stored a candidate, promoted or not.
    pub fn trained(&self, promoted: bool) {
        let counter = if promoted {
            &self.models_promoted
        } else {
            &self.models_rejected
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A training run failed.
    pub fn training_failed(&self) {
        self.trainings_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Detection on this node now judges with behaviour model `version`.
    pub fn model_in_use(&self, version: u64) {
        self.model_version.store(version, Ordering::Relaxed);
    }

    /// Appends the counters in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = write!(
            out,
            "# HELP palisade_detection_models_total Behaviour models this node trained, promoted or not, and training runs that failed.\n\
             # TYPE palisade_detection_models_total counter\n\
             palisade_detection_models_total{{outcome=\"promoted\"}} {}\n\
             palisade_detection_models_total{{outcome=\"rejected\"}} {}\n\
             palisade_detection_models_total{{outcome=\"failed\"}} {}\n\
             # HELP palisade_detection_model_version The behaviour model version detection on this node judges with (0: none yet).\n\
             # TYPE palisade_detection_model_version gauge\n\
             palisade_detection_model_version {}\n",
            get(&self.models_promoted),
            get(&self.models_rejected),
            get(&self.trainings_failed),
            get(&self.model_version),
        );
        let _ = write!(
            out,
            "# HELP palisade_detection_events_total Events the detection pipeline took, and re-delivered ones it skipped.\n\
             # TYPE palisade_detection_events_total counter\n\
             palisade_detection_events_total{{outcome=\"observed\"}} {}\n\
             palisade_detection_events_total{{outcome=\"repeated\"}} {}\n\
             # HELP palisade_detection_findings_total Findings the detectors raised.\n\
             # TYPE palisade_detection_findings_total counter\n\
             palisade_detection_findings_total {}\n\
             # HELP palisade_detection_dropped_total Detection messages dropped because they could not be read.\n\
             # TYPE palisade_detection_dropped_total counter\n\
             palisade_detection_dropped_total {}\n\
             # HELP palisade_detection_alerts_total Findings stored as alerts, new or merged into an active one.\n\
             # TYPE palisade_detection_alerts_total counter\n\
             palisade_detection_alerts_total{{outcome=\"new\"}} {}\n\
             palisade_detection_alerts_total{{outcome=\"merged\"}} {}\n",
            get(&self.observed),
            get(&self.repeated),
            get(&self.findings),
            get(&self.unreadable),
            get(&self.alerts_new),
            get(&self.alerts_merged),
        );
    }
}

/// What this node's retention timer did since the node started.
#[derive(Debug, Default)]
pub struct RetentionCounters {
    runs_applied: AtomicU64,
    runs_failed: AtomicU64,
    events_removed: AtomicU64,
    partitions_dropped: AtomicU64,
    batches_forgotten: AtomicU64,
}

impl RetentionCounters {
    /// A run completed and removed what `report` says.
    pub fn applied(&self, report: &RetentionReport) {
        let partitions = u64::try_from(report.partitions_dropped.len()).unwrap_or(u64::MAX);
        self.runs_applied.fetch_add(1, Ordering::Relaxed);
        self.events_removed
            .fetch_add(report.events_removed, Ordering::Relaxed);
        self.partitions_dropped
            .fetch_add(partitions, Ordering::Relaxed);
        self.batches_forgotten
            .fetch_add(report.batches_forgotten, Ordering::Relaxed);
    }

    /// A run failed (it is tried again at the next one).
    pub fn failed(&self) {
        self.runs_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Appends the counters in the Prometheus text format.
    fn render(&self, out: &mut String) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = write!(
            out,
            "# HELP palisade_retention_runs_total Event retention runs of this node, by outcome.\n\
             # TYPE palisade_retention_runs_total counter\n\
             palisade_retention_runs_total{{outcome=\"applied\"}} {}\n\
             palisade_retention_runs_total{{outcome=\"failed\"}} {}\n\
             # HELP palisade_retention_events_removed_total Connection events removed by this node's retention runs.\n\
             # TYPE palisade_retention_events_removed_total counter\n\
             palisade_retention_events_removed_total {}\n\
             # HELP palisade_retention_partitions_dropped_total Day partitions of events dropped by this node's retention runs (PostgreSQL).\n\
             # TYPE palisade_retention_partitions_dropped_total counter\n\
             palisade_retention_partitions_dropped_total {}\n\
             # HELP palisade_retention_batches_forgotten_total Event batch records forgotten by this node's retention runs.\n\
             # TYPE palisade_retention_batches_forgotten_total counter\n\
             palisade_retention_batches_forgotten_total {}\n",
            get(&self.runs_applied),
            get(&self.runs_failed),
            get(&self.events_removed),
            get(&self.partitions_dropped),
            get(&self.batches_forgotten),
        );
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
        assert!(text.contains("palisade_bus_reconnects_total 0\n"));
        assert!(text.contains("palisade_bus_publish_failures_total 0\n"));
    }

    #[test]
    fn retention_runs_add_up() {
        let m = Metrics::default();
        let report = RetentionReport {
            events_removed: 7,
            partitions_dropped: vec!["connection_events_p20260101".to_owned()],
            batches_forgotten: 2,
        };
        m.retention().applied(&report);
        m.retention().applied(&report);
        m.retention().failed();
        let text = m.render(0);
        assert!(text.contains("palisade_retention_runs_total{outcome=\"applied\"} 2\n"));
        assert!(text.contains("palisade_retention_runs_total{outcome=\"failed\"} 1\n"));
        assert!(text.contains("palisade_retention_events_removed_total 14\n"));
        assert!(text.contains("palisade_retention_partitions_dropped_total 2\n"));
        assert!(text.contains("palisade_retention_batches_forgotten_total 4\n"));
    }

    #[test]
    fn ingest_counters_by_outcome() {
        let c = IngestCounters::default();
        c.stored(1, 5, 1);
        c.duplicate(6);
        c.refused(2);
        let mut text = String::new();
        c.render(&mut text);
        assert!(text.contains("palisade_event_batches_total{outcome=\"duplicate\"} 1\n"));
        assert!(text.contains("palisade_events_total{outcome=\"stored\"} 5\n"));
        assert!(text.contains("palisade_events_total{outcome=\"duplicate\"} 7\n"));
        assert!(text.contains("palisade_events_total{outcome=\"refused\"} 2\n"));
    }
}
