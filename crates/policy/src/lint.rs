//! Warnings about valid policies: rules that can never match because an earlier rule takes every
//! connection they would take.
//!
//! The check is sound but not complete: a warning is only given when the earlier rule's
//! conditions provably include the later rule's (same kinds of matchers, each value of the later
//! rule inside a value of the earlier one). Earlier rules with a schedule or with a `when`
//! condition the later rule does not repeat are never taken as shadowing.
//!
//! To stay fast on large policies, earlier rules are grouped by which `match:` keys they use (a
//! rule can only shadow rules that use at least the same keys) and, inside a group, filed under
//! the values of one selective key, so each rule is compared with the few earlier rules that
//! could possibly include it.

use std::collections::HashMap;

use crate::decode::MATCH_KEYS;
use crate::diagnostic::{Diagnostic, Severity};
use crate::model::{Matcher, Policy, Rule};
use crate::pattern::{Cidr, TextPattern};
use crate::source::quote;

/// Rule comparisons before the analysis gives up (and says so): a safety net for policies whose
/// rules defeat the grouping, so that `check` stays quick.
const MAX_COMPARISONS: usize = 50_000_000;

/// Warnings for every rule that an earlier rule shadows.
pub fn shadowed_rules(policy: &Policy, file: &str) -> Vec<Diagnostic> {
    let mut warnings = Vec::new();
    let mut groups: Vec<Group<'_>> = Vec::new();
    let mut budget = MAX_COMPARISONS;
    for (j, rule) in policy.rules.iter().enumerate() {
        if !rule.enabled {
            continue;
        }
        let mask = key_mask(rule);
        let mut shadower: Option<usize> = None;
        for group in groups.iter().filter(|g| g.mask & !mask == 0) {
            for i in group.candidates(rule) {
                if budget == 0 {
                    let message =
                        "shadowed-rule analysis stopped here: too many rules to compare".to_owned();
                    warnings.push(warning(file, rule, message));
                    return warnings;
                }
                budget -= 1;
                if shadower.is_none_or(|s| i < s)
                    && policy.rules.get(i).is_some_and(|a| covers(a, rule))
                {
                    shadower = Some(i);
                }
            }
        }
        if let Some(a) = shadower.and_then(|i| policy.rules.get(i)) {
            let same = if a.action == rule.action {
                "; both have the same action, so it is redundant"
            } else {
                ""
            };
            let message = format!(
                "rule {} can never match: rule {} (line {}) comes first and matches every connection it would{same}",
                quote(&rule.id),
                quote(&a.id),
                a.pos.line
            );
            warnings.push(warning(file, rule, message));
        }
        if rule.schedule.is_none() {
            let group = match groups.iter().position(|g| g.mask == mask) {
                Some(g) => groups.get_mut(g),
                None => {
                    groups.push(Group::new(mask));
                    groups.last_mut()
                }
            };
            if let Some(group) = group {
                group.add(rule, j);
            }
        }
    }
    warnings
}

/// Earlier rules that use the same set of `match:` keys.
struct Group<'p> {
    mask: u32,
    /// The key whose values file the rules, if the group has a selective one.
    key: Option<&'static str>,
    filed: HashMap<Filing<'p>, Vec<usize>>,
    /// Rules whose values for `key` cannot be filed (globs), or all rules without a `key`.
    loose: Vec<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Filing<'p> {
    Text(&'p str),
    Domain(&'p str),
    Net(Cidr),
    Port(u16),
}

/// Keys that file rules, most selective first.
const FILING_KEYS: [&str; 13] = [
    "app_path",
    "app_sha256",
    "domain",
    "dst_ip",
    "src_ip",
    "app_name",
    "parent_path",
    "unit",
    "cgroup",
    "container_id",
    "user",
    "dst_port",
    "src_port",
];

impl<'p> Group<'p> {
    fn new(mask: u32) -> Group<'p> {
        let key = FILING_KEYS.into_iter().find(|k| mask & key_bit(k) != 0);
        Group {
            mask,
            key,
            filed: HashMap::new(),
            loose: Vec::new(),
        }
    }

    fn add(&mut self, rule: &'p Rule, number: usize) {
        match self.key.and_then(|k| filings(rule, k)) {
            Some(keys) => keys
                .into_iter()
                .for_each(|k| self.filed.entry(k).or_default().push(number)),
            None => self.loose.push(number),
        }
    }

    /// Earlier rules of the group that could include `rule`: those filed under a value that
    /// includes `rule`'s first value for the filing key, and the loose ones.
    fn candidates<'a>(&'a self, rule: &'a Rule) -> impl Iterator<Item = usize> + 'a {
        let filed = self.key.map(|key| lookups(rule, key)).unwrap_or_default();
        filed
            .into_iter()
            .filter_map(|k| self.filed.get(&k))
            .flatten()
            .chain(&self.loose)
            .copied()
    }
}

/// The values a rule is filed under for `key`, or `None` when one of them cannot be filed.
fn filings<'p>(rule: &'p Rule, key: &str) -> Option<Vec<Filing<'p>>> {
    match rule.matchers.iter().find(|m| m.key() == key)? {
        Matcher::Text { patterns, .. } => patterns
            .iter()
            .map(|p| match p {
                TextPattern::Exact(text) => Some(Filing::Text(text)),
                TextPattern::Glob(_) => None,
            })
            .collect(),
        Matcher::Domain(patterns) => {
            Some(patterns.iter().map(|p| Filing::Domain(p.name())).collect())
        }
        Matcher::Ip { nets, .. } => Some(nets.iter().map(|n| Filing::Net(*n)).collect()),
        Matcher::Port { ranges, .. } => ranges
            .iter()
            .map(|r| (r.from == r.to).then_some(Filing::Port(r.from)))
            .collect(),
        _ => None,
    }
}

/// The filings under which an earlier rule including `rule` must be found.
fn lookups<'r>(rule: &'r Rule, key: &str) -> Vec<Filing<'r>> {
    match rule.matchers.iter().find(|m| m.key() == key) {
        Some(Matcher::Text { patterns, .. }) => match patterns.first() {
            Some(TextPattern::Exact(text)) => vec![Filing::Text(text)],
            _ => Vec::new(),
        },
        Some(Matcher::Domain(patterns)) => match patterns.first() {
            Some(p) => {
                let name = p.name();
                let mut suffixes = vec![Filing::Domain(name)];
                suffixes.extend(
                    name.match_indices('.')
                        .filter_map(|(i, _)| name.get(i + 1..))
                        .map(Filing::Domain),
                );
                suffixes
            }
            None => Vec::new(),
        },
        Some(Matcher::Ip { nets, .. }) => nets
            .first()
            .map(|n| n.supernets().map(Filing::Net).collect())
            .unwrap_or_default(),
        Some(Matcher::Port { ranges, .. }) => match ranges.first() {
            Some(r) if r.from == r.to => vec![Filing::Port(r.from)],
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

fn key_bit(key: &str) -> u32 {
    MATCH_KEYS
        .iter()
        .position(|k| *k == key)
        .map_or(0, |i| 1 << i)
}

/// The `match:` keys a rule uses (`protocol: any` matches everything and does not count), and
/// one more bit for a `when` condition.
fn key_mask(rule: &Rule) -> u32 {
    let keys = rule
        .matchers
        .iter()
        .filter(|m| !matches!(m, Matcher::Protocol(p) if p.is_empty()))
        .fold(0, |mask, m| mask | key_bit(m.key()));
    if rule.when.is_some() {
        keys | 1 << MATCH_KEYS.len()
    } else {
        keys
    }
}

fn warning(file: &str, rule: &Rule, message: String) -> Diagnostic {
    Diagnostic {
        severity: Severity::Warning,
        file: file.to_owned(),
        pos: rule.pos,
        field: format!("rules.{}", rule.id),
        message,
    }
}

/// Whether every connection `b` matches is matched by `a` as well.
fn covers(a: &Rule, b: &Rule) -> bool {
    a.enabled
        && a.schedule.is_none()
        && (a.when.is_none() || a.when == b.when)
        && a.matchers.iter().all(|ma| {
            matches!(ma, Matcher::Protocol(p) if p.is_empty())
                || b.matchers.iter().any(|mb| matcher_covers(ma, mb))
        })
}

fn matcher_covers(a: &Matcher, b: &Matcher) -> bool {
    fn all<T>(b: &[T], covered: impl FnMut(&T) -> bool) -> bool {
        b.iter().all(covered)
    }
    match (a, b) {
        (
            Matcher::Text {
                field: fa,
                patterns: pa,
            },
            Matcher::Text {
                field: fb,
                patterns: pb,
            },
        ) if fa == fb => all(pb, |p| match p {
            TextPattern::Exact(value) => pa.iter().any(|q| q.matches(value)),
            TextPattern::Glob(_) => pa.contains(p),
        }),
        (Matcher::CmdlineContains(na), Matcher::CmdlineContains(nb)) => {
            all(nb, |n| na.iter().any(|m| n.contains(m.as_str())))
        }
        (Matcher::CmdlineMatches(pa), Matcher::CmdlineMatches(pb)) => all(pb, |p| pa.contains(p)),
        (Matcher::Uid(ua), Matcher::Uid(ub)) => all(ub, |u| ua.contains(u)),
        (Matcher::Domain(da), Matcher::Domain(db)) => {
            all(db, |d| da.iter().any(|e| d.is_covered_by(e)))
        }
        (
            Matcher::Ip {
                field: fa,
                nets: na,
            },
            Matcher::Ip {
                field: fb,
                nets: nb,
            },
        ) if fa == fb => all(nb, |n| na.iter().any(|m| n.is_within(m))),
        (
            Matcher::Port {
                field: fa,
                ranges: ra,
            },
            Matcher::Port {
                field: fb,
                ranges: rb,
            },
        ) if fa == fb => all(rb, |r| ra.iter().any(|s| r.is_within(s))),
        (Matcher::Protocol(pa), Matcher::Protocol(pb)) => {
            pa.is_empty() || (!pb.is_empty() && all(pb, |p| pa.contains(p)))
        }
        (Matcher::Direction(da), Matcher::Direction(db)) => all(db, |d| da.contains(d)),
        (Matcher::Scope(sa), Matcher::Scope(sb)) => all(sb, |s| sa.contains(s)),
        (Matcher::List(la), Matcher::List(lb)) => all(lb, |l| la.contains(l)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    fn warnings(rules: &str) -> Vec<String> {
        let text = format!("version: 1\nname: t\ndefault_action: allow\nrules:\n{rules}");
        let loaded = crate::load("t.yaml", &text, &|_| Err("no files".into())).unwrap();
        loaded.warnings.iter().map(|w| w.message.clone()).collect()
    }

    #[test]
    fn wider_blocks_and_ports_shadow_narrower_ones() {
        let found = warnings(
            "  - {id: a, action: block, match: {dst_ip: 10.0.0.0/8}}\n\
             \x20 - {id: b, action: allow, match: {dst_ip: 10.1.0.0/16, dst_port: 443}}\n\
             \x20 - {id: c, action: allow, match: {dst_port: 53, protocol: any}}\n\
             \x20 - {id: d, action: allow, match: {dst_port: 53, protocol: udp, app_name: dnsmasq}}\n\
             \x20 - {id: e, action: allow, match: {dst_ip: 192.168.0.0/16, dst_port: 443}}\n",
        );
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("rule \"b\" can never match: rule \"a\""));
        assert!(found[1].starts_with("rule \"d\" can never match: rule \"c\""));
    }

    #[test]
    fn schedules_and_narrower_earlier_rules_do_not_shadow() {
        let found = warnings(
            "  - {id: a, action: block, match: {domain: a.example.com}}\n\
             \x20 - {id: b, action: allow, match: {domain: .example.com}}\n\
             \x20 - {id: c, action: block, match: {app_path: /bin/x}, schedule: {days: mon}}\n\
             \x20 - {id: d, action: allow, match: {app_path: /bin/x}}\n",
        );
        assert!(found.is_empty(), "{found:?}");
    }
}
