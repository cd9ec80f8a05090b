//! The address → domain-name cache: which names the applications on this endpoint looked up for
//! an address, so that policy rules written about domains apply to connections made to
//! addresses.
//!
//! The cache learns from DNS responses (decoded by [`palisade_dpi::dns`], over UDP or TCP) and
//! from the TLS server name or HTTP `Host` seen on a connection. For a DNS response it follows
//! the CNAME chain (and SVCB/HTTPS alias-form targets) from the question name and maps every
//! A, AAAA and SVCB/HTTPS `ipv4hint`/`ipv6hint` address found on that chain to the *question*
//! name, the name the application asked for and the one rules are written about; the names of
//! the chain are kept beside it so that [`NameCache::names_of`] can return them all.
//!
//! Defences and bounds:
//! - Only standard-query responses with `NOERROR` count, and only records joined to the
//!   question by the chain: an extra `A evil.example → address` smuggled into an answer section
//!   is ignored and counted ([`CacheStats::unconnected_records`]).
//! - A mapping lives for the record's TTL (the smallest along the chain), but at least
//!   [`TTL_FLOOR_MS`] (applications connect a little after a short TTL ran out, and an address
//!   learned from a 0-second TTL must still name the connection that follows) and at most
//!   [`TTL_CAP_MS`].
//! - An address keeps at most [`NAMES_PER_ADDRESS`] names (a CDN address serves many domains),
//!   newest first.
//! - At most `max_entries` addresses; when full, the address whose names expire soonest is
//!   evicted (expiry rather than least-recently-used order, because a lookup then needs no
//!   write and an expiry-ordered index is needed anyway to purge expired addresses).
//!
//! Lookups ([`NameCache::name_of`]) are one hash-map probe and a scan of at most
//! [`NAMES_PER_ADDRESS`] names; names are interned `Arc<str>` shared by every address that has
//! them.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use foldhash::fast::RandomState;
use palisade_dpi::dns::{Message, RecordData};

/// The shortest time a learned name is kept, whatever the record's TTL says: 60 seconds.
pub const TTL_FLOOR_MS: i64 = 60_000;

/// The longest time a learned name is kept, whatever the record's TTL says: one day.
pub const TTL_CAP_MS: i64 = 86_400_000;

/// How long a name seen on a connection (TLS server name, HTTP `Host`) is kept: one hour.
pub const SERVER_NAME_LIFETIME_MS: i64 = 3_600_000;

/// How many names one address keeps, newest first.
pub const NAMES_PER_ADDRESS: usize = 4;

/// The longest CNAME chain followed; real chains are two or three links long.
const MAX_CHAIN: usize = 16;

/// Longest name accepted, in characters (255 bytes on the wire leave at most 253 characters).
const MAX_NAME_LEN: usize = 253;

/// The interned-name table is not swept below this size.
const MIN_SWEEP: usize = 1024;

/// DNS class IN.
const CLASS_IN: u16 = 1;

/// Counters of what the cache did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Addresses in the cache now.
    pub entries: usize,
    /// Addresses removed, while they still had unexpired names, to make room for new ones.
    pub evictions: u64,
    /// Addresses removed because all their names had expired.
    pub expirations: u64,
    /// DNS responses that taught the cache at least one address.
    pub responses_used: u64,
    /// Address records in responses that the CNAME chain did not join to the question: ignored.
    pub unconnected_records: u64,
}

/// Where a name was learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameSource {
    /// A DNS response (A, AAAA or an SVCB/HTTPS address hint).
    Dns,
    /// The TLS server name or HTTP `Host` of a connection to the address.
    ServerName,
}

/// The address → names cache; see the module documentation.
#[derive(Debug)]
pub struct NameCache {
    max_entries: usize,
    entries: HashMap<IpAddr, Entry, RandomState>,
    /// Every address by the time its last name expires, soonest first.
    by_expiry: BTreeSet<(i64, IpAddr)>,
    /// Names shared by entries; swept of unused names when it grows.
    interned: HashSet<Arc<str>, RandomState>,
    /// Sweep `interned` when it grows past this size (twice its size after the last sweep).
    next_sweep: usize,
    stats: CacheStats,
}

impl NameCache {
    /// An empty cache that holds at most `max_entries` addresses.
    pub fn new(max_entries: usize) -> Self {
        Self {
            max_entries,
            entries: HashMap::default(),
            by_expiry: BTreeSet::new(),
            interned: HashSet::default(),
            next_sweep: MIN_SWEEP,
            stats: CacheStats::default(),
        }
    }

    /// Learns from one DNS message seen at `now_ms` (milliseconds since the Unix epoch) and
    /// returns how many address → name mappings it learned. Queries, responses with an error
    /// code (NXDOMAIN, SERVFAIL, ...) and non-standard opcodes teach nothing.
    pub fn observe_dns(&mut self, message: &Message, now_ms: i64) -> usize {
        if !message.is_response || message.rcode != 0 || message.opcode != 0 {
            return 0;
        }
        let mut learned = 0;
        let mut connected = vec![false; message.answers.len()];
        for question in &message.questions {
            if question.qclass != CLASS_IN {
                continue;
            }
            learned += self.observe_question(message, &question.name, &mut connected, now_ms);
        }
        let unconnected = message
            .answers
            .iter()
            .zip(&connected)
            .filter(|(record, connected)| !**connected && carries_addresses(&record.data))
            .count();
        self.stats.unconnected_records = self
            .stats
            .unconnected_records
            .saturating_add(u64::try_from(unconnected).unwrap_or(u64::MAX));
        if learned > 0 {
            self.stats.responses_used = self.stats.responses_used.saturating_add(1);
        }
        learned
    }

    /// Records that a connection to `ip` named `name` (a TLS server name or an HTTP `Host`
    /// without its port) at `now_ms`. The name is lower-cased and a trailing dot removed; an
    /// empty or over-long name, or an address literal, is not recorded. Returns whether it was.
    pub fn observe_server_name(&mut self, ip: IpAddr, name: &str, now_ms: i64) -> bool {
        let Some(name) = normalise(name) else {
            return false;
        };
        if name.parse::<IpAddr>().is_ok() {
            return false;
        }
        let name = self.intern(&name);
        let expires_ms = now_ms.saturating_add(SERVER_NAME_LIFETIME_MS);
        self.learn(
            ip,
            Learned {
                name,
                chain: Box::default(),
                expires_ms,
                source: NameSource::ServerName,
            },
            now_ms,
        )
    }

    /// The most recently learned name of `ip` that has not expired at `now_ms`.
    pub fn name_of(&self, ip: IpAddr, now_ms: i64) -> Option<&str> {
        let entry = self.entries.get(&ip.to_canonical())?;
        if entry.newest_expires_ms > now_ms {
            return Some(&entry.newest);
        }
        entry
            .names
            .iter()
            .find(|learned| learned.expires_ms > now_ms)
            .map(|learned| &*learned.name)
    }

    /// Every unexpired name of `ip`: the names applications asked for (newest first), then the
    /// CNAME-chain names that led to the address, each once.
    pub fn names_of(&self, ip: IpAddr, now_ms: i64) -> Vec<&str> {
        let Some(entry) = self.entries.get(&ip.to_canonical()) else {
            return Vec::new();
        };
        let live = || entry.names.iter().filter(|l| l.expires_ms > now_ms);
        let mut out: Vec<&str> = Vec::new();
        for name in live()
            .map(|l| &*l.name)
            .chain(live().flat_map(|l| l.chain.iter().map(|n| &**n)))
        {
            if !out.contains(&name) {
                out.push(name);
            }
        }
        out
    }

    /// The most recently learned unexpired name of `ip` and where it came from.
    pub fn source_of(&self, ip: IpAddr, now_ms: i64) -> Option<(&str, NameSource)> {
        self.entries
            .get(&ip.to_canonical())?
            .names
            .iter()
            .find(|learned| learned.expires_ms > now_ms)
            .map(|learned| (&*learned.name, learned.source))
    }

    /// Removes every address whose names have all expired at `now_ms`; returns how many. The
    /// agent calls this now and then; a full cache also drops expired addresses first.
    pub fn purge_expired(&mut self, now_ms: i64) -> usize {
        let mut removed = 0;
        while let Some(&(expires_ms, ip)) = self.by_expiry.first() {
            if expires_ms > now_ms {
                break;
            }
            self.by_expiry.pop_first();
            self.entries.remove(&ip);
            removed += 1;
        }
        self.stats.expirations = self
            .stats
            .expirations
            .saturating_add(u64::try_from(removed).unwrap_or(u64::MAX));
        removed
    }

    /// What the cache holds and has done.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.entries.len(),
            ..self.stats
        }
    }

    /// Number of addresses held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no address is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Follows the chain from one question and learns the addresses on it; marks the answers it
    /// used in `connected`.
    fn observe_question(
        &mut self,
        message: &Message,
        question: &str,
        connected: &mut [bool],
        now_ms: i64,
    ) -> usize {
        let Some(question) = normalise(question) else {
            return 0;
        };
        // The chain: each link is a name and the smallest TTL (seconds) on the way to it.
        let mut chain: Vec<(String, u32)> = vec![(question, u32::MAX)];
        while chain.len() <= MAX_CHAIN {
            let Some((current, ttl)) = chain.last().cloned() else {
                break;
            };
            let next = message
                .answers
                .iter()
                .enumerate()
                .filter(|(_, r)| r.class == CLASS_IN && eq_name(&r.name, &current))
                .find_map(|(i, r)| alias_target(&r.data).map(|target| (i, target, r.ttl)));
            let Some((index, target, link_ttl)) = next else {
                break;
            };
            let Some(target) = normalise(target) else {
                break;
            };
            if let Some(slot) = connected.get_mut(index) {
                *slot = true;
            }
            if chain.iter().any(|(name, _)| *name == target) {
                break; // a loop
            }
            chain.push((target, ttl.min(link_ttl)));
        }
        let interned: Vec<Arc<str>> = chain.iter().map(|(name, _)| self.intern(name)).collect();
        let Some(question_name) = interned.first().cloned() else {
            return 0;
        };
        let mut learned = 0;
        for (index, record) in message.answers.iter().enumerate() {
            if record.class != CLASS_IN {
                continue;
            }
            let Some(position) = chain
                .iter()
                .position(|(name, _)| eq_name(&record.name, name))
            else {
                continue;
            };
            let addresses = addresses(&record.data);
            if addresses.is_empty() {
                continue;
            }
            if let Some(slot) = connected.get_mut(index) {
                *slot = true;
            }
            let chain_ttl = chain.get(position).map_or(u32::MAX, |(_, ttl)| *ttl);
            let ttl_ms = i64::from(record.ttl.min(chain_ttl))
                .saturating_mul(1000)
                .clamp(TTL_FLOOR_MS, TTL_CAP_MS);
            let names: Box<[Arc<str>]> = interned
                .get(1..=position)
                .map(<[Arc<str>]>::to_vec)
                .unwrap_or_default()
                .into_boxed_slice();
            for ip in addresses {
                let fresh = Learned {
                    name: question_name.clone(),
                    chain: names.clone(),
                    expires_ms: now_ms.saturating_add(ttl_ms),
                    source: NameSource::Dns,
                };
                if self.learn(ip, fresh, now_ms) {
                    learned += 1;
                }
            }
        }
        learned
    }

    /// Puts `fresh` first among the names of `ip`, evicting another address if `ip` is new and
    /// the cache is full. Returns whether the name was stored.
    fn learn(&mut self, ip: IpAddr, fresh: Learned, now_ms: i64) -> bool {
        let ip = ip.to_canonical();
        if ip.is_unspecified() || self.max_entries == 0 {
            return false;
        }
        let (name, expires_ms) = (fresh.name.clone(), fresh.expires_ms);
        if let Some(entry) = self.entries.get_mut(&ip) {
            self.by_expiry.remove(&(entry.expires_ms, ip));
            entry
                .names
                .retain(|old| old.name != fresh.name && old.expires_ms > now_ms);
            entry.names.insert(0, fresh);
            entry.names.truncate(NAMES_PER_ADDRESS);
            entry.expires_ms = entry.latest_expiry();
            entry.newest_expires_ms = expires_ms;
            entry.newest = name;
            self.by_expiry.insert((entry.expires_ms, ip));
            return true;
        }
        if self.entries.len() >= self.max_entries {
            self.purge_expired(now_ms);
        }
        while self.entries.len() >= self.max_entries {
            let Some((_, victim)) = self.by_expiry.pop_first() else {
                break;
            };
            self.entries.remove(&victim);
            self.stats.evictions = self.stats.evictions.saturating_add(1);
        }
        self.entries.insert(
            ip,
            Entry {
                names: vec![fresh],
                expires_ms,
                newest: name,
                newest_expires_ms: expires_ms,
            },
        );
        self.by_expiry.insert((expires_ms, ip));
        if self.interned.len() > self.next_sweep {
            self.interned.retain(|name| Arc::strong_count(name) > 1);
            self.next_sweep = (2 * self.interned.len()).max(MIN_SWEEP);
        }
        true
    }

    /// The shared copy of `name`.
    fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(shared) = self.interned.get(name) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(name);
        self.interned.insert(shared.clone());
        shared
    }
}

/// The names of one address.
#[derive(Debug)]
struct Entry {
    /// Newest first, at most [`NAMES_PER_ADDRESS`].
    names: Vec<Learned>,
    /// When the last of `names` expires: the key in `by_expiry`.
    expires_ms: i64,
    /// A copy of the first of `names`, so that the usual lookup reads no second allocation.
    newest: Arc<str>,
    /// When `newest` expires.
    newest_expires_ms: i64,
}

impl Entry {
    fn latest_expiry(&self) -> i64 {
        self.names
            .iter()
            .map(|l| l.expires_ms)
            .max()
            .unwrap_or(i64::MIN)
    }
}

/// One name of an address.
#[derive(Debug)]
struct Learned {
    /// The question name (or server name).
    name: Arc<str>,
    /// The CNAME chain from `name` to the record that held the address, `name` excluded.
    chain: Box<[Arc<str>]>,
    /// Until when (exclusive) the name holds, in milliseconds since the Unix epoch.
    expires_ms: i64,
    source: NameSource,
}

/// The name a record points on to: a CNAME target, or an SVCB/HTTPS alias-form target.
fn alias_target(data: &RecordData) -> Option<&str> {
    match data {
        RecordData::Name(target) => Some(target),
        RecordData::Svcb {
            priority: 0,
            target,
            ..
        } if !target.is_empty() => Some(target),
        _ => None,
    }
}

/// Whether a record's data holds addresses.
fn carries_addresses(data: &RecordData) -> bool {
    match data {
        RecordData::A(_) | RecordData::Aaaa(_) => true,
        RecordData::Svcb {
            ipv4hint, ipv6hint, ..
        } => !ipv4hint.is_empty() || !ipv6hint.is_empty(),
        _ => false,
    }
}

/// The addresses in a record: A, AAAA, or SVCB/HTTPS hints.
fn addresses(data: &RecordData) -> Vec<IpAddr> {
    match data {
        RecordData::A(addr) => vec![IpAddr::V4(*addr)],
        RecordData::Aaaa(addr) => vec![IpAddr::V6(*addr)],
        RecordData::Svcb {
            ipv4hint, ipv6hint, ..
        } => ipv4hint
            .iter()
            .map(|a| IpAddr::V4(*a))
            .chain(ipv6hint.iter().map(|a| IpAddr::V6(*a)))
            .collect(),
        _ => Vec::new(),
    }
}

/// DNS names compare without regard to ASCII case; `normalised` is already lower-case.
fn eq_name(raw: &str, normalised: &str) -> bool {
    let raw = match raw.strip_suffix('.') {
        Some(stem) if !stem.ends_with('\\') => stem,
        _ => raw,
    };
    raw.eq_ignore_ascii_case(normalised)
}

/// Lower-case without a trailing dot (an escaped one, `\.` from a label that ends in a dot,
/// stays); `None` for an empty or over-long name.
fn normalise(name: &str) -> Option<String> {
    let name = match name.strip_suffix('.') {
        Some(stem) if !stem.ends_with('\\') => stem,
        _ => name,
    };
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return None;
    }
    Some(name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use palisade_dpi::dns::{Question, Record};
    use proptest::prelude::*;

    use super::*;

    const T0: i64 = 1_700_000_000_000;

    fn v4(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn record(owner: &str, ttl: u32, data: RecordData) -> Record {
        let rtype = match &data {
            RecordData::A(_) => 1,
            RecordData::Aaaa(_) => 28,
            RecordData::Name(_) => 5,
            RecordData::Svcb { .. } => 65,
            _ => 99,
        };
        Record {
            name: owner.into(),
            rtype,
            class: 1,
            ttl,
            data,
        }
    }

    fn a(owner: &str, ttl: u32, addr: &str) -> Record {
        record(owner, ttl, RecordData::A(addr.parse().unwrap()))
    }

    fn cname(owner: &str, ttl: u32, target: &str) -> Record {
        record(owner, ttl, RecordData::Name(target.into()))
    }

    fn response(question: &str, answers: Vec<Record>) -> Message {
        Message {
            id: 1,
            is_response: true,
            opcode: 0,
            truncated: false,
            rcode: 0,
            questions: vec![Question {
                name: question.into(),
                qtype: 1,
                qclass: 1,
            }],
            answers,
        }
    }

    #[test]
    fn a_and_aaaa_records_name_their_addresses() {
        let mut cache = NameCache::new(100);
        let six: Ipv6Addr = "2001:db8::7".parse().unwrap();
        let msg = response(
            "Example.COM.",
            vec![
                a("example.com", 300, "93.184.215.14"),
                record("EXAMPLE.com", 300, RecordData::Aaaa(six)),
            ],
        );
        assert_eq!(cache.observe_dns(&msg, T0), 2);
        assert_eq!(cache.name_of(v4("93.184.215.14"), T0), Some("example.com"));
        assert_eq!(cache.name_of(IpAddr::V6(six), T0), Some("example.com"));
        assert_eq!(cache.name_of(v4("93.184.215.15"), T0), None);
        // An IPv4-mapped IPv6 address is the IPv4 address.
        let mapped = IpAddr::V6(Ipv4Addr::new(93, 184, 215, 14).to_ipv6_mapped());
        assert_eq!(cache.name_of(mapped, T0), Some("example.com"));
        assert_eq!(
            cache.source_of(mapped, T0),
            Some(("example.com", NameSource::Dns))
        );
        assert_eq!(cache.stats().responses_used, 1);
    }

    #[test]
    fn a_cname_chain_names_the_address_after_the_question() {
        let mut cache = NameCache::new(100);
        let msg = response(
            "www.example.com",
            vec![
                cname("www.example.com", 300, "cdn.example.net"),
                cname("cdn.example.net", 300, "edge7.cdn.example.net"),
                a("edge7.cdn.example.net", 60, "1.2.3.4"),
            ],
        );
        assert_eq!(cache.observe_dns(&msg, T0), 1);
        let ip = v4("1.2.3.4");
        assert_eq!(cache.name_of(ip, T0), Some("www.example.com"));
        assert_eq!(
            cache.names_of(ip, T0),
            [
                "www.example.com",
                "cdn.example.net",
                "edge7.cdn.example.net"
            ]
        );
    }

    #[test]
    fn records_off_the_chain_are_ignored() {
        let mut cache = NameCache::new(100);
        let msg = response(
            "www.example.com",
            vec![
                cname("www.example.com", 300, "cdn.example.net"),
                a("cdn.example.net", 300, "1.2.3.4"),
                // Not reachable from the question: an attempt to name someone else's address.
                a("bank.example.org", 300, "5.6.7.8"),
                cname("bank.example.org", 300, "cdn.example.net"),
            ],
        );
        assert_eq!(cache.observe_dns(&msg, T0), 1);
        assert_eq!(cache.name_of(v4("5.6.7.8"), T0), None);
        assert_eq!(
            cache.names_of(v4("1.2.3.4"), T0),
            ["www.example.com", "cdn.example.net"]
        );
        assert_eq!(cache.stats().unconnected_records, 1);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_cname_loop_ends() {
        let mut cache = NameCache::new(100);
        let msg = response(
            "a.example",
            vec![
                cname("a.example", 300, "b.example"),
                cname("b.example", 300, "a.example"),
                a("b.example", 300, "1.2.3.4"),
            ],
        );
        assert_eq!(cache.observe_dns(&msg, T0), 1);
        assert_eq!(
            cache.names_of(v4("1.2.3.4"), T0),
            ["a.example", "b.example"]
        );
    }

    #[test]
    fn names_expire_after_the_ttl_but_not_before_the_floor_nor_after_the_cap() {
        let mut cache = NameCache::new(100);
        let msg = response(
            "short.example",
            vec![
                a("short.example", 0, "10.0.0.1"),
                a("short.example", 5, "10.0.0.2"),
            ],
        );
        cache.observe_dns(&msg, T0);
        let long = response("long.example", vec![a("long.example", 300, "10.0.0.3")]);
        cache.observe_dns(&long, T0);
        let huge = response(
            "huge.example",
            vec![a("huge.example", u32::MAX, "10.0.0.4")],
        );
        cache.observe_dns(&huge, T0);
        for short in ["10.0.0.1", "10.0.0.2"] {
            assert_eq!(cache.name_of(v4(short), T0 + 59_999), Some("short.example"));
            assert_eq!(cache.name_of(v4(short), T0 + TTL_FLOOR_MS), None);
        }
        assert_eq!(
            cache.name_of(v4("10.0.0.3"), T0 + 299_999),
            Some("long.example")
        );
        assert_eq!(cache.name_of(v4("10.0.0.3"), T0 + 300_000), None);
        assert_eq!(
            cache.name_of(v4("10.0.0.4"), T0 + TTL_CAP_MS - 1),
            Some("huge.example")
        );
        assert_eq!(cache.name_of(v4("10.0.0.4"), T0 + TTL_CAP_MS), None);
        // The chain's smallest TTL bounds the mapping.
        let chained = response(
            "www.example.com",
            vec![
                cname("www.example.com", 120, "cdn.example.net"),
                a("cdn.example.net", 3600, "10.0.0.5"),
            ],
        );
        cache.observe_dns(&chained, T0);
        assert!(cache.name_of(v4("10.0.0.5"), T0 + 119_999).is_some());
        assert_eq!(cache.name_of(v4("10.0.0.5"), T0 + 120_000), None);
        assert_eq!(cache.purge_expired(T0 + 300_000), 4);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.stats().expirations, 4);
    }

    #[test]
    fn an_address_keeps_its_newest_names_first() {
        let mut cache = NameCache::new(100);
        let ip = v4("104.16.1.1");
        for (i, name) in [
            "a.example",
            "b.example",
            "c.example",
            "d.example",
            "e.example",
        ]
        .iter()
        .enumerate()
        {
            let msg = response(name, vec![a(name, 3600, "104.16.1.1")]);
            cache.observe_dns(&msg, T0 + i64::try_from(i).unwrap());
        }
        assert_eq!(cache.name_of(ip, T0 + 10), Some("e.example"));
        assert_eq!(
            cache.names_of(ip, T0 + 10),
            ["e.example", "d.example", "c.example", "b.example"]
        );
        // Learning a name again brings it to the front, once.
        cache.observe_dns(
            &response("c.example", vec![a("c.example", 3600, "104.16.1.1")]),
            T0 + 20,
        );
        assert_eq!(
            cache.names_of(ip, T0 + 30),
            ["c.example", "e.example", "d.example", "b.example"]
        );
        // A newer name that expires first gives way to the older one still valid.
        cache.observe_dns(
            &response("f.example", vec![a("f.example", 1, "104.16.1.1")]),
            T0 + 40,
        );
        assert_eq!(cache.name_of(ip, T0 + 41), Some("f.example"));
        assert_eq!(cache.name_of(ip, T0 + 40 + TTL_FLOOR_MS), Some("c.example"));
    }

    #[test]
    fn a_full_cache_evicts_the_address_expiring_soonest() {
        let mut cache = NameCache::new(3);
        let ttls = [("1.1.1.1", 600), ("2.2.2.2", 120), ("3.3.3.3", 900)];
        for (addr, ttl) in ttls {
            cache.observe_dns(&response("x.example", vec![a("x.example", ttl, addr)]), T0);
        }
        cache.observe_dns(
            &response("y.example", vec![a("y.example", 300, "4.4.4.4")]),
            T0,
        );
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.name_of(v4("2.2.2.2"), T0), None);
        for addr in ["1.1.1.1", "3.3.3.3", "4.4.4.4"] {
            assert!(cache.name_of(v4(addr), T0).is_some(), "{addr}");
        }
        assert_eq!(cache.stats().evictions, 1);
        // Expired addresses make room before live ones are evicted.
        let later = T0 + 400_000;
        cache.observe_dns(
            &response("z.example", vec![a("z.example", 300, "5.5.5.5")]),
            later,
        );
        assert_eq!(cache.name_of(v4("1.1.1.1"), later), Some("x.example"));
        assert_eq!(cache.name_of(v4("5.5.5.5"), later), Some("z.example"));
        assert_eq!(cache.stats().evictions, 1);
        assert_eq!(cache.stats().expirations, 1);
        // Many more addresses never grow it past its bound.
        for i in 0..1000u32 {
            let addr = Ipv4Addr::from(0x0a00_0000 + i).to_string();
            cache.observe_dns(
                &response("n.example", vec![a("n.example", 300, &addr)]),
                later,
            );
        }
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn https_and_svcb_address_hints_name_the_question() {
        let mut cache = NameCache::new(100);
        let six: Ipv6Addr = "2606:4700::6810:101".parse().unwrap();
        let hints = RecordData::Svcb {
            priority: 1,
            target: String::new(),
            alpn: vec!["h3".into(), "h2".into()],
            ipv4hint: vec![Ipv4Addr::new(104, 16, 1, 1), Ipv4Addr::new(104, 16, 2, 1)],
            ipv6hint: vec![six],
        };
        let mut msg = response(
            "www.example.com",
            vec![
                cname("www.example.com", 300, "example.com"),
                record("example.com", 300, hints.clone()),
                // Hints for a name off the chain teach nothing.
                record("other.example", 300, hints),
            ],
        );
        msg.questions[0].qtype = 65;
        assert_eq!(cache.observe_dns(&msg, T0), 3);
        for ip in [v4("104.16.1.1"), v4("104.16.2.1"), IpAddr::V6(six)] {
            assert_eq!(cache.names_of(ip, T0), ["www.example.com", "example.com"]);
        }
        assert_eq!(cache.stats().unconnected_records, 1);
        // An alias-form record leads on like a CNAME.
        let alias = RecordData::Svcb {
            priority: 0,
            target: "svc.example.net".into(),
            alpn: vec![],
            ipv4hint: vec![],
            ipv6hint: vec![],
        };
        let msg = response(
            "alias.example",
            vec![
                record("alias.example", 300, alias),
                a("svc.example.net", 300, "9.9.9.9"),
            ],
        );
        assert_eq!(cache.observe_dns(&msg, T0), 1);
        assert_eq!(
            cache.names_of(v4("9.9.9.9"), T0),
            ["alias.example", "svc.example.net"]
        );
    }

    #[test]
    fn errors_and_queries_teach_nothing() {
        let mut cache = NameCache::new(100);
        let answers = vec![a("example.com", 300, "1.2.3.4")];
        for rcode in [1, 2, 3, 5] {
            let mut msg = response("example.com", answers.clone());
            msg.rcode = rcode;
            assert_eq!(cache.observe_dns(&msg, T0), 0, "rcode {rcode}");
        }
        let mut query = response("example.com", answers.clone());
        query.is_response = false;
        assert_eq!(cache.observe_dns(&query, T0), 0);
        let mut chaos = response("example.com", answers);
        chaos.questions[0].qclass = 3;
        assert_eq!(cache.observe_dns(&chaos, T0), 0);
        assert!(cache.is_empty());
        assert_eq!(cache.stats().responses_used, 0);
    }

    #[test]
    fn server_names_are_recorded_in_lower_case() {
        let mut cache = NameCache::new(100);
        let ip = v4("203.0.113.9");
        assert!(cache.observe_server_name(ip, "API.Example.COM.", T0));
        assert_eq!(
            cache.source_of(ip, T0),
            Some(("api.example.com", NameSource::ServerName))
        );
        assert!(!cache.observe_server_name(ip, "", T0));
        assert!(!cache.observe_server_name(ip, ".", T0));
        // A DNS name whose last label ends in a dot keeps it (escaped).
        let odd = response("odd\\.", vec![a("ODD\\.", 300, "203.0.113.10")]);
        assert_eq!(cache.observe_dns(&odd, T0), 1);
        assert_eq!(cache.name_of(v4("203.0.113.10"), T0), Some("odd\\."));
        assert!(!cache.observe_server_name(ip, "203.0.113.9", T0));
        assert!(!cache.observe_server_name(ip, &"x".repeat(300), T0));
        assert_eq!(
            cache.name_of(ip, T0 + SERVER_NAME_LIFETIME_MS - 1),
            Some("api.example.com")
        );
        assert_eq!(cache.name_of(ip, T0 + SERVER_NAME_LIFETIME_MS), None);
    }

    #[test]
    fn names_are_shared_between_addresses() {
        let mut cache = NameCache::new(100);
        for addr in ["1.1.1.1", "1.1.1.2"] {
            cache.observe_dns(
                &response("example.com", vec![a("example.com", 300, addr)]),
                T0,
            );
        }
        let first = cache.name_of(v4("1.1.1.1"), T0).unwrap();
        let second = cache.name_of(v4("1.1.1.2"), T0).unwrap();
        assert!(std::ptr::eq(first, second));
    }

    /// One generated answer: owner (0..6), CNAME target (0..6) or address (10.0.0.0..8), TTL.
    type Answer = (usize, Result<usize, u8>, u32);

    fn generated_message(rcode: u8, question: usize, answers: &[Answer]) -> Message {
        let name = |i: usize| format!("n{i}.example");
        let answers = answers
            .iter()
            .map(|(owner, data, ttl)| match data {
                Ok(target) => cname(&name(*owner), *ttl, &name(*target)),
                Err(host) => a(&name(*owner), *ttl, &format!("10.0.0.{host}")),
            })
            .collect();
        let mut msg = response(&name(question), answers);
        msg.rcode = rcode;
        msg
    }

    /// The simple reference: for each (address, question), when it was last learned (sequence
    /// number) and until when it holds.
    fn reference_learn(
        model: &mut HashMap<(IpAddr, String), (u64, i64)>,
        seq: &mut u64,
        msg: &Message,
        now_ms: i64,
    ) {
        if msg.rcode != 0 {
            return;
        }
        let question = &msg.questions[0].name;
        // The chain: names reached by taking, from each name, the first CNAME it owns.
        let mut chain = vec![(question.clone(), u32::MAX)];
        loop {
            let (current, ttl) = chain.last().unwrap().clone();
            let next = msg.answers.iter().find_map(|r| match &r.data {
                RecordData::Name(target) if r.name == current => Some((target.clone(), r.ttl)),
                _ => None,
            });
            match next {
                Some((target, link)) if !chain.iter().any(|(n, _)| *n == target) => {
                    chain.push((target, ttl.min(link)));
                }
                _ => break,
            }
        }
        for r in &msg.answers {
            if let (RecordData::A(addr), Some((_, ttl))) =
                (&r.data, chain.iter().find(|(n, _)| *n == r.name))
            {
                let ms = (i64::from(r.ttl.min(*ttl)) * 1000).clamp(TTL_FLOOR_MS, TTL_CAP_MS);
                *seq += 1;
                model.insert((IpAddr::V4(*addr), question.clone()), (*seq, now_ms + ms));
            }
        }
    }

    proptest! {
        #[test]
        fn lookups_match_a_simple_reference(
            messages in prop::collection::vec(
                (
                    prop_oneof![4 => Just(0u8), 1 => Just(3u8)],
                    0usize..4,
                    prop::collection::vec(
                        (0usize..6, prop_oneof![(0usize..6).prop_map(Ok), (0u8..8).prop_map(Err)], 0u32..400),
                        0..8,
                    ),
                    0i64..200_000,
                ),
                1..30,
            )
        ) {
            let mut cache = NameCache::new(1000);
            let mut small = NameCache::new(3);
            let mut model = HashMap::new();
            let (mut now_ms, mut seq) = (T0, 0);
            for (rcode, question, answers, gap) in &messages {
                now_ms += gap;
                let msg = generated_message(*rcode, *question, answers);
                cache.observe_dns(&msg, now_ms);
                small.observe_dns(&msg, now_ms);
                reference_learn(&mut model, &mut seq, &msg, now_ms);
                prop_assert!(small.len() <= 3);
                for probe in [now_ms, now_ms + 59_000, now_ms + 150_000, now_ms + 500_000] {
                    for host in 0..8u8 {
                        let ip = v4(&format!("10.0.0.{host}"));
                        let expected = model
                            .iter()
                            .filter(|((addr, _), (_, until))| *addr == ip && *until > probe)
                            .max_by_key(|(_, (seq, _))| *seq)
                            .map(|((_, name), _)| name.as_str());
                        prop_assert_eq!(cache.name_of(ip, probe), expected, "{} at {}", ip, probe);
                        if let Some(name) = small.name_of(ip, probe) {
                            prop_assert!(model.contains_key(&(ip, name.to_owned())));
                        }
                    }
                }
            }
        }
    }

    /// The shared captures, beside the checkout.
    const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/corpus/pcap");

    /// The corpus folder, or `None` (and a note) when it is absent; with
    /// `PALISADE_CORPUS_TESTS=1` (as CI sets it) an absent corpus is a failure.
    fn corpus() -> Option<std::path::PathBuf> {
        let dir = std::path::Path::new(CORPUS);
        if dir.is_dir() {
            Some(dir.to_path_buf())
        } else if std::env::var_os("PALISADE_CORPUS_TESTS").is_some_and(|v| v == "1") {
            panic!("PALISADE_CORPUS_TESTS=1 but the corpus is not at {CORPUS}");
        } else {
            println!("skipped: corpus not found at {CORPUS}");
            None
        }
    }

    /// Feeds every DNS response of a capture (UDP, and TCP segments that hold whole messages)
    /// through `cache`; returns how many responses were decoded and the last frame's time.
    fn feed(cache: &mut NameCache, path: &std::path::Path) -> (usize, i64) {
        use palisade_dpi::capture::CaptureReader;
        use palisade_dpi::dns;
        use palisade_dpi::packet::{self, Transport};

        let mut reader = CaptureReader::new(std::fs::File::open(path).unwrap()).unwrap();
        let (mut responses, mut now_ms) = (0, 0);
        while let Ok(Some(frame)) = reader.next_frame() {
            now_ms = frame.ts_ns / 1_000_000;
            let Ok(packet) = packet::decode(frame.link, frame.data) else {
                continue;
            };
            let message = match packet.transport {
                Transport::Udp { src_port: 53, .. } => dns::parse(packet.payload).ok(),
                Transport::Tcp { src_port: 53, .. } => {
                    dns::parse_tcp(packet.payload).ok().map(|(m, _)| m)
                }
                _ => None,
            };
            if let Some(message) = message.filter(|m| m.is_response) {
                responses += 1;
                cache.observe_dns(&message, now_ms);
            }
        }
        (responses, now_ms)
    }

    #[test]
    fn dns_responses_in_real_captures_name_their_addresses() {
        let Some(corpus) = corpus() else { return };
        // (capture, address, every name expected in order): the answers of those captures'
        // responses; nb6-http.pcap and http.pcap hold CNAME chains.
        let expected: &[(&str, &str, &[&str])] = &[
            (
                "misc/dns_icmp.pcap",
                "174.137.42.65",
                &["www.wireshark.org"],
            ),
            (
                "misc/http.pcap",
                "216.239.59.104",
                &[
                    "pagead2.googlesyndication.com",
                    "pagead2.google.com",
                    "pagead.google.akadns.net",
                ],
            ),
            (
                "misc/nb6-http.pcap",
                "93.17.156.250",
                &["ncdn.nb6dsl.neufbox.neuf.fr", "http.service-ncdn.sfr.net"],
            ),
            (
                "misc/nb6-http.pcap",
                "2606:f200:0:7:bad:f00d:d00d:1",
                &["ipv6.icanhazip.com"],
            ),
            (
                "misc/truncated_dns_2.pcap",
                "52.217.101.4",
                &["mycelium-wallet.s3.amazonaws.com", "s3-1-w.amazonaws.com"],
            ),
        ];
        for (capture, addr, names) in expected {
            let mut cache = NameCache::new(10_000);
            let (responses, end_ms) = feed(&mut cache, &corpus.join(capture));
            assert!(responses > 0, "{capture}");
            let ip: IpAddr = addr.parse().unwrap();
            assert_eq!(cache.names_of(ip, end_ms), *names, "{capture} {addr}");
            assert_eq!(cache.stats().unconnected_records, 0, "{capture}");
        }
        // Every other capture: whatever DNS it holds is learned without a record off the chain.
        let mut total = NameCache::new(100_000);
        let mut responses = 0;
        for dir in ["misc", "foxio-ja4"] {
            for entry in std::fs::read_dir(corpus.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                let is_capture = path
                    .extension()
                    .is_some_and(|e| ["pcap", "pcapng", "cap"].iter().any(|x| e == *x));
                if is_capture {
                    responses += feed(&mut total, &path).0;
                }
            }
        }
        assert!(responses >= 15, "{responses} responses");
        assert!(total.len() >= 10, "{:?}", total.stats());
        assert_eq!(total.stats().unconnected_records, 0);
    }

    /// The cost of a lookup in a cache of 100,000 addresses:
    /// `cargo test -p palisade-agent --release --lib names::tests::lookup_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check"]
    #[allow(clippy::disallowed_methods, reason = "timing a measurement")]
    fn lookup_cost() {
        const N: u32 = 100_000;
        let mut cache = NameCache::new(usize::try_from(N).unwrap());
        for i in 0..N {
            let addr = Ipv4Addr::from(0x0a00_0000 + i).to_string();
            let name = format!("host{}.example.com", i % 5000);
            cache.observe_dns(&response(&name, vec![a(&name, 300, &addr)]), T0);
        }
        assert_eq!(cache.len(), 100_000);
        let lookups = 10_000_000u32;
        let (start, start_cpu) = (std::time::Instant::now(), thread_cpu_ticks());
        let mut found = 0usize;
        for i in 0..lookups {
            // A stride that visits the addresses out of order; one in ten misses.
            let ip = IpAddr::V4(Ipv4Addr::from(
                0x0a00_0000 + (i.wrapping_mul(7919) % (N + N / 10)),
            ));
            found += usize::from(std::hint::black_box(cache.name_of(ip, T0 + 1)).is_some());
        }
        let elapsed = start.elapsed();
        println!(
            "name_of: {:.1} ns per lookup over {N} addresses ({found} of {lookups} found)",
            elapsed.as_secs_f64() * 1e9 / f64::from(lookups)
        );
        // On a busy machine wall time overstates the cost: the thread's CPU time says it better.
        if let (Some(before), Some(after)) = (start_cpu, thread_cpu_ticks()) {
            let cpu_ns = (after - before) as f64 * 1e7; // 100 ticks a second on Linux
            println!(
                "name_of: {:.1} ns of CPU per lookup",
                cpu_ns / f64::from(lookups)
            );
        }
    }

    /// User and system CPU time of this thread in clock ticks, from `/proc` (Linux).
    fn thread_cpu_ticks() -> Option<u64> {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
        let after_name = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // Fields 14 and 15 of stat(5); `after_name` starts at field 3.
        Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
    }
}
