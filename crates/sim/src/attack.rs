//! Labelled attacks a simulated endpoint can carry: each produces connections that a detector
//! should find, every one labelled with its family and campaign so that detectors can be scored.

use palisade_proto::Protocol;
use rand::Rng;
use rand::rngs::SmallRng;
use serde::{Deserialize, Serialize};

/// The kinds of attack the simulator plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Malware looking up algorithmically generated domains to find its server.
    Dga,
    /// Malware calling home at a regular interval, with jitter.
    Beacon,
    /// A large upload to a destination the application never used before.
    Exfiltration,
    /// Many ports of one host on the local network, tried in minutes.
    PortScan,
    /// Data carried in DNS query names under one domain.
    DnsTunnel,
    /// A known application suddenly contacting many destinations it never used.
    NewDestinations,
}

impl Family {
    /// Every family, in a fixed order.
    pub const ALL: [Family; 6] = [
        Family::Dga,
        Family::Beacon,
        Family::Exfiltration,
        Family::PortScan,
        Family::DnsTunnel,
        Family::NewDestinations,
    ];

    /// The name used in labels and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Dga => "dga",
            Family::Beacon => "beacon",
            Family::Exfiltration => "exfiltration",
            Family::PortScan => "port_scan",
            Family::DnsTunnel => "dns_tunnel",
            Family::NewDestinations => "new_destinations",
        }
    }

    /// The executable that misbehaves.
    pub fn app_path(self) -> &'static str {
        match self {
            Family::Dga => "/tmp/.X11-cache/dbus-helper",
            Family::Beacon => "/var/tmp/.update/kworkerd",
            Family::Exfiltration => "/usr/bin/rclone",
            Family::PortScan => "/usr/bin/nmap",
            Family::DnsTunnel => "/usr/local/bin/dnscat",
            Family::NewDestinations => "/usr/bin/slack",
        }
    }
}

/// What marks an event as part of an attack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    /// The kind of attack.
    pub family: Family,
    /// Which attack: `FAMILY@HOSTNAME`.
    pub campaign: String,
}

/// One attack on one endpoint, active from `start_ms` for `duration_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attack {
    /// The kind.
    pub family: Family,
    /// When it starts, ms since the Unix epoch.
    pub start_ms: i64,
    /// How long it lasts.
    pub duration_ms: i64,
    /// Per-attack randomness (its domains, its server).
    pub seed: u64,
}

/// One connection an attack makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Offset into the minute, ms.
    pub offset_ms: i64,
    /// Domain, when the connection has one.
    pub domain: Option<String>,
    /// Port.
    pub port: u16,
    /// Transport.
    pub protocol: Protocol,
    /// Bytes sent and received.
    pub bytes: (u64, u64),
    /// A LAN host (last octet) instead of a domain, for scans.
    pub lan_host: Option<u8>,
}

const TLDS: [&str; 6] = ["com", "net", "org", "info", "biz", "ru"];

impl Attack {
    /// Whether the attack is active in the minute starting at `minute_ms`.
    pub fn active(&self, minute_ms: i64) -> bool {
        minute_ms >= self.start_ms && minute_ms < self.start_ms.saturating_add(self.duration_ms)
    }

    /// The connections the attack makes in one active minute (`index` counts minutes from its
    /// start).
    pub fn minute(&self, index: i64, rng: &mut SmallRng) -> Vec<Step> {
        let mut steps = Vec::new();
        match self.family {
            Family::Dga => {
                // Every fifth minute, a burst of lookups that walks on through the day's list
                // of generated names (only one of which would ever be registered).
                if index % 5 == 0 {
                    let day = self.start_ms.div_euclid(86_400_000) + index / 1_440;
                    let first = u32::try_from(index % 1_440 * 32).unwrap_or(0);
                    for n in 0..rng.random_range(15..30) {
                        steps.push(dns(rng, generated_domain(self.seed, day, first + n)));
                    }
                }
            }
            Family::Beacon => {
                // Every 60 s ± 10 %, a small request and a small reply to one server.
                let jitter = rng.random_range(-6_000..=6_000);
                steps.push(Step {
                    offset_ms: (30_000 + jitter).clamp(0, 59_999),
                    domain: Some(format!("cdn-{:04x}.cloud-metrics.net", self.seed % 0xffff)),
                    port: 443,
                    protocol: Protocol::Tcp,
                    bytes: (rng.random_range(380..420), rng.random_range(1_150..1_250)),
                    lan_host: None,
                });
            }
            Family::Exfiltration => {
                // Large uploads, a few per minute, to a storage service never used before.
                for _ in 0..rng.random_range(2..5) {
                    steps.push(Step {
                        offset_ms: rng.random_range(0..60_000),
                        domain: Some("transfer.filedrop-share.io".to_owned()),
                        port: 443,
                        protocol: Protocol::Tcp,
                        bytes: (rng.random_range(40_000_000..90_000_000), 20_000),
                        lan_host: None,
                    });
                }
            }
            Family::PortScan => {
                // 100 ports a minute of one neighbour, each answered with a reset.
                let first = u16::try_from(index.rem_euclid(10) * 100 + 1).unwrap_or(1);
                for port in first..first.saturating_add(100) {
                    steps.push(Step {
                        offset_ms: rng.random_range(0..60_000),
                        domain: None,
                        port,
                        protocol: Protocol::Tcp,
                        bytes: (60, 40),
                        lan_host: Some(u8::try_from(self.seed % 200 + 20).unwrap_or(20)),
                    });
                }
            }
            Family::DnsTunnel => {
                // Tens of queries a minute, each carrying 40-60 characters of encoded data.
                for _ in 0..rng.random_range(30..60) {
                    let len = rng.random_range(40..60);
                    let data: String = (0..len).map(|_| base32_char(rng)).collect();
                    steps.push(dns(rng, format!("{data}.t.exfil-dns.net")));
                }
            }
            Family::NewDestinations => {
                // A chat client contacting addresses it never used, one or two a minute.
                for _ in 0..rng.random_range(1..3) {
                    let n: u32 = rng.random_range(0..10_000);
                    steps.push(Step {
                        offset_ms: rng.random_range(0..60_000),
                        domain: Some(format!("node{n}.pastebin-mirror.xyz")),
                        port: 8443,
                        protocol: Protocol::Tcp,
                        bytes: (rng.random_range(2_000..20_000), 5_000),
                        lan_host: None,
                    });
                }
            }
        }
        steps
    }
}

fn dns(rng: &mut SmallRng, name: String) -> Step {
    Step {
        offset_ms: rng.random_range(0..60_000),
        domain: Some(name),
        port: 53,
        protocol: Protocol::Udp,
        bytes: (rng.random_range(60..120), rng.random_range(60..200)),
        lan_host: None,
    }
}

/// The `n`th name of a day for a generator seeded with `seed`: 10-20 random letters and a TLD.
pub fn generated_domain(seed: u64, day: i64, n: u32) -> String {
    use rand::SeedableRng;
    let mut rng = SmallRng::seed_from_u64(
        seed ^ (day as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(n) << 40,
    );
    let len = rng.random_range(10..=20);
    let label: String = (0..len)
        .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
        .collect();
    let tld = TLDS
        .get(rng.random_range(0..TLDS.len()))
        .copied()
        .unwrap_or("com");
    format!("{label}.{tld}")
}

fn base32_char(rng: &mut SmallRng) -> char {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    ALPHABET
        .get(rng.random_range(0..ALPHABET.len()))
        .map_or('a', |b| char::from(*b))
}
