//! `palisade detect eval`: the simulator's labelled attacks through the detection pipeline the
//! server runs, and how well each detector does.
//!
//! A fleet (`--endpoints`, `--seed`) plays `--hours` of traffic, every fifth endpoint carrying
//! one attack, the families in turn. Before that, `--history-hours` of the same fleet's traffic
//! (no attack has started yet) train the behaviour model, as the server's trainer would from
//! stored events. Every connection goes through [`palisade_detect::pipeline::Pipeline`] in time
//! order, with a tick each simulated minute. Then:
//! - an **alert** is one finding key (the server merges a key's findings into one alert); it is
//!   true when most of its evidence belongs to an attack of a family its detector is for,
//!   **another attack's** when most of its evidence belongs to an attack of another family (a
//!   scan seen as a sweep too), and false otherwise;
//! - a detector's **precision** is its alerts about attacks (true or another attack's) over all
//!   its alerts; its **false-positive rate** is its false alerts over the benign units it judged
//!   (units as its keys name them: (agent, application), (agent, destination), (agent, host));
//! - a family's **recall** is the share of its campaigns that a detector meant for it raised a
//!   true alert about; its F1 combines that recall with those detectors' precision;
//! - the behaviour detector (`app_behaviour`) is meant for no family and for all: its alert is
//!   true when most of its evidence belongs to any attack, its recall is over every campaign,
//!   and a table gives it per family (it does not count in the families' own recall).
//!
//! The table goes to standard output, or one JSON document with `--json`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::ExitCode;

use std::sync::Arc;

use clap::Args;
use palisade_detect::behaviour::{self, Model, TrainSettings, Windows};
use palisade_detect::pipeline::{Finding, Observation, Pipeline, Settings};
use palisade_proto::Direction;
use palisade_sim::{Family, Fleet, Observed};
use serde::Serialize;

const MINUTE_MS: i64 = 60_000;
/// Monday 2026-01-05 00:00 UTC: a fixed start, so a seed always gives the same figures.
const START_MS: i64 = 1_767_571_200_000;

/// Arguments of `palisade detect eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Simulated endpoints (every fifth, from the third, carries an attack).
    #[arg(long, default_value_t = 150)]
    endpoints: u32,
    /// Hours of traffic.
    #[arg(long, default_value_t = 8)]
    hours: u32,
    /// Hours of attack-free traffic before it that the behaviour model is trained on (a week,
    /// as the server's trainer reads).
    #[arg(long, default_value_t = 168)]
    history_hours: u32,
    /// Chooses the fleet.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON document instead of tables.
    #[arg(long)]
    json: bool,
}

/// The detectors (finding kinds) meant for each family.
fn detectors_for(family: Family) -> &'static [&'static str] {
    match family {
        Family::Dga => &["dga"],
        Family::Beacon => &["beacon"],
        Family::Exfiltration => &["exfiltration"],
        Family::PortScan => &["port_scan", "host_sweep"],
        Family::DnsTunnel => &["dns_tunnel"],
        Family::NewDestinations => &["new_destinations"],
    }
}

/// The detector meant for every family: it judges how an application behaves, whatever the
/// attack.
const GENERIC: &str = "app_behaviour";

/// Every kind of finding the pipeline raises, in report order.
const KINDS: [&str; 8] = [
    "dga",
    "dns_tunnel",
    "beacon",
    "exfiltration",
    "new_destinations",
    "port_scan",
    "host_sweep",
    GENERIC,
];

#[derive(Debug, Serialize)]
struct Report {
    endpoints: u32,
    hours: u32,
    history_hours: u32,
    seed: u64,
    events: usize,
    behaviour_model: ModelFigures,
    detectors: Vec<DetectorFigures>,
    families: Vec<FamilyFigures>,
    /// The campaigns of each family the behaviour detector raised a true alert about.
    behaviour_by_family: Vec<FamilyFigures>,
    /// The same connections through a fresh pipeline once more, on one thread, timed.
    throughput: Throughput,
}

/// The behaviour model trained on the history, and how it did on its held-out windows.
#[derive(Debug, Serialize)]
struct ModelFigures {
    history_events: usize,
    windows: usize,
    applications: usize,
    /// Size of its model file.
    model_bytes: usize,
    /// `None` when no model could be trained.
    evaluation: Option<behaviour::Evaluation>,
    promoted: bool,
    reason: String,
}

#[derive(Debug, Serialize)]
struct Throughput {
    events: usize,
    seconds: f64,
    events_per_second: f64,
}

#[derive(Debug, Serialize)]
struct DetectorFigures {
    detector: &'static str,
    alerts: usize,
    true_alerts: usize,
    other_attack_alerts: usize,
    false_alerts: usize,
    precision: Option<f64>,
    benign_units: usize,
    false_positive_rate: Option<f64>,
    /// Recall of the families the detector is meant for, at this operating point.
    recall: Option<f64>,
    f1: Option<f64>,
    /// Some false alerts, to see what they were.
    false_examples: Vec<String>,
}

#[derive(Debug, Serialize)]
struct FamilyFigures {
    family: &'static str,
    campaigns: usize,
    detected: usize,
    recall: Option<f64>,
    /// Minutes from the attack's first connection to its first true alert (median).
    median_minutes_to_alert: Option<f64>,
    missed: Vec<String>,
}

pub fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let report = evaluate(&args);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_tables(&report);
    }
    Ok(ExitCode::SUCCESS)
}

/// One simulated connection with its endpoint and number.
struct Played {
    host: usize,
    seq: u64,
    observed: Observed,
}

fn evaluate(args: &EvalArgs) -> Report {
    let fleet = Fleet::new(args.seed, args.endpoints, START_MS);
    let end_ms = START_MS + i64::from(args.hours) * 60 * MINUTE_MS;
    let hostnames: Vec<String> = fleet.endpoints.iter().map(|e| e.hostname.clone()).collect();
    let mut played: Vec<Played> = Vec::new();
    for (host, endpoint) in fleet.endpoints.iter().enumerate() {
        for (n, observed) in endpoint.traffic(START_MS, end_ms).into_iter().enumerate() {
            played.push(Played {
                host,
                seq: n as u64 + 1,
                observed,
            });
        }
    }
    played.sort_by_key(|p| (p.observed.time_ms, p.host, p.seq));

    let (model, model_figures) = train_behaviour(&fleet, &hostnames, args.history_hours);
    let mut pipeline = Pipeline::new(Settings::default());
    if let Some(model) = &model {
        pipeline.set_behaviour_model(model.clone());
    }
    let mut findings: Vec<Finding> = Vec::new();
    let mut next_tick = START_MS + MINUTE_MS;
    let mut labels: HashMap<String, (Family, String)> = HashMap::new();
    let mut first_attack_ms: HashMap<String, i64> = HashMap::new();
    let mut units: HashMap<&'static str, HashSet<String>> = HashMap::new();
    for p in &played {
        while p.observed.time_ms >= next_tick {
            pipeline.tick(next_tick, &mut findings);
            next_tick += MINUTE_MS;
        }
        let host = hostnames.get(p.host).map_or("", String::as_str);
        let o = observation(host, p);
        if let Some(label) = &p.observed.label {
            labels.insert(o.evidence(), (label.family, label.campaign.clone()));
            first_attack_ms
                .entry(label.campaign.clone())
                .or_insert(p.observed.time_ms);
        } else {
            count_units(&o, &mut units);
        }
        pipeline.observe(&o, &mut findings);
    }
    pipeline.tick(end_ms, &mut findings);
    let mut report = score(
        args,
        played.len(),
        &fleet,
        &findings,
        &labels,
        &first_attack_ms,
        &units,
    );
    report.behaviour_model = model_figures;
    report.throughput = time_pipeline(&played, &hostnames, model);
    report
}

/// Trains the behaviour model on the fleet's traffic of the `hours` before the attacks can
/// start, as the server's trainer does on stored events.
fn train_behaviour(
    fleet: &Fleet,
    hostnames: &[String],
    hours: u32,
) -> (Option<Arc<Model>>, ModelFigures) {
    let from_ms = START_MS - i64::from(hours) * 60 * MINUTE_MS;
    let mut windows = Windows::default();
    let mut history_events = 0;
    for (host, endpoint) in fleet.endpoints.iter().enumerate() {
        for (n, observed) in endpoint.traffic(from_ms, START_MS).into_iter().enumerate() {
            let p = Played {
                host,
                seq: n as u64 + 1,
                observed,
            };
            windows.add(&observation(
                hostnames.get(host).map_or("", String::as_str),
                &p,
            ));
            history_events += 1;
        }
    }
    let windows = windows.into_windows();
    let mut figures = ModelFigures {
        history_events,
        windows: windows.len(),
        applications: 0,
        model_bytes: 0,
        evaluation: None,
        promoted: false,
        reason: String::new(),
    };
    match behaviour::train(&windows, None, &TrainSettings::default()) {
        Ok(candidate) => {
            figures.applications = candidate.model.applications();
            figures.model_bytes = candidate.model.encode().len();
            figures.evaluation = Some(candidate.evaluation);
            figures.promoted = candidate.promote;
            figures.reason = candidate.reason;
            let model = candidate.promote.then(|| Arc::new(candidate.model));
            (model, figures)
        }
        Err(e) => {
            figures.reason = e.to_string();
            (None, figures)
        }
    }
}

/// Feeds the connections to a fresh pipeline (ticks included) and times it: the pipeline's own
/// cost, without the simulator's or the scoring's.
fn time_pipeline(played: &[Played], hostnames: &[String], model: Option<Arc<Model>>) -> Throughput {
    let observations: Vec<Observation<'_>> = played
        .iter()
        .map(|p| observation(hostnames.get(p.host).map_or("", String::as_str), p))
        .collect();
    let mut pipeline = Pipeline::new(Settings::default());
    if let Some(model) = model {
        pipeline.set_behaviour_model(model);
    }
    let mut findings = Vec::new();
    let mut next_tick = START_MS + MINUTE_MS;
    // The binary is the edge where the clock may be read.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    for o in &observations {
        while o.time_ms >= next_tick {
            pipeline.tick(next_tick, &mut findings);
            next_tick += MINUTE_MS;
        }
        pipeline.observe(o, &mut findings);
    }
    let seconds = started.elapsed().as_secs_f64();
    Throughput {
        events: observations.len(),
        seconds,
        events_per_second: observations.len() as f64 / seconds.max(f64::MIN_POSITIVE),
    }
}

fn observation<'a>(host: &'a str, p: &'a Played) -> Observation<'a> {
    let o = &p.observed;
    let c = &o.connection;
    Observation {
        agent: host,
        seq: p.seq,
        time_ms: o.time_ms,
        app: c.app_path.as_deref().unwrap_or_default(),
        domain: o.sni.as_deref().or(c.domain.as_deref()),
        dst_ip: c.dst_ip,
        dst_port: c.dst_port.unwrap_or(0),
        inbound: c.direction == Direction::Inbound,
        bytes_out: o.traffic.bytes_out,
        bytes_in: o.traffic.bytes_in,
        update_of: None,
        query_type: None,
        reference: None,
    }
}

/// The benign units each detector judges, as its keys name them.
fn count_units(o: &Observation<'_>, units: &mut HashMap<&'static str, HashSet<String>>) {
    let agent_app = format!("{}:{}", o.agent, o.app);
    let destination = o
        .domain
        .map(str::to_owned)
        .or_else(|| o.dst_ip.map(|ip| ip.to_string()))
        .unwrap_or_default();
    let mut add = |kind: &'static str, unit: String| {
        units.entry(kind).or_default().insert(unit);
    };
    add("dga", agent_app.clone());
    add("exfiltration", agent_app.clone());
    add("new_destinations", agent_app.clone());
    add(GENERIC, agent_app);
    if o.is_dns_query() {
        let domain = o
            .domain
            .and_then(palisade_detect::names::registrable_domain);
        add(
            "dns_tunnel",
            format!("{}:{}", o.agent, domain.unwrap_or_default()),
        );
    } else {
        add("beacon", format!("{}:{destination}", o.agent));
    }
    if let Some(ip) = o.dst_ip {
        add("port_scan", format!("{}:{ip}", o.agent));
    }
    add("host_sweep", format!("{}:{}", o.agent, o.dst_port));
}

fn score(
    args: &EvalArgs,
    events: usize,
    fleet: &Fleet,
    findings: &[Finding],
    labels: &HashMap<String, (Family, String)>,
    first_attack_ms: &HashMap<String, i64>,
    units: &HashMap<&'static str, HashSet<String>>,
) -> Report {
    // One alert per key: its first finding's time, all of its evidence.
    let mut alerts: BTreeMap<&str, (&str, i64, Vec<&str>)> = BTreeMap::new();
    for f in findings {
        let alert =
            alerts
                .entry(f.key.as_str())
                .or_insert((f.kind.as_str(), f.time_ms, Vec::new()));
        alert.2.extend(f.evidence.iter().map(String::as_str));
    }
    // Which campaign each alert is about, if most of its evidence is one attack's.
    let mut caught: HashMap<String, i64> = HashMap::new();
    let mut caught_by_behaviour: HashMap<String, i64> = HashMap::new();
    let mut figures: BTreeMap<&str, Tally> = BTreeMap::new();
    for (key, (kind, time_ms, evidence)) in &alerts {
        let mut by_campaign: HashMap<&str, (Family, usize)> = HashMap::new();
        for id in evidence {
            if let Some((family, campaign)) = labels.get(*id) {
                by_campaign.entry(campaign).or_insert((*family, 0)).1 += 1;
            }
        }
        let attack = by_campaign
            .iter()
            .max_by_key(|(_, (_, n))| *n)
            .filter(|(_, (_, n))| 2 * n > evidence.len());
        let tally = figures.entry(kind).or_default();
        tally.alerts += 1;
        match attack {
            Some((campaign, _)) if *kind == GENERIC => {
                tally.true_alerts += 1;
                let first = caught_by_behaviour
                    .entry((*campaign).to_owned())
                    .or_insert(*time_ms);
                *first = (*first).min(*time_ms);
            }
            Some((campaign, (family, _))) if detectors_for(*family).contains(kind) => {
                tally.true_alerts += 1;
                let first = caught.entry((*campaign).to_owned()).or_insert(*time_ms);
                *first = (*first).min(*time_ms);
            }
            Some(_) => tally.other_attack += 1,
            None => {
                if tally.false_examples.len() < 5 {
                    tally.false_examples.push((*key).to_owned());
                }
            }
        }
    }
    let mut campaigns: HashMap<Family, Vec<String>> = HashMap::new();
    for endpoint in &fleet.endpoints {
        for attack in &endpoint.attacks {
            let campaign = format!("{}@{}", attack.family.as_str(), endpoint.hostname);
            if first_attack_ms.contains_key(&campaign) {
                campaigns.entry(attack.family).or_default().push(campaign);
            }
        }
    }
    let families = family_figures(&campaigns, &caught, first_attack_ms);
    let behaviour_by_family = family_figures(&campaigns, &caught_by_behaviour, first_attack_ms);
    let detectors = KINDS
        .iter()
        .map(|&detector| {
            let Tally {
                alerts,
                true_alerts,
                other_attack,
                false_examples,
            } = figures.get(detector).cloned().unwrap_or_default();
            let false_alerts = alerts - true_alerts - other_attack;
            let benign_units = units.get(detector).map_or(0, HashSet::len);
            let precision = ratio(true_alerts + other_attack, alerts);
            let (caught, total) = if detector == GENERIC {
                behaviour_by_family
                    .iter()
                    .fold((0, 0), |(c, t), f| (c + f.detected, t + f.campaigns))
            } else {
                families
                    .iter()
                    .filter(|f| {
                        Family::ALL.iter().any(|family| {
                            family.as_str() == f.family
                                && detectors_for(*family).contains(&detector)
                        })
                    })
                    .fold((0, 0), |(c, t), f| (c + f.detected, t + f.campaigns))
            };
            let recall = ratio(caught, total);
            let f1 = match (precision, recall) {
                (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
                _ => None,
            };
            DetectorFigures {
                detector,
                alerts,
                true_alerts,
                other_attack_alerts: other_attack,
                false_alerts,
                precision,
                benign_units,
                false_positive_rate: ratio(false_alerts, benign_units),
                recall,
                f1,
                false_examples,
            }
        })
        .collect();
    Report {
        endpoints: args.endpoints,
        hours: args.hours,
        history_hours: args.history_hours,
        seed: args.seed,
        events,
        behaviour_model: ModelFigures {
            history_events: 0,
            windows: 0,
            applications: 0,
            model_bytes: 0,
            evaluation: None,
            promoted: false,
            reason: String::new(),
        },
        detectors,
        families,
        behaviour_by_family,
        throughput: Throughput {
            events: 0,
            seconds: 0.0,
            events_per_second: 0.0,
        },
    }
}

/// Per family: its campaigns, and those `caught` (campaign → first true alert) holds.
fn family_figures(
    campaigns: &HashMap<Family, Vec<String>>,
    caught: &HashMap<String, i64>,
    first_attack_ms: &HashMap<String, i64>,
) -> Vec<FamilyFigures> {
    Family::ALL
        .iter()
        .map(|family| {
            let all = campaigns.get(family).cloned().unwrap_or_default();
            let mut minutes: Vec<f64> = all
                .iter()
                .filter_map(|c| Some((caught.get(c)? - first_attack_ms.get(c)?) as f64 / 60_000.0))
                .collect();
            minutes.sort_by(f64::total_cmp);
            let detected = minutes.len();
            FamilyFigures {
                family: family.as_str(),
                campaigns: all.len(),
                detected,
                recall: ratio(detected, all.len()),
                median_minutes_to_alert: minutes.get(minutes.len() / 2).copied(),
                missed: all
                    .into_iter()
                    .filter(|c| !caught.contains_key(c))
                    .collect(),
            }
        })
        .collect()
}

/// One detector's alerts by what they were about.
#[derive(Debug, Clone, Default)]
struct Tally {
    alerts: usize,
    true_alerts: usize,
    other_attack: usize,
    false_examples: Vec<String>,
}

fn ratio(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

fn print_families(title: &str, families: &[FamilyFigures]) {
    let show = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
    println!(
        "{:<17} {:>9} {:>8} {:>7} {:>14}",
        title, "campaigns", "detected", "recall", "median minutes"
    );
    for f in families {
        println!(
            "{:<17} {:>9} {:>8} {:>7} {:>14}",
            f.family,
            f.campaigns,
            f.detected,
            show(f.recall),
            f.median_minutes_to_alert
                .map_or_else(|| "-".to_owned(), |m| format!("{m:.1}")),
        );
    }
}

fn print_tables(report: &Report) {
    let show = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
    println!(
        "{} endpoints, {} h, seed {}: {} connections",
        report.endpoints, report.hours, report.seed, report.events
    );
    println!();
    println!(
        "{:<17} {:>6} {:>5} {:>6} {:>6} {:>9} {:>8} {:>9} {:>7} {:>6}",
        "detector",
        "alerts",
        "true",
        "other",
        "false",
        "precision",
        "benign",
        "FPR",
        "recall",
        "F1"
    );
    for d in &report.detectors {
        println!(
            "{:<17} {:>6} {:>5} {:>6} {:>6} {:>9} {:>8} {:>9} {:>7} {:>6}",
            d.detector,
            d.alerts,
            d.true_alerts,
            d.other_attack_alerts,
            d.false_alerts,
            show(d.precision),
            d.benign_units,
            d.false_positive_rate
                .map_or_else(|| "-".to_owned(), |v| format!("{:.4}%", v * 100.0)),
            show(d.recall),
            show(d.f1),
        );
    }
    println!();
    print_families("family", &report.families);
    println!();
    print_families(&format!("{GENERIC} by family"), &report.behaviour_by_family);
    let m = &report.behaviour_model;
    println!();
    println!(
        "behaviour model: {} h of history, {} events, {} windows, {} applications with a profile, {} bytes",
        report.history_hours, m.history_events, m.windows, m.applications, m.model_bytes
    );
    if let Some(e) = &m.evaluation {
        println!(
            "  held out {} windows: AUC {} against synthetic anomalies, {:.3}% flagged, {:.1}% of anomalies flagged",
            e.windows,
            show(e.auc),
            e.flagged * 100.0,
            e.detected * 100.0
        );
    }
    println!(
        "  {}: {}",
        if m.promoted {
            "promoted"
        } else {
            "not promoted"
        },
        m.reason
    );
    let t = &report.throughput;
    println!();
    println!(
        "pipeline alone, one thread: {} connections in {:.3} s = {:.0} per second",
        t.events, t.seconds, t.events_per_second
    );
    for d in report
        .detectors
        .iter()
        .filter(|d| !d.false_examples.is_empty())
    {
        println!(
            "false {} alerts, e.g.: {}",
            d.detector,
            d.false_examples.join(", ")
        );
    }
}
