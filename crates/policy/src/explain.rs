//! Why a decision was made: the conditions of the deciding rule that held, in words.

use palisade_proto::Connection;

use crate::Decision;
use crate::field::FieldValue;
use crate::model::{ListEntries, Matcher, Policy};

/// One line per condition of the deciding rule, or the default action when no rule matched.
pub fn reasons(decision: &Decision, policy: &Policy, conn: &Connection) -> Vec<String> {
    let Some(rule) = decision.rule.and_then(|i| policy.rules.get(i)) else {
        return vec![format!(
            "no rule matched; default_action is {}",
            policy.default_action
        )];
    };
    let mut lines: Vec<String> = rule
        .matchers
        .iter()
        .map(|m| describe(m, conn, policy))
        .collect();
    if let Some(when) = &rule.when {
        lines.push(format!("when {when}"));
    }
    if let Some(schedule) = &rule.schedule {
        lines.push(format!("within schedule {schedule}"));
    }
    if lines.is_empty() {
        lines.push("the rule has no conditions: it matches every connection".to_owned());
    }
    lines
}

fn describe(matcher: &Matcher, conn: &Connection, policy: &Policy) -> String {
    let key = matcher.key();
    match matcher {
        Matcher::Text { field, patterns } => {
            let value = field.get(conn);
            let text = match value {
                Some(FieldValue::Text(t)) => t,
                _ => "",
            };
            let hit = patterns
                .iter()
                .find(|p| p.matches(text))
                .map_or("", |p| p.as_str());
            format!("{key} {} matches {hit}", shown(value))
        }
        Matcher::CmdlineContains(needles) => {
            let cmdline = conn.cmdline.as_deref().unwrap_or("");
            let hit = needles
                .iter()
                .find(|n| cmdline.contains(n.as_str()))
                .map_or("", String::as_str);
            format!("cmdline contains {}", crate::source::quote(hit))
        }
        Matcher::CmdlineMatches(patterns) => {
            let cmdline = conn.cmdline.as_deref().unwrap_or("");
            let hit = patterns
                .iter()
                .find(|p| p.is_match(cmdline))
                .map_or("", |p| p.as_str());
            format!("cmdline matches {}", crate::source::quote(hit))
        }
        Matcher::Uid(_) => format!("uid {}", conn.uid.map_or("?".into(), |u| u.to_string())),
        Matcher::Domain(patterns) => {
            let domain = conn.domain.as_deref().unwrap_or("");
            let hit = patterns
                .iter()
                .find(|p| p.matches(domain))
                .map(ToString::to_string)
                .unwrap_or_default();
            format!("domain {} matches {hit}", crate::source::quote(domain))
        }
        Matcher::Ip { field, nets } => {
            let ip = field.address(conn);
            let hit = ip.and_then(|ip| nets.iter().find(|n| n.contains(ip)));
            format!(
                "{key} {} in {}",
                shown(field.get(conn)),
                hit.map(ToString::to_string).unwrap_or_default()
            )
        }
        Matcher::Port { field, ranges } => {
            let port = field.port(conn);
            let hit = port.and_then(|p| ranges.iter().find(|r| r.contains(p)));
            format!(
                "{key} {} in {}",
                shown(field.get(conn)),
                hit.map(ToString::to_string).unwrap_or_default()
            )
        }
        Matcher::Protocol(list) if list.is_empty() => "protocol any".to_owned(),
        Matcher::Protocol(_) => format!("protocol {}", conn.protocol.map_or("?", |p| p.as_str())),
        Matcher::Direction(_) => format!("direction {}", conn.direction.as_str()),
        Matcher::Scope(_) => format!("scope {}", conn.scope().map_or("?", |s| s.as_str())),
        Matcher::List(ids) => {
            for list in ids.iter().filter_map(|&i| policy.lists.get(i)) {
                match &list.entries {
                    ListEntries::Domains(patterns) => {
                        let domain = conn.domain.as_deref().unwrap_or("");
                        if let Some(p) = patterns.iter().find(|p| p.matches(domain)) {
                            return format!(
                                "domain {} in list {} (entry {p})",
                                crate::source::quote(domain),
                                list.name
                            );
                        }
                    }
                    ListEntries::Cidrs(nets) => {
                        if let Some(ip) = conn.remote_ip() {
                            if let Some(n) = nets.iter().find(|n| n.contains(ip)) {
                                return format!(
                                    "remote address {ip} in list {} (entry {n})",
                                    list.name
                                );
                            }
                        }
                    }
                }
            }
            "list".to_owned()
        }
    }
}

fn shown(value: Option<FieldValue<'_>>) -> String {
    value.map_or_else(|| "?".to_owned(), |v| v.to_string())
}
