//! DNS messages (RFC 1035) over UDP and over TCP (two-byte length prefix): header, questions and
//! answers, with the record types the agent and the sensor use to learn which names an address
//! belongs to. Authority and additional sections are not decoded.
//!
//! Names are returned as text: labels joined with dots, a `.` or `\` inside a label escaped with
//! `\`, bytes outside printable ASCII written `\DDD` (as `dig` does); the root name is empty.
//! Compression pointers must point backwards (RFC 1035 says "a prior occurrence"), which also
//! rules out loops; a name longer than 255 bytes on the wire is refused.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest name on the wire, length bytes included (RFC 1035 §2.3.4).
pub const MAX_NAME_WIRE_LEN: usize = 255;

const HEADER_LEN: usize = 12;

/// Why bytes could not be read as a DNS message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// A TCP stream holds only part of a message: at least `needed` bytes are required.
    #[error("incomplete DNS message: {needed} bytes needed")]
    Incomplete {
        /// How many bytes of the stream the message needs, length prefix included.
        needed: usize,
    },
    /// The bytes are not a valid DNS message.
    #[error("invalid DNS message at byte {offset}: {reason}")]
    Invalid {
        /// Where in the message the problem is.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Transaction id.
    pub id: u16,
    /// QR bit: a response rather than a query.
    pub is_response: bool,
    /// Operation code (0 is a standard query).
    pub opcode: u8,
    /// TC bit: the message was truncated by the server.
    pub truncated: bool,
    /// Response code (0 NOERROR, 3 NXDOMAIN, ...); see [`rcode_name`].
    pub rcode: u8,
    /// The question section.
    pub questions: Vec<Question>,
    /// The answer section.
    pub answers: Vec<Record>,
}

/// One question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// The name asked about.
    pub name: String,
    /// The record type asked for; see [`type_name`].
    pub qtype: u16,
    /// The class (1 is IN).
    pub qclass: u16,
}

/// One answer record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The owner name.
    pub name: String,
    /// The record type; see [`type_name`].
    pub rtype: u16,
    /// The class (1 is IN).
    pub class: u16,
    /// Time to live in seconds.
    pub ttl: u32,
    /// The decoded data.
    pub data: RecordData,
}

/// The data of a record, decoded for the types Palisade uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordData {
    /// A: an IPv4 address.
    A(Ipv4Addr),
    /// AAAA: an IPv6 address.
    Aaaa(Ipv6Addr),
    /// CNAME, NS or PTR: a name.
    Name(String),
    /// MX.
    Mx {
        /// Lower is preferred.
        preference: u16,
        /// The mail exchanger.
        exchange: String,
    },
    /// TXT: the character strings, as bytes.
    Txt(Vec<Vec<u8>>),
    /// SRV.
    Srv {
        /// Lower is preferred.
        priority: u16,
        /// Share among equal priorities.
        weight: u16,
        /// The service's port.
        port: u16,
        /// The host.
        target: String,
    },
    /// SOA.
    Soa {
        /// Primary name server.
        mname: String,
        /// Responsible mailbox.
        rname: String,
        /// Zone serial number.
        serial: u32,
        /// Negative-caching TTL (the last field).
        minimum: u32,
    },
    /// SVCB or HTTPS (RFC 9460): the parameters that name protocols and addresses.
    Svcb {
        /// 0 is alias form.
        priority: u16,
        /// The target name; empty means the owner name.
        target: String,
        /// `alpn` protocol ids.
        alpn: Vec<String>,
        /// `ipv4hint` addresses.
        ipv4hint: Vec<Ipv4Addr>,
        /// `ipv6hint` addresses.
        ipv6hint: Vec<Ipv6Addr>,
    },
    /// Any other type: the raw data.
    Other(Vec<u8>),
}

/// Zone-file presentation format (RFC 1035 §5.1), as `dig` prints record data: `93.184.216.34`,
/// `10 mx.example.com`, `"v=spf1 -all"`, `1 . alpn=h2,h3 ipv4hint=104.16.1.1`; other types in
/// the generic form of RFC 3597 (`\# 4 0a000001`).
impl fmt::Display for RecordData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordData::A(addr) => write!(f, "{addr}"),
            RecordData::Aaaa(addr) => write!(f, "{addr}"),
            RecordData::Name(name) => f.write_str(name),
            RecordData::Mx {
                preference,
                exchange,
            } => write!(f, "{preference} {exchange}"),
            RecordData::Txt(strings) => {
                for (i, string) in strings.iter().enumerate() {
                    let sep = if i == 0 { "" } else { " " };
                    write!(f, "{sep}\"{}\"", string.escape_ascii())?;
                }
                Ok(())
            }
            RecordData::Srv {
                priority,
                weight,
                port,
                target,
            } => {
                write!(f, "{priority} {weight} {port} {target}")
            }
            RecordData::Soa {
                mname,
                rname,
                serial,
                minimum,
            } => {
                write!(f, "{mname} {rname} {serial} {minimum}")
            }
            RecordData::Svcb {
                priority,
                target,
                alpn,
                ipv4hint,
                ipv6hint,
            } => {
                let target = if target.is_empty() { "." } else { target };
                write!(f, "{priority} {target}")?;
                if !alpn.is_empty() {
                    write!(f, " alpn={}", alpn.join(","))?;
                }
                write_list(f, " ipv4hint=", ipv4hint)?;
                write_list(f, " ipv6hint=", ipv6hint)
            }
            RecordData::Other(bytes) => {
                write!(f, "\\# {}", bytes.len())?;
                if !bytes.is_empty() {
                    f.write_str(" ")?;
                }
                bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }
    }
}

/// Writes `prefix` and the comma-joined items, or nothing for an empty list.
fn write_list<T: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    prefix: &str,
    items: &[T],
) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        let sep = if i == 0 { prefix } else { "," };
        write!(f, "{sep}{item}")?;
    }
    Ok(())
}

/// Decodes one message (a UDP payload, or a TCP message without its length prefix).
pub fn parse(msg: &[u8]) -> Result<Message, DnsError> {
    if msg.len() < HEADER_LEN {
        return Err(invalid(0, "shorter than the 12-byte header"));
    }
    let mut reader = Reader { msg, pos: 0 };
    let id = reader.u16("header")?;
    let [high, low] = reader.u16("header")?.to_be_bytes();
    let question_count = reader.u16("header")?;
    let answer_count = reader.u16("header")?;
    reader.pos = HEADER_LEN;
    let questions = (0..bounded(question_count, msg.len(), 5))
        .map(|_| reader.question())
        .collect::<Result<Vec<_>, _>>()?;
    let answers = (0..bounded(answer_count, msg.len(), 11))
        .map(|_| reader.record())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Message {
        id,
        is_response: high & 0x80 != 0,
        opcode: (high >> 3) & 0x0f,
        truncated: high & 0x02 != 0,
        rcode: low & 0x0f,
        questions,
        answers,
    })
}

/// Decodes the first message of a TCP stream (two-byte length prefix, RFC 1035 §4.2.2) and
/// returns it with the number of stream bytes it used.
pub fn parse_tcp(stream: &[u8]) -> Result<(Message, usize), DnsError> {
    let Some(len) = stream.get(..2).and_then(be16) else {
        return Err(DnsError::Incomplete { needed: 2 });
    };
    let len = usize::from(len);
    let body = stream
        .get(2..2 + len)
        .ok_or(DnsError::Incomplete { needed: 2 + len })?;
    let message = parse(body).map_err(|e| match e {
        DnsError::Invalid { offset, reason } => DnsError::Invalid {
            offset: offset + 2,
            reason,
        },
        other => other,
    })?;
    Ok((message, 2 + len))
}

/// The mnemonic of a record type (`A`, `AAAA`, `HTTPS`, ...), or `TYPEnnn` (RFC 3597).
pub fn type_name(rtype: u16) -> String {
    let name = match rtype {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        10 => "NULL",
        12 => "PTR",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        41 => "OPT",
        64 => "SVCB",
        65 => "HTTPS",
        255 => "ANY",
        other => return format!("TYPE{other}"),
    };
    name.to_owned()
}

/// The mnemonic of a response code (`NOERROR`, `NXDOMAIN`, ...), or `RCODEnn`.
pub fn rcode_name(rcode: u8) -> String {
    let name = match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        other => return format!("RCODE{other}"),
    };
    name.to_owned()
}

fn be16(bytes: &[u8]) -> Option<u16> {
    <[u8; 2]>::try_from(bytes).ok().map(u16::from_be_bytes)
}

fn invalid(offset: usize, reason: &'static str) -> DnsError {
    DnsError::Invalid { offset, reason }
}

/// A count from the header, bounded by how many entries of at least `min_len` bytes the
/// message could hold, so a hostile count cannot make us reserve memory.
fn bounded(count: u16, msg_len: usize, min_len: usize) -> usize {
    usize::from(count).min(msg_len / min_len)
}

struct Reader<'m> {
    msg: &'m [u8],
    pos: usize,
}

impl<'m> Reader<'m> {
    fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'m [u8], DnsError> {
        let bytes = self
            .msg
            .get(self.pos..self.pos + n)
            .ok_or(invalid(self.pos, what))?;
        self.pos += n;
        Ok(bytes)
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, DnsError> {
        let at = self.pos;
        self.bytes(2, what)
            .and_then(|b| be16(b).ok_or(invalid(at, what)))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DnsError> {
        let at = self.pos;
        self.bytes(4, what).and_then(|b| {
            <[u8; 4]>::try_from(b)
                .map(u32::from_be_bytes)
                .map_err(|_| invalid(at, what))
        })
    }

    fn name(&mut self) -> Result<String, DnsError> {
        let (name, next) = read_name(self.msg, self.pos)?;
        self.pos = next;
        Ok(name)
    }

    fn question(&mut self) -> Result<Question, DnsError> {
        let name = self.name()?;
        let qtype = self.u16("question type runs past the end")?;
        let qclass = self.u16("question class runs past the end")?;
        Ok(Question {
            name,
            qtype,
            qclass,
        })
    }

    fn record(&mut self) -> Result<Record, DnsError> {
        let name = self.name()?;
        let rtype = self.u16("record type runs past the end")?;
        let class = self.u16("record class runs past the end")?;
        let ttl = self.u32("record TTL runs past the end")?;
        let len = usize::from(self.u16("record length runs past the end")?);
        let start = self.pos;
        self.bytes(len, "record data runs past the end")?;
        let data = record_data(self.msg, rtype, start, start + len)?;
        Ok(Record {
            name,
            rtype,
            class,
            ttl,
            data,
        })
    }
}

/// Decodes the data of a record of type `rtype` found at `msg[start..end]`. Names inside may
/// point anywhere earlier in the message but must not run past `end`.
fn record_data(msg: &[u8], rtype: u16, start: usize, end: usize) -> Result<RecordData, DnsError> {
    let data = msg
        .get(start..end)
        .ok_or(invalid(start, "record data runs past the end"))?;
    let mut r = Reader {
        msg: msg.get(..end).unwrap_or(msg),
        pos: start,
    };
    let decoded = match rtype {
        1 => {
            let octets =
                <[u8; 4]>::try_from(data).map_err(|_| invalid(start, "A data is not 4 bytes"))?;
            return Ok(RecordData::A(Ipv4Addr::from(octets)));
        }
        28 => {
            let octets = <[u8; 16]>::try_from(data)
                .map_err(|_| invalid(start, "AAAA data is not 16 bytes"))?;
            return Ok(RecordData::Aaaa(Ipv6Addr::from(octets)));
        }
        2 | 5 | 12 => RecordData::Name(r.name()?),
        15 => RecordData::Mx {
            preference: r.u16("MX preference runs past the end")?,
            exchange: r.name()?,
        },
        16 => {
            let mut strings = Vec::new();
            while r.pos < end {
                let len = r
                    .bytes(1, "TXT string length runs past the end")?
                    .first()
                    .copied()
                    .unwrap_or(0);
                let len = usize::from(len);
                strings.push(r.bytes(len, "TXT string runs past the end")?.to_vec());
            }
            RecordData::Txt(strings)
        }
        33 => RecordData::Srv {
            priority: r.u16("SRV priority runs past the end")?,
            weight: r.u16("SRV weight runs past the end")?,
            port: r.u16("SRV port runs past the end")?,
            target: r.name()?,
        },
        6 => {
            let mname = r.name()?;
            let rname = r.name()?;
            let serial = r.u32("SOA serial runs past the end")?;
            r.bytes(12, "SOA timers run past the end")?;
            let minimum = r.u32("SOA minimum runs past the end")?;
            RecordData::Soa {
                mname,
                rname,
                serial,
                minimum,
            }
        }
        64 | 65 => svcb(&mut r, end)?,
        _ => return Ok(RecordData::Other(data.to_vec())),
    };
    if r.pos != end {
        return Err(invalid(r.pos, "record data longer than its fields"));
    }
    Ok(decoded)
}

fn svcb(r: &mut Reader<'_>, end: usize) -> Result<RecordData, DnsError> {
    let priority = r.u16("SVCB priority runs past the end")?;
    let target = r.name()?;
    let (mut alpn, mut ipv4hint, mut ipv6hint) = (Vec::new(), Vec::new(), Vec::new());
    while r.pos < end {
        let key = r.u16("SVCB parameter key runs past the end")?;
        let len = usize::from(r.u16("SVCB parameter length runs past the end")?);
        let value = r.bytes(len, "SVCB parameter runs past the end")?;
        match key {
            1 => {
                let mut rest = value;
                while let Some((&n, tail)) = rest.split_first() {
                    let id = tail
                        .get(..usize::from(n))
                        .ok_or(invalid(r.pos, "alpn id runs past its parameter"))?;
                    alpn.push(String::from_utf8_lossy(id).into_owned());
                    rest = tail.get(usize::from(n)..).unwrap_or(&[]);
                }
            }
            4 => {
                let chunks = value.chunks_exact(4);
                if !chunks.remainder().is_empty() {
                    return Err(invalid(r.pos, "ipv4hint is not a list of 4-byte addresses"));
                }
                ipv4hint.extend(
                    chunks
                        .filter_map(|c| <[u8; 4]>::try_from(c).ok())
                        .map(Ipv4Addr::from),
                );
            }
            6 => {
                let chunks = value.chunks_exact(16);
                if !chunks.remainder().is_empty() {
                    return Err(invalid(
                        r.pos,
                        "ipv6hint is not a list of 16-byte addresses",
                    ));
                }
                ipv6hint.extend(
                    chunks
                        .filter_map(|c| <[u8; 16]>::try_from(c).ok())
                        .map(Ipv6Addr::from),
                );
            }
            _ => {}
        }
    }
    Ok(RecordData::Svcb {
        priority,
        target,
        alpn,
        ipv4hint,
        ipv6hint,
    })
}

/// Reads the name at `pos`; returns it and the position just after it (after the first
/// compression pointer, if it has one).
fn read_name(msg: &[u8], start: usize) -> Result<(String, usize), DnsError> {
    let mut name = String::new();
    let mut pos = start;
    // Pointers must point before the segment being read, so each jump goes strictly backwards.
    let mut segment_start = start;
    let mut after: Option<usize> = None;
    let mut wire_len = 1;
    loop {
        let len = *msg.get(pos).ok_or(invalid(pos, "name runs past the end"))?;
        match len & 0xc0 {
            0x00 if len == 0 => return Ok((name, after.unwrap_or(pos + 1))),
            0x00 => {
                let n = usize::from(len);
                let label = msg
                    .get(pos + 1..pos + 1 + n)
                    .ok_or(invalid(pos, "label runs past the end"))?;
                wire_len += n + 1;
                if wire_len > MAX_NAME_WIRE_LEN {
                    return Err(invalid(pos, "name longer than 255 bytes"));
                }
                if !name.is_empty() {
                    name.push('.');
                }
                push_label(&mut name, label);
                pos += 1 + n;
            }
            0xc0 => {
                let low = *msg
                    .get(pos + 1)
                    .ok_or(invalid(pos, "compression pointer runs past the end"))?;
                let target = usize::from(len & 0x3f) << 8 | usize::from(low);
                if target >= segment_start {
                    return Err(invalid(pos, "compression pointer does not point backwards"));
                }
                after.get_or_insert(pos + 2);
                segment_start = target;
                pos = target;
            }
            _ => return Err(invalid(pos, "reserved label type")),
        }
    }
}

fn push_label(name: &mut String, label: &[u8]) {
    for &b in label {
        match b {
            b'.' | b'\\' => {
                name.push('\\');
                name.push(char::from(b));
            }
            0x21..=0x7e => name.push(char::from(b)),
            _ => name.push_str(&format!("\\{b:03}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A name in wire form, uncompressed.
    fn name(text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for label in text.split('.').filter(|l| !l.is_empty()) {
            out.push(u8::try_from(label.len()).unwrap());
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
        out
    }

    fn header(id: u16, flags: u16, questions: u16, answers: u16) -> Vec<u8> {
        [id, flags, questions, answers, 0, 0]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect()
    }

    fn record(owner: &[u8], rtype: u16, ttl: u32, data: &[u8]) -> Vec<u8> {
        let mut out = owner.to_vec();
        out.extend(rtype.to_be_bytes());
        out.extend(1u16.to_be_bytes());
        out.extend(ttl.to_be_bytes());
        out.extend(u16::try_from(data.len()).unwrap().to_be_bytes());
        out.extend_from_slice(data);
        out
    }

    /// A response for www.example.com: a CNAME to cdn.example.net and an A record, both owner
    /// names compressed.
    fn response() -> Vec<u8> {
        let mut msg = header(0xbeef, 0x8180, 1, 2);
        msg.extend(name("www.example.com"));
        msg.extend([0, 1, 0, 1]);
        // The question name starts at 12: pointer 0xc00c.
        let cname_data = name("cdn.example.net");
        msg.extend(record(&[0xc0, 0x0c], 5, 300, &cname_data));
        // The CNAME target starts after the 12-byte header, the 17-byte question name, 4 bytes of
        // type and class, and the answer's 2 + 10 bytes: 12 + 17 + 4 + 12 = 45.
        msg.extend(record(&[0xc0, 45], 1, 60, &[93, 184, 215, 14]));
        msg
    }

    #[test]
    fn a_query() {
        let mut msg = header(7, 0x0100, 1, 0);
        msg.extend(name("Example.COM"));
        msg.extend([0, 28, 0, 1]);
        let parsed = parse(&msg).unwrap();
        assert_eq!(parsed.id, 7);
        assert!(!parsed.is_response);
        assert_eq!(
            parsed.questions,
            vec![Question {
                name: "Example.COM".into(),
                qtype: 28,
                qclass: 1
            }]
        );
        assert!(parsed.answers.is_empty());
    }

    #[test]
    fn a_compressed_response_with_a_cname_chain() {
        let parsed = parse(&response()).unwrap();
        assert!(parsed.is_response);
        assert_eq!(parsed.rcode, 0);
        assert_eq!(parsed.answers.len(), 2);
        assert_eq!(parsed.answers[0].name, "www.example.com");
        assert_eq!(
            parsed.answers[0].data,
            RecordData::Name("cdn.example.net".into())
        );
        assert_eq!(parsed.answers[0].ttl, 300);
        assert_eq!(parsed.answers[1].name, "cdn.example.net");
        assert_eq!(
            parsed.answers[1].data,
            RecordData::A(Ipv4Addr::new(93, 184, 215, 14))
        );
    }

    #[test]
    fn record_types() {
        let owner = name("example.com");
        let mut https = vec![0, 1, 0]; // priority 1, target "." (root)
        https.extend([0, 1, 0, 6, 2, b'h', b'2', 2, b'h', b'3']); // alpn h2, h3
        https.extend([0, 4, 0, 4, 192, 0, 2, 1]); // ipv4hint
        https.extend([0, 6, 0, 16]);
        https.extend(Ipv6Addr::LOCALHOST.octets()); // ipv6hint
        let mut soa = name("ns.example.com");
        soa.extend(name("admin.example.com"));
        soa.extend([0, 0, 0, 42]);
        soa.extend([0; 12]);
        soa.extend([0, 0, 1, 44]);
        let mut mx = vec![0, 10];
        mx.extend(name("mail.example.com"));
        let mut srv = vec![0, 1, 0, 2, 1, 187];
        srv.extend(name("sip.example.com"));
        let answers = [
            record(&owner, 28, 1, &Ipv6Addr::LOCALHOST.octets()),
            record(&owner, 65, 1, &https),
            record(&owner, 6, 1, &soa),
            record(&owner, 15, 1, &mx),
            record(&owner, 16, 1, &[3, b'a', b'b', b'c', 0]),
            record(&owner, 33, 1, &srv),
            record(&owner, 99, 1, &[1, 2, 3]),
        ];
        let mut msg = header(1, 0x8180, 0, u16::try_from(answers.len()).unwrap());
        answers.iter().for_each(|a| msg.extend(a));
        let data: Vec<RecordData> = parse(&msg)
            .unwrap()
            .answers
            .into_iter()
            .map(|r| r.data)
            .collect();
        assert_eq!(
            data,
            vec![
                RecordData::Aaaa(Ipv6Addr::LOCALHOST),
                RecordData::Svcb {
                    priority: 1,
                    target: String::new(),
                    alpn: vec!["h2".into(), "h3".into()],
                    ipv4hint: vec![Ipv4Addr::new(192, 0, 2, 1)],
                    ipv6hint: vec![Ipv6Addr::LOCALHOST],
                },
                RecordData::Soa {
                    mname: "ns.example.com".into(),
                    rname: "admin.example.com".into(),
                    serial: 42,
                    minimum: 300
                },
                RecordData::Mx {
                    preference: 10,
                    exchange: "mail.example.com".into()
                },
                RecordData::Txt(vec![b"abc".to_vec(), Vec::new()]),
                RecordData::Srv {
                    priority: 1,
                    weight: 2,
                    port: 443,
                    target: "sip.example.com".into()
                },
                RecordData::Other(vec![1, 2, 3]),
            ]
        );
        assert_eq!(type_name(65), "HTTPS");
        assert_eq!(type_name(4242), "TYPE4242");
        assert_eq!(rcode_name(3), "NXDOMAIN");
    }

    #[test]
    fn odd_label_bytes_are_escaped() {
        let mut msg = header(1, 0x0100, 1, 0);
        msg.extend([4, b'a', b'.', b'\\', 0xff, 0, 0, 1, 0, 1]);
        assert_eq!(parse(&msg).unwrap().questions[0].name, "a\\.\\\\\\255");
    }

    #[test]
    fn pointer_loops_and_forward_pointers_are_refused() {
        let mut looped = header(1, 0x0100, 1, 0);
        looped.extend([0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(
            parse(&looped).unwrap_err(),
            invalid(12, "compression pointer does not point backwards")
        );
        let mut chain = header(1, 0x0100, 1, 0);
        // "a" then a pointer back to the "a" label itself: the second hop is not backwards.
        chain.extend([1, b'a', 0xc0, 12, 0, 1, 0, 1]);
        assert!(matches!(
            parse(&chain),
            Err(DnsError::Invalid {
                reason: "compression pointer does not point backwards",
                ..
            })
        ));
    }

    #[test]
    fn overlong_names_are_refused() {
        let mut msg = header(1, 0x0100, 1, 0);
        for _ in 0..5 {
            msg.push(63);
            msg.extend([b'x'; 63]);
        }
        msg.extend([0, 0, 1, 0, 1]);
        assert!(matches!(
            parse(&msg),
            Err(DnsError::Invalid {
                reason: "name longer than 255 bytes",
                ..
            })
        ));
    }

    #[test]
    fn every_truncation_of_a_response_is_an_error() {
        let msg = response();
        for end in 0..msg.len() {
            assert!(
                matches!(parse(&msg[..end]), Err(DnsError::Invalid { .. })),
                "prefix of {end} bytes"
            );
        }
    }

    #[test]
    fn record_data_must_hold_exactly_its_fields() {
        let owner = name("example.com");
        let mut msg = header(1, 0x8180, 0, 1);
        msg.extend(record(&owner, 1, 1, &[1, 2, 3, 4, 5]));
        assert!(parse(&msg).is_err());
        let mut msg = header(1, 0x8180, 0, 1);
        let mut cname = name("a.example.com");
        cname.push(0);
        msg.extend(record(&owner, 5, 1, &cname));
        assert_eq!(
            parse(&msg).unwrap_err(),
            invalid(msg.len() - 1, "record data longer than its fields")
        );
    }

    #[test]
    fn tcp_framing() {
        let one = response();
        let mut stream = u16::try_from(one.len()).unwrap().to_be_bytes().to_vec();
        stream.extend(&one);
        stream.extend(&stream.clone());
        let (first, used) = parse_tcp(&stream).unwrap();
        assert_eq!(used, one.len() + 2);
        assert_eq!(first, parse(&one).unwrap());
        assert_eq!(parse_tcp(&stream[used..]).unwrap().1, used);
        assert_eq!(
            parse_tcp(&stream[..1]).unwrap_err(),
            DnsError::Incomplete { needed: 2 }
        );
        assert_eq!(
            parse_tcp(&stream[..10]).unwrap_err(),
            DnsError::Incomplete {
                needed: one.len() + 2
            }
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse(&bytes);
            let _ = parse_tcp(&bytes);
        }

        #[test]
        fn corrupting_a_response_gives_a_message_or_an_error(at in 0usize..80, value in any::<u8>()) {
            let mut msg = response();
            let len = msg.len();
            msg[at % len] = value;
            match parse(&msg) {
                Ok(parsed) => prop_assert!(parsed.answers.len() <= 2),
                Err(DnsError::Invalid { offset, .. }) => prop_assert!(offset <= msg.len()),
                Err(other) => prop_assert!(false, "UDP parse said {other:?}"),
            }
        }
    }

    #[test]
    fn record_data_prints_in_presentation_format() {
        let cases = [
            (
                RecordData::A(Ipv4Addr::new(93, 184, 216, 34)),
                "93.184.216.34",
            ),
            (
                RecordData::Aaaa("2001:db8::1".parse().unwrap()),
                "2001:db8::1",
            ),
            (
                RecordData::Name("cdn.example.net".into()),
                "cdn.example.net",
            ),
            (
                RecordData::Mx {
                    preference: 10,
                    exchange: "mx.example.com".into(),
                },
                "10 mx.example.com",
            ),
            (
                RecordData::Txt(vec![b"v=spf1 -all".to_vec(), b"a\"b".to_vec()]),
                r#""v=spf1 -all" "a\"b""#,
            ),
            (
                RecordData::Srv {
                    priority: 0,
                    weight: 5,
                    port: 5060,
                    target: "sip.example".into(),
                },
                "0 5 5060 sip.example",
            ),
            (
                RecordData::Svcb {
                    priority: 1,
                    target: String::new(),
                    alpn: vec!["h2".into(), "h3".into()],
                    ipv4hint: vec![Ipv4Addr::new(104, 16, 1, 1), Ipv4Addr::new(104, 16, 2, 1)],
                    ipv6hint: vec![],
                },
                "1 . alpn=h2,h3 ipv4hint=104.16.1.1,104.16.2.1",
            ),
            (RecordData::Other(vec![10, 0, 0, 1]), r"\# 4 0a000001"),
            (RecordData::Other(vec![]), r"\# 0"),
        ];
        for (data, text) in cases {
            assert_eq!(data.to_string(), text);
        }
    }
}
