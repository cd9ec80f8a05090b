//! Content inspection of one flow: recognise the application protocol from the first bytes
//! (never from the port), then read what the record reports — DNS questions and answers, the
//! TLS ClientHello and ServerHello, the QUIC ClientHello, the first HTTP request. A SOCKS
//! handshake at the start of a TCP connection is skipped, and the proxied stream read instead.
//!
//! An inspector lives only while it has something left to read; [`Inspector::inspect`] says
//! when it is done, and the flow drops it (and its buffers). Limits: TCP streams are read for
//! their first [`STREAM_CAP`] bytes, recognition gives up after [`RECOGNITION_PACKETS`] payload
//! packets, QUIC after [`QUIC_DATAGRAMS`] client datagrams, and a flow keeps at most
//! [`MAX_DNS_ITEMS`] questions and answers (the rest are counted in `dns.dropped`).

use crate::counters::Counters;
use crate::dns::{self, DnsError};
use crate::http::{self, HttpError};
use crate::packet::{Packet, Transport};
use crate::quic::{self, ClientInitials};
use crate::reassembly::Stream;
use crate::record::{
    AppProto, DnsAnswer, DnsInfo, DnsQuery, FlowRecord, HttpInfo, QuicInfo, TlsInfo,
};
use crate::socks::{self, Handshake};
use crate::tls::{self, ClientHello, Ja4Transport, TlsError};

/// Bytes of each direction of a TCP stream that are reassembled: a TLS record of the largest
/// size plus its header, so that a ClientHello or a ServerHello in one record always fits.
pub const STREAM_CAP: usize = 16 * 1024 + 5 + 256;

/// Payload packets after which a flow whose protocol was not recognised is left alone.
pub const RECOGNITION_PACKETS: u32 = 8;

/// Client datagrams of a QUIC flow read for the ClientHello.
pub const QUIC_DATAGRAMS: u32 = 8;

/// Questions plus answers kept per flow.
pub const MAX_DNS_ITEMS: usize = 256;

/// What is left to read in a flow.
#[derive(Debug, Default)]
pub struct Inspector {
    stage: Stage,
    client: Option<Stream>,
    server: Option<Stream>,
    payload_packets: u32,
    /// Whether a SOCKS handshake at the start of the connection was ruled out or skipped.
    past_socks: bool,
}

#[derive(Debug, Default)]
enum Stage {
    /// The protocol is not known yet.
    #[default]
    Recognise,
    /// DNS over UDP: every datagram is a message.
    DnsUdp,
    /// DNS over TCP: length-prefixed messages in both streams.
    DnsTcp,
    /// TLS: the ClientHello, then the ServerHello.
    Tls { client_done: bool },
    /// HTTP/1.x: the first request head.
    Http,
    /// SSH: recognised from its banner; nothing more is read.
    Ssh,
    /// QUIC: client Initials until the ClientHello is whole.
    Quic {
        initials: Box<ClientInitials>,
        datagrams: u32,
    },
}

impl Inspector {
    /// Whether flows of this transport are inspected at all.
    pub fn wanted(transport: &Transport) -> bool {
        matches!(transport, Transport::Tcp { .. } | Transport::Udp { .. })
    }

    /// Bytes of stream held for reading.
    pub fn buffered(&self) -> usize {
        let held = |stream: &Option<Stream>| stream.as_ref().map_or(0, Stream::buffered);
        held(&self.client) + held(&self.server)
    }

    /// Reads one packet of the flow into `record`. Returns whether later packets are wanted.
    pub fn inspect(
        &mut self,
        record: &mut FlowRecord,
        packet: &Packet<'_>,
        from_client: bool,
        errors: &mut Counters,
    ) -> bool {
        match packet.transport {
            Transport::Tcp { seq, flags, .. } => {
                self.tcp_segment(seq, flags, packet.payload, from_client);
                if packet.payload.is_empty() {
                    return true;
                }
                self.payload_packets += 1;
                self.read_streams(record, errors)
            }
            Transport::Udp { .. } if !packet.payload.is_empty() => {
                self.payload_packets += 1;
                self.datagram(record, packet.payload, from_client, errors)
            }
            _ => true,
        }
    }

    /// Adds a TCP segment to the stream of its direction.
    fn tcp_segment(&mut self, seq: u32, flags: u8, payload: &[u8], from_client: bool) {
        let stream = if from_client {
            &mut self.client
        } else {
            &mut self.server
        };
        let stream = stream.get_or_insert_with(|| Stream::new(STREAM_CAP));
        if flags & crate::packet::tcp_flags::SYN != 0 {
            stream.syn(seq);
        }
        stream.push(seq, payload);
    }

    /// Skips a SOCKS handshake, so that the proxied stream is recognised like any other.
    /// `Some(true)`: go on recognising; `Some(false)`: the proxy refused, nothing to read;
    /// `None`: wait for more of the handshake.
    fn skip_socks(&mut self) -> Option<bool> {
        let client = self.client.as_ref().map_or(&[][..], Stream::data);
        let server = self.server.as_ref().map_or(&[][..], Stream::data);
        if client.is_empty() {
            return Some(true);
        }
        match socks::handshake(client, server) {
            Handshake::NotSocks => {}
            Handshake::Incomplete => return None,
            Handshake::Refused => return Some(false),
            Handshake::Done { client, server, .. } => {
                if let Some(stream) = &mut self.client {
                    stream.consume(client);
                }
                if let Some(stream) = &mut self.server {
                    stream.consume(server);
                }
            }
        }
        self.past_socks = true;
        Some(true)
    }

    fn read_streams(&mut self, record: &mut FlowRecord, errors: &mut Counters) -> bool {
        if let Stage::Recognise = self.stage {
            if !self.past_socks {
                match self.skip_socks() {
                    Some(true) => {}
                    Some(false) => return false,
                    None => return self.payload_packets < RECOGNITION_PACKETS,
                }
            }
            let client = self.client.as_ref().map_or(&[][..], Stream::data);
            let server = self.server.as_ref().map_or(&[][..], Stream::data);
            match recognise_tcp(client, server) {
                Some(stage) => self.stage = stage,
                None => return self.payload_packets < RECOGNITION_PACKETS,
            }
            record.app_proto = self.stage.app_proto();
        }
        match &mut self.stage {
            Stage::Recognise | Stage::DnsUdp | Stage::Ssh | Stage::Quic { .. } => false,
            Stage::Tls { client_done } => {
                read_tls(record, &self.client, &self.server, client_done, errors)
            }
            Stage::Http => read_http(record, self.client.as_ref(), errors),
            Stage::DnsTcp => {
                let client = read_dns_tcp(record, self.client.as_mut(), errors);
                let server = read_dns_tcp(record, self.server.as_mut(), errors);
                client && server
            }
        }
    }

    fn datagram(
        &mut self,
        record: &mut FlowRecord,
        payload: &[u8],
        from_client: bool,
        errors: &mut Counters,
    ) -> bool {
        if let Stage::Recognise = self.stage {
            if from_client && quic::is_client_initial(payload) {
                self.stage = Stage::Quic {
                    initials: Box::default(),
                    datagrams: 0,
                };
            } else if let Some(request) = ssdp_request(payload) {
                record.app_proto = AppProto::Ssdp;
                record.http = Some(request);
                return false;
            } else if let Some(Ok(message)) = dns_like(payload).then(|| dns::parse(payload)) {
                if is_nbns(&message) {
                    record.app_proto = AppProto::Nbns;
                    return false;
                }
                if message.opcode != 0
                    || (message.questions.is_empty() && message.answers.is_empty())
                {
                    return self.payload_packets < RECOGNITION_PACKETS;
                }
                self.stage = Stage::DnsUdp;
                record.app_proto = AppProto::Dns;
                add_dns(record, &message);
                return true;
            } else {
                return self.payload_packets < RECOGNITION_PACKETS;
            }
            record.app_proto = self.stage.app_proto();
        }
        match &mut self.stage {
            Stage::DnsUdp => {
                match dns::parse(payload) {
                    Ok(message) => add_dns(record, &message),
                    Err(_) => errors.add("dns_invalid"),
                }
                true
            }
            Stage::Quic {
                initials,
                datagrams,
            } => {
                if !from_client {
                    return true;
                }
                *datagrams += 1;
                match initials.push_datagram(payload) {
                    Ok(Some(handshake)) => {
                        match tls::parse_client_hello(&handshake) {
                            Ok(hello) => record.quic = Some(quic_info(&hello)),
                            Err(_) => errors.add("quic_client_hello_invalid"),
                        }
                        false
                    }
                    Ok(None) => *datagrams < QUIC_DATAGRAMS,
                    // Later packets of the connection are short-header: not an error.
                    Err(quic::QuicError::NotInitial) => *datagrams < QUIC_DATAGRAMS,
                    Err(_) => {
                        errors.add("quic_initial_invalid");
                        false
                    }
                }
            }
            _ => false,
        }
    }
}

impl Stage {
    fn app_proto(&self) -> AppProto {
        match self {
            Stage::Recognise => AppProto::Unknown,
            Stage::DnsUdp | Stage::DnsTcp => AppProto::Dns,
            Stage::Tls { .. } => AppProto::Tls,
            Stage::Http => AppProto::Http,
            Stage::Ssh => AppProto::Ssh,
            Stage::Quic { .. } => AppProto::Quic,
        }
    }
}

/// The protocol of a TCP connection from the first bytes of its streams, if they tell.
fn recognise_tcp(client: &[u8], server: &[u8]) -> Option<Stage> {
    if tls::looks_like_client_hello(client) {
        Some(Stage::Tls { client_done: false })
    } else if http::looks_like_request(client) {
        Some(Stage::Http)
    } else if client.starts_with(b"SSH-") || server.starts_with(b"SSH-") {
        Some(Stage::Ssh)
    } else if looks_like_dns_tcp(client) {
        Some(Stage::DnsTcp)
    } else {
        None
    }
}

/// NetBIOS name service (RFC 1002) shares DNS's format; its names are one label of 32 letters
/// `A` to `P` (the first-level encoding of a 16-byte NetBIOS name).
fn is_nbns(message: &dns::Message) -> bool {
    !message.questions.is_empty()
        && message.questions.iter().all(|q| {
            let label = q.name.split('.').next().unwrap_or_default();
            label.len() == 32
                && label
                    .bytes()
                    .all(|b| matches!(b.to_ascii_uppercase(), b'A'..=b'P'))
        })
}

/// An SSDP request (UDP discovery in HTTP form: `M-SEARCH` or `NOTIFY`), read like HTTP.
fn ssdp_request(payload: &[u8]) -> Option<HttpInfo> {
    if !(payload.starts_with(b"M-SEARCH ") || payload.starts_with(b"NOTIFY ")) {
        return None;
    }
    http::parse_request(payload).ok().map(http_info)
}

/// A cheap look at a DNS header before decoding the message: a standard query or response
/// (opcode 0) with one to sixteen questions (or none, in a response with answers: mDNS
/// announcements), and a first label of legal length. Most payloads
/// that are not DNS fail it, and decoding them is what costs.
fn dns_like(msg: &[u8]) -> bool {
    let (Some(&flags), Some(&qd_high), Some(&qd_low), Some(&an_high), Some(&an_low), Some(&label)) = (
        msg.get(2),
        msg.get(4),
        msg.get(5),
        msg.get(6),
        msg.get(7),
        msg.get(12),
    ) else {
        return false;
    };
    // An mDNS announcement is a response with answers and no question.
    let announcement = qd_low == 0 && flags & 0x80 != 0 && (an_high, an_low) != (0, 0);
    flags & 0x78 == 0
        && qd_high == 0
        && (qd_low <= 16)
        && (qd_low > 0 || announcement)
        && label <= 63
}

/// DNS over TCP: the first message decodes as a query.
fn looks_like_dns_tcp(stream: &[u8]) -> bool {
    if !stream.get(2..).is_some_and(dns_like) {
        return false;
    }
    match dns::parse_tcp(stream) {
        Ok((message, _)) => message.opcode == 0 && !message.questions.is_empty(),
        Err(_) => false,
    }
}

fn read_tls(
    record: &mut FlowRecord,
    client: &Option<Stream>,
    server: &Option<Stream>,
    client_done: &mut bool,
    errors: &mut Counters,
) -> bool {
    if !*client_done {
        let stream = client.as_ref().map_or(&[][..], Stream::data);
        match tls::client_hello_from_stream(stream) {
            Ok(hello) => {
                record.tls = Some(tls_info(&hello));
                *client_done = true;
            }
            Err(TlsError::Incomplete { .. }) => {
                return !client.as_ref().is_some_and(Stream::overflowed);
            }
            Err(_) => {
                errors.add("tls_client_hello_invalid");
                return false;
            }
        }
    }
    let stream = server.as_ref().map_or(&[][..], Stream::data);
    match tls::server_hello_from_stream(stream) {
        Ok(hello) => {
            if let Some(tls) = &mut record.tls {
                tls.version = tls::version_name(hello.version);
            }
            false
        }
        Err(TlsError::Incomplete { .. }) => !server.as_ref().is_some_and(Stream::overflowed),
        Err(_) => {
            errors.add("tls_server_hello_invalid");
            false
        }
    }
}

fn read_http(record: &mut FlowRecord, client: Option<&Stream>, errors: &mut Counters) -> bool {
    match http::parse_request(client.map_or(&[][..], Stream::data)) {
        Ok(request) => {
            record.http = Some(http_info(request));
            false
        }
        Err(HttpError::Incomplete) => !client.is_some_and(Stream::overflowed),
        Err(HttpError::Invalid { .. }) => {
            errors.add("http_invalid");
            false
        }
    }
}

/// Reads every whole DNS message in a TCP stream. Returns whether more may come.
fn read_dns_tcp(
    record: &mut FlowRecord,
    stream: Option<&mut Stream>,
    errors: &mut Counters,
) -> bool {
    let Some(stream) = stream else {
        return true;
    };
    loop {
        match dns::parse_tcp(stream.data()) {
            Ok((message, used)) => {
                add_dns(record, &message);
                stream.consume(used);
            }
            Err(DnsError::Incomplete { .. }) => return !stream.overflowed(),
            Err(DnsError::Invalid { .. }) => {
                errors.add("dns_invalid");
                return false;
            }
        }
    }
}

/// Adds a message's questions (distinct) and answers to the record, within the per-flow limit.
fn add_dns(record: &mut FlowRecord, message: &dns::Message) {
    let info = record.dns.get_or_insert_with(DnsInfo::default);
    for question in &message.questions {
        let query = DnsQuery {
            name: question.name.clone(),
            qtype: dns::type_name(question.qtype),
        };
        if info.queries.contains(&query) {
            continue;
        }
        if info.queries.len() + info.answers.len() < MAX_DNS_ITEMS {
            info.queries.push(query);
        } else {
            info.dropped += 1;
        }
    }
    for answer in &message.answers {
        if info.queries.len() + info.answers.len() < MAX_DNS_ITEMS {
            info.answers.push(DnsAnswer {
                name: answer.name.clone(),
                rtype: dns::type_name(answer.rtype),
                data: answer.data.to_string(),
                ttl: answer.ttl,
            });
        } else {
            info.dropped += 1;
        }
    }
    if message.is_response {
        info.rcode = Some(dns::rcode_name(message.rcode));
    }
}

fn http_info(request: http::Request) -> HttpInfo {
    HttpInfo {
        method: request.method,
        host: request.host,
        path: request.path,
        user_agent: request.user_agent,
    }
}

fn tls_info(hello: &ClientHello) -> TlsInfo {
    let highest = hello
        .supported_versions
        .iter()
        .copied()
        .filter(|&v| !is_grease(v))
        .max();
    TlsInfo {
        sni: hello.sni.clone(),
        alpn: alpn_names(hello),
        version: tls::version_name(highest.unwrap_or(hello.version)),
        ja3: hello.ja3(),
        ja3_string: hello.ja3_string(),
        ja4: hello.ja4(Ja4Transport::Tcp),
    }
}

fn quic_info(hello: &ClientHello) -> QuicInfo {
    QuicInfo {
        sni: hello.sni.clone(),
        alpn: alpn_names(hello),
        ja4: hello.ja4(Ja4Transport::Quic),
    }
}

/// GREASE values (RFC 8701): 0x?a?a with both bytes equal.
fn is_grease(value: u16) -> bool {
    value & 0x0f0f == 0x0a0a && value >> 8 == value & 0xff
}

fn alpn_names(hello: &ClientHello) -> Vec<String> {
    hello
        .alpn
        .iter()
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::flow::{FlowConfig, FlowTable};
    use crate::packet::tcp_flags::{ACK, PSH, SYN};
    use crate::packet::{Fragment, Packet};

    /// A TLS 1.2 ClientHello record for `name` offering ALPN `h2`.
    fn client_hello(name: &str) -> Vec<u8> {
        let mut sni = vec![0, 0];
        let list_len = u16::try_from(name.len() + 3).unwrap();
        sni.extend((list_len + 2).to_be_bytes());
        sni.extend(list_len.to_be_bytes());
        sni.push(0);
        sni.extend(u16::try_from(name.len()).unwrap().to_be_bytes());
        sni.extend(name.as_bytes());
        let alpn = [0x00, 0x10, 0, 5, 0, 3, 2, b'h', b'2'];
        let extensions = [sni, alpn.to_vec()].concat();
        let mut body = vec![0x03, 0x03];
        body.extend([7; 32]);
        body.push(0);
        body.extend([0, 2, 0xc0, 0x2f, 1, 0]);
        body.extend(u16::try_from(extensions.len()).unwrap().to_be_bytes());
        body.extend(extensions);
        let mut handshake = vec![1, 0];
        handshake.extend(u16::try_from(body.len()).unwrap().to_be_bytes());
        handshake.extend(body);
        let mut record = vec![0x16, 0x03, 0x01];
        record.extend(u16::try_from(handshake.len()).unwrap().to_be_bytes());
        record.extend(handshake);
        record
    }

    fn segment(from_client: bool, flags: u8, seq: u32, payload: &[u8]) -> Packet<'_> {
        let (client, server) = (Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 1));
        let (src, dst, src_port, dst_port) = if from_client {
            (client, server, 40_000, 8443)
        } else {
            (server, client, 8443, 40_000)
        };
        Packet {
            src_mac: None,
            dst_mac: None,
            vlan: None,
            tunnel: None,
            src: IpAddr::V4(src),
            dst: IpAddr::V4(dst),
            ttl: 64,
            ip_len: 40,
            fragment: Fragment::None,
            transport: Transport::Tcp {
                src_port,
                dst_port,
                seq,
                ack: 0,
                flags,
            },
            payload,
        }
    }

    /// Runs client and server segments through a flow table and returns the one record.
    fn flow(segments: &[Packet<'_>]) -> (FlowRecord, Counters) {
        let mut table = FlowTable::new(FlowConfig::default());
        let mut records = Vec::new();
        for (i, packet) in segments.iter().enumerate() {
            table.observe(i64::try_from(i).unwrap(), packet, &mut |r| records.push(r));
        }
        table.flush(&mut |r| records.push(r));
        assert_eq!(records.len(), 1);
        (records.remove(0), table.stats().decode_errors.clone())
    }

    #[test]
    fn a_client_hello_split_and_reordered_is_read_on_any_port() {
        let hello = client_hello("www.example.org");
        let (head, tail) = hello.split_at(20);
        let tail_seq = 101 + u32::try_from(head.len()).unwrap();
        let (record, errors) = flow(&[
            segment(true, SYN, 100, b""),
            segment(false, SYN | ACK, 500, b""),
            segment(true, ACK | PSH, tail_seq, tail),
            segment(true, ACK | PSH, 101, head),
        ]);
        assert_eq!(record.app_proto, AppProto::Tls);
        let tls = record.tls.unwrap();
        assert_eq!(tls.sni.as_deref(), Some("www.example.org"));
        assert_eq!(tls.alpn, ["h2"]);
        assert_eq!(tls.version, "TLS 1.2");
        assert!(tls.ja4.starts_with("t12d0102h2_"), "{}", tls.ja4);
        assert_eq!(tls.ja3_string, "771,49199,0-16,,");
        assert_eq!(errors.total(), 0);
    }

    #[test]
    fn a_socks_handshake_is_skipped_to_reach_the_tls_inside() {
        let request = b"\x04\x01\x20\xfb\x0a\x00\x00\x01\x00";
        let hello = [&request[..], &client_hello("inner.example")].concat();
        let (record, _) = flow(&[
            segment(true, ACK | PSH, 1, &hello[..request.len()]),
            segment(false, ACK | PSH, 1, b"\x00\x5a\x20\xfb\x0a\x00\x00\x01"),
            segment(true, ACK | PSH, 1 + 9, &hello[request.len()..]),
        ]);
        assert_eq!(
            record.tls.and_then(|tls| tls.sni).as_deref(),
            Some("inner.example")
        );
    }

    #[test]
    fn dns_over_tcp_messages_are_read_from_both_streams() {
        let mut query = vec![0, 29, 0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        query.extend(b"\x07example\x03com\x00\x00\x01\x00\x01");
        let mut answer = query[2..].to_vec();
        answer[2..4].copy_from_slice(&[0x81, 0x83]);
        let answer = [&[0u8, 29][..], &answer].concat();
        let (record, _) = flow(&[
            segment(true, ACK | PSH, 1, &query[..5]),
            segment(true, ACK | PSH, 6, &query[5..]),
            segment(false, ACK | PSH, 1, &answer),
        ]);
        assert_eq!(record.app_proto, AppProto::Dns);
        let dns = record.dns.unwrap();
        assert_eq!(dns.queries.len(), 1);
        assert_eq!(dns.queries[0].name, "example.com");
        assert_eq!(dns.rcode.as_deref(), Some("NXDOMAIN"));
    }

    #[test]
    fn a_broken_client_hello_is_counted() {
        let mut hello = client_hello("x.example");
        hello[45] = 3; // an odd cipher suite list length
        let (record, errors) = flow(&[segment(true, ACK | PSH, 1, &hello)]);
        assert_eq!(record.app_proto, AppProto::Tls);
        assert_eq!(record.tls, None);
        assert_eq!(errors.get("tls_client_hello_invalid"), 1);
    }
}
