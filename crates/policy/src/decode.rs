//! From a [`Node`] tree to a validated [`Policy`], collecting every error with its position.
//!
//! Decoding never stops at the first problem: each field is checked and every error is reported,
//! so a person can fix a document in one pass. A document with any error yields no policy.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use jiff::Timestamp;
use palisade_proto::{Action, Connection, Direction, Mode, Protocol, Scope};

use crate::condition::{Condition, Op, Operand, Scalar, Test};
use crate::diagnostic::{Diagnostic, Invalid, Severity};
use crate::field::{Field, Kind};
use crate::model::{Fail, ListEntries, ListSource, Matcher, NamedList, Policy, Rule, TestCase};
use crate::pattern::{Cidr, DomainPattern, Pattern, PortRange, TextPattern};
use crate::schedule::{HourRange, Schedule};
use crate::source::{Key, Node, Pos, Value, quote};

/// Reads the text of list files named in a policy (`lists.NAME.file`), given the path as
/// written. The policy crate does no I/O itself; the caller decides where paths point.
pub type ListFiles<'a> = &'a dyn Fn(&str) -> Result<String, String>;

/// Keys of a rule's `match:` in the order canonical formatting writes them.
pub const MATCH_KEYS: [&str; 20] = [
    "app_path",
    "app_name",
    "app_sha256",
    "cmdline_contains",
    "cmdline_matches",
    "user",
    "uid",
    "parent_path",
    "cgroup",
    "unit",
    "container_id",
    "domain",
    "dst_ip",
    "dst_port",
    "src_ip",
    "src_port",
    "protocol",
    "direction",
    "scope",
    "list",
];

const TOP_KEYS: &[&str] = &[
    "version",
    "name",
    "description",
    "default_action",
    "mode",
    "fail",
    "lists",
    "rules",
    "tests",
];
const LIST_KEYS: &[&str] = &["description", "domains", "cidrs", "file", "kind"];
const RULE_KEYS: &[&str] = &[
    "id",
    "description",
    "action",
    "enabled",
    "match",
    "when",
    "schedule",
];
const SCHEDULE_KEYS: &[&str] = &["days", "hours", "timezone"];
const TEST_KEYS: &[&str] = &["name", "conn", "expect", "rule", "at"];
const CONDITION_KEYS: &[&str] = &["field", "operator", "value"];

/// Decodes a policy document tree.
pub fn policy(file: &str, root: &Node, files: ListFiles<'_>) -> Result<Policy, Invalid> {
    let mut d = Decoder::new(file, files);
    let policy = d.policy(root);
    d.finish(policy)
}

/// Decodes one connection written as a mapping of field names to values, normalised.
pub fn connection(file: &str, root: &Node) -> Result<Connection, Invalid> {
    let mut d = Decoder::new(file, &|_| Err("no files".into()));
    let conn = d.connection(root, "conn");
    d.finish(conn).map(Connection::normalize)
}

struct Decoder<'a> {
    file: &'a str,
    errors: Vec<Diagnostic>,
    files: ListFiles<'a>,
    /// Names of every list and id of every rule written in the document, valid or not, so that
    /// a reference to one with errors of its own is not reported as unknown as well.
    declared_lists: Vec<String>,
    declared_rules: HashSet<String>,
}

/// The entries of a mapping whose keys have been checked against the allowed set.
struct Fields<'n> {
    entries: &'n [(Key, Node)],
}

impl<'n> Fields<'n> {
    fn get(&self, name: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == name)
            .map(|(_, v)| v)
    }
}

impl<'a> Decoder<'a> {
    fn new(file: &'a str, files: ListFiles<'a>) -> Decoder<'a> {
        Decoder {
            file,
            errors: Vec::new(),
            files,
            declared_lists: Vec::new(),
            declared_rules: HashSet::new(),
        }
    }

    fn finish<T>(mut self, value: Option<T>) -> Result<T, Invalid> {
        match value {
            Some(value) if self.errors.is_empty() => Ok(value),
            _ => {
                self.errors.sort_by_key(|e| (e.pos.line, e.pos.col));
                if self.errors.is_empty() {
                    self.error(
                        Pos { line: 1, col: 1 },
                        "",
                        "the document could not be read",
                    );
                }
                Err(Invalid {
                    file: self.file.to_owned(),
                    errors: self.errors,
                })
            }
        }
    }

    fn error(&mut self, pos: Pos, field: &str, message: impl Into<String>) {
        self.errors.push(Diagnostic {
            severity: Severity::Error,
            file: self.file.to_owned(),
            pos,
            field: field.to_owned(),
            message: message.into(),
        });
    }

    fn expected(&mut self, node: &Node, path: &str, what: &str) {
        let message = format!("expected {what}, found {}", node.value.describe());
        self.error(node.pos, path, message);
    }

    /// Checks that `node` is a mapping whose keys are all in `allowed`.
    fn fields<'n>(&mut self, node: &'n Node, path: &str, allowed: &[&str]) -> Option<Fields<'n>> {
        let Value::Map(entries) = &node.value else {
            self.expected(node, path, "a mapping");
            return None;
        };
        for (key, _) in entries {
            if !allowed.contains(&key.name.as_str()) {
                let hint = match closest(&key.name, allowed) {
                    Some(near) => format!("; did you mean {near:?}?"),
                    None => format!("; known keys: {}", allowed.join(", ")),
                };
                self.error(
                    key.pos,
                    &join(path, &key.name),
                    format!("unknown key {}{hint}", quote(&key.name)),
                );
            }
        }
        Some(Fields { entries })
    }

    fn required<'n>(
        &mut self,
        fields: &Fields<'n>,
        parent: &Node,
        path: &str,
        name: &str,
    ) -> Option<&'n Node> {
        let node = fields.get(name);
        if node.is_none() {
            self.error(parent.pos, &join(path, name), "missing required key");
        }
        node
    }

    fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.value {
            Value::Str(s) => Some(s.clone()),
            _ => {
                self.expected(node, path, "a string");
                None
            }
        }
    }

    fn optional_string(&mut self, node: Option<&Node>, path: &str) -> Option<String> {
        node.and_then(|n| self.string(n, path))
    }

    fn int(&mut self, node: &Node, path: &str, max: u64, what: &str) -> Option<u64> {
        match &node.value {
            Value::Int(i) => match u64::try_from(*i) {
                Ok(n) if n <= max => Some(n),
                _ => {
                    self.error(
                        node.pos,
                        path,
                        format!("{i} is out of range for {what} (0-{max})"),
                    );
                    None
                }
            },
            Value::Str(s) if s.trim().parse::<u64>().is_ok() => {
                let message = format!(
                    "expected {what}, found the string {}; write {} without quotes",
                    quote(s),
                    s.trim()
                );
                self.error(node.pos, path, message);
                None
            }
            _ => {
                self.expected(node, path, what);
                None
            }
        }
    }

    fn bool(&mut self, node: &Node, path: &str) -> Option<bool> {
        match node.value {
            Value::Bool(b) => Some(b),
            _ => {
                self.expected(node, path, "true or false");
                None
            }
        }
    }

    fn keyword<T: Copy>(&mut self, node: &Node, path: &str, choices: &[(&str, T)]) -> Option<T> {
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        if let Value::Str(s) = &node.value {
            if let Some((_, v)) = choices.iter().find(|(n, _)| n == s) {
                return Some(*v);
            }
        }
        self.expected(node, path, &format!("one of {}", names.join(", ")));
        None
    }

    /// A single value or a list of values; each element is decoded by `item`. An empty list is
    /// an error because it could never match.
    fn one_or_many<T>(
        &mut self,
        node: &Node,
        path: &str,
        mut item: impl FnMut(&mut Self, &Node, &str) -> Option<T>,
    ) -> Option<Vec<T>> {
        match &node.value {
            Value::Seq(items) if items.is_empty() => {
                self.error(
                    node.pos,
                    path,
                    "an empty list never matches; remove the key instead",
                );
                None
            }
            Value::Seq(items) => {
                let decoded: Vec<Option<T>> = items
                    .iter()
                    .enumerate()
                    .map(|(i, n)| item(self, n, &format!("{path}[{i}]")))
                    .collect();
                decoded.into_iter().collect()
            }
            _ => item(self, node, path).map(|v| vec![v]),
        }
    }

    fn policy(&mut self, root: &Node) -> Option<Policy> {
        let fields = self.fields(root, "", TOP_KEYS)?;
        match self.required(&fields, root, "", "version") {
            Some(Node {
                value: Value::Int(1),
                ..
            })
            | None => {}
            Some(other) => self.expected(
                other,
                "version",
                "1 (the only version of the policy language)",
            ),
        }
        let name = self
            .required(&fields, root, "", "name")
            .and_then(|n| self.string(n, "name"));
        let description = self.optional_string(fields.get("description"), "description");
        let default_action = self
            .required(&fields, root, "", "default_action")
            .and_then(|n| self.keyword(n, "default_action", &ACTIONS));
        let mode = match fields.get("mode") {
            Some(n) => self.keyword(
                n,
                "mode",
                &[("enforce", Mode::Enforce), ("monitor", Mode::Monitor)],
            ),
            None => Some(Mode::Enforce),
        };
        let fail = match fields.get("fail") {
            Some(n) => self.keyword(n, "fail", &[("open", Fail::Open), ("closed", Fail::Closed)]),
            None => Some(Fail::Open),
        };
        if let Some(Node {
            value: Value::Map(entries),
            ..
        }) = fields.get("lists")
        {
            self.declared_lists = entries.iter().map(|(k, _)| k.name.clone()).collect();
        }
        if let Some(Node {
            value: Value::Seq(items),
            ..
        }) = fields.get("rules")
        {
            self.declared_rules = items.iter().filter_map(declared_id).collect();
        }
        let lists = match fields.get("lists") {
            Some(n) => self.lists(n),
            None => Vec::new(),
        };
        let rules = match fields.get("rules") {
            Some(n) => self.rules(n, &lists),
            None => Vec::new(),
        };
        let tests = match fields.get("tests") {
            Some(n) => self.tests(n),
            None => Vec::new(),
        };
        Some(Policy {
            name: name?,
            description,
            default_action: default_action?,
            mode: mode?,
            fail: fail?,
            lists,
            rules,
            tests,
        })
    }

    fn lists(&mut self, node: &Node) -> Vec<NamedList> {
        let Value::Map(entries) = &node.value else {
            self.expected(node, "lists", "a mapping of list names to lists");
            return Vec::new();
        };
        entries
            .iter()
            .filter_map(|(key, value)| self.list(key, value))
            .collect()
    }

    fn list(&mut self, key: &Key, node: &Node) -> Option<NamedList> {
        let path = format!("lists.{}", key.name);
        check_name(self, key, &path);
        let fields = self.fields(node, &path, LIST_KEYS)?;
        let description =
            self.optional_string(fields.get("description"), &join(&path, "description"));
        let given: Vec<&str> = ["domains", "cidrs", "file"]
            .into_iter()
            .filter(|k| fields.get(k).is_some())
            .collect();
        if given.len() != 1 {
            self.error(
                node.pos,
                &path,
                "a list has exactly one of `domains`, `cidrs` or `file`",
            );
            return None;
        }
        if let Some(n) = fields.get("domains") {
            let items = self.one_or_many(n, &join(&path, "domains"), Self::domain)?;
            return Some(NamedList {
                name: key.name.clone(),
                description,
                source: ListSource::Inline,
                entries: ListEntries::Domains(items),
            });
        }
        if let Some(n) = fields.get("cidrs") {
            let items = self.one_or_many(n, &join(&path, "cidrs"), Self::cidr)?;
            return Some(NamedList {
                name: key.name.clone(),
                description,
                source: ListSource::Inline,
                entries: ListEntries::Cidrs(items),
            });
        }
        let file_node = fields.get("file")?;
        let file = self.string(file_node, &join(&path, "file"))?;
        let Some(kind_node) = fields.get("kind") else {
            self.error(
                node.pos,
                &join(&path, "kind"),
                "a list read from a file needs `kind: domains` or `kind: cidrs`",
            );
            return None;
        };
        let is_domains = self.keyword(
            kind_node,
            &join(&path, "kind"),
            &[("domains", true), ("cidrs", false)],
        )?;
        let text = match (self.files)(&file) {
            Ok(text) => text,
            Err(cause) => {
                self.error(
                    file_node.pos,
                    &join(&path, "file"),
                    format!("cannot read {}: {cause}", quote(&file)),
                );
                return None;
            }
        };
        let entries = self.list_file(&file, &text, &path, is_domains)?;
        Some(NamedList {
            name: key.name.clone(),
            description,
            source: ListSource::File(file),
            entries,
        })
    }

    /// A list file: one entry per line; blank lines and `#` comments are skipped.
    fn list_file(
        &mut self,
        file: &str,
        text: &str,
        path: &str,
        is_domains: bool,
    ) -> Option<ListEntries> {
        let mut domains = Vec::new();
        let mut cidrs = Vec::new();
        let mut ok = true;
        for (i, line) in text.lines().enumerate() {
            let entry = line.split('#').next().unwrap_or("").trim();
            if entry.is_empty() {
                continue;
            }
            let parsed = if is_domains {
                DomainPattern::parse(entry).map(|d| domains.push(d))
            } else {
                Cidr::parse(entry).map(|c| cidrs.push(c))
            };
            if let Err(message) = parsed {
                ok = false;
                self.errors.push(Diagnostic {
                    severity: Severity::Error,
                    file: file.to_owned(),
                    pos: Pos {
                        line: u32::try_from(i + 1).unwrap_or(u32::MAX),
                        col: 1,
                    },
                    field: path.to_owned(),
                    message: format!("{}: {message}", quote(entry)),
                });
            }
        }
        ok.then_some(if is_domains {
            ListEntries::Domains(domains)
        } else {
            ListEntries::Cidrs(cidrs)
        })
    }

    fn rules(&mut self, node: &Node, lists: &[NamedList]) -> Vec<Rule> {
        let Value::Seq(items) = &node.value else {
            self.expected(node, "rules", "a list of rules");
            return Vec::new();
        };
        let mut rules: Vec<Rule> = Vec::new();
        let mut first_line: HashMap<String, u32> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("rules[{i}]");
            let Some(rule) = self.rule(item, &path, lists) else {
                continue;
            };
            if let Some(line) = first_line.get(&rule.id) {
                let message = format!(
                    "duplicate rule id {} (first used at line {line})",
                    quote(&rule.id)
                );
                self.error(item.pos, &join(&path, "id"), message);
            } else {
                first_line.insert(rule.id.clone(), rule.pos.line);
            }
            rules.push(rule);
        }
        rules
    }

    fn rule(&mut self, node: &Node, path: &str, lists: &[NamedList]) -> Option<Rule> {
        let fields = self.fields(node, path, RULE_KEYS)?;
        let id = self.required(&fields, node, path, "id").and_then(|n| {
            let id = self.string(n, &join(path, "id"))?;
            let valid = !id.is_empty()
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
            if !valid {
                self.error(
                    n.pos,
                    &join(path, "id"),
                    "rule ids use letters, digits and - _ . : only",
                );
            }
            Some(id)
        });
        let description =
            self.optional_string(fields.get("description"), &join(path, "description"));
        let action = self
            .required(&fields, node, path, "action")
            .and_then(|n| self.keyword(n, &join(path, "action"), &ACTIONS));
        let enabled = match fields.get("enabled") {
            Some(n) => self.bool(n, &join(path, "enabled")),
            None => Some(true),
        };
        let matchers = match fields.get("match") {
            Some(n) => self.matchers(n, &join(path, "match"), lists),
            None => Some(Vec::new()),
        };
        let when = match fields.get("when") {
            Some(n) => self.condition(n, &join(path, "when")).map(Some),
            None => Some(None),
        };
        let schedule = match fields.get("schedule") {
            Some(n) => self.schedule(n, &join(path, "schedule")).map(Some),
            None => Some(None),
        };
        Some(Rule {
            id: id?,
            description,
            action: action?,
            enabled: enabled?,
            matchers: matchers?,
            when: when?,
            schedule: schedule?,
            pos: node.pos,
        })
    }

    fn matchers(&mut self, node: &Node, path: &str, lists: &[NamedList]) -> Option<Vec<Matcher>> {
        let fields = self.fields(node, path, &MATCH_KEYS)?;
        let mut matchers = Vec::new();
        let mut ok = true;
        // Canonical order, whatever order the document used.
        for key in MATCH_KEYS {
            let Some(value) = fields.get(key) else {
                continue;
            };
            match self.matcher(key, value, &join(path, key), lists) {
                Some(m) => matchers.push(m),
                None => ok = false,
            }
        }
        ok.then_some(matchers)
    }

    fn matcher(
        &mut self,
        key: &str,
        node: &Node,
        path: &str,
        lists: &[NamedList],
    ) -> Option<Matcher> {
        let field = Field::from_name(key);
        Some(match key {
            "cmdline_contains" => {
                Matcher::CmdlineContains(self.one_or_many(node, path, Self::non_empty_string)?)
            }
            "cmdline_matches" => {
                Matcher::CmdlineMatches(self.one_or_many(node, path, Self::regex)?)
            }
            "uid" => Matcher::Uid(self.one_or_many(node, path, |d, n, p| {
                d.int(n, p, u64::from(u32::MAX), "a numeric user id")
                    .and_then(|u| u32::try_from(u).ok())
            })?),
            "user" => Matcher::Text {
                field: Field::User,
                patterns: self.one_or_many(node, path, Self::user)?,
            },
            "app_sha256" => Matcher::Text {
                field: Field::AppSha256,
                patterns: self.one_or_many(node, path, Self::sha256)?,
            },
            "domain" => Matcher::Domain(self.one_or_many(node, path, Self::domain)?),
            "dst_ip" | "src_ip" => Matcher::Ip {
                field: field?,
                nets: self.one_or_many(node, path, Self::cidr)?,
            },
            "dst_port" | "src_port" => Matcher::Port {
                field: field?,
                ranges: self.one_or_many(node, path, Self::port_range)?,
            },
            "protocol" => {
                let choices = [
                    ("tcp", Some(Protocol::Tcp)),
                    ("udp", Some(Protocol::Udp)),
                    ("icmp", Some(Protocol::Icmp)),
                    ("any", None),
                ];
                let items = self.one_or_many(node, path, |d, n, p| d.keyword(n, p, &choices))?;
                // `any` among the values matches everything.
                let protocols = if items.contains(&None) {
                    Vec::new()
                } else {
                    items.into_iter().flatten().collect()
                };
                Matcher::Protocol(protocols)
            }
            "direction" => Matcher::Direction(self.one_or_many(node, path, |d, n, p| {
                d.keyword(
                    n,
                    p,
                    &[
                        ("outbound", Direction::Outbound),
                        ("inbound", Direction::Inbound),
                    ],
                )
            })?),
            "scope" => Matcher::Scope(self.one_or_many(node, path, |d, n, p| {
                d.keyword(
                    n,
                    p,
                    &[
                        ("localhost", Scope::Localhost),
                        ("lan", Scope::Lan),
                        ("internet", Scope::Internet),
                    ],
                )
            })?),
            "list" => Matcher::List(self.one_or_many(node, path, |d, n, p| {
                let name = d.string(n, p)?;
                let found = lists.iter().position(|l| l.name == name);
                if found.is_none() && !d.declared_lists.contains(&name) {
                    let known: Vec<&str> = lists.iter().map(|l| l.name.as_str()).collect();
                    let hint = if known.is_empty() {
                        "the policy defines no lists".to_owned()
                    } else {
                        format!("defined lists: {}", known.join(", "))
                    };
                    d.error(n.pos, p, format!("unknown list {}; {hint}", quote(&name)));
                }
                found
            })?),
            _ => Matcher::Text {
                field: field?,
                patterns: self.one_or_many(node, path, Self::text_pattern)?,
            },
        })
    }

    fn non_empty_string(&mut self, node: &Node, path: &str) -> Option<String> {
        let text = self.string(node, path)?;
        if text.is_empty() {
            self.error(node.pos, path, "empty string");
            return None;
        }
        Some(text)
    }

    fn text_pattern(&mut self, node: &Node, path: &str) -> Option<TextPattern> {
        let text = self.non_empty_string(node, path)?;
        TextPattern::parse(&text)
            .map_err(|e| self.error(node.pos, path, e))
            .ok()
    }

    fn user(&mut self, node: &Node, path: &str) -> Option<TextPattern> {
        if let Value::Int(i) = node.value {
            self.error(
                node.pos,
                path,
                format!("`user` takes names; for the numeric id write `uid: {i}`"),
            );
            return None;
        }
        self.text_pattern(node, path)
    }

    fn sha256(&mut self, node: &Node, path: &str) -> Option<TextPattern> {
        let text = self.string(node, path)?;
        if text.len() != 64 || !text.chars().all(|c| c.is_ascii_hexdigit()) {
            self.error(node.pos, path, "a SHA-256 is 64 hexadecimal digits");
            return None;
        }
        Some(TextPattern::Exact(text.to_ascii_lowercase()))
    }

    fn regex(&mut self, node: &Node, path: &str) -> Option<Pattern> {
        let text = self.string(node, path)?;
        Pattern::parse(&text)
            .map_err(|e| self.error(node.pos, path, e))
            .ok()
    }

    fn domain(&mut self, node: &Node, path: &str) -> Option<DomainPattern> {
        let text = self.string(node, path)?;
        DomainPattern::parse(&text)
            .map_err(|e| self.error(node.pos, path, format!("{}: {e}", quote(&text))))
            .ok()
    }

    fn cidr(&mut self, node: &Node, path: &str) -> Option<Cidr> {
        let text = self.string(node, path)?;
        Cidr::parse(&text)
            .map_err(|e| {
                self.error(
                    node.pos,
                    path,
                    format!("bad address or CIDR {}: {e}", quote(&text)),
                )
            })
            .ok()
    }

    fn port_range(&mut self, node: &Node, path: &str) -> Option<PortRange> {
        let max = u64::from(u16::MAX);
        let port = |d: &mut Self, n: &Node, p: &str| {
            d.int(n, p, max, "a port number (0-65535)")
                .and_then(|v| u16::try_from(v).ok())
        };
        match &node.value {
            Value::Map(_) => {
                let fields = self.fields(node, path, &["from", "to"])?;
                let from = self
                    .required(&fields, node, path, "from")
                    .and_then(|n| port(self, n, &join(path, "from")));
                let to = self
                    .required(&fields, node, path, "to")
                    .and_then(|n| port(self, n, &join(path, "to")));
                let (from, to) = (from?, to?);
                if from > to {
                    self.error(
                        node.pos,
                        path,
                        format!("inverted port range: from {from} is greater than to {to}"),
                    );
                    return None;
                }
                Some(PortRange { from, to })
            }
            Value::Str(s) if s.contains('-') => {
                let message = format!(
                    "expected a port number or a range, found the string {}; write a range as {{from: N, to: M}}",
                    quote(s)
                );
                self.error(node.pos, path, message);
                None
            }
            _ => port(self, node, path).map(|p| PortRange { from: p, to: p }),
        }
    }

    fn schedule(&mut self, node: &Node, path: &str) -> Option<Schedule> {
        let fields = self.fields(node, path, SCHEDULE_KEYS)?;
        let days = match fields.get("days") {
            Some(n) => self.one_or_many(n, &join(path, "days"), Self::string)?,
            None => Vec::new(),
        };
        let hours = match fields.get("hours") {
            Some(n) => self.one_or_many(n, &join(path, "hours"), |d, n, p| {
                let text = d.string(n, p)?;
                HourRange::parse(&text)
                    .map_err(|e| d.error(n.pos, p, e))
                    .ok()
            })?,
            None => Vec::new(),
        };
        let zone = self.optional_string(fields.get("timezone"), &join(path, "timezone"));
        let days: Vec<&str> = days.iter().map(String::as_str).collect();
        Schedule::new(&days, hours, zone.as_deref())
            .map_err(|e| self.error(node.pos, path, e))
            .ok()
    }

    fn condition(&mut self, node: &Node, path: &str) -> Option<Condition> {
        let Value::Map(entries) = &node.value else {
            self.expected(
                node,
                path,
                "a condition: {field, operator, value}, {all: [...]}, {any: [...]} or {not: ...}",
            );
            return None;
        };
        if let [(key, child)] = entries.as_slice() {
            let sub = join(path, &key.name);
            match key.name.as_str() {
                "all" | "any" => {
                    let Value::Seq(items) = &child.value else {
                        self.expected(child, &sub, "a list of conditions");
                        return None;
                    };
                    if items.is_empty() {
                        self.error(
                            child.pos,
                            &sub,
                            "an empty list of conditions; remove it instead",
                        );
                        return None;
                    }
                    let children: Vec<Option<Condition>> = items
                        .iter()
                        .enumerate()
                        .map(|(i, n)| self.condition(n, &format!("{sub}[{i}]")))
                        .collect();
                    let children: Vec<Condition> = children.into_iter().collect::<Option<_>>()?;
                    return Some(if key.name == "all" {
                        Condition::All(children)
                    } else {
                        Condition::Any(children)
                    });
                }
                "not" => {
                    return self
                        .condition(child, &sub)
                        .map(|c| Condition::Not(Box::new(c)));
                }
                _ => {}
            }
        }
        let fields = self.fields(node, path, CONDITION_KEYS)?;
        let field_node = self.required(&fields, node, path, "field");
        let op_node = self.required(&fields, node, path, "operator");
        let value_node = self.required(&fields, node, path, "value");
        let field = field_node.and_then(|n| {
            let name = self.string(n, &join(path, "field"))?;
            let field = Field::from_name(&name);
            if field.is_none() {
                let names: Vec<&str> = Field::ALL.iter().map(|f| f.name()).collect();
                let hint = closest(&name, &names)
                    .map(|c| format!("; did you mean {c:?}?"))
                    .unwrap_or_default();
                self.error(
                    n.pos,
                    &join(path, "field"),
                    format!("unknown field {}{hint}", quote(&name)),
                );
            }
            field
        })?;
        let op = op_node.and_then(|n| {
            let name = self.string(n, &join(path, "operator"))?;
            let op = Op::from_name(&name);
            match op {
                None => {
                    let names: Vec<&str> = Op::ALL.iter().map(|o| o.as_str()).collect();
                    self.error(
                        n.pos,
                        &join(path, "operator"),
                        format!(
                            "unknown operator {}; use one of {}",
                            quote(&name),
                            names.join(" ")
                        ),
                    );
                }
                Some(op) if !op.applies_to(field.kind()) => {
                    self.error(
                        n.pos,
                        &join(path, "operator"),
                        format!("operator {} does not apply to {field}", op.as_str()),
                    );
                    return None;
                }
                Some(_) => {}
            }
            op
        })?;
        let value_node = value_node?;
        let vpath = join(path, "value");
        let operand = match op {
            Op::In | Op::NotIn => {
                let Value::Seq(items) = &value_node.value else {
                    self.expected(
                        value_node,
                        &vpath,
                        &format!("a list of values for {}", op.as_str()),
                    );
                    return None;
                };
                if items.is_empty() {
                    self.error(
                        value_node.pos,
                        &vpath,
                        format!(
                            "an empty list makes {} constant; remove the condition",
                            op.as_str()
                        ),
                    );
                    return None;
                }
                let scalars: Vec<Option<Scalar>> = items
                    .iter()
                    .enumerate()
                    .map(|(i, n)| self.scalar(field, n, &format!("{vpath}[{i}]")))
                    .collect();
                Operand::Many(scalars.into_iter().collect::<Option<_>>()?)
            }
            Op::Cidr => Operand::Nets(self.one_or_many(value_node, &vpath, Self::cidr)?),
            Op::Matches => Operand::Regex(self.regex(value_node, &vpath)?),
            _ => Operand::One(self.scalar(field, value_node, &vpath)?),
        };
        Some(Condition::Test(Test { field, op, operand }))
    }

    /// A value of the field's type.
    fn scalar(&mut self, field: Field, node: &Node, path: &str) -> Option<Scalar> {
        match field.kind() {
            Kind::Int { max } => self
                .int(node, path, max, &format!("an integer for {field}"))
                .map(Scalar::Int),
            Kind::Ip => {
                let text = self.string(node, path)?;
                match text.parse::<IpAddr>() {
                    Ok(ip) => Some(Scalar::Ip(ip.to_canonical())),
                    Err(_) => {
                        self.error(
                            node.pos,
                            path,
                            format!(
                                "{} is not an IP address (use the cidr operator for blocks)",
                                quote(&text)
                            ),
                        );
                        None
                    }
                }
            }
            Kind::Keyword(choices) => {
                let pairs: Vec<(&str, &str)> = choices.iter().map(|c| (*c, *c)).collect();
                self.keyword(node, path, &pairs)
                    .map(|k| Scalar::Text(k.to_owned()))
            }
            Kind::Text => {
                let text = self.string(node, path)?;
                // Compared with normalised connections: see `Connection::normalize`.
                Some(Scalar::Text(match field {
                    Field::Domain => text.trim_end_matches('.').to_ascii_lowercase(),
                    Field::AppSha256 => text.to_ascii_lowercase(),
                    _ => text,
                }))
            }
        }
    }

    fn tests(&mut self, node: &Node) -> Vec<TestCase> {
        let Value::Seq(items) = &node.value else {
            self.expected(node, "tests", "a list of test cases");
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(i, n)| self.test_case(n, &format!("tests[{i}]")))
            .collect()
    }

    fn test_case(&mut self, node: &Node, path: &str) -> Option<TestCase> {
        let fields = self.fields(node, path, TEST_KEYS)?;
        let name = self.optional_string(fields.get("name"), &join(path, "name"));
        let conn = self
            .required(&fields, node, path, "conn")
            .and_then(|n| self.connection(n, &join(path, "conn")));
        let expect = self
            .required(&fields, node, path, "expect")
            .and_then(|n| self.keyword(n, &join(path, "expect"), &ACTIONS));
        let rule = match fields.get("rule") {
            Some(n) => {
                let id = self.string(n, &join(path, "rule"))?;
                if !self.declared_rules.contains(&id) {
                    self.error(
                        n.pos,
                        &join(path, "rule"),
                        format!("no rule has the id {}", quote(&id)),
                    );
                }
                Some(id)
            }
            None => None,
        };
        let at = match fields.get("at") {
            Some(n) => {
                let text = self.string(n, &join(path, "at"))?;
                match text.parse::<Timestamp>() {
                    Ok(ts) => Some(ts),
                    Err(_) => {
                        self.error(
                            n.pos,
                            &join(path, "at"),
                            "expected a time such as 2026-03-02T09:30:00Z",
                        );
                        return None;
                    }
                }
            }
            None => None,
        };
        Some(TestCase {
            name,
            conn: conn?,
            expect: expect?,
            rule,
            at,
            line: node.pos.line,
        })
    }

    fn connection(&mut self, node: &Node, path: &str) -> Option<Connection> {
        // `scope` is accepted here only to be refused with the reason (it is derived).
        let names: Vec<&str> = Field::ALL.iter().map(|f| f.name()).collect();
        let fields = self.fields(node, path, &names)?;
        let mut conn = Connection::default();
        let mut ok = true;
        for (key, node) in fields.entries {
            let Some(field) = Field::from_name(&key.name) else {
                continue;
            };
            let fpath = join(path, &key.name);
            let set = self
                .scalar(field, node, &fpath)
                .map(|value| field.set(&mut conn, &value));
            match set {
                Some(Ok(())) => {}
                Some(Err(message)) => {
                    self.error(node.pos, &fpath, message);
                    ok = false;
                }
                None => ok = false,
            }
        }
        ok.then_some(conn)
    }
}

const ACTIONS: [(&str, Action); 4] = [
    ("allow", Action::Allow),
    ("block", Action::Block),
    ("alert", Action::Alert),
    ("log", Action::Log),
];

/// The `id` a rule is written with, if it has a string one.
fn declared_id(rule: &Node) -> Option<String> {
    let Value::Map(entries) = &rule.value else {
        return None;
    };
    entries
        .iter()
        .find(|(k, _)| k.name == "id")
        .and_then(|(_, v)| match &v.value {
            Value::Str(id) => Some(id.clone()),
            _ => None,
        })
}

fn check_name(d: &mut Decoder<'_>, key: &Key, path: &str) {
    if key.name.is_empty()
        || !key
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        d.error(
            key.pos,
            path,
            "list names use letters, digits and - _ . only",
        );
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The allowed name closest to `name`, if one is within two edits.
fn closest<'k>(name: &str, allowed: &[&'k str]) -> Option<&'k str> {
    allowed
        .iter()
        .map(|a| (edit_distance(name, a), *a))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row.first().copied().unwrap_or(0);
        if let Some(first) = row.first_mut() {
            *first = i + 1;
        }
        for (j, cb) in b.iter().enumerate() {
            let above = row.get(j + 1).copied().unwrap_or(usize::MAX);
            let left = row.get(j).copied().unwrap_or(usize::MAX);
            let value = (prev + usize::from(ca != *cb)).min(above + 1).min(left + 1);
            prev = above;
            if let Some(cell) = row.get_mut(j + 1) {
                *cell = value;
            }
        }
    }
    row.last().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("dst_prot", "dst_port"), 2);
        assert_eq!(edit_distance("action", "action"), 0);
        assert_eq!(closest("acton", RULE_KEYS), Some("action"));
        assert_eq!(closest("zzzzzz", RULE_KEYS), None);
    }
}
