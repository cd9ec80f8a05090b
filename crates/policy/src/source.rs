//! Policy text (YAML or JSON) to a tree of values that remember their line and column.
//!
//! Both formats load into the same [`Node`] tree so that one decoder, with one set of error
//! messages, serves both. JSON is first checked by a strict JSON parser (so that YAML-only syntax
//! is refused in a `.json` file) and then read by the YAML parser, of which JSON is a subset.
//! Anchors, aliases, tags, duplicate keys and several documents in one file are refused: a policy
//! should read the same to a person as to the engine.

use std::borrow::Cow;
use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// Deepest nesting of sequences and mappings accepted in a document.
pub const MAX_DEPTH: usize = 64;

/// Which syntax a document is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML 1.2.
    Yaml,
    /// JSON.
    Json,
}

impl Format {
    /// The format a file name implies: `.json` is JSON, everything else YAML.
    pub fn from_file_name(name: &str) -> Format {
        if name.to_ascii_lowercase().ends_with(".json") {
            Format::Json
        } else {
            Format::Yaml
        }
    }
}

/// A position in a document, both counted from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1.
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A value in a document together with where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where the value starts.
    pub pos: Pos,
}

/// The value of a [`Node`].
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`, `~` or nothing.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A number with a fraction or exponent.
    Float(f64),
    /// A string; quoted scalars are always strings.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, keys in document order.
    Map(Vec<(Key, Node)>),
}

/// A mapping key and where it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    /// The key's text.
    pub name: String,
    /// Where the key starts.
    pub pos: Pos,
}

impl Value {
    /// A short description of the value's type for error messages, e.g. `the string "80"`.
    pub fn describe(&self) -> String {
        match self {
            Value::Null => "null".to_owned(),
            Value::Bool(b) => format!("the boolean {b}"),
            Value::Int(i) => format!("the number {i}"),
            Value::Float(x) => format!("the number {x}"),
            Value::Str(s) => format!("the string {}", quote(s)),
            Value::Seq(_) => "a list".to_owned(),
            Value::Map(_) => "a mapping".to_owned(),
        }
    }
}

/// A document that could not be read as YAML or JSON at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pos}: {message}")]
pub struct SyntaxError {
    /// Where reading stopped.
    pub pos: Pos,
    /// What was wrong.
    pub message: String,
}

/// Reads a whole document into a [`Node`] tree.
pub fn parse(text: &str, format: Format) -> Result<Node, SyntaxError> {
    if format == Format::Json {
        check_json_syntax(text)?;
    }
    let mut builder = TreeBuilder::default();
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| SyntaxError {
            pos: Pos {
                line: clamp(e.marker().line()),
                col: clamp(e.marker().col() + 1),
            },
            message: explain_yaml_error(e.info()),
        })?;
        builder.event(event, span)?;
    }
    builder.root.ok_or(SyntaxError {
        pos: Pos { line: 1, col: 1 },
        message: "the document is empty".into(),
    })
}

/// The parser's message, with a hint for the mistake policy authors make most.
fn explain_yaml_error(info: &str) -> String {
    if info.contains("anchor") {
        format!("{info}; a value starting with `*` must be quoted, e.g. \"*.example.com\"")
    } else {
        info.to_owned()
    }
}

/// Quotes a string the way error messages and JSON do.
pub fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn check_json_syntax(text: &str) -> Result<(), SyntaxError> {
    serde_json::from_str::<serde_json::Value>(text)
        .map(drop)
        .map_err(|e| SyntaxError {
            pos: Pos {
                line: clamp(e.line()),
                col: clamp(e.column()),
            },
            message: format!("invalid JSON: {}", strip_position(&e.to_string())),
        })
}

fn strip_position(message: &str) -> &str {
    message.split(" at line ").next().unwrap_or(message)
}

fn clamp(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn pos_of(span: &Span) -> Pos {
    Pos {
        line: clamp(span.start.line()),
        col: clamp(span.start.col() + 1),
    }
}

enum Frame {
    Seq {
        items: Vec<Node>,
        pos: Pos,
    },
    Map {
        entries: Vec<(Key, Node)>,
        pos: Pos,
        key: Option<Key>,
    },
}

#[derive(Default)]
struct TreeBuilder {
    stack: Vec<Frame>,
    root: Option<Node>,
    documents: usize,
}

impl TreeBuilder {
    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), SyntaxError> {
        let pos = pos_of(&span);
        let fail = |message: &str| {
            Err(SyntaxError {
                pos,
                message: message.to_owned(),
            })
        };
        match event {
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => Ok(()),
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return fail("a policy file holds one document; found a second one");
                }
                Ok(())
            }
            Event::Alias(_) => fail("anchors and aliases are not supported in policies"),
            Event::Scalar(text, style, anchor, tag) => {
                if anchor != 0 {
                    return fail("anchors and aliases are not supported in policies");
                }
                if tag.is_some() {
                    return fail("tags are not supported in policies");
                }
                self.complete(Node {
                    value: resolve_scalar(text, style),
                    pos,
                })
            }
            Event::SequenceStart(anchor, ref tag) | Event::MappingStart(anchor, ref tag) => {
                if anchor != 0 {
                    return fail("anchors and aliases are not supported in policies");
                }
                if tag.is_some() {
                    return fail("tags are not supported in policies");
                }
                if self.stack.len() >= MAX_DEPTH {
                    return fail("the document is nested too deeply");
                }
                if let Some(Frame::Map { key: None, .. }) = self.stack.last() {
                    return fail("mapping keys must be plain names, not lists or mappings");
                }
                let frame = if matches!(event, Event::SequenceStart(..)) {
                    Frame::Seq {
                        items: Vec::new(),
                        pos,
                    }
                } else {
                    Frame::Map {
                        entries: Vec::new(),
                        pos,
                        key: None,
                    }
                };
                self.stack.push(frame);
                Ok(())
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq { items, pos }) => self.complete(Node {
                    value: Value::Seq(items),
                    pos,
                }),
                Some(Frame::Map { entries, pos, .. }) => self.complete(Node {
                    value: Value::Map(entries),
                    pos,
                }),
                None => fail("unbalanced end of a collection"),
            },
        }
    }

    fn complete(&mut self, node: Node) -> Result<(), SyntaxError> {
        match self.stack.last_mut() {
            None => {
                self.root = Some(node);
                Ok(())
            }
            Some(Frame::Seq { items, .. }) => {
                items.push(node);
                Ok(())
            }
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => {
                    let name = match node.value {
                        Value::Str(s) => s,
                        Value::Int(i) => i.to_string(),
                        Value::Bool(b) => b.to_string(),
                        Value::Float(x) => x.to_string(),
                        Value::Null => "null".to_owned(),
                        Value::Seq(_) | Value::Map(_) => {
                            return Err(SyntaxError {
                                pos: node.pos,
                                message: "mapping keys must be plain names".into(),
                            });
                        }
                    };
                    if let Some((first, _)) = entries.iter().find(|(k, _)| k.name == name) {
                        return Err(SyntaxError {
                            pos: node.pos,
                            message: format!(
                                "duplicate key {} (first written at line {})",
                                quote(&name),
                                first.pos.line
                            ),
                        });
                    }
                    *key = Some(Key {
                        name,
                        pos: node.pos,
                    });
                    Ok(())
                }
                Some(k) => {
                    entries.push((k, node));
                    Ok(())
                }
            },
        }
    }
}

/// Whether `text` written as a plain (unquoted) scalar would read back as this same string.
pub fn reads_as_plain_string(text: &str) -> bool {
    resolve_scalar(Cow::Borrowed(text), ScalarStyle::Plain) == Value::Str(text.to_owned())
}

/// Resolves a scalar by the YAML 1.2 core schema; quoted scalars are always strings.
fn resolve_scalar(text: Cow<'_, str>, style: ScalarStyle) -> Value {
    if style != ScalarStyle::Plain {
        return Value::Str(text.into_owned());
    }
    match text.as_ref() {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    if let Some(int) = parse_int(&text) {
        return int;
    }
    if looks_like_float(&text) {
        if let Ok(x) = text.parse::<f64>() {
            return Value::Float(x);
        }
    }
    Value::Str(text.into_owned())
}

fn parse_int(text: &str) -> Option<Value> {
    let (digits, radix) = if let Some(hex) = text.strip_prefix("0x") {
        (hex, 16)
    } else if let Some(oct) = text.strip_prefix("0o") {
        (oct, 8)
    } else {
        (text, 10)
    };
    let unsigned = digits.strip_prefix(['-', '+']).unwrap_or(digits);
    if unsigned.is_empty() || !unsigned.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    if radix != 10 && unsigned.len() != digits.len() {
        return None;
    }
    // A number too large for 64 bits stays a string; the decoder reports it as out of range.
    i64::from_str_radix(digits, radix).ok().map(Value::Int)
}

fn looks_like_float(text: &str) -> bool {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let mantissa = body.split(['e', 'E']).next().unwrap_or(body);
    !mantissa.is_empty()
        && mantissa.chars().any(|c| c.is_ascii_digit())
        && mantissa.chars().all(|c| c.is_ascii_digit() || c == '.')
        && mantissa.matches('.').count() <= 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Node {
        parse(text, Format::Yaml).unwrap()
    }

    #[test]
    fn scalars_resolve_by_the_core_schema() {
        let node = yaml("a: 80\nb: \"80\"\nc: true\nd: ~\ne: 1.5\nf: 0x10\ng: hello\n");
        let Value::Map(entries) = node.value else {
            panic!("not a map")
        };
        let values: Vec<_> = entries.into_iter().map(|(_, n)| n.value).collect();
        assert_eq!(
            values,
            vec![
                Value::Int(80),
                Value::Str("80".into()),
                Value::Bool(true),
                Value::Null,
                Value::Float(1.5),
                Value::Int(16),
                Value::Str("hello".into()),
            ]
        );
    }

    #[test]
    fn positions_are_one_based() {
        let node = yaml("name: x\nrules:\n  - id: a\n");
        let Value::Map(entries) = node.value else {
            panic!()
        };
        let (key, rules) = &entries[1];
        assert_eq!(key.pos, Pos { line: 2, col: 1 });
        let Value::Seq(items) = &rules.value else {
            panic!()
        };
        let Value::Map(rule) = &items[0].value else {
            panic!()
        };
        assert_eq!(rule[0].1.pos, Pos { line: 3, col: 9 });
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let err = parse("a: 1\nb: 2\na: 3\n", Format::Yaml).unwrap_err();
        assert_eq!(err.pos.line, 3);
        assert!(
            err.message.contains("duplicate key \"a\""),
            "{}",
            err.message
        );
        assert!(parse(r#"{"a": 1, "a": 2}"#, Format::Json).is_err());
    }

    #[test]
    fn aliases_and_tags_are_refused() {
        assert!(parse("a: &x 1\nb: *x\n", Format::Yaml).is_err());
        let err = parse("domain: *.example.com\n", Format::Yaml).unwrap_err();
        assert!(err.message.contains("must be quoted"), "{}", err.message);
        assert!(parse("a: !!str 1\n", Format::Yaml).is_err());
    }

    #[test]
    fn json_is_strict() {
        assert!(parse("{\"a\":\t[1, 2]}", Format::Json).is_ok());
        let err = parse("{a: 1}", Format::Json).unwrap_err();
        assert!(err.message.starts_with("invalid JSON"), "{}", err.message);
        assert_eq!(err.pos.line, 1);
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let text = "[".repeat(100_000);
        assert!(parse(&text, Format::Yaml).is_err());
        let text = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(
            parse(&text, Format::Yaml)
                .unwrap_err()
                .message
                .contains("nested")
        );
    }
}
