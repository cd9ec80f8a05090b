//! Port scans and host sweeps: per agent and window, the distinct ports tried on one host
//! (scan) and the distinct local-network hosts tried on one port (sweep).

use std::collections::HashSet;
use std::net::IpAddr;

use foldhash::HashMap;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::intern::Sym;
use super::{Context, Evidence, Finding, Severity, past};

/// Scan and sweep thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScanSettings {
    /// Window length, seconds.
    pub window_seconds: u32,
    /// Distinct ports of one host in a window that make a scan.
    pub ports: usize,
    /// Distinct hosts of the local network on one port in a window that make a sweep.
    pub hosts: usize,
}

impl Default for ScanSettings {
    fn default() -> Self {
        ScanSettings {
            window_seconds: 300,
            ports: 30,
            hosts: 30,
        }
    }
}

#[derive(Debug)]
pub struct Detector {
    settings: ScanSettings,
    /// By (agent, host): the ports tried in the current window.
    scans: HashMap<(Sym, IpAddr), Tried<u16>>,
    /// By (agent, port): the local hosts tried in the current window.
    sweeps: HashMap<(Sym, u16), Tried<IpAddr>>,
}

/// What one key tried in its window.
#[derive(Debug)]
struct Tried<T> {
    window: i64,
    distinct: HashSet<T>,
    evidence: Evidence,
    app: Option<Sym>,
    raised: bool,
}

impl<T: std::hash::Hash + Eq> Tried<T> {
    fn new(window: i64) -> Tried<T> {
        Tried {
            window,
            distinct: HashSet::new(),
            evidence: Evidence::default(),
            app: None,
            raised: false,
        }
    }

    /// Counts `value` in `window` (starting the window afresh when it moved on); whether the
    /// threshold was reached just now.
    fn add(&mut self, window: i64, value: T, context: &Context<'_, '_>, threshold: usize) -> bool {
        if window != self.window {
            *self = Tried::new(window);
        }
        // Past the threshold only the count matters; the set stops growing.
        if self.distinct.len() < threshold.saturating_mul(4) && self.distinct.insert(value) {
            self.evidence.push(context.observation.evidence());
            self.app = context.app.or(self.app);
        }
        if !self.raised && self.distinct.len() >= threshold {
            self.raised = true;
            return true;
        }
        false
    }
}

impl Detector {
    pub fn new(settings: ScanSettings) -> Detector {
        Detector {
            settings,
            scans: HashMap::default(),
            sweeps: HashMap::default(),
        }
    }

    fn window_ms(&self) -> i64 {
        i64::from(self.settings.window_seconds.max(1)) * 1000
    }

    pub fn observe(&mut self, context: &Context<'_, '_>, out: &mut Vec<Finding>) {
        let o = context.observation;
        let Some(host) = o.dst_ip else { return };
        if o.inbound || o.dst_port == 0 {
            return;
        }
        let window = o.time_ms.div_euclid(self.window_ms());
        let (ports, hosts) = (self.settings.ports.max(2), self.settings.hosts.max(2));
        let scan = self
            .scans
            .entry((context.agent, host))
            .or_insert_with(|| Tried::new(window));
        if scan.add(window, o.dst_port, context, ports) {
            let tried = scan.distinct.len();
            out.push(finding(
                &self.settings,
                context,
                scan,
                "port_scan",
                &host.to_string(),
                tried,
                ports,
            ));
        }
        if is_local(host) {
            let sweep = self
                .sweeps
                .entry((context.agent, o.dst_port))
                .or_insert_with(|| Tried::new(window));
            if sweep.add(window, host, context, hosts) {
                let tried = sweep.distinct.len();
                let port = o.dst_port.to_string();
                out.push(finding(
                    &self.settings,
                    context,
                    sweep,
                    "host_sweep",
                    &port,
                    tried,
                    hosts,
                ));
            }
        }
    }
}

fn finding<T>(
    settings: &ScanSettings,
    context: &Context<'_, '_>,
    tried: &Tried<T>,
    kind: &str,
    target: &str,
    count: usize,
    threshold: usize,
) -> Finding {
    let agent = context.names.name(context.agent);
    let score = past(count as f64, threshold as f64);
    let minutes = settings.window_seconds / 60;
    let (title, explanation) = if kind == "port_scan" {
        (
            format!("{agent} tried {count} ports of {target} within {minutes} min"),
            json!({
                "why": format!("{count} distinct ports of one host in one window; a scan starts at {threshold}"),
                "host": target,
                "distinct_ports": count,
                "threshold_ports": threshold,
                "window_seconds": settings.window_seconds,
            }),
        )
    } else {
        (
            format!("{agent} tried port {target} on {count} local hosts within {minutes} min"),
            json!({
                "why": format!("{count} distinct local hosts on one port in one window; a sweep starts at {threshold}"),
                "port": target,
                "distinct_hosts": count,
                "threshold_hosts": threshold,
                "window_seconds": settings.window_seconds,
            }),
        )
    };
    Finding {
        kind: kind.to_owned(),
        severity: Severity::of_score(score).max(Severity::Medium),
        score,
        title,
        agent: agent.to_owned(),
        app: tried
            .app
            .map(|app| context.names.name(app).to_owned())
            .filter(|a| !a.is_empty()),
        key: format!("{kind}:{agent}:{target}"),
        explanation,
        evidence: tried.evidence.to_vec(),
        time_ms: context.observation.time_ms,
    }
}

impl Detector {
    /// Forgets the windows that ended before the one holding `now_ms`.
    pub fn forget_before(&mut self, now_ms: i64) {
        let current = now_ms.div_euclid(self.window_ms());
        self.scans.retain(|_, tried| tried.window >= current - 1);
        self.sweeps.retain(|_, tried| tried.window >= current - 1);
    }
}

/// Private, link-local and unique-local addresses: the hosts a sweep of the local network hits.
fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            let first = v6.segments().first().copied().unwrap_or(0);
            (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}
