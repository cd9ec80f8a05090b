//! Simulated DNS traffic for the evaluation: tunnels (iodine-like, dnscat2-like; low and high
//! rate) and benign heavy patterns (CDN hashed hosts, DNSBL and reputation lookups, ad frames,
//! cloud service names). Seeded, so every figure in `docs/detection.md` reproduces.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// One query of a simulated stream.
#[derive(Debug, Clone)]
pub struct Query {
    pub time_ms: i64,
    pub name: String,
    pub qtype: &'static str,
}

/// The tunnel encodings simulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// iodine: base32 / base64u / base128 (mixed case, bytes above 0x7f printed `\xNN` as Zeek
    /// does), a command and user character and a short counter first, labels up to 63.
    Iodine,
    /// dnscat2: hex of a 9-byte header (random packet id, type, session id, seq, ack) and the
    /// payload, labels up to 63, half the tunnels with
    /// a `dnscat.` label first; TXT, CNAME, MX and A queries mixed.
    Dnscat,
}

/// Rate of a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// One query every 15 to 60 s (per tunnel; each gap within ±30 % of it) for an hour.
    Low,
    /// 10 to 50 queries a second for 2 to 10 minutes.
    High,
    /// As `Low`, with names cut short as a cautious operator would (iodine `-M`): at most 40
    /// characters of data a query. Outside the target; measured to show the limit.
    LowShort,
}

const BASE32: &[u8] = b"abcdefghijklmnopqrstuvwxyz012345";
const BASE64U: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &[u8] = b"0123456789abcdef";
const TLDS: [&str; 8] = ["com", "net", "org", "io", "xyz", "info", "co.uk", "top"];

/// A random registrable domain: 5 to 12 letters under a common suffix.
pub fn random_domain(rng: &mut SmallRng) -> String {
    let n = rng.random_range(5..=12);
    let tld = TLDS[rng.random_range(0..TLDS.len())];
    format!(
        "{}.{tld}",
        random_string(rng, b"abcdefghijklmnopqrstuvwxyz", n)
    )
}

/// One tunnel's queries under `domain`.
pub fn tunnel(rng: &mut SmallRng, encoding: Encoding, rate: Rate, domain: &str) -> Vec<Query> {
    let (period_ms, duration_ms) = match rate {
        Rate::Low | Rate::LowShort => (rng.random_range(15_000..=60_000), 3_600_000),
        Rate::High => (
            1000 / rng.random_range(10..=50),
            rng.random_range(120_000..=600_000),
        ),
    };
    // iodine picks one encoding per session; dnscat2 one prefix style per session.
    let iodine_alphabet = rng.random_range(0..3);
    let dnscat_prefix = rng.random_bool(0.5);
    let session: u16 = rng.random();
    let topdomain = if rng.random_bool(0.5) {
        format!("t1.{domain}")
    } else {
        domain.to_owned()
    };
    let mut out = Vec::new();
    let mut t: i64 = rng.random_range(0..60_000);
    let mut counter: u32 = rng.random();
    while t < duration_ms {
        counter = counter.wrapping_add(1);
        // Low-rate sessions are mostly idle: a share of the queries are short pings.
        let idle = rate != Rate::High && rng.random_bool(0.4);
        let short = rate == Rate::LowShort;
        let (name, qtype) = match encoding {
            Encoding::Iodine => {
                let (alphabet, max_chars) = match iodine_alphabet {
                    0 => (Alphabet::Chars(BASE32), 200),
                    1 => (Alphabet::Chars(BASE64U), 200),
                    _ => (Alphabet::Base128, 180),
                };
                let cmd = ALNUM[rng.random_range(0..ALNUM.len())] as char;
                let user = HEX[rng.random_range(0..HEX.len())] as char;
                let seq = encode_counter(counter);
                let len = match (idle, short) {
                    (true, _) => rng.random_range(4..=10),
                    (false, true) => rng.random_range(20..=36),
                    (false, false) => rng.random_range(40..=max_chars),
                };
                let data = alphabet.string(rng, len);
                let qtype = if rng.random_bool(0.8) {
                    "NULL"
                } else {
                    ["TXT", "CNAME", "A"][rng.random_range(0..3)]
                };
                (
                    format!(
                        "{}.{topdomain}",
                        labels(&format!("{cmd}{user}{seq}{data}"), 63)
                    ),
                    qtype,
                )
            }
            Encoding::Dnscat => {
                let payload = match (idle || rng.random_bool(0.2), short) {
                    (true, _) => 0,
                    (false, true) => rng.random_range(4..=11),
                    (false, false) => rng.random_range(8..=110),
                };
                let mut hex = String::new();
                // dnscat2's MSG header: packet id (random), type, session id, seq, ack.
                let mut header = [0u8; 9];
                rng.fill(&mut header[..2]);
                header[2] = 0x01;
                header[3..5].copy_from_slice(&session.to_be_bytes());
                header[5..7].copy_from_slice(&(counter as u16).to_be_bytes());
                header[7..9].copy_from_slice(&((counter >> 3) as u16).to_be_bytes());
                for b in header
                    .iter()
                    .copied()
                    .chain((0..payload).map(|_| rng.random::<u8>()))
                {
                    hex.push_str(&format!("{b:02x}"));
                }
                let prefix = if dnscat_prefix { "dnscat." } else { "" };
                let qtype = ["TXT", "CNAME", "MX", "A"][rng.random_range(0..4)];
                (format!("{prefix}{}.{domain}", labels(&hex, 63)), qtype)
            }
        };
        out.push(Query {
            time_ms: t,
            name,
            qtype,
        });
        let gap = match rate {
            Rate::Low | Rate::LowShort => {
                (f64::from(period_ms) * rng.random_range(0.7..1.3)) as i64
            }
            Rate::High => i64::from(period_ms.max(1)),
        };
        t += gap.max(1);
    }
    out
}

/// Benign patterns that stress the detector, each as one stream per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Benign {
    /// `r{n}---sn-{8}.googlevideo.com`: a video client, 1 query a second for 30 minutes.
    GoogleVideo,
    /// `e{n}.{a,b,dscb}.akamaiedge.net` and `a{n}.dscd.akamai.net`: 1 a second for 30 minutes.
    Akamai,
    /// `scontent-{iata}{n}-{n}.xx.fbcdn.net`: 1 a second for 30 minutes.
    Fbcdn,
    /// `{32 hex}.safeframe.googlesyndication.com`: ad frames, 1 every 3 s for an hour.
    Safeframe,
    /// `{service}.{region}.amazonaws.com`: an SDK calling many services, 2 a second.
    AwsServices,
    /// `d.c.b.a.zen.spamhaus.org`-style DNSBL lookups of random addresses, 5 a second for an hour.
    Dnsbl,
    /// `{hex40}.{n}.sxl.sophosxl.net`-style antivirus hash lookups, 1 a second for an hour.
    AntivirusHash,
    /// `{26 base32}.avqs.mcafee.com`-style reputation lookups, 1 a second for an hour.
    ReputationBase32,
    /// `{uuid}.ingest.example-telemetry.com`: one device id, many event kinds, 1 every 2 s.
    Telemetry,
    /// Mail server checking senders: `_dmarc.`, `selector._domainkey.` and MX of many domains
    /// under one DKIM provider.
    MailChecks,
}

impl Benign {
    pub const ALL: [Benign; 10] = [
        Benign::GoogleVideo,
        Benign::Akamai,
        Benign::Fbcdn,
        Benign::Safeframe,
        Benign::AwsServices,
        Benign::Dnsbl,
        Benign::AntivirusHash,
        Benign::ReputationBase32,
        Benign::Telemetry,
        Benign::MailChecks,
    ];
}

/// One benign stream of `pattern`.
pub fn benign(rng: &mut SmallRng, pattern: Benign) -> Vec<Query> {
    let (period_ms, duration_ms): (i64, i64) = match pattern {
        Benign::GoogleVideo | Benign::Akamai | Benign::Fbcdn => (1000, 1_800_000),
        Benign::Safeframe => (3000, 3_600_000),
        Benign::AwsServices => (500, 1_800_000),
        Benign::Dnsbl => (200, 3_600_000),
        Benign::AntivirusHash | Benign::ReputationBase32 => (1000, 3_600_000),
        Benign::Telemetry => (2000, 3_600_000),
        Benign::MailChecks => (1000, 3_600_000),
    };
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        random_string(rng, HEX, 8),
        random_string(rng, HEX, 4),
        random_string(rng, HEX, 4),
        random_string(rng, HEX, 4),
        random_string(rng, HEX, 12)
    );
    let mut out = Vec::new();
    let mut t = 0;
    while t < duration_ms {
        let (name, qtype) = match pattern {
            Benign::GoogleVideo => (
                format!(
                    "r{}---sn-{}.googlevideo.com",
                    rng.random_range(1..=20),
                    random_string(rng, ALNUM, 8)
                ),
                "A",
            ),
            Benign::Akamai => {
                let name = if rng.random_bool(0.5) {
                    format!(
                        "e{}.{}.akamaiedge.net",
                        rng.random_range(1..=99_999),
                        ["a", "b", "dscb", "dsct"][rng.random_range(0..4)]
                    )
                } else {
                    format!("a{}.dscd.akamai.net", rng.random_range(1..=9_999))
                };
                (name, "A")
            }
            Benign::Fbcdn => {
                let iata = ["fra", "ams", "lhr", "cdg", "iad", "sjc", "nrt", "sin"]
                    [rng.random_range(0..8)];
                (
                    format!(
                        "scontent-{iata}{}-{}.xx.fbcdn.net",
                        rng.random_range(1..=5),
                        rng.random_range(1..=2)
                    ),
                    "A",
                )
            }
            Benign::Safeframe => (
                format!(
                    "{}.safeframe.googlesyndication.com",
                    random_string(rng, HEX, 32)
                ),
                "A",
            ),
            Benign::AwsServices => {
                let service = [
                    "ec2",
                    "s3",
                    "sqs",
                    "sns",
                    "dynamodb",
                    "kms",
                    "sts",
                    "logs",
                    "monitoring",
                    "lambda",
                    "ecr",
                    "api.ecr",
                    "secretsmanager",
                    "ssm",
                    "kinesis",
                    "events",
                    "elasticloadbalancing",
                    "cloudformation",
                    "autoscaling",
                    "rds",
                ][rng.random_range(0..20)];
                let region = [
                    "us-east-1",
                    "us-east-2",
                    "us-west-2",
                    "eu-west-1",
                    "eu-central-1",
                    "ap-southeast-1",
                    "ap-northeast-1",
                    "sa-east-1",
                ][rng.random_range(0..8)];
                (
                    format!("{service}.{region}.amazonaws.com"),
                    if rng.random_bool(0.5) { "A" } else { "AAAA" },
                )
            }
            Benign::Dnsbl => (
                format!(
                    "{}.{}.{}.{}.zen.spamhaus.org",
                    rng.random_range(0..=255),
                    rng.random_range(0..=255),
                    rng.random_range(0..=255),
                    rng.random_range(1..=223)
                ),
                if rng.random_bool(0.8) { "A" } else { "TXT" },
            ),
            Benign::AntivirusHash => (
                format!(
                    "{}.{}.{}.sxl.sophosxl.net",
                    random_string(rng, HEX, 40),
                    rng.random_range(0..=9),
                    random_string(rng, HEX, 8)
                ),
                if rng.random_bool(0.7) { "A" } else { "TXT" },
            ),
            Benign::ReputationBase32 => (
                format!("{}.avqs.mcafee.com", random_string(rng, BASE32, 26)),
                "A",
            ),
            Benign::Telemetry => {
                let kind = [
                    "session",
                    "event",
                    "crash",
                    "metrics",
                    "config",
                    "heartbeat",
                ][rng.random_range(0..6)];
                (format!("{kind}.{uuid}.ingest.exampletelemetry.com"), "A")
            }
            Benign::MailChecks => {
                let n = rng.random_range(4..=12);
                let sender = random_string(rng, b"abcdefghijklmnopqrstuvwxyz", n);
                let kind = ["_dmarc", "s1._domainkey", "selector1._domainkey", "mail"]
                    [rng.random_range(0..4)];
                (
                    format!("{kind}.{sender}.mailprovider.com"),
                    if kind == "mail" { "MX" } else { "TXT" },
                )
            }
        };
        out.push(Query {
            time_ms: t,
            name,
            qtype,
        });
        t += ((period_ms as f64) * rng.random_range(0.5..1.5)) as i64;
    }
    out
}

/// A generator seeded for one evaluation run.
pub fn rng(seed: u64) -> SmallRng {
    SmallRng::seed_from_u64(seed)
}

enum Alphabet {
    Chars(&'static [u8]),
    /// Letters and digits of both cases and bytes 0xbc to 0xfd, the latter printed `\xNN`.
    Base128,
}

impl Alphabet {
    /// `n` encoded bytes as text (a base128 high byte is one byte on the wire, four in text;
    /// the count here is of bytes on the wire).
    fn string(&self, rng: &mut SmallRng, n: usize) -> String {
        match self {
            Alphabet::Chars(chars) => random_string(rng, chars, n),
            Alphabet::Base128 => {
                let mut s = String::new();
                for _ in 0..n {
                    let i = rng.random_range(0..128u8);
                    if i < 62 {
                        s.push(
                            b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                [usize::from(i)] as char,
                        );
                    } else {
                        s.push_str(&format!("\\x{:02x}", 0xbc + (i - 62)));
                    }
                }
                s
            }
        }
    }
}

fn random_string(rng: &mut SmallRng, chars: &[u8], n: usize) -> String {
    (0..n)
        .map(|_| chars[rng.random_range(0..chars.len())] as char)
        .collect()
}

/// A counter in iodine's style: three base32 characters.
fn encode_counter(c: u32) -> String {
    (0..3)
        .map(|i| BASE32[((c >> (5 * i)) & 31) as usize] as char)
        .collect()
}

/// `s` cut into labels of at most `max` characters, never inside a `\xNN` escape.
fn labels(s: &str, max: usize) -> String {
    let mut out = String::new();
    let mut label_len = 0;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        let token: String = if c == '\\' {
            std::iter::once(c).chain(chars.by_ref().take(3)).collect()
        } else {
            c.to_string()
        };
        if label_len + token.len() > max {
            out.push('.');
            label_len = 0;
        }
        label_len += token.len();
        out.push_str(&token);
    }
    out
}
