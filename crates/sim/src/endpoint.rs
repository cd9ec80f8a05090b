//! A simulated endpoint: its person, its applications and its attacks, and the connections they
//! make in any stretch of time. The traffic of a minute depends only on the endpoint and the
//! minute, so asking for an hour at once or minute by minute gives the same connections.

use std::net::{IpAddr, Ipv4Addr};

use palisade_proto::{Connection, Direction, Traffic};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::attack::{Attack, Family, Label};
use crate::catalog::{APPS, Activity, App, Runner};

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;

/// The resolver every endpoint asks (its queries carry the looked-up name as the domain).
const RESOLVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 53);

/// One connection the endpoint made, before any policy decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// When, ms since the Unix epoch.
    pub time_ms: i64,
    /// The application, the user and the destination.
    pub connection: Connection,
    /// Process id.
    pub pid: u32,
    /// TLS server name, for TLS connections.
    pub sni: Option<String>,
    /// Bytes and packets each way.
    pub traffic: Traffic,
    /// The attack this connection belongs to, if any.
    pub label: Option<Label>,
}

/// A simulated endpoint.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Host name, unique in the fleet.
    pub hostname: String,
    /// Operating system and version.
    pub os: String,
    /// The person who works on it.
    pub user: String,
    /// Their uid.
    pub uid: u32,
    /// Local time minus UTC, hours (working hours follow it).
    pub utc_offset_hours: i64,
    /// Its address on the local network.
    pub address: Ipv4Addr,
    /// The attacks it carries.
    pub attacks: Vec<Attack>,
    apps: Vec<&'static App>,
    seed: u64,
}

impl Endpoint {
    /// An endpoint with the applications a machine like it has (chosen by `seed`).
    pub fn new(index: u32, seed: u64) -> Endpoint {
        let mut rng = SmallRng::seed_from_u64(seed);
        let apps = APPS
            .iter()
            .filter(|app| rng.random_range(0..100) < app.installed_percent)
            .collect();
        const USERS: [&str; 12] = [
            "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
            "mallory", "oscar",
        ];
        const SYSTEMS: [&str; 3] = ["Debian 12", "Ubuntu 24.04", "Fedora 41"];
        fn pick(list: &[&'static str], n: usize) -> &'static str {
            list.get(n % list.len()).copied().unwrap_or_default()
        }
        let [_, _, hi, lo] = (index + 10).to_be_bytes();
        Endpoint {
            hostname: format!("ws-{index:04}"),
            os: pick(&SYSTEMS, rng.random_range(0..3)).to_owned(),
            user: pick(&USERS, usize::try_from(index).unwrap_or(0)).to_owned(),
            uid: 1000 + index % 50,
            utc_offset_hours: match index % 3 {
                0 => 0,
                1 => 1,
                _ => -5,
            },
            address: Ipv4Addr::new(10, 1, hi, lo),
            attacks: Vec::new(),
            apps,
            seed,
        }
    }

    /// The applications installed on it.
    pub fn apps(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.apps.iter().map(|app| app.path)
    }

    /// Every connection made from `from_ms` (inclusive) to `to_ms` (exclusive), oldest first.
    pub fn traffic(&self, from_ms: i64, to_ms: i64) -> Vec<Observed> {
        let mut out = Vec::new();
        let mut minute = from_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
        while minute < to_ms {
            self.minute(minute, &mut out);
            minute += MINUTE_MS;
        }
        out.retain(|o| o.time_ms >= from_ms && o.time_ms < to_ms);
        out.sort_by_key(|o| o.time_ms);
        out
    }

    fn minute(&self, minute_ms: i64, out: &mut Vec<Observed>) {
        for (n, app) in self.apps.iter().enumerate() {
            let mut rng = self.rng(n as u64, minute_ms);
            let rate = f64::from(app.per_hour) / 60.0 * self.busy(app.activity, minute_ms);
            for _ in 0..poisson(rate, &mut rng) {
                if let Some(o) = self.normal(app, minute_ms, &mut rng) {
                    out.push(o);
                }
            }
        }
        for (n, attack) in self.attacks.iter().enumerate() {
            if !attack.active(minute_ms) {
                continue;
            }
            let mut rng = self.rng(1_000 + n as u64, minute_ms);
            let index = (minute_ms - attack.start_ms).div_euclid(MINUTE_MS);
            let label = Label {
                family: attack.family,
                campaign: format!("{}@{}", attack.family.as_str(), self.hostname),
            };
            for step in attack.minute(index, &mut rng) {
                let dst_ip = match (step.lan_host, step.port, &step.domain) {
                    (Some(host), _, _) => IpAddr::V4(Ipv4Addr::new(10, 1, 0, host)),
                    (None, 53, _) | (None, _, None) => IpAddr::V4(RESOLVER),
                    (None, _, Some(domain)) => address_of(domain),
                };
                let runner = if attack.family == Family::PortScan {
                    Runner::Root
                } else {
                    Runner::User
                };
                let sni = (step.port == 443).then(|| step.domain.clone()).flatten();
                out.push(Observed {
                    time_ms: minute_ms + step.offset_ms,
                    connection: self.connection(
                        attack.family.app_path(),
                        "/usr/bin/bash",
                        None,
                        runner,
                        step.domain,
                        dst_ip,
                        step.port,
                        step.protocol,
                    ),
                    pid: self.pid(attack.family.app_path(), minute_ms),
                    sni,
                    traffic: traffic(step.bytes, &mut rng),
                    label: Some(label.clone()),
                });
            }
        }
    }

    fn normal(&self, app: &App, minute_ms: i64, rng: &mut SmallRng) -> Option<Observed> {
        let total: u32 = app.destinations.iter().map(|d| d.weight).sum();
        let mut pick = rng.random_range(0..total.max(1));
        let dest = app.destinations.iter().find(|d| {
            let hit = pick < d.weight;
            pick = pick.saturating_sub(d.weight);
            hit
        })?;
        let dst_ip = if dest.port == 53 {
            IpAddr::V4(RESOLVER)
        } else {
            address_of(dest.domain)
        };
        // Sizes vary around the typical figure, from a quarter to twice it.
        let percent = rng.random_range(25..200);
        let bytes = (dest.bytes.0 * percent / 100, dest.bytes.1 * percent / 100);
        Some(Observed {
            time_ms: minute_ms + rng.random_range(0..MINUTE_MS),
            connection: self.connection(
                app.path,
                app.parent,
                app.unit,
                app.runner,
                Some(dest.domain.to_owned()),
                dst_ip,
                dest.port,
                dest.protocol,
            ),
            pid: self.pid(app.path, minute_ms),
            sni: (dest.port == 443).then(|| dest.domain.to_owned()),
            traffic: traffic(bytes, rng),
            label: None,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn connection(
        &self,
        path: &str,
        parent: &str,
        unit: Option<&str>,
        runner: Runner,
        domain: Option<String>,
        dst_ip: IpAddr,
        dst_port: u16,
        protocol: palisade_proto::Protocol,
    ) -> Connection {
        let (user, uid) = match runner {
            Runner::User => (self.user.clone(), self.uid),
            Runner::Root => ("root".to_owned(), 0),
        };
        Connection {
            app_path: Some(path.to_owned()),
            user: Some(user),
            uid: Some(uid),
            parent_path: Some(parent.to_owned()),
            unit: unit.map(str::to_owned),
            domain,
            src_ip: Some(IpAddr::V4(self.address)),
            dst_ip: Some(dst_ip),
            dst_port: Some(dst_port),
            protocol: Some(protocol),
            direction: Direction::Outbound,
            ..Connection::default()
        }
        .normalize()
    }

    /// How busy an application is in a minute: people work weekdays 9-18 local time.
    fn busy(&self, activity: Activity, minute_ms: i64) -> f64 {
        if activity == Activity::Background {
            return 1.0;
        }
        let local = minute_ms + self.utc_offset_hours * HOUR_MS;
        // 1970-01-01 was a Thursday: day 0 is weekday 3 counting from Monday = 0.
        let weekday = (local.div_euclid(DAY_MS) + 3).rem_euclid(7);
        let hour = local.rem_euclid(DAY_MS) / HOUR_MS;
        match (weekday < 5, hour) {
            (true, 9..=11 | 13..=17) => 1.0,
            (true, 8 | 12 | 18 | 19) => 0.3,
            (true, _) => 0.02,
            (false, 10..=20) => 0.1,
            (false, _) => 0.02,
        }
    }

    /// A process id that stays the same for an application through a day.
    fn pid(&self, path: &str, minute_ms: i64) -> u32 {
        let h = fnv(path.as_bytes()) ^ self.seed ^ minute_ms.div_euclid(DAY_MS) as u64;
        1_000 + u32::try_from(h % 60_000).unwrap_or(0)
    }

    fn rng(&self, stream: u64, minute_ms: i64) -> SmallRng {
        SmallRng::seed_from_u64(
            self.seed
                ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15)
                ^ (minute_ms as u64).rotate_left(17),
        )
    }
}

/// The public address a domain resolves to: stable, spread over a few well-known public blocks.
/// Corporate names (`*.example-corp.com`) are on the local network.
pub fn address_of(domain: &str) -> IpAddr {
    let h = fnv(domain.as_bytes());
    let [a, b, c, d, ..] = h.to_be_bytes();
    if domain.ends_with(".example-corp.com") {
        return IpAddr::V4(Ipv4Addr::new(10, 0, c, d.max(1)));
    }
    const BLOCKS: [u8; 8] = [23, 34, 52, 104, 142, 151, 185, 199];
    let first = BLOCKS
        .get(usize::from(a) % BLOCKS.len())
        .copied()
        .unwrap_or(23);
    IpAddr::V4(Ipv4Addr::new(first, b, c, d.max(1)))
}

fn traffic(bytes: (u64, u64), rng: &mut SmallRng) -> Traffic {
    let packets = |b: u64| b / 1_200 + 1;
    Traffic {
        bytes_out: bytes.0,
        bytes_in: bytes.1,
        packets_out: packets(bytes.0),
        packets_in: packets(bytes.1),
        duration_ms: rng.random_range(20..30_000),
    }
}

/// A Poisson-distributed count with mean `mean` (Knuth's method; means here are small).
fn poisson(mean: f64, rng: &mut SmallRng) -> u32 {
    let limit = (-mean).exp();
    let mut product: f64 = rng.random();
    let mut count = 0;
    while product > limit && count < 10_000 {
        count += 1;
        product *= rng.random::<f64>();
    }
    count
}

/// FNV-1a, for stable spreading of names (not for security).
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
