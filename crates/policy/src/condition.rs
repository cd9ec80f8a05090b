//! Generic conditions: `{field, operator, value}` tests combined with `all`, `any` and `not`.

use std::fmt;
use std::net::IpAddr;

use palisade_proto::Connection;

use crate::field::{Field, FieldValue, Kind};
use crate::pattern::{Cidr, Pattern};

/// A condition tree. A test on a field the connection does not have is false.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Every child holds (true when empty).
    All(Vec<Condition>),
    /// At least one child holds (false when empty).
    Any(Vec<Condition>),
    /// The child does not hold.
    Not(Box<Condition>),
    /// One test.
    Test(Test),
}

/// `{field, operator, value}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Test {
    /// The field tested.
    pub field: Field,
    /// The comparison.
    pub op: Op,
    /// The value compared with, already checked against the field's type.
    pub operand: Operand,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `in`: equal to one of a list.
    In,
    /// `not_in`: equal to none of a list.
    NotIn,
    /// `cidr`: address inside one of the blocks.
    Cidr,
    /// `contains`: text contains the value.
    Contains,
    /// `starts_with`
    StartsWith,
    /// `ends_with`
    EndsWith,
    /// `matches`: regular expression matches anywhere in the text.
    Matches,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Op {
    /// Every operator.
    pub const ALL: [Op; 13] = [
        Op::Eq,
        Op::Ne,
        Op::In,
        Op::NotIn,
        Op::Cidr,
        Op::Contains,
        Op::StartsWith,
        Op::EndsWith,
        Op::Matches,
        Op::Lt,
        Op::Le,
        Op::Gt,
        Op::Ge,
    ];

    /// The operator as written in policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::In => "in",
            Op::NotIn => "not_in",
            Op::Cidr => "cidr",
            Op::Contains => "contains",
            Op::StartsWith => "starts_with",
            Op::EndsWith => "ends_with",
            Op::Matches => "matches",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }

    /// Looks an operator up by its written form.
    pub fn from_name(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.as_str() == name)
    }

    /// Whether the operator applies to fields of this kind.
    pub fn applies_to(self, kind: Kind) -> bool {
        match self {
            Op::Eq | Op::Ne | Op::In | Op::NotIn => true,
            Op::Cidr => kind == Kind::Ip,
            Op::Contains | Op::StartsWith | Op::EndsWith | Op::Matches => kind == Kind::Text,
            Op::Lt | Op::Le | Op::Gt | Op::Ge => matches!(kind, Kind::Int { .. }),
        }
    }
}

/// A single value in a condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scalar {
    /// Text or a keyword.
    Text(String),
    /// An integer.
    Int(u64),
    /// An address.
    Ip(IpAddr),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Text(s) => f.write_str(&crate::source::quote(s)),
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// The right-hand side of a test.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// For `==`, `!=`, text operators and orderings.
    One(Scalar),
    /// For `in` and `not_in`.
    Many(Vec<Scalar>),
    /// For `cidr`.
    Nets(Vec<Cidr>),
    /// For `matches`.
    Regex(Pattern),
}

impl Condition {
    /// Whether the condition holds for `conn`.
    pub fn holds(&self, conn: &Connection) -> bool {
        match self {
            Condition::All(children) => children.iter().all(|c| c.holds(conn)),
            Condition::Any(children) => children.iter().any(|c| c.holds(conn)),
            Condition::Not(child) => !child.holds(conn),
            Condition::Test(test) => test.holds(conn),
        }
    }
}

impl Test {
    /// Whether the test holds for `conn`; false when the connection lacks the field.
    pub fn holds(&self, conn: &Connection) -> bool {
        let Some(value) = self.field.get(conn) else {
            return false;
        };
        match (&self.op, &self.operand) {
            (Op::Eq, Operand::One(s)) => equals(value, s),
            (Op::Ne, Operand::One(s)) => !equals(value, s),
            (Op::In, Operand::Many(list)) => list.iter().any(|s| equals(value, s)),
            (Op::NotIn, Operand::Many(list)) => !list.iter().any(|s| equals(value, s)),
            (Op::Cidr, Operand::Nets(nets)) => match value {
                FieldValue::Ip(ip) => nets.iter().any(|n| n.contains(ip)),
                _ => false,
            },
            (Op::Matches, Operand::Regex(re)) => text(value).is_some_and(|t| re.is_match(t)),
            (Op::Contains, Operand::One(Scalar::Text(s))) => {
                text(value).is_some_and(|t| t.contains(s.as_str()))
            }
            (Op::StartsWith, Operand::One(Scalar::Text(s))) => {
                text(value).is_some_and(|t| t.starts_with(s.as_str()))
            }
            (Op::EndsWith, Operand::One(Scalar::Text(s))) => {
                text(value).is_some_and(|t| t.ends_with(s.as_str()))
            }
            (Op::Lt | Op::Le | Op::Gt | Op::Ge, Operand::One(Scalar::Int(bound))) => match value {
                FieldValue::Int(n) => match self.op {
                    Op::Lt => n < *bound,
                    Op::Le => n <= *bound,
                    Op::Gt => n > *bound,
                    _ => n >= *bound,
                },
                _ => false,
            },
            // The decoder never builds other combinations.
            _ => false,
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |f: &mut fmt::Formatter<'_>, word: &str, children: &[Condition]| {
            write!(f, "{word}(")?;
            for (i, child) in children.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{child}")?;
            }
            f.write_str(")")
        };
        match self {
            Condition::All(children) => join(f, "all", children),
            Condition::Any(children) => join(f, "any", children),
            Condition::Not(child) => write!(f, "not({child})"),
            Condition::Test(test) => write!(f, "{test}"),
        }
    }
}

impl fmt::Display for Test {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ", self.field, self.op.as_str())?;
        match &self.operand {
            Operand::One(s) => write!(f, "{s}"),
            Operand::Many(list) => {
                let items: Vec<String> = list.iter().map(ToString::to_string).collect();
                write!(f, "[{}]", items.join(", "))
            }
            Operand::Nets(nets) => {
                let items: Vec<String> = nets.iter().map(ToString::to_string).collect();
                write!(f, "[{}]", items.join(", "))
            }
            Operand::Regex(re) => f.write_str(&crate::source::quote(re.as_str())),
        }
    }
}

fn text(value: FieldValue<'_>) -> Option<&str> {
    match value {
        FieldValue::Text(t) => Some(t),
        FieldValue::Keyword(k) => Some(k),
        _ => None,
    }
}

fn equals(value: FieldValue<'_>, scalar: &Scalar) -> bool {
    match (value, scalar) {
        (FieldValue::Text(t) | FieldValue::Keyword(t), Scalar::Text(s)) => t == s,
        (FieldValue::Int(n), Scalar::Int(m)) => n == *m,
        (FieldValue::Ip(a), Scalar::Ip(b)) => a == *b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test(field: Field, op: Op, operand: Operand) -> Condition {
        Condition::Test(Test { field, op, operand })
    }

    #[test]
    fn missing_fields_make_tests_false_and_not_true() {
        let conn = Connection::default();
        let eq = test(
            Field::Domain,
            Op::Ne,
            Operand::One(Scalar::Text("x".into())),
        );
        assert!(!eq.holds(&conn));
        assert!(Condition::Not(Box::new(eq)).holds(&conn));
    }

    #[test]
    fn orderings_and_lists() {
        let conn = Connection {
            dst_port: Some(8080),
            ..Connection::default()
        };
        assert!(test(Field::DstPort, Op::Ge, Operand::One(Scalar::Int(1024))).holds(&conn));
        assert!(!test(Field::DstPort, Op::Lt, Operand::One(Scalar::Int(1024))).holds(&conn));
        let list = Operand::Many(vec![Scalar::Int(80), Scalar::Int(8080)]);
        assert!(test(Field::DstPort, Op::In, list.clone()).holds(&conn));
        assert!(!test(Field::DstPort, Op::NotIn, list).holds(&conn));
        assert!(Condition::All(vec![]).holds(&conn));
        assert!(!Condition::Any(vec![]).holds(&conn));
    }

    #[test]
    fn keywords_compare_as_text() {
        let conn = Connection {
            dst_ip: Some("10.0.0.1".parse().unwrap()),
            ..Connection::default()
        };
        assert!(
            test(
                Field::Scope,
                Op::Eq,
                Operand::One(Scalar::Text("lan".into()))
            )
            .holds(&conn)
        );
        assert!(
            test(
                Field::Direction,
                Op::Eq,
                Operand::One(Scalar::Text("outbound".into()))
            )
            .holds(&conn)
        );
    }
}
