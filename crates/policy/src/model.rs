//! The validated policy: what a document says once it has been read and checked.

use jiff::Timestamp;
use palisade_proto::{Action, Connection, Direction, Mode, Protocol, Scope};

use crate::condition::Condition;
use crate::field::Field;
use crate::pattern::{Cidr, DomainPattern, Pattern, PortRange, TextPattern};
use crate::schedule::Schedule;
use crate::source::Pos;

/// A whole policy document.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Short name.
    pub name: String,
    /// What the policy is for.
    pub description: Option<String>,
    /// The action when no rule matches.
    pub default_action: Action,
    /// Enforce or only record blocks.
    pub mode: Mode,
    /// What happens to new connections while the agent cannot decide them.
    pub fail: Fail,
    /// Named lists of domains or address blocks, in document order.
    pub lists: Vec<NamedList>,
    /// Rules in evaluation order.
    pub rules: Vec<Rule>,
    /// Embedded test cases.
    pub tests: Vec<TestCase>,
}

/// What an endpoint does with new connections while its agent is not there to decide them
/// (stopped, crashed, restarting): let them through, or hold them back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Fail {
    /// New connections pass undecided (the default: a dead agent never cuts a machine off).
    #[default]
    Open,
    /// New connections are dropped until the agent is back.
    Closed,
}

impl Fail {
    /// The keyword used in policy documents.
    pub fn as_str(self) -> &'static str {
        match self {
            Fail::Open => "open",
            Fail::Closed => "closed",
        }
    }
}

/// A named list of domains or address blocks that rules refer to with `list:`.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedList {
    /// The list's name.
    pub name: String,
    /// What the list holds.
    pub description: Option<String>,
    /// Where the entries came from.
    pub source: ListSource,
    /// The entries.
    pub entries: ListEntries,
}

/// Where a list's entries are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListSource {
    /// In the policy document.
    Inline,
    /// In a text file, one entry per line, path relative to the policy file.
    File(String),
}

/// A list's entries.
#[derive(Debug, Clone, PartialEq)]
pub enum ListEntries {
    /// Domain patterns, matched against the connection's domain.
    Domains(Vec<DomainPattern>),
    /// Address blocks, matched against the remote address.
    Cidrs(Vec<Cidr>),
}

impl ListEntries {
    /// How many entries the list has.
    pub fn len(&self) -> usize {
        match self {
            ListEntries::Domains(d) => d.len(),
            ListEntries::Cidrs(c) => c.len(),
        }
    }

    /// Whether the list has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Unique id, named in decisions and events.
    pub id: String,
    /// What the rule is for.
    pub description: Option<String>,
    /// The action when the rule matches.
    pub action: Action,
    /// Disabled rules are skipped.
    pub enabled: bool,
    /// Matchers from `match:`; all must hold.
    pub matchers: Vec<Matcher>,
    /// The generic condition from `when:`; must hold too.
    pub when: Option<Condition>,
    /// When the rule applies.
    pub schedule: Option<Schedule>,
    /// Where the rule starts in its document, for warnings.
    pub pos: Pos,
}

/// One key of a rule's `match:`. A key with several values holds when any value matches.
#[derive(Debug, Clone, PartialEq)]
pub enum Matcher {
    /// `app_path`, `app_name`, `app_sha256`, `user`, `parent_path`, `cgroup`, `unit`,
    /// `container_id`: exact text or globs.
    Text {
        /// The field.
        field: Field,
        /// The patterns.
        patterns: Vec<TextPattern>,
    },
    /// `cmdline_contains`: the command line contains one of the strings.
    CmdlineContains(Vec<String>),
    /// `cmdline_matches`: one of the regular expressions matches the command line.
    CmdlineMatches(Vec<Pattern>),
    /// `uid`.
    Uid(Vec<u32>),
    /// `domain`.
    Domain(Vec<DomainPattern>),
    /// `dst_ip` or `src_ip`: addresses and blocks.
    Ip {
        /// `DstIp` or `SrcIp`.
        field: Field,
        /// The blocks.
        nets: Vec<Cidr>,
    },
    /// `dst_port` or `src_port`.
    Port {
        /// `DstPort` or `SrcPort`.
        field: Field,
        /// The ranges.
        ranges: Vec<PortRange>,
    },
    /// `protocol`; `any` is kept as an empty list and matches every connection.
    Protocol(Vec<Protocol>),
    /// `direction`.
    Direction(Vec<Direction>),
    /// `scope` of the remote address.
    Scope(Vec<Scope>),
    /// `list`: the domain or remote address is in one of the named lists (indexes into
    /// [`Policy::lists`]).
    List(Vec<usize>),
}

impl Matcher {
    /// The key this matcher is written under in `match:`.
    pub fn key(&self) -> &'static str {
        match self {
            Matcher::Text { field, .. }
            | Matcher::Ip { field, .. }
            | Matcher::Port { field, .. } => field.name(),
            Matcher::CmdlineContains(_) => "cmdline_contains",
            Matcher::CmdlineMatches(_) => "cmdline_matches",
            Matcher::Uid(_) => "uid",
            Matcher::Domain(_) => "domain",
            Matcher::Protocol(_) => "protocol",
            Matcher::Direction(_) => "direction",
            Matcher::Scope(_) => "scope",
            Matcher::List(_) => "list",
        }
    }

    /// The reference semantics: whether this matcher holds for `conn`. Linear in the number of
    /// values; the compiled policy answers the same question through indexes.
    pub fn matches(&self, conn: &Connection, lists: &[NamedList]) -> bool {
        match self {
            Matcher::Text { field, patterns } => match field.get(conn) {
                Some(crate::field::FieldValue::Text(value)) => {
                    patterns.iter().any(|p| p.matches(value))
                }
                _ => false,
            },
            Matcher::CmdlineContains(needles) => conn
                .cmdline
                .as_deref()
                .is_some_and(|c| needles.iter().any(|n| c.contains(n.as_str()))),
            Matcher::CmdlineMatches(patterns) => conn
                .cmdline
                .as_deref()
                .is_some_and(|c| patterns.iter().any(|p| p.is_match(c))),
            Matcher::Uid(uids) => conn.uid.is_some_and(|u| uids.contains(&u)),
            Matcher::Domain(patterns) => conn
                .domain
                .as_deref()
                .is_some_and(|d| patterns.iter().any(|p| p.matches(d))),
            Matcher::Ip { field, nets } => field
                .address(conn)
                .is_some_and(|ip| nets.iter().any(|n| n.contains(ip))),
            Matcher::Port { field, ranges } => field
                .port(conn)
                .is_some_and(|p| ranges.iter().any(|r| r.contains(p))),
            Matcher::Protocol(protocols) => {
                protocols.is_empty() || conn.protocol.is_some_and(|p| protocols.contains(&p))
            }
            Matcher::Direction(directions) => directions.contains(&conn.direction),
            Matcher::Scope(scopes) => conn.scope().is_some_and(|s| scopes.contains(&s)),
            Matcher::List(ids) => ids
                .iter()
                .filter_map(|&i| lists.get(i))
                .any(|list| match &list.entries {
                    ListEntries::Domains(patterns) => conn
                        .domain
                        .as_deref()
                        .is_some_and(|d| patterns.iter().any(|p| p.matches(d))),
                    ListEntries::Cidrs(nets) => conn
                        .remote_ip()
                        .is_some_and(|ip| nets.iter().any(|n| n.contains(ip))),
                }),
        }
    }
}

/// An embedded test case: a connection and the decision the policy must make for it.
#[derive(Debug, Clone, PartialEq)]
pub struct TestCase {
    /// Optional name shown in results.
    pub name: Option<String>,
    /// The connection as written (normalise it before deciding).
    pub conn: Connection,
    /// The expected action.
    pub expect: Action,
    /// The rule expected to decide, if the test names one.
    pub rule: Option<String>,
    /// The instant to evaluate at (for scheduled rules); the current time when absent.
    pub at: Option<Timestamp>,
    /// Line of the case in its document.
    pub line: u32,
}
