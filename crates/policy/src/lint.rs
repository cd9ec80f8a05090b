//! Warnings about valid policies: rules that can never match because an earlier rule takes every
//! connection they would take.
//!
//! The check is sound but not complete: a warning is only given when the earlier rule's
//! conditions provably include the later rule's (same kinds of matchers, each value of the later
//! rule inside a value of the earlier one). Earlier rules with a schedule or with a `when`
//! condition the later rule does not repeat are never taken as shadowing.

use std::collections::HashMap;

use crate::diagnostic::{Diagnostic, Severity};
use crate::field::Field;
use crate::model::{Matcher, Policy, Rule};
use crate::pattern::TextPattern;
use crate::source::quote;

/// Pairs of rules compared before the analysis gives up (and says so), to keep `check` fast on
/// very large policies.
const MAX_COMPARISONS: usize = 20_000_000;

/// Warnings for every rule that an earlier rule shadows.
pub fn shadowed_rules(policy: &Policy, file: &str) -> Vec<Diagnostic> {
    let mut warnings = Vec::new();
    // Earlier rules that may shadow, split so that a rule with exact executable paths is only
    // compared with later rules for one of those executables.
    let mut general: Vec<usize> = Vec::new();
    let mut by_path: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut budget = MAX_COMPARISONS;
    for (j, rule) in policy.rules.iter().enumerate() {
        if rule.enabled {
            let bucket = first_exact_path(rule)
                .and_then(|p| by_path.get(p))
                .map_or(&[][..], Vec::as_slice);
            let candidates = general.iter().chain(bucket);
            let mut shadower: Option<usize> = None;
            for &i in candidates {
                if budget == 0 {
                    warnings.push(warning(file, rule, "shadowed-rule analysis stopped here: the policy is too large to compare every pair of rules".to_owned()));
                    return warnings;
                }
                budget -= 1;
                if shadower.is_none_or(|s| i < s)
                    && policy.rules.get(i).is_some_and(|a| covers(a, rule))
                {
                    shadower = Some(i);
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
        }
        if rule.enabled && rule.schedule.is_none() {
            match exact_paths(rule) {
                Some(paths) => paths
                    .into_iter()
                    .for_each(|p| by_path.entry(p).or_default().push(j)),
                None => general.push(j),
            }
        }
    }
    warnings
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

fn exact_paths(rule: &Rule) -> Option<Vec<&str>> {
    rule.matchers.iter().find_map(|m| match m {
        Matcher::Text {
            field: Field::AppPath,
            patterns,
        } if patterns.iter().all(|p| matches!(p, TextPattern::Exact(_))) => {
            Some(patterns.iter().map(TextPattern::as_str).collect())
        }
        _ => None,
    })
}

fn first_exact_path(rule: &Rule) -> Option<&str> {
    exact_paths(rule).and_then(|paths| paths.into_iter().next())
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
