//! Lookup structures that map a connection attribute to the rules that may match it.
//!
//! Each index maps keys to sorted lists of rule numbers ("postings"), all stored in one flat
//! vector per index. Built once per policy, read on every decision without allocating.
//!
//! - [`TextIndex`]: exact strings (executable paths, process names, hashes).
//! - [`DomainIndex`]: domain patterns, looked up by walking the name's suffixes.
//! - [`RangeIndex`]: inclusive ranges of integers (ports, IPv4 and IPv6 addresses as integers),
//!   looked up by binary search over the elementary intervals the ranges cut the key space into.
//! - [`IpIndex`]: a [`RangeIndex`] for each address family.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;

use foldhash::fast::RandomState;

use crate::pattern::{AddrRange, Cidr, DomainPattern};

/// A slice of an index's flat postings vector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
struct Span {
    start: u32,
    len: u32,
}

/// Flat storage for many sorted, de-duplicated lists of rule numbers.
#[derive(Debug, Default, Clone)]
struct Postings {
    items: Vec<u32>,
}

impl Postings {
    fn push(&mut self, mut rules: Vec<u32>) -> Span {
        rules.sort_unstable();
        rules.dedup();
        let start = u32::try_from(self.items.len()).unwrap_or(u32::MAX);
        let len = u32::try_from(rules.len()).unwrap_or(u32::MAX);
        self.items.extend(rules);
        Span { start, len }
    }

    fn get(&self, span: Span) -> &[u32] {
        let start = span.start as usize;
        self.items
            .get(start..start + span.len as usize)
            .unwrap_or(&[])
    }
}

/// A read-only hash table from strings to small values, for the lookups of a decision.
///
/// Open addressing with linear probing; each slot holds the key's full hash and its value, and
/// the keys sit together in one byte vector. A lookup reads one slot (and, for a key that is
/// there, its bytes) instead of a control byte, a bucket, a separately allocated key and then
/// the value's own storage: at 100,000 rules each of those is a cache miss.
#[derive(Debug, Clone)]
struct StrTable<V> {
    hasher: RandomState,
    /// Length a power of two, at most half full; `len == u32::MAX` marks an empty slot.
    slots: Vec<StrSlot<V>>,
    keys: Vec<u8>,
}

/// Half a cache line, so that a lookup reads one line per slot it visits.
#[derive(Debug, Clone, Copy)]
#[repr(align(32))]
struct StrSlot<V> {
    hash: u64,
    start: u32,
    len: u32,
    value: V,
}

const _: () = assert!(size_of::<StrSlot<(u32, Span)>>() == 32);
const _: () = assert!(size_of::<StrSlot<DomainLists>>() == 32);

impl<V: Copy + Default> Default for StrTable<V> {
    fn default() -> Self {
        StrTable {
            hasher: RandomState::default(),
            slots: Vec::new(),
            keys: Vec::new(),
        }
    }
}

impl<V: Copy + Default> StrTable<V> {
    /// A table of `entries` (keys distinct).
    fn new<'k>(entries: impl ExactSizeIterator<Item = (&'k str, V)>) -> StrTable<V> {
        let mut table = StrTable::default();
        if entries.len() == 0 {
            return table;
        }
        let size = (entries.len() * 2).next_power_of_two().max(2);
        let empty = StrSlot {
            hash: 0,
            start: 0,
            len: u32::MAX,
            value: V::default(),
        };
        table.slots = vec![empty; size];
        for (key, value) in entries {
            let hash = table.hasher.hash_one(key);
            let start = u32::try_from(table.keys.len()).unwrap_or(u32::MAX);
            let len = u32::try_from(key.len()).unwrap_or(u32::MAX - 1);
            table.keys.extend_from_slice(key.as_bytes());
            let mask = table.slots.len() - 1;
            let mut at = table.home(hash);
            while let Some(slot) = table.slots.get_mut(at) {
                if slot.len == u32::MAX {
                    *slot = StrSlot {
                        hash,
                        start,
                        len,
                        value,
                    };
                    break;
                }
                at = (at + 1) & mask;
            }
        }
        table
    }

    fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn home(&self, hash: u64) -> usize {
        // The top bits: foldhash mixes them best.
        let bits = self.slots.len().trailing_zeros();
        usize::try_from(hash.checked_shr(64 - bits).unwrap_or(0)).unwrap_or(0)
    }

    fn get(&self, key: &str) -> Option<V> {
        if self.slots.is_empty() {
            return None;
        }
        let hash = self.hasher.hash_one(key);
        let mask = self.slots.len() - 1;
        let mut at = self.home(hash);
        while let Some(slot) = self.slots.get(at) {
            if slot.len == u32::MAX {
                return None;
            }
            if slot.hash == hash && slot.len as usize == key.len() {
                let start = slot.start as usize;
                if self.keys.get(start..start + key.len()) == Some(key.as_bytes()) {
                    return Some(slot.value);
                }
            }
            at = (at + 1) & mask;
        }
        None
    }
}

/// Exact strings to rules. Every string also gets a small number (its id), so that rules can
/// compare a connection's value by id instead of by text once it has been looked up.
#[derive(Debug, Default, Clone)]
pub struct TextIndex {
    ids: HashMap<Box<str>, u32, RandomState>,
    building: Vec<Vec<u32>>,
    /// Each key's id and rules, once frozen.
    table: StrTable<(u32, Span)>,
    postings: Postings,
}

impl TextIndex {
    /// The id of `key`, assigning the next one if it is new.
    pub fn intern(&mut self, key: &str) -> u32 {
        if let Some(id) = self.ids.get(key) {
            return *id;
        }
        let id = u32::try_from(self.building.len()).unwrap_or(u32::MAX);
        self.ids.insert(key.into(), id);
        self.building.push(Vec::new());
        id
    }

    /// Adds `rule` under `key`.
    pub fn add(&mut self, key: &str, rule: u32) {
        let id = self.intern(key);
        if let Some(rules) = self.building.get_mut(id as usize) {
            rules.push(rule);
        }
    }

    /// How many rules were added under `key` so far.
    pub fn count(&self, key: &str) -> usize {
        self.ids
            .get(key)
            .and_then(|id| self.building.get(*id as usize))
            .map_or(0, Vec::len)
    }

    /// Makes the index ready for lookups.
    pub fn freeze(&mut self) {
        let spans: Vec<Span> = std::mem::take(&mut self.building)
            .into_iter()
            .map(|rules| self.postings.push(rules))
            .collect();
        let entries: Vec<(&str, (u32, Span))> = self
            .ids
            .iter()
            .map(|(key, &id)| {
                let span = spans.get(id as usize).copied().unwrap_or_default();
                (&**key, (id, span))
            })
            .collect();
        self.table = StrTable::new(entries.into_iter());
    }

    /// The id of `key` and the rules added under it, in order.
    pub fn lookup(&self, key: &str) -> Option<(u32, &[u32])> {
        let (id, span) = self.table.get(key)?;
        Some((id, self.postings.get(span)))
    }
}

/// Domain patterns to rules.
#[derive(Debug, Default, Clone)]
pub struct DomainIndex {
    building: HashMap<Box<str>, [Vec<u32>; 3], RandomState>,
    /// For each name: rules for the exact name, for the name and its subdomains, and for its
    /// strict subdomains only.
    keys: StrTable<DomainLists>,
    postings: Postings,
    /// Bit `n - 1` is set when some indexed name has `n` labels: suffixes with other label
    /// counts cannot be keys and are not looked up.
    label_counts: u128,
}

/// The rules of one name in a [`DomainIndex`]: its three lists (exact, suffix, subdomains),
/// one after the other in the index's postings.
#[derive(Debug, Clone, Copy, Default)]
struct DomainLists {
    start: u32,
    lens: [u32; 3],
}

impl DomainLists {
    /// Where list `list` (`EXACT`, `SUFFIX` or `SUBDOMAINS`) is.
    fn span(&self, list: usize) -> Span {
        let before: u32 = self.lens.iter().take(list).sum();
        Span {
            start: self.start.saturating_add(before),
            len: self.lens.get(list).copied().unwrap_or(0),
        }
    }
}

const EXACT: usize = 0;
const SUFFIX: usize = 1;
const SUBDOMAINS: usize = 2;

impl DomainIndex {
    /// Adds `rule` under `pattern`.
    pub fn add(&mut self, pattern: &DomainPattern, rule: u32) {
        let slot = match pattern {
            DomainPattern::Exact(_) => EXACT,
            DomainPattern::Suffix(_) => SUFFIX,
            DomainPattern::Subdomains(_) => SUBDOMAINS,
        };
        let name = pattern.name();
        let labels = name.split('.').count().clamp(1, 128);
        self.label_counts |= 1 << (labels - 1);
        let lists = self.building.entry(name.into()).or_default();
        if let Some(list) = lists.get_mut(slot) {
            list.push(rule);
        }
    }

    /// How many rules were added under `pattern`'s name so far.
    pub fn count(&self, pattern: &DomainPattern) -> usize {
        self.building
            .get(pattern.name())
            .map_or(0, |lists| lists.iter().map(Vec::len).sum())
    }

    /// Makes the index ready for lookups.
    pub fn freeze(&mut self) {
        let building = std::mem::take(&mut self.building);
        let frozen: Vec<(Box<str>, DomainLists)> = building
            .into_iter()
            .map(|(key, lists)| {
                let spans = lists.map(|rules| self.postings.push(rules));
                let start = spans.first().map_or(0, |span| span.start);
                let lens = spans.map(|span| span.len);
                (key, DomainLists { start, lens })
            })
            .collect();
        let entries: Vec<(&str, DomainLists)> =
            frozen.iter().map(|(key, lists)| (&**key, *lists)).collect();
        self.keys = StrTable::new(entries.into_iter());
    }

    /// Calls `visit` with each list of rules whose pattern matches `domain` (lower case).
    pub fn visit(&self, domain: &str, visit: &mut impl FnMut(&[u32])) {
        self.walk(domain, &mut |lists, whole| {
            if whole {
                visit(self.postings.get(lists.span(EXACT)));
                visit(self.postings.get(lists.span(SUFFIX)));
            } else {
                visit(self.postings.get(lists.span(SUFFIX)));
                visit(self.postings.get(lists.span(SUBDOMAINS)));
            }
        });
    }

    /// Whether any pattern in the index matches `domain`.
    pub fn contains(&self, domain: &str) -> bool {
        let mut found = false;
        self.walk(domain, &mut |lists, whole| {
            let hit = if whole {
                [EXACT, SUFFIX]
            } else {
                [SUFFIX, SUBDOMAINS]
            };
            found |= hit
                .iter()
                .any(|&i| lists.lens.get(i).is_some_and(|len| *len > 0));
        });
        found
    }

    /// Calls `step` for each suffix of `domain` (shortest first) that is a key, saying whether
    /// the suffix is the whole name.
    fn walk(&self, domain: &str, step: &mut impl FnMut(&DomainLists, bool)) {
        if self.keys.is_empty() {
            return;
        }
        let bytes = domain.as_bytes();
        let mut labels = 0;
        let mut start = bytes.len();
        let max_labels = 128 - self.label_counts.leading_zeros();
        while labels < max_labels && start > 0 {
            // Move `start` to the beginning of the next label to the left.
            start -= 1;
            while start > 0 && bytes.get(start - 1) != Some(&b'.') {
                start -= 1;
            }
            labels += 1;
            if self.label_counts & (1 << (labels - 1)) == 0 {
                start = start.saturating_sub(1);
                continue;
            }
            if let Some(lists) = domain.get(start..).and_then(|suffix| self.keys.get(suffix)) {
                step(&lists, start == 0);
            }
            // Step over the dot.
            start = start.saturating_sub(1);
        }
    }
}

/// What covers one elementary interval of a [`RangeIndex`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Covering {
    /// The rules of all covering ranges, merged into one sorted list of `postings`: a lookup
    /// goes straight from the interval to its rules.
    Rules(Span),
    /// Range numbers, a span of `covering`, when their merged rules would be too long to copy.
    Ranges(Span),
}

/// Longest merged rule list an interval gets; longer ones are reached through their ranges.
const MERGED_RULES: usize = 64;

/// An unsigned integer type usable as a [`RangeIndex`] key.
pub trait RangeKey: Copy + Ord + Hash + std::fmt::Debug + Default {
    /// The next value, if there is one.
    fn successor(self) -> Option<Self>;
}

macro_rules! range_key {
    ($($t:ty),*) => {$(
        impl RangeKey for $t {
            fn successor(self) -> Option<Self> {
                self.checked_add(1)
            }
        }
    )*};
}
range_key!(u16, u32, u128);

/// Inclusive ranges to rules.
#[derive(Debug, Clone)]
pub struct RangeIndex<K> {
    building: HashMap<(K, K), Vec<u32>, RandomState>,
    /// Start of each elementary interval; the first is always `K::default()` (zero).
    starts: Vec<K>,
    /// For each interval, what covers it.
    interval_sets: Vec<Covering>,
    /// Range numbers, grouped per distinct covering set.
    covering: Postings,
    /// For each range number, its rules in `postings`.
    range_rules: Vec<Span>,
    postings: Postings,
}

impl<K> Default for RangeIndex<K> {
    fn default() -> Self {
        RangeIndex {
            building: HashMap::default(),
            starts: Vec::new(),
            interval_sets: Vec::new(),
            covering: Postings::default(),
            range_rules: Vec::new(),
            postings: Postings::default(),
        }
    }
}

impl<K: RangeKey> RangeIndex<K> {
    /// Adds `rule` for every key in `first..=last`.
    pub fn add(&mut self, first: K, last: K, rule: u32) {
        self.building.entry((first, last)).or_default().push(rule);
    }

    /// How many rules were added for exactly this range so far.
    pub fn count(&self, first: K, last: K) -> usize {
        self.building.get(&(first, last)).map_or(0, Vec::len)
    }

    /// A new index with the ranges and rules of both, neither frozen yet.
    fn union(&self, other: &RangeIndex<K>) -> RangeIndex<K> {
        let mut union = RangeIndex {
            building: self.building.clone(),
            ..RangeIndex::default()
        };
        for (range, rules) in &other.building {
            union.building.entry(*range).or_default().extend(rules);
        }
        union
    }

    /// Makes the index ready for lookups.
    pub fn freeze(&mut self) {
        let mut ranges: Vec<((K, K), Vec<u32>)> =
            std::mem::take(&mut self.building).into_iter().collect();
        ranges.sort_unstable_by_key(|(range, _)| *range);
        self.range_rules = ranges
            .iter()
            .map(|(_, rules)| self.postings.push(rules.clone()))
            .collect();

        // Every range start and every position just after a range end starts a new interval.
        let mut boundaries: Vec<K> = vec![K::default()];
        for ((first, last), _) in &ranges {
            boundaries.push(*first);
            boundaries.extend(last.successor());
        }
        boundaries.sort_unstable();
        boundaries.dedup();

        // Sweep the boundaries, keeping the ranges that cover the current interval.
        let mut interned: HashMap<Vec<u32>, Covering, RandomState> = HashMap::default();
        let mut active: Vec<(K, u32)> = Vec::new();
        let mut next = 0;
        for &at in &boundaries {
            active.retain(|(last, _)| *last >= at);
            while let Some(((first, last), _)) = ranges.get(next) {
                if *first > at {
                    break;
                }
                active.push((*last, u32::try_from(next).unwrap_or(u32::MAX)));
                next += 1;
            }
            let mut set: Vec<u32> = active.iter().map(|(_, id)| *id).collect();
            set.sort_unstable();
            let covering = match interned.get(&set) {
                Some(covering) => *covering,
                None => {
                    let spans = set.iter().filter_map(|&r| self.range_rules.get(r as usize));
                    let merged: usize = spans.clone().map(|s| s.len as usize).sum();
                    let covering = if merged <= MERGED_RULES {
                        let rules: Vec<u32> = spans
                            .flat_map(|s| self.postings.get(*s).iter().copied())
                            .collect();
                        Covering::Rules(self.postings.push(rules))
                    } else {
                        Covering::Ranges(self.covering.push(set.clone()))
                    };
                    interned.insert(set, covering);
                    covering
                }
            };
            self.starts.push(at);
            self.interval_sets.push(covering);
        }
    }

    /// Calls `visit` with the rules of every range containing `key`.
    pub fn visit(&self, key: K, visit: &mut impl FnMut(&[u32])) {
        match self.covering(key) {
            Some(Covering::Rules(span)) => visit(self.postings.get(span)),
            Some(Covering::Ranges(span)) => {
                for &range in self.covering.get(span) {
                    if let Some(span) = self.range_rules.get(range as usize) {
                        visit(self.postings.get(*span));
                    }
                }
            }
            None => {}
        }
    }

    /// Whether any range contains `key`.
    pub fn contains(&self, key: K) -> bool {
        // Every range has at least one rule, so a covered interval has a non-empty list.
        match self.covering(key) {
            Some(Covering::Rules(span) | Covering::Ranges(span)) => span.len > 0,
            None => false,
        }
    }

    fn covering(&self, key: K) -> Option<Covering> {
        // The last interval starting at or before `key` (the first starts at zero, so there
        // always is one). The standard library's binary search picks each half with a
        // conditional move rather than a branch, which would be mispredicted half the time.
        let after = self.starts.partition_point(|start| *start <= key);
        self.interval_sets.get(after.checked_sub(1)?).copied()
    }
}

/// Address blocks to rules, one [`RangeIndex`] per address family.
#[derive(Debug, Default, Clone)]
pub struct IpIndex {
    v4: RangeIndex<u32>,
    v6: RangeIndex<u128>,
}

impl IpIndex {
    /// Adds `rule` for every address in `net`.
    pub fn add(&mut self, net: &Cidr, rule: u32) {
        match net.range() {
            AddrRange::V4(first, last) => self.v4.add(first, last, rule),
            AddrRange::V6(first, last) => self.v6.add(first, last, rule),
        }
    }

    /// How many rules were added for exactly `net` so far.
    pub fn count(&self, net: &Cidr) -> usize {
        match net.range() {
            AddrRange::V4(first, last) => self.v4.count(first, last),
            AddrRange::V6(first, last) => self.v6.count(first, last),
        }
    }

    /// A new index with the blocks and rules of both, neither frozen yet.
    pub fn union(&self, other: &IpIndex) -> IpIndex {
        IpIndex {
            v4: self.v4.union(&other.v4),
            v6: self.v6.union(&other.v6),
        }
    }

    /// Makes the index ready for lookups.
    pub fn freeze(&mut self) {
        self.v4.freeze();
        self.v6.freeze();
    }

    /// Calls `visit` with the rules of every block containing `ip`.
    pub fn visit(&self, ip: IpAddr, visit: &mut impl FnMut(&[u32])) {
        match ip {
            IpAddr::V4(v4) => self.v4.visit(u32::from(v4), visit),
            IpAddr::V6(v6) => self.v6.visit(u128::from(v6), visit),
        }
    }

    /// Whether any block contains `ip`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => self.v4.contains(u32::from(v4)),
            IpAddr::V6(v6) => self.v6.contains(u128::from(v6)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(visit: impl FnOnce(&mut dyn FnMut(&[u32]))) -> Vec<u32> {
        let mut out = Vec::new();
        visit(&mut |rules: &[u32]| out.extend_from_slice(rules));
        out.sort_unstable();
        out
    }

    #[test]
    fn domain_index_walks_suffixes() {
        let mut index = DomainIndex::default();
        index.add(&DomainPattern::parse("example.com").unwrap(), 0);
        index.add(&DomainPattern::parse("*.example.com").unwrap(), 1);
        index.add(&DomainPattern::parse(".example.com").unwrap(), 2);
        index.add(&DomainPattern::parse(".com").unwrap(), 3);
        index.freeze();
        let hits = |d: &str| collect(|v| index.visit(d, &mut |r| v(r)));
        assert_eq!(hits("example.com"), vec![0, 2, 3]);
        assert_eq!(hits("a.b.example.com"), vec![1, 2, 3]);
        assert_eq!(hits("example.org"), Vec::<u32>::new());
        assert!(index.contains("x.com"));
        assert!(!index.contains("x.net"));
    }

    #[test]
    fn range_index_handles_nesting_and_overlap() {
        let mut index = RangeIndex::<u16>::default();
        index.add(0, u16::MAX, 0);
        index.add(80, 80, 1);
        index.add(8000, 8100, 2);
        index.add(8050, 9000, 3);
        index.freeze();
        let hits = |k: u16| collect(|v| index.visit(k, &mut |r| v(r)));
        assert_eq!(hits(79), vec![0]);
        assert_eq!(hits(80), vec![0, 1]);
        assert_eq!(hits(8075), vec![0, 2, 3]);
        assert_eq!(hits(8101), vec![0, 3]);
        assert_eq!(hits(u16::MAX), vec![0]);
        let empty = RangeIndex::<u32>::default();
        assert!(!empty.contains(5));
    }

    #[test]
    fn ip_index_union_has_the_rules_of_both() {
        let mut a = IpIndex::default();
        a.add(&Cidr::parse("10.0.0.0/8").unwrap(), 0);
        a.add(&Cidr::parse("10.1.0.0/16").unwrap(), 2);
        let mut b = IpIndex::default();
        b.add(&Cidr::parse("10.1.0.0/16").unwrap(), 1);
        b.add(&Cidr::parse("2001:db8::/32").unwrap(), 3);
        let mut union = a.union(&b);
        union.freeze();
        let hits = |ip: &str| collect(|v| union.visit(ip.parse().unwrap(), &mut |r| v(r)));
        assert_eq!(hits("10.1.2.3"), vec![0, 1, 2]);
        assert_eq!(hits("10.2.0.0"), vec![0]);
        assert_eq!(hits("2001:db8::1"), vec![3]);
        assert_eq!(hits("192.0.2.1"), Vec::<u32>::new());
    }

    #[test]
    fn ip_index_separates_families() {
        let mut index = IpIndex::default();
        index.add(&Cidr::parse("10.0.0.0/8").unwrap(), 0);
        index.add(&Cidr::parse("::/0").unwrap(), 1);
        index.freeze();
        let hits = |ip: &str| collect(|v| index.visit(ip.parse().unwrap(), &mut |r| v(r)));
        assert_eq!(hits("10.9.9.9"), vec![0]);
        assert_eq!(hits("11.0.0.0"), Vec::<u32>::new());
        assert_eq!(hits("2001:db8::1"), vec![1]);
    }
}
