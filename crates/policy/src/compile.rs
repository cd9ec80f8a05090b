//! The compiled policy: indexes that narrow every decision to a few candidate rules.
//!
//! Each enabled rule is filed under exactly one of its matchers — the one whose keys the fewest
//! enabled rules of the whole policy name — in the index for that attribute (executable path,
//! process name, hash, domain, destination address, named list, destination port). Rules with no
//! indexable matcher go to a short list checked for every connection. A decision looks the
//! connection up in each index, checks the candidate rules it finds in rule order, and keeps the
//! lowest-numbered rule whose remaining conditions hold: the same answer as checking every rule
//! in order (see `naive`), which property tests confirm.

use jiff::Timestamp;
use palisade_proto::{Action, Connection, Direction, Mode, Protocol, Scope};

use crate::Decision;
use crate::condition::Condition;
use crate::field::{Field, FieldValue};
use crate::index::{DomainIndex, IpIndex, RangeIndex, TextIndex};
use crate::model::{ListEntries, Matcher, NamedList, Policy, Rule};
use crate::pattern::{Cidr, DomainPattern, Pattern, PortRange, TextPattern};
use crate::schedule::Schedule;

/// A policy ready to decide connections.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    mode: Mode,
    default_action: Action,
    /// One entry per rule of the policy, by position; disabled rules are never candidates.
    rules: Vec<CompiledRule>,
    /// The conditions of the rules that are not fields of [`CompiledRule`], rule after rule.
    checks: Vec<Check>,
    lists: Vec<CompiledList>,
    indexes: Indexes,
    /// Rules with no indexable matcher, in order.
    unindexed: Vec<u32>,
}

/// The indexes a decision looks a connection up in, one per indexable attribute.
#[derive(Debug, Clone, Default)]
struct Indexes {
    app_path: TextIndex,
    app_name: TextIndex,
    app_sha256: TextIndex,
    domain: DomainIndex,
    dst_ip: IpIndex,
    /// Address-block lists, keyed by the remote address.
    remote_ip: IpIndex,
    /// `dst_ip` and `remote_ip` in one, for outbound connections, whose remote address is the
    /// destination: one lookup instead of two. Built by `freeze`.
    outbound_ip: IpIndex,
    dst_port: RangeIndex<u16>,
}

/// A rule as a decision checks it: the conditions most rules have are fields of the rule itself,
/// so that checking a candidate usually reads this one record (32 bytes, never split across
/// cache lines) and nothing else. Other conditions are in the policy's shared check table.
#[derive(Debug, Clone)]
#[repr(align(32))]
struct CompiledRule {
    action: Action,
    /// Allowed protocols, bits of [`protocol_bit`] ([`NO_PROTOCOL`] for a connection without
    /// one); all bits set when the rule does not restrict the protocol.
    protocols: u8,
    /// Allowed directions, bits of [`direction_bit`]; all bits when unrestricted.
    directions: u8,
    /// Allowed scopes, bits of [`scope_bit`] ([`NO_SCOPE`] for a connection without a remote
    /// address); all bits when unrestricted.
    scopes: u8,
    /// A port condition with a single range, the usual case.
    port: Option<(Field, PortRange)>,
    /// An interned text condition (`app_path`, `app_name`, `app_sha256`) with a single exact
    /// value: the field and the value's id.
    id: Option<(Field, u32)>,
    /// The rule's other conditions, a span of [`CompiledPolicy::checks`].
    rest: CheckSpan,
}

// Half a cache line, so that no rule straddles two.
const _: () = assert!(size_of::<CompiledRule>() == 32);

/// Where a rule's other conditions are in [`CompiledPolicy::checks`].
#[derive(Debug, Clone, Copy)]
struct CheckSpan {
    start: u32,
    len: u32,
}

#[derive(Debug, Clone)]
enum CompiledList {
    Domains(Box<DomainIndex>),
    Nets(Box<IpIndex>),
}

#[derive(Debug, Clone)]
enum Check {
    /// `app_path`, `app_name`, `app_sha256`: exact values compared by id.
    Interned {
        field: Field,
        ids: Few<u32>,
        globs: Box<[TextPattern]>,
    },
    Text {
        field: Field,
        exact: Box<[String]>,
        globs: Box<[TextPattern]>,
    },
    CmdlineContains(Vec<String>),
    CmdlineMatches(Vec<Pattern>),
    Uid(Vec<u32>),
    /// Up to [`SMALL_SET`] domain patterns, compared one by one.
    FewDomains(Box<[DomainPattern]>),
    Domain(Box<DomainIndex>),
    /// Up to [`SMALL_SET`] address blocks, compared one by one.
    FewNets {
        field: Field,
        nets: Box<[Cidr]>,
    },
    Ip {
        field: Field,
        nets: Box<IpIndex>,
    },
    Port {
        field: Field,
        ranges: Few<PortRange>,
    },
    /// Bits of [`protocol_bit`]; zero (`any`) matches every connection.
    Protocol(u8),
    /// Bits of [`direction_bit`].
    Direction(u8),
    /// Bits of [`scope_bit`].
    Scope(u8),
    List(Vec<usize>),
    /// The rule's `when` condition.
    When(Box<Condition>),
    /// The rule's schedule.
    Schedule(Box<Schedule>),
}

/// A list of values that usually has one entry, which is then kept inline: checking a candidate
/// rule should not follow a pointer for each of its conditions.
#[derive(Debug, Clone)]
enum Few<T> {
    One(T),
    Many(Box<[T]>),
}

impl<T: Clone> Few<T> {
    fn new(values: &[T]) -> Few<T> {
        match values {
            [one] => Few::One(one.clone()),
            _ => Few::Many(values.into()),
        }
    }

    fn any(&self, mut f: impl FnMut(&T) -> bool) -> bool {
        match self {
            Few::One(one) => f(one),
            Few::Many(many) => many.iter().any(f),
        }
    }
}

/// Where a rule is filed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    AppSha256,
    AppPath,
    Domain,
    DstIp,
    List,
    AppName,
    DstPort,
}

impl CompiledPolicy {
    /// Compiles a validated policy.
    pub fn new(policy: &Policy) -> CompiledPolicy {
        let mut compiled = CompiledPolicy {
            mode: policy.mode,
            default_action: policy.default_action,
            rules: Vec::with_capacity(policy.rules.len()),
            checks: Vec::new(),
            lists: policy.lists.iter().map(compile_list).collect(),
            indexes: Indexes::default(),
            unindexed: Vec::new(),
        };
        // Every indexable matcher of every enabled rule, each in its own index: how many rules
        // name each key, so that a rule is filed under the key fewest rules name, whatever its
        // place in the policy.
        let mut census = Indexes::default();
        for (number, rule) in policy.rules.iter().enumerate() {
            let number = u32::try_from(number).unwrap_or(u32::MAX);
            for matcher in rule.matchers.iter().filter(|_| rule.enabled) {
                if let Some(slot) = slot_of(matcher, &policy.lists) {
                    census.add(slot, matcher, number, &policy.lists);
                }
            }
        }
        for (number, rule) in policy.rules.iter().enumerate() {
            let number = u32::try_from(number).unwrap_or(u32::MAX);
            let filed = if rule.enabled {
                compiled.file(rule, number, &policy.lists, &census)
            } else {
                None
            };
            if rule.enabled && filed.is_none() {
                compiled.unindexed.push(number);
            }
            let checks: Vec<Check> = rule
                .matchers
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != filed)
                .map(|(_, m)| compiled.compile_check(m))
                .collect();
            let compiled_rule = compiled.compile_rule(rule, checks);
            compiled.rules.push(compiled_rule);
        }
        compiled.indexes.freeze();
        compiled
    }

    /// Decides a connection (normalised, see [`Connection::normalize`]) at the instant `now`.
    pub fn decide(&self, conn: &Connection, now: Timestamp) -> Decision {
        let path = conn
            .app_path
            .as_deref()
            .and_then(|p| self.indexes.app_path.lookup(p));
        let name = conn
            .app_name
            .as_deref()
            .and_then(|n| self.indexes.app_name.lookup(n));
        let hash = conn
            .app_sha256
            .as_deref()
            .and_then(|h| self.indexes.app_sha256.lookup(h));
        let id = |found: Option<(u32, &[u32])>| found.map_or(NO_ID, |(id, _)| id);
        let facts = Facts {
            conn,
            now,
            app_path: id(path),
            app_name: id(name),
            app_sha256: id(hash),
            protocol: conn.protocol.map_or(NO_PROTOCOL, protocol_bit),
            direction: direction_bit(conn.direction),
            scope: conn.scope().map_or(NO_SCOPE, scope_bit),
        };

        let mut best = u32::MAX;
        let mut visit = |candidates: &[u32]| {
            for &number in candidates {
                if number >= best {
                    break;
                }
                if self
                    .rules
                    .get(number as usize)
                    .is_some_and(|rule| self.holds(rule, &facts))
                {
                    best = number;
                    break;
                }
            }
        };
        for (_, rules) in [path, name, hash].into_iter().flatten() {
            visit(rules);
        }
        if let Some(domain) = &conn.domain {
            self.indexes.domain.visit(domain, &mut visit);
        }
        if conn.direction == Direction::Outbound {
            if let Some(ip) = conn.dst_ip {
                self.indexes.outbound_ip.visit(ip, &mut visit);
            }
        } else {
            if let Some(ip) = conn.dst_ip {
                self.indexes.dst_ip.visit(ip, &mut visit);
            }
            if let Some(ip) = conn.remote_ip() {
                self.indexes.remote_ip.visit(ip, &mut visit);
            }
        }
        if let Some(port) = conn.dst_port {
            self.indexes.dst_port.visit(port, &mut visit);
        }
        visit(&self.unindexed);

        let (rule, action) = match self.rules.get(best as usize) {
            Some(compiled) => (Some(best as usize), compiled.action),
            None => (None, self.default_action),
        };
        Decision {
            action,
            rule,
            verdict: self.mode.verdict(action),
        }
    }

    /// Files `rule` under the indexable matcher whose bucket is smallest in `census`; returns
    /// that matcher's position.
    fn file(
        &mut self,
        rule: &Rule,
        number: u32,
        lists: &[NamedList],
        census: &Indexes,
    ) -> Option<usize> {
        let (position, slot) = rule
            .matchers
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                let slot = slot_of(m, lists)?;
                Some((census.bucket_size(m, lists), slot, i))
            })
            .min()
            .map(|(_, slot, i)| (i, slot))?;
        let matcher = rule.matchers.get(position)?;
        self.indexes
            .add(slot, matcher, number, lists)
            .then_some(position)
    }

    /// The rule as a decision checks it, from the checks of the matchers that did not file it:
    /// protocol, direction and scope conditions, one single-range port condition and one
    /// single-value interned text condition become fields of the rule, the rest (and `when` and
    /// `schedule`) go to the shared check table.
    fn compile_rule(&mut self, rule: &Rule, checks: Vec<Check>) -> CompiledRule {
        let mut compiled = CompiledRule {
            action: rule.action,
            protocols: u8::MAX,
            directions: u8::MAX,
            scopes: u8::MAX,
            port: None,
            id: None,
            rest: CheckSpan { start: 0, len: 0 },
        };
        let mut rest = Vec::new();
        for check in checks {
            match check {
                // `protocol: any` holds for every connection. A rule's conditions must all
                // hold, so two conditions on one attribute allow the values both allow.
                Check::Protocol(0) => {}
                Check::Protocol(bits) => compiled.protocols &= bits,
                Check::Direction(bits) => compiled.directions &= bits,
                Check::Scope(bits) => compiled.scopes &= bits,
                Check::Port {
                    field,
                    ranges: Few::One(range),
                } if compiled.port.is_none() => compiled.port = Some((field, range)),
                Check::Interned {
                    field,
                    ids: Few::One(id),
                    globs,
                } if globs.is_empty() && compiled.id.is_none() => compiled.id = Some((field, id)),
                other => rest.push(other),
            }
        }
        rest.sort_by_key(Check::cost);
        rest.extend(rule.when.clone().map(|c| Check::When(Box::new(c))));
        rest.extend(rule.schedule.clone().map(|s| Check::Schedule(Box::new(s))));
        compiled.rest = CheckSpan {
            start: u32::try_from(self.checks.len()).unwrap_or(u32::MAX),
            len: u32::try_from(rest.len()).unwrap_or(u32::MAX),
        };
        self.checks.extend(rest);
        compiled
    }

    /// The check for a matcher that did not file the rule. Exact values of indexed text fields
    /// are interned so the check compares ids.
    fn compile_check(&mut self, matcher: &Matcher) -> Check {
        match matcher {
            Matcher::Text { field, patterns } => {
                let (exact, globs): (Vec<&TextPattern>, Vec<&TextPattern>) = patterns
                    .iter()
                    .partition(|p| matches!(p, TextPattern::Exact(_)));
                let globs: Box<[TextPattern]> = globs.into_iter().cloned().collect();
                if let Some(slot) = text_slot(*field) {
                    let index = self.indexes.text_index(slot);
                    let ids: Vec<u32> = exact.iter().map(|p| index.intern(p.as_str())).collect();
                    let ids = Few::new(&ids);
                    return Check::Interned {
                        field: *field,
                        ids,
                        globs,
                    };
                }
                Check::Text {
                    field: *field,
                    exact: exact.into_iter().map(|p| p.as_str().to_owned()).collect(),
                    globs,
                }
            }
            Matcher::CmdlineContains(needles) => Check::CmdlineContains(needles.clone()),
            Matcher::CmdlineMatches(patterns) => Check::CmdlineMatches(patterns.clone()),
            Matcher::Uid(uids) => Check::Uid(uids.clone()),
            Matcher::Domain(patterns) if patterns.len() <= SMALL_SET => {
                Check::FewDomains(patterns.clone().into_boxed_slice())
            }
            Matcher::Ip { field, nets } if nets.len() <= SMALL_SET => Check::FewNets {
                field: *field,
                nets: nets.clone().into_boxed_slice(),
            },
            Matcher::Domain(patterns) => {
                let mut index = DomainIndex::default();
                patterns.iter().for_each(|p| index.add(p, 0));
                index.freeze();
                Check::Domain(Box::new(index))
            }
            Matcher::Ip { field, nets } => {
                let mut index = IpIndex::default();
                nets.iter().for_each(|n| index.add(n, 0));
                index.freeze();
                Check::Ip {
                    field: *field,
                    nets: Box::new(index),
                }
            }
            Matcher::Port { field, ranges } => Check::Port {
                field: *field,
                ranges: Few::new(ranges),
            },
            Matcher::Protocol(p) => Check::Protocol(p.iter().fold(0, |b, p| b | protocol_bit(*p))),
            Matcher::Direction(d) => {
                Check::Direction(d.iter().fold(0, |b, d| b | direction_bit(*d)))
            }
            Matcher::Scope(s) => Check::Scope(s.iter().fold(0, |b, s| b | scope_bit(*s))),
            Matcher::List(ids) => Check::List(ids.clone()),
        }
    }

    fn holds(&self, rule: &CompiledRule, facts: &Facts<'_>) -> bool {
        let conn = facts.conn;
        rule.protocols & facts.protocol != 0
            && rule.directions & facts.direction != 0
            && rule.scopes & facts.scope != 0
            && rule
                .id
                .is_none_or(|(field, id)| id != NO_ID && facts.id(field) == id)
            && rule
                .port
                .is_none_or(|(field, range)| field.port(conn).is_some_and(|p| range.contains(p)))
            && self.rest(rule).iter().all(|check| self.check(check, facts))
    }

    /// The rule's conditions in the shared check table.
    fn rest(&self, rule: &CompiledRule) -> &[Check] {
        let start = rule.rest.start as usize;
        self.checks
            .get(start..start + rule.rest.len as usize)
            .unwrap_or(&[])
    }

    fn check(&self, check: &Check, facts: &Facts<'_>) -> bool {
        let conn = facts.conn;
        match check {
            Check::Interned { field, ids, globs } => {
                let id = facts.id(*field);
                (id != NO_ID && ids.any(|i| *i == id))
                    || (!globs.is_empty()
                        && matches!(field.get(conn), Some(FieldValue::Text(v)) if globs.iter().any(|g| g.matches(v))))
            }
            Check::Text {
                field,
                exact,
                globs,
            } => match field.get(conn) {
                Some(FieldValue::Text(value)) => {
                    exact.iter().any(|e| e == value) || globs.iter().any(|g| g.matches(value))
                }
                _ => false,
            },
            Check::CmdlineContains(needles) => conn
                .cmdline
                .as_deref()
                .is_some_and(|c| needles.iter().any(|n| c.contains(n.as_str()))),
            Check::CmdlineMatches(patterns) => conn
                .cmdline
                .as_deref()
                .is_some_and(|c| patterns.iter().any(|p| p.is_match(c))),
            Check::Uid(uids) => conn.uid.is_some_and(|u| uids.contains(&u)),
            Check::FewDomains(patterns) => conn
                .domain
                .as_deref()
                .is_some_and(|d| patterns.iter().any(|p| p.matches(d))),
            Check::Domain(index) => conn.domain.as_deref().is_some_and(|d| index.contains(d)),
            Check::FewNets { field, nets } => field
                .address(conn)
                .is_some_and(|ip| nets.iter().any(|n| n.contains(ip))),
            Check::Ip { field, nets } => field.address(conn).is_some_and(|ip| nets.contains(ip)),
            Check::Port { field, ranges } => field
                .port(conn)
                .is_some_and(|p| ranges.any(|r| r.contains(p))),
            // Folded into the rule's own fields by `compile_rule`.
            Check::Protocol(protocols) => *protocols == 0 || protocols & facts.protocol != 0,
            Check::Direction(directions) => directions & facts.direction != 0,
            Check::Scope(scopes) => scopes & facts.scope != 0,
            Check::List(ids) => {
                ids.iter()
                    .filter_map(|&i| self.lists.get(i))
                    .any(|list| match list {
                        CompiledList::Domains(index) => {
                            conn.domain.as_deref().is_some_and(|d| index.contains(d))
                        }
                        CompiledList::Nets(index) => {
                            conn.remote_ip().is_some_and(|ip| index.contains(ip))
                        }
                    })
            }
            Check::When(condition) => condition.holds(conn),
            Check::Schedule(schedule) => schedule.is_active(facts.now),
        }
    }
}

impl Indexes {
    /// Adds rule `number` under the keys of `matcher`, indexable in `slot`; false when the matcher
    /// does not belong there.
    fn add(&mut self, slot: Slot, matcher: &Matcher, number: u32, lists: &[NamedList]) -> bool {
        match (slot, matcher) {
            (Slot::AppSha256 | Slot::AppPath | Slot::AppName, Matcher::Text { patterns, .. }) => {
                let index = self.text_index(slot);
                for pattern in patterns {
                    index.add(pattern.as_str(), number);
                }
            }
            (Slot::Domain, Matcher::Domain(patterns)) => {
                for pattern in patterns {
                    self.domain.add(pattern, number);
                }
            }
            (Slot::DstIp, Matcher::Ip { nets, .. }) => {
                for net in nets {
                    self.dst_ip.add(net, number);
                }
            }
            (Slot::DstPort, Matcher::Port { ranges, .. }) => {
                for range in ranges {
                    self.dst_port.add(range.from, range.to, number);
                }
            }
            (Slot::List, Matcher::List(ids)) => {
                for list in ids.iter().filter_map(|&i| lists.get(i)) {
                    match &list.entries {
                        ListEntries::Domains(patterns) => {
                            patterns.iter().for_each(|p| self.domain.add(p, number))
                        }
                        ListEntries::Cidrs(nets) => {
                            nets.iter().for_each(|n| self.remote_ip.add(n, number))
                        }
                    }
                }
            }
            _ => return false,
        }
        true
    }

    /// Makes the indexes ready for lookups.
    fn freeze(&mut self) {
        self.app_path.freeze();
        self.app_name.freeze();
        self.app_sha256.freeze();
        self.domain.freeze();
        self.outbound_ip = self.dst_ip.union(&self.remote_ip);
        self.outbound_ip.freeze();
        self.dst_ip.freeze();
        self.remote_ip.freeze();
        self.dst_port.freeze();
    }

    fn text_index(&mut self, slot: Slot) -> &mut TextIndex {
        match slot {
            Slot::AppSha256 => &mut self.app_sha256,
            Slot::AppName => &mut self.app_name,
            _ => &mut self.app_path,
        }
    }

    /// The size of the largest bucket among the matcher's keys: a rule filed there is checked
    /// for every connection that reaches that bucket.
    fn bucket_size(&self, matcher: &Matcher, lists: &[NamedList]) -> usize {
        match matcher {
            Matcher::Text { field, patterns } => {
                let index = match field {
                    Field::AppSha256 => &self.app_sha256,
                    Field::AppName => &self.app_name,
                    _ => &self.app_path,
                };
                patterns
                    .iter()
                    .map(|p| index.count(p.as_str()))
                    .max()
                    .unwrap_or(0)
            }
            Matcher::Domain(patterns) => patterns
                .iter()
                .map(|p| self.domain.count(p))
                .max()
                .unwrap_or(0),
            Matcher::Ip { nets, .. } => {
                nets.iter().map(|n| self.dst_ip.count(n)).max().unwrap_or(0)
            }
            Matcher::Port { ranges, .. } => ranges
                .iter()
                .map(|r| self.dst_port.count(r.from, r.to))
                .max()
                .unwrap_or(0),
            Matcher::List(ids) => ids
                .iter()
                .filter_map(|&i| lists.get(i))
                .flat_map(|list| match &list.entries {
                    ListEntries::Domains(patterns) => {
                        patterns.iter().map(|p| self.domain.count(p)).max()
                    }
                    ListEntries::Cidrs(nets) => nets.iter().map(|n| self.remote_ip.count(n)).max(),
                })
                .max()
                .unwrap_or(0),
            _ => usize::MAX,
        }
    }
}

/// Largest set of domains or blocks a check compares one by one rather than through an index.
const SMALL_SET: usize = 8;

/// Id of a value no rule names.
const NO_ID: u32 = u32::MAX;

/// The bit of [`Facts::protocol`] for a connection without a protocol: no protocol bit.
const NO_PROTOCOL: u8 = 0x80;

/// The bit of [`Facts::scope`] for a connection without a remote address: no scope bit.
const NO_SCOPE: u8 = 0x80;

/// What a decision knows about the connection once the indexes have been consulted.
struct Facts<'c> {
    conn: &'c Connection,
    now: Timestamp,
    app_path: u32,
    app_name: u32,
    app_sha256: u32,
    /// [`protocol_bit`] of the connection's protocol, or [`NO_PROTOCOL`].
    protocol: u8,
    /// [`direction_bit`] of the connection's direction.
    direction: u8,
    /// [`scope_bit`] of the connection's scope, or [`NO_SCOPE`].
    scope: u8,
}

impl Facts<'_> {
    /// The id of the connection's value of an interned text field, or [`NO_ID`].
    fn id(&self, field: Field) -> u32 {
        match field {
            Field::AppSha256 => self.app_sha256,
            Field::AppName => self.app_name,
            _ => self.app_path,
        }
    }
}

impl Check {
    /// Rough relative cost, so a rule's cheap checks run (and fail) first.
    fn cost(&self) -> u8 {
        match self {
            Check::Protocol(_)
            | Check::Direction(_)
            | Check::Port { .. }
            | Check::Uid(_)
            | Check::Interned { .. } => 0,
            Check::Scope(_) | Check::Ip { .. } | Check::FewNets { .. } => 1,
            Check::Domain(_) | Check::FewDomains(_) | Check::List(_) | Check::Text { .. } => 2,
            Check::CmdlineContains(_) => 3,
            Check::CmdlineMatches(_) => 4,
            Check::When(_) | Check::Schedule(_) => 5,
        }
    }
}

fn protocol_bit(protocol: Protocol) -> u8 {
    match protocol {
        Protocol::Tcp => 1,
        Protocol::Udp => 2,
        Protocol::Icmp => 4,
    }
}

fn direction_bit(direction: Direction) -> u8 {
    match direction {
        Direction::Outbound => 1,
        Direction::Inbound => 2,
    }
}

fn scope_bit(scope: Scope) -> u8 {
    match scope {
        Scope::Localhost => 1,
        Scope::Lan => 2,
        Scope::Internet => 4,
    }
}

/// The index slot for an indexed text field.
fn text_slot(field: Field) -> Option<Slot> {
    match field {
        Field::AppSha256 => Some(Slot::AppSha256),
        Field::AppPath => Some(Slot::AppPath),
        Field::AppName => Some(Slot::AppName),
        _ => None,
    }
}

fn slot_of(matcher: &Matcher, lists: &[NamedList]) -> Option<Slot> {
    match matcher {
        Matcher::Text { field, patterns }
            if patterns.iter().all(|p| matches!(p, TextPattern::Exact(_))) =>
        {
            match field {
                Field::AppSha256 => Some(Slot::AppSha256),
                Field::AppPath => Some(Slot::AppPath),
                Field::AppName => Some(Slot::AppName),
                _ => None,
            }
        }
        Matcher::Domain(_) => Some(Slot::Domain),
        Matcher::Ip {
            field: Field::DstIp,
            ..
        } => Some(Slot::DstIp),
        Matcher::Port {
            field: Field::DstPort,
            ..
        } => Some(Slot::DstPort),
        // An empty list file would leave the rule in no bucket; such rules are never candidates
        // through the list, so they are checked the slow way instead.
        Matcher::List(ids)
            if ids
                .iter()
                .all(|&i| lists.get(i).is_some_and(|l| !l.entries.is_empty())) =>
        {
            Some(Slot::List)
        }
        _ => None,
    }
}

fn compile_list(list: &NamedList) -> CompiledList {
    match &list.entries {
        ListEntries::Domains(patterns) => {
            let mut index = DomainIndex::default();
            patterns.iter().for_each(|p| index.add(p, 0));
            index.freeze();
            CompiledList::Domains(Box::new(index))
        }
        ListEntries::Cidrs(nets) => {
            let mut index = IpIndex::default();
            nets.iter().for_each(|n| index.add(n, 0));
            index.freeze();
            CompiledList::Nets(Box::new(index))
        }
    }
}
