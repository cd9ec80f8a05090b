//! Canonical text for a policy: fixed key order, one spelling for each value, defaults left out
//! (except `mode`, always written so a reader sees whether the policy enforces).
//!
//! `palisade policy fmt` prints this. The output reads back to the same policy. Comments are not
//! kept (notes belong in `description` fields, which are).

use serde_json::{Map, Value, json};

use crate::condition::{Condition, Operand, Scalar};
use crate::model::{Fail, ListEntries, ListSource, Matcher, Policy, Rule, TestCase};
use crate::source::{Format, reads_as_plain_string};

/// Widest line for a list written on one line (`[a, b, c]`).
const MAX_WIDTH: usize = 100;

/// The policy's canonical text in `format`.
pub fn to_text(policy: &Policy, format: Format) -> String {
    let value = to_value(policy);
    match format {
        Format::Json => {
            let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
            text.push('\n');
            text
        }
        Format::Yaml => {
            let mut out = String::new();
            if let Value::Object(map) = &value {
                write_map(&mut out, map, 0);
            }
            out
        }
    }
}

/// The policy as a JSON value with keys in canonical order.
pub fn to_value(policy: &Policy) -> Value {
    let mut doc = Map::new();
    doc.insert("version".into(), json!(1));
    doc.insert("name".into(), json!(policy.name));
    if let Some(d) = &policy.description {
        doc.insert("description".into(), json!(d));
    }
    doc.insert(
        "default_action".into(),
        json!(policy.default_action.as_str()),
    );
    doc.insert("mode".into(), json!(policy.mode.as_str()));
    if policy.fail != Fail::default() {
        doc.insert("fail".into(), json!(policy.fail.as_str()));
    }
    if !policy.lists.is_empty() {
        let mut lists = Map::new();
        for list in &policy.lists {
            let mut entry = Map::new();
            if let Some(d) = &list.description {
                entry.insert("description".into(), json!(d));
            }
            match (&list.source, &list.entries) {
                (ListSource::File(path), entries) => {
                    entry.insert("file".into(), json!(path));
                    let kind = if matches!(entries, ListEntries::Domains(_)) {
                        "domains"
                    } else {
                        "cidrs"
                    };
                    entry.insert("kind".into(), json!(kind));
                }
                (ListSource::Inline, ListEntries::Domains(d)) => {
                    entry.insert("domains".into(), strings(d));
                }
                (ListSource::Inline, ListEntries::Cidrs(c)) => {
                    entry.insert("cidrs".into(), strings(c));
                }
            }
            lists.insert(list.name.clone(), Value::Object(entry));
        }
        doc.insert("lists".into(), Value::Object(lists));
    }
    if !policy.rules.is_empty() {
        let rules = policy.rules.iter().map(|r| rule_value(r, policy)).collect();
        doc.insert("rules".into(), Value::Array(rules));
    }
    if !policy.tests.is_empty() {
        doc.insert(
            "tests".into(),
            Value::Array(policy.tests.iter().map(test_value).collect()),
        );
    }
    Value::Object(doc)
}

fn rule_value(rule: &Rule, policy: &Policy) -> Value {
    let mut out = Map::new();
    out.insert("id".into(), json!(rule.id));
    if let Some(d) = &rule.description {
        out.insert("description".into(), json!(d));
    }
    out.insert("action".into(), json!(rule.action.as_str()));
    if !rule.enabled {
        out.insert("enabled".into(), json!(false));
    }
    if !rule.matchers.is_empty() {
        let mut m = Map::new();
        for matcher in &rule.matchers {
            m.insert(matcher.key().into(), matcher_value(matcher, policy));
        }
        out.insert("match".into(), Value::Object(m));
    }
    if let Some(when) = &rule.when {
        out.insert("when".into(), condition_value(when));
    }
    if let Some(schedule) = &rule.schedule {
        let mut s = Map::new();
        let days = schedule.day_names();
        if !days.is_empty() {
            s.insert("days".into(), json!(days));
        }
        if !schedule.hours().is_empty() {
            s.insert("hours".into(), strings(schedule.hours()));
        }
        if schedule.zone_name() != "UTC" {
            s.insert("timezone".into(), json!(schedule.zone_name()));
        }
        out.insert("schedule".into(), Value::Object(s));
    }
    Value::Object(out)
}

fn matcher_value(matcher: &Matcher, policy: &Policy) -> Value {
    match matcher {
        Matcher::Text { patterns, .. } => {
            one_or_many(patterns.iter().map(|p| json!(p.as_str())).collect())
        }
        Matcher::CmdlineContains(n) => one_or_many(n.iter().map(|s| json!(s)).collect()),
        Matcher::CmdlineMatches(p) => one_or_many(p.iter().map(|s| json!(s.as_str())).collect()),
        Matcher::Uid(u) => one_or_many(u.iter().map(|u| json!(u)).collect()),
        Matcher::Domain(d) => strings(d),
        Matcher::Ip { nets, .. } => strings(nets),
        Matcher::Port { ranges, .. } => one_or_many(
            ranges
                .iter()
                .map(|r| {
                    if r.from == r.to {
                        json!(r.from)
                    } else {
                        json!({"from": r.from, "to": r.to})
                    }
                })
                .collect(),
        ),
        Matcher::Protocol(p) if p.is_empty() => json!("any"),
        Matcher::Protocol(p) => one_or_many(p.iter().map(|p| json!(p.as_str())).collect()),
        Matcher::Direction(d) => one_or_many(d.iter().map(|d| json!(d.as_str())).collect()),
        Matcher::Scope(s) => one_or_many(s.iter().map(|s| json!(s.as_str())).collect()),
        Matcher::List(ids) => one_or_many(
            ids.iter()
                .filter_map(|&i| policy.lists.get(i))
                .map(|l| json!(l.name))
                .collect(),
        ),
    }
}

fn condition_value(condition: &Condition) -> Value {
    match condition {
        Condition::All(c) => json!({"all": c.iter().map(condition_value).collect::<Vec<_>>()}),
        Condition::Any(c) => json!({"any": c.iter().map(condition_value).collect::<Vec<_>>()}),
        Condition::Not(c) => json!({"not": condition_value(c)}),
        Condition::Test(test) => {
            let value = match &test.operand {
                Operand::One(s) => scalar_value(s),
                Operand::Many(list) => Value::Array(list.iter().map(scalar_value).collect()),
                Operand::Nets(nets) => strings(nets),
                Operand::Regex(re) => json!(re.as_str()),
            };
            json!({"field": test.field.name(), "operator": test.op.as_str(), "value": value})
        }
    }
}

fn scalar_value(scalar: &Scalar) -> Value {
    match scalar {
        Scalar::Text(t) => json!(t),
        Scalar::Int(i) => json!(i),
        Scalar::Ip(ip) => json!(ip.to_string()),
    }
}

fn test_value(case: &TestCase) -> Value {
    let mut out = Map::new();
    if let Some(name) = &case.name {
        out.insert("name".into(), json!(name));
    }
    let mut conn = serde_json::to_value(&case.conn).unwrap_or(Value::Null);
    if let Value::Object(fields) = &mut conn {
        if fields.get("direction") == Some(&json!("outbound")) {
            fields.remove("direction");
        }
    }
    out.insert("conn".into(), conn);
    out.insert("expect".into(), json!(case.expect.as_str()));
    if let Some(rule) = &case.rule {
        out.insert("rule".into(), json!(rule));
    }
    if let Some(at) = &case.at {
        out.insert("at".into(), json!(at.to_string()));
    }
    Value::Object(out)
}

fn strings<T: ToString>(items: &[T]) -> Value {
    one_or_many(items.iter().map(|i| json!(i.to_string())).collect())
}

fn one_or_many(mut items: Vec<Value>) -> Value {
    if items.len() == 1 {
        items.pop().unwrap_or(Value::Null)
    } else {
        Value::Array(items)
    }
}

fn write_map(out: &mut String, map: &Map<String, Value>, indent: usize) {
    for (i, (key, value)) in map.iter().enumerate() {
        // The first entry of a map inside a list item continues the `- ` line.
        if i > 0 || !out.ends_with("- ") {
            push_indent(out, indent);
        }
        out.push_str(&scalar_text(&Value::String(key.clone()), Context::Flow));
        out.push(':');
        write_value(out, value, indent);
    }
}

/// Writes what follows `key:`.
fn write_value(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            write_map(out, map, indent + 2);
        }
        Value::Array(items) if !items.is_empty() => {
            if let Some(flow) = flow_list(items).filter(|f| indent + f.len() < MAX_WIDTH) {
                out.push(' ');
                out.push_str(&flow);
                out.push('\n');
                return;
            }
            out.push('\n');
            for item in items {
                push_indent(out, indent + 2);
                out.push_str("- ");
                match item {
                    Value::Object(map) if !map.is_empty() => write_map(out, map, indent + 4),
                    other => {
                        out.push_str(&scalar_text(other, Context::Block));
                        out.push('\n');
                    }
                }
            }
        }
        other => {
            out.push(' ');
            out.push_str(&scalar_text(other, Context::Block));
            out.push('\n');
        }
    }
}

/// `[a, b, c]` when every item is a scalar or a small mapping of scalars.
fn flow_list(items: &[Value]) -> Option<String> {
    let parts: Option<Vec<String>> = items
        .iter()
        .map(|item| match item {
            Value::Array(_) => None,
            Value::Object(map) => {
                let entries: Option<Vec<String>> = map
                    .iter()
                    .map(|(k, v)| match v {
                        Value::Array(_) | Value::Object(_) => None,
                        _ => Some(format!(
                            "{}: {}",
                            scalar_text(&Value::String(k.clone()), Context::Flow),
                            scalar_text(v, Context::Flow)
                        )),
                    })
                    .collect();
                entries.map(|e| format!("{{{}}}", e.join(", ")))
            }
            scalar => Some(scalar_text(scalar, Context::Flow)),
        })
        .collect();
    parts.map(|p| format!("[{}]", p.join(", ")))
}

/// Where a scalar is written: inside `[...]`/`{...}` (or as a key), or as a block value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    Flow,
    Block,
}

fn scalar_text(value: &Value, context: Context) -> String {
    match value {
        Value::String(s) if is_safe_plain(s, context) => s.clone(),
        Value::Array(_) => "[]".to_owned(),
        Value::Object(_) => "{}".to_owned(),
        other => other.to_string(),
    }
}

/// Whether a string reads back as itself when written without quotes.
fn is_safe_plain(s: &str, context: Context) -> bool {
    let allowed = |c: char| match context {
        Context::Flow => c.is_ascii_alphanumeric() || "/_.-+@=()$^".contains(c),
        Context::Block => (c.is_ascii_graphic() || c == ' ') && !"\"'\\#".contains(c),
    };
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || "/_.".contains(c))
        && !s.ends_with([' ', ':'])
        && !s.contains(": ")
        && s.chars().all(allowed)
        && reads_as_plain_string(s)
}

fn push_indent(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}
