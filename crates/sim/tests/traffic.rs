//! The simulated traffic looks like what it claims to be: people work in working hours, the same
//! seed gives the same connections however the time is sliced, and each attack leaves the traces
//! its detector looks for.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::{BTreeSet, HashMap};

use palisade_sim::{Family, Fleet, Observed};

/// Monday 2026-11-23 00:00 UTC.
const MONDAY_MS: i64 = 1_795_392_000_000;
const HOUR_MS: i64 = 3_600_000;

fn labelled(fleet: &Fleet, family: Family, hours: i64) -> Vec<Observed> {
    fleet
        .endpoints
        .iter()
        .filter(|e| e.attacks.iter().any(|a| a.family == family))
        .flat_map(|e| e.traffic(MONDAY_MS, MONDAY_MS + hours * HOUR_MS))
        .filter(|o| o.label.as_ref().is_some_and(|l| l.family == family))
        .collect()
}

#[test]
fn the_same_seed_gives_the_same_connections_however_time_is_sliced() {
    let a = Fleet::new(7, 10, MONDAY_MS);
    let b = Fleet::new(7, 10, MONDAY_MS);
    let whole = a.endpoints[3].traffic(MONDAY_MS + 9 * HOUR_MS, MONDAY_MS + 11 * HOUR_MS);
    let mut sliced = b.endpoints[3].traffic(MONDAY_MS + 9 * HOUR_MS, MONDAY_MS + 10 * HOUR_MS);
    sliced.extend(b.endpoints[3].traffic(MONDAY_MS + 10 * HOUR_MS, MONDAY_MS + 11 * HOUR_MS));
    assert!(whole.len() > 50, "{} connections", whole.len());
    assert_eq!(whole, sliced);
    let other = Fleet::new(8, 10, MONDAY_MS);
    assert_ne!(
        whole,
        other.endpoints[3].traffic(MONDAY_MS + 9 * HOUR_MS, MONDAY_MS + 11 * HOUR_MS)
    );
}

#[test]
fn people_work_in_working_hours() {
    let fleet = Fleet::new(1, 20, MONDAY_MS);
    let count = |from: i64| -> usize {
        fleet
            .endpoints
            .iter()
            .filter(|e| e.utc_offset_hours == 0)
            .map(|e| {
                e.traffic(from, from + HOUR_MS)
                    .iter()
                    .filter(|o| o.connection.user.as_deref() != Some("root") && o.label.is_none())
                    .count()
            })
            .sum()
    };
    let morning = count(MONDAY_MS + 10 * HOUR_MS);
    let night = count(MONDAY_MS + 3 * HOUR_MS);
    assert!(
        morning > 20 * night.max(1),
        "10:00 {morning}, 03:00 {night}"
    );
}

#[test]
fn every_attack_family_is_in_a_fleet_of_thirty() {
    let fleet = Fleet::new(3, 30, MONDAY_MS);
    let families: BTreeSet<&str> = fleet
        .endpoints
        .iter()
        .flat_map(|e| e.attacks.iter().map(|a| a.family.as_str()))
        .collect();
    assert_eq!(families.len(), Family::ALL.len(), "{families:?}");
    let names: BTreeSet<&str> = fleet
        .endpoints
        .iter()
        .map(|e| e.hostname.as_str())
        .collect();
    assert_eq!(names.len(), 30);
}

#[test]
fn a_beacon_calls_one_server_every_minute_with_jitter() {
    let fleet = Fleet::new(3, 30, MONDAY_MS);
    let beacons = labelled(&fleet, Family::Beacon, 2);
    let domains: BTreeSet<_> = beacons
        .iter()
        .map(|o| o.connection.domain.clone())
        .collect();
    assert_eq!(domains.len(), 1, "{domains:?}");
    let gaps: Vec<i64> = beacons
        .windows(2)
        .map(|w| w[1].time_ms - w[0].time_ms)
        .collect();
    assert!(gaps.len() > 90, "{} beacons in 2 h", beacons.len());
    assert!(
        gaps.iter().all(|g| (48_000..=72_000).contains(g)),
        "{gaps:?}"
    );
    assert!(gaps.iter().collect::<BTreeSet<_>>().len() > 10, "no jitter");
}

#[test]
fn a_dga_looks_up_many_names_nobody_else_uses() {
    let fleet = Fleet::new(3, 30, MONDAY_MS);
    let lookups = labelled(&fleet, Family::Dga, 2);
    let names: BTreeSet<_> = lookups
        .iter()
        .map(|o| o.connection.domain.clone().unwrap())
        .collect();
    assert!(names.len() > 200, "{} names", names.len());
    assert!(lookups.iter().all(|o| o.connection.dst_port == Some(53)));
}

#[test]
fn a_port_scan_tries_hundreds_of_ports_of_one_host() {
    let fleet = Fleet::new(3, 30, MONDAY_MS);
    let probes = labelled(&fleet, Family::PortScan, 1);
    let hosts: BTreeSet<_> = probes.iter().map(|o| o.connection.dst_ip).collect();
    let ports: BTreeSet<_> = probes.iter().map(|o| o.connection.dst_port).collect();
    assert_eq!(hosts.len(), 1);
    assert!(ports.len() >= 900, "{} ports", ports.len());
}

#[test]
fn exfiltration_uploads_gigabytes_to_one_new_destination() {
    let fleet = Fleet::new(3, 30, MONDAY_MS);
    let uploads = labelled(&fleet, Family::Exfiltration, 1);
    let out: u64 = uploads.iter().map(|o| o.traffic.bytes_out).sum();
    assert!(out > 3_000_000_000, "{out} bytes out");
    let normal_out: u64 = fleet.endpoints[0]
        .traffic(MONDAY_MS + 9 * HOUR_MS, MONDAY_MS + 10 * HOUR_MS)
        .iter()
        .map(|o| o.traffic.bytes_out)
        .sum();
    assert!(out > 100 * normal_out, "{out} vs {normal_out}");
}

#[test]
fn a_dns_tunnel_carries_data_in_long_names_under_one_domain() {
    let fleet = Fleet::new(3, 30, MONDAY_MS);
    let queries = labelled(&fleet, Family::DnsTunnel, 1);
    assert!(queries.len() > 1_000, "{} queries", queries.len());
    let mut by_parent: HashMap<String, usize> = HashMap::new();
    for q in &queries {
        let name = q.connection.domain.clone().unwrap();
        let (first, parent) = name.split_once('.').unwrap();
        assert!(first.len() >= 40, "{name}");
        *by_parent.entry(parent.to_owned()).or_default() += 1;
    }
    assert_eq!(by_parent.len(), 1, "{by_parent:?}");
}

#[test]
fn a_compromised_app_is_a_known_app_contacting_new_places() {
    let fleet = Fleet::new(3, 30, MONDAY_MS);
    let calls = labelled(&fleet, Family::NewDestinations, 3);
    let domains: BTreeSet<_> = calls.iter().map(|o| o.connection.domain.clone()).collect();
    assert!(domains.len() > 100, "{} destinations", domains.len());
    assert!(
        calls
            .iter()
            .all(|o| o.connection.app_path.as_deref() == Some("/usr/bin/slack"))
    );
}
