//! The fields of one line, TSV or JSON, behind one interface ([`Row`]), and typed getters on it.

use std::borrow::Cow;
use std::net::IpAddr;

use serde_json::{Map, Value};

use super::LineError;

/// A line's fields by Zeek name: scalars as text, containers as lists.
pub(crate) trait Row {
    /// The field as text; `None` when absent or unset.
    fn text(&self, name: &'static str) -> Result<Option<Cow<'_, str>>, LineError>;
    /// The elements of a set or vector field; empty when absent, unset or empty.
    fn list(&self, name: &'static str) -> Result<Vec<Cow<'_, str>>, LineError>;
}

/// The TSV header state: separators and markers, and the column names of `#fields`.
#[derive(Debug, Clone)]
pub(crate) struct TsvHeader {
    separator: String,
    set_separator: String,
    empty: String,
    unset: String,
    fields: Vec<String>,
    types: Vec<String>,
}

impl Default for TsvHeader {
    fn default() -> Self {
        TsvHeader {
            separator: "\t".to_owned(),
            set_separator: ",".to_owned(),
            empty: "(empty)".to_owned(),
            unset: "-".to_owned(),
            fields: Vec::new(),
            types: Vec::new(),
        }
    }
}

impl TsvHeader {
    /// Applies one `#` line. `#separator` is itself separated by a space; the others by the
    /// separator in force. Unknown directives (`#path`, `#open`, `#close`, ...) are ignored.
    pub(crate) fn apply(&mut self, line: &str) -> Result<(), LineError> {
        if let Some(rest) = line.strip_prefix("#separator") {
            let value = unescape(rest.trim_start_matches([' ', '\t']));
            if value.is_empty() {
                return Err(LineError::BadHeader("empty #separator".to_owned()));
            }
            self.separator = value.into_owned();
            return Ok(());
        }
        let mut parts = line.split(self.separator.as_str());
        let directive = parts.next().unwrap_or_default();
        let values: Vec<String> = parts.map(|part| unescape(part).into_owned()).collect();
        let single = |what: &str| -> Result<String, LineError> {
            match values.as_slice() {
                [value] if !value.is_empty() => Ok(value.clone()),
                _ => Err(LineError::BadHeader(format!("{what} needs one value"))),
            }
        };
        match directive {
            "#set_separator" => self.set_separator = single("#set_separator")?,
            "#empty_field" => self.empty = single("#empty_field")?,
            "#unset_field" => self.unset = single("#unset_field")?,
            "#fields" => {
                if values.is_empty() || values.iter().any(String::is_empty) {
                    return Err(LineError::BadHeader("#fields without names".to_owned()));
                }
                self.fields = values;
                self.types.clear();
            }
            "#types" => self.types = values,
            _ => {}
        }
        Ok(())
    }

    fn is_container(&self, column: usize) -> bool {
        self.types
            .get(column)
            .is_some_and(|t| t.starts_with("set[") || t.starts_with("vector["))
    }
}

/// One TSV data line, split into its columns.
pub(crate) struct TsvRow<'a> {
    header: &'a TsvHeader,
    columns: Vec<&'a str>,
}

impl<'a> TsvRow<'a> {
    pub(crate) fn split(header: &'a TsvHeader, line: &'a str) -> Result<Self, LineError> {
        if header.fields.is_empty() {
            return Err(LineError::NoHeader);
        }
        let columns: Vec<&str> = line.split(header.separator.as_str()).collect();
        if columns.len() != header.fields.len() {
            return Err(LineError::ColumnCount {
                expected: header.fields.len(),
                found: columns.len(),
            });
        }
        Ok(TsvRow { header, columns })
    }

    fn raw(&self, name: &str) -> Option<(usize, &'a str)> {
        let column = self.header.fields.iter().position(|f| f == name)?;
        let value = self.columns.get(column)?;
        (*value != self.header.unset).then_some((column, *value))
    }
}

impl Row for TsvRow<'_> {
    fn text(&self, name: &'static str) -> Result<Option<Cow<'_, str>>, LineError> {
        Ok(self.raw(name).map(|(_, value)| {
            if value == self.header.empty {
                Cow::Borrowed("")
            } else {
                unescape(value)
            }
        }))
    }

    fn list(&self, name: &'static str) -> Result<Vec<Cow<'_, str>>, LineError> {
        let Some((column, value)) = self.raw(name) else {
            return Ok(Vec::new());
        };
        if value == self.header.empty || value.is_empty() {
            return Ok(Vec::new());
        }
        if !self.header.is_container(column) {
            return Ok(vec![unescape(value)]);
        }
        Ok(value
            .split(self.header.set_separator.as_str())
            .filter(|element| *element != self.header.unset)
            .map(unescape)
            .collect())
    }
}

/// One JSON line: an object of field names to values.
pub(crate) struct JsonRow {
    object: Map<String, Value>,
}

impl JsonRow {
    pub(crate) fn parse(line: &str) -> Result<Self, LineError> {
        match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(object)) => Ok(JsonRow { object }),
            Ok(_) => Err(LineError::BadJson("not an object".to_owned())),
            Err(err) => Err(LineError::BadJson(err.to_string())),
        }
    }
}

impl Row for JsonRow {
    fn text(&self, name: &'static str) -> Result<Option<Cow<'_, str>>, LineError> {
        match self.object.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => scalar(name, value).map(Some),
        }
    }

    fn list(&self, name: &'static str) -> Result<Vec<Cow<'_, str>>, LineError> {
        match self.object.get(name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items.iter().map(|item| scalar(name, item)).collect(),
            Some(value) => Ok(vec![scalar(name, value)?]),
        }
    }
}

fn scalar<'v>(name: &'static str, value: &'v Value) -> Result<Cow<'v, str>, LineError> {
    match value {
        Value::String(text) => Ok(Cow::Borrowed(text)),
        Value::Number(number) => Ok(Cow::Owned(number.to_string())),
        Value::Bool(true) => Ok(Cow::Borrowed("T")),
        Value::Bool(false) => Ok(Cow::Borrowed("F")),
        _ => Err(LineError::BadValue {
            field: name,
            problem: "not a scalar".to_owned(),
        }),
    }
}

/// Decodes Zeek's `\xHH` escapes (how it writes separators and non-printable bytes inside
/// values). Other backslashes stay as they are; escaped bytes that do not form UTF-8 are
/// replaced by U+FFFD.
pub(crate) fn unescape(value: &str) -> Cow<'_, str> {
    if !value.contains("\\x") {
        return Cow::Borrowed(value);
    }
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'\\'
            && bytes.get(i + 1) == Some(&b'x')
            && let Some(decoded) = bytes
                .get(i + 2..i + 4)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(decoded);
            i += 4;
            continue;
        }
        out.push(byte);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

// Typed getters. Zeek's types: `time` and `interval` are seconds (JSON may write `time` as an
// ISO 8601 string), `count` an unsigned integer, `port` 0..=65535, `addr` an IPv4 or IPv6 address,
// `bool` T or F.

pub(crate) fn required<'r>(
    row: &'r impl Row,
    name: &'static str,
) -> Result<Cow<'r, str>, LineError> {
    row.text(name)?.ok_or(LineError::MissingField(name))
}

pub(crate) fn string(row: &impl Row, name: &'static str) -> Result<Option<String>, LineError> {
    Ok(row.text(name)?.map(Cow::into_owned))
}

pub(crate) fn time(row: &impl Row, name: &'static str) -> Result<f64, LineError> {
    let text = required(row, name)?;
    if let Ok(seconds) = text.parse::<f64>() {
        return seconds_value(name, seconds);
    }
    let stamp: jiff::Timestamp = text.parse().map_err(|_| bad(name, "not a time"))?;
    let nanos = stamp.as_nanosecond();
    // i128 nanoseconds since the epoch to f64 seconds: exact to the microsecond Zeek writes.
    let seconds = (nanos / 1_000) as f64 / 1e6;
    seconds_value(name, seconds)
}

pub(crate) fn interval(row: &impl Row, name: &'static str) -> Result<Option<f64>, LineError> {
    row.text(name)?
        .map(|text| {
            let seconds = text.parse::<f64>().map_err(|_| bad(name, "not a number"))?;
            seconds_value(name, seconds)
        })
        .transpose()
}

pub(crate) fn count(row: &impl Row, name: &'static str) -> Result<Option<u64>, LineError> {
    row.text(name)?
        .map(|text| {
            text.parse::<u64>()
                .map_err(|_| bad(name, "not a non-negative integer"))
        })
        .transpose()
}

pub(crate) fn port(row: &impl Row, name: &'static str) -> Result<u16, LineError> {
    required(row, name)?
        .parse::<u16>()
        .map_err(|_| bad(name, "not a port number"))
}

pub(crate) fn addr(row: &impl Row, name: &'static str) -> Result<IpAddr, LineError> {
    required(row, name)?
        .parse::<IpAddr>()
        .map_err(|_| bad(name, "not an IP address"))
}

pub(crate) fn boolean(row: &impl Row, name: &'static str) -> Result<Option<bool>, LineError> {
    row.text(name)?
        .map(|text| match text.as_ref() {
            "T" | "true" => Ok(true),
            "F" | "false" => Ok(false),
            _ => Err(bad(name, "not T or F")),
        })
        .transpose()
}

pub(crate) fn strings(row: &impl Row, name: &'static str) -> Result<Vec<String>, LineError> {
    Ok(row.list(name)?.into_iter().map(Cow::into_owned).collect())
}

pub(crate) fn intervals(row: &impl Row, name: &'static str) -> Result<Vec<f64>, LineError> {
    row.list(name)?
        .iter()
        .map(|text| {
            let seconds = text.parse::<f64>().map_err(|_| bad(name, "not a number"))?;
            seconds_value(name, seconds)
        })
        .collect()
}

fn seconds_value(name: &'static str, seconds: f64) -> Result<f64, LineError> {
    if seconds.is_finite() && seconds >= 0.0 {
        Ok(seconds)
    } else {
        Err(bad(name, "not a finite non-negative number of seconds"))
    }
}

fn bad(field: &'static str, problem: &str) -> LineError {
    LineError::BadValue {
        field,
        problem: problem.to_owned(),
    }
}
