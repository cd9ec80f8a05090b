//! The server name a connection asks for, read from copies of its first data packets (see
//! [`crate::nflog`]): the server name (SNI) of a TLS ClientHello, or the `Host` of an HTTP/1.x
//! request, read with the decoders of [`palisade_dpi`].
//!
//! At the `OUTPUT` hook a packet is what TCP hands to IP before segmentation offload, so a hello
//! or request head written at once usually arrives whole in one packet, and [`named`] reads one
//! packet by itself. On an interface that segments in software a hello above one segment
//! (post-quantum key shares make it about 1.8 kB) comes in two, its server name possibly in the
//! second: a [`Namer`] keeps the first segment of such a hello or head, whole copies only, for a
//! bounded number of connections ([`MAX_PENDING`]), and reads it with the segment that follows.
//! The first segment must be long enough to be recognised (6 bytes of a TLS record, an HTTP
//! method and a space).
//! What is longer than two segments, or than a copy ([`crate::nflog::COPY_LEN`]), is missed.
//!
//! The names are kept as sent: the SNI as the ClientHello carries it, the HTTP host with its
//! port if the request gives one (`example.com:8080`); neither is lowercased or checked.

use std::collections::HashMap;

use palisade_dpi::{http, tls};
use palisade_proto::{Direction, Protocol};

use crate::flow::FlowKey;
use crate::packet::{Headers, headers};

/// How many connections at most have a first segment kept, waiting for the next; when more
/// would, all kept segments are dropped (those connections go unnamed).
pub const MAX_PENDING: usize = 256;

/// What the first data packet of an outbound connection names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// The connection, as this host opened it: `local` is the packet's source.
    pub flow: FlowKey,
    /// The TLS server name, when the packet holds a ClientHello with one.
    pub sni: Option<String>,
    /// The HTTP `Host` (or the host of an absolute-form target), when the packet holds an
    /// HTTP/1.x request head.
    pub http_host: Option<String>,
}

/// The server name in `packet`, an outbound TCP packet from its IP header on; `None` when the
/// packet is not TCP, carries no ClientHello with a server name nor a request head with a host,
/// or is cut before the name. Reads the packet by itself (see [`Namer`] for two segments).
pub fn named(packet: &[u8]) -> Option<Named> {
    let h = tcp(packet)?;
    match read(h.payload) {
        Reading::Names(sni, http_host) => Some(Named {
            flow: flow(&h),
            sni,
            http_host,
        }),
        Reading::Incomplete | Reading::Nothing => None,
    }
}

/// Reads the server names of connections from copies of their first data packets, keeping a
/// first segment that holds only the start of a hello or request head until the next one.
#[derive(Debug, Default)]
pub struct Namer {
    /// Per connection, the sequence number that follows the kept bytes, and the bytes.
    pending: HashMap<FlowKey, (u32, Vec<u8>)>,
}

impl Namer {
    /// A namer keeping nothing.
    pub fn new() -> Self {
        Namer::default()
    }

    /// The server name in `packet` (as [`named`]), read after the segment kept for its
    /// connection when `packet` follows it directly.
    pub fn named(&mut self, packet: &[u8]) -> Option<Named> {
        let h = tcp(packet)?;
        let flow = flow(&h);
        // Whatever follows a kept segment is the only chance to complete it: a bare ACK ends it.
        let kept = self.pending.remove(&flow);
        if h.payload.is_empty() {
            return None;
        }
        let joined = match kept {
            Some((next, mut first)) if next == h.seq => {
                first.extend_from_slice(h.payload);
                Some(first)
            }
            _ => None,
        };
        let stream = joined.as_deref().unwrap_or(h.payload);
        match read(stream) {
            Reading::Names(sni, http_host) => Some(Named {
                flow,
                sni,
                http_host,
            }),
            Reading::Incomplete if joined.is_none() && h.whole => {
                if self.pending.len() >= MAX_PENDING {
                    self.pending.clear();
                }
                let len = u32::try_from(h.payload.len()).ok()?;
                self.pending
                    .insert(flow, (h.seq.wrapping_add(len), h.payload.to_vec()));
                None
            }
            Reading::Incomplete | Reading::Nothing => None,
        }
    }

    /// How many connections have a first segment kept.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// What the start of a client stream says.
enum Reading {
    /// A hello or request head that names a server (at least one of the two).
    Names(Option<String>, Option<String>),
    /// The start of a hello or request head that continues beyond these bytes.
    Incomplete,
    /// Neither, or one that names no server.
    Nothing,
}

fn read(stream: &[u8]) -> Reading {
    let (sni, http_host) = if tls::looks_like_client_hello(stream) {
        match tls::client_hello_from_stream(stream) {
            Ok(hello) => (hello.sni, None),
            Err(tls::TlsError::Incomplete { .. }) => return Reading::Incomplete,
            Err(_) => return Reading::Nothing,
        }
    } else if http::looks_like_request(stream) {
        match http::parse_request(stream) {
            Ok(request) => (None, request.host),
            Err(http::HttpError::Incomplete) => return Reading::Incomplete,
            Err(_) => return Reading::Nothing,
        }
    } else {
        return Reading::Nothing;
    };
    if sni.is_none() && http_host.is_none() {
        return Reading::Nothing;
    }
    Reading::Names(sni, http_host)
}

/// The headers of a TCP packet.
fn tcp(packet: &[u8]) -> Option<Headers<'_>> {
    headers(packet).filter(|h| h.protocol == Some(Protocol::Tcp))
}

/// The outbound connection a packet from this host belongs to.
fn flow(h: &Headers<'_>) -> FlowKey {
    FlowKey {
        protocol: Protocol::Tcp,
        local: h.src,
        remote: h.dst,
        direction: Direction::Outbound,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::{IpAddr, SocketAddr};

    use proptest::prelude::*;

    use super::*;

    /// A TLS 1.3-style ClientHello record naming `sni`, with `padding` bytes of a padding
    /// extension after the server name.
    pub(crate) fn client_hello(sni: &str, padding: usize) -> Vec<u8> {
        let name = sni.as_bytes();
        let name_len = u16::try_from(name.len()).unwrap();
        let mut server_name = (name_len + 3).to_be_bytes().to_vec();
        server_name.push(0);
        server_name.extend(name_len.to_be_bytes());
        server_name.extend(name);
        let mut extensions = Vec::new();
        let mut extension = |kind: u16, data: &[u8]| {
            extensions.extend(kind.to_be_bytes());
            extensions.extend(u16::try_from(data.len()).unwrap().to_be_bytes());
            extensions.extend(data);
        };
        extension(0, &server_name);
        extension(43, &[2, 0x03, 0x04]);
        extension(21, &vec![0; padding]);
        let mut body = vec![0x03, 0x03];
        body.extend([7; 32]);
        body.push(0);
        body.extend([0, 4, 0x13, 0x01, 0x13, 0x02]);
        body.extend([1, 0]);
        body.extend(u16::try_from(extensions.len()).unwrap().to_be_bytes());
        body.extend(extensions);
        let mut handshake = vec![1];
        handshake.extend(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
        handshake.extend(body);
        let mut record = vec![22, 3, 1];
        record.extend(u16::try_from(handshake.len()).unwrap().to_be_bytes());
        record.extend(handshake);
        record
    }

    /// An IP packet carrying a TCP segment with `payload` from `src` to `dst`.
    pub(crate) fn tcp_packet(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
        segment(src, dst, 1, payload)
    }

    /// An IP packet carrying a TCP segment whose first byte has sequence number `seq`.
    fn segment(src: SocketAddr, dst: SocketAddr, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut tcp = src.port().to_be_bytes().to_vec();
        tcp.extend(dst.port().to_be_bytes());
        tcp.extend(seq.to_be_bytes());
        tcp.extend([0, 0, 0, 1, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        tcp.extend(payload);
        let mut packet = match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let total = u16::try_from(20 + tcp.len()).unwrap();
                let mut p = vec![0x45, 0];
                p.extend(total.to_be_bytes());
                p.extend([0, 0, 0x40, 0, 64, 6, 0, 0]);
                p.extend(s.octets());
                p.extend(d.octets());
                p
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let mut p = vec![0x60, 0, 0, 0];
                p.extend(u16::try_from(tcp.len()).unwrap().to_be_bytes());
                p.extend([6, 64]);
                p.extend(s.octets());
                p.extend(d.octets());
                p
            }
            _ => panic!("mixed families"),
        };
        packet.extend(tcp);
        packet
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_client_hello_names_its_outbound_connection_by_sni() {
        let hello = client_hello("www.example.com", 100);
        let packet = tcp_packet(addr("10.0.0.2:40000"), addr("93.184.216.34:443"), &hello);
        let named = named(&packet).unwrap();
        assert_eq!(named.sni.as_deref(), Some("www.example.com"));
        assert_eq!(named.http_host, None);
        assert_eq!(named.flow.local, addr("10.0.0.2:40000"));
        assert_eq!(named.flow.remote, addr("93.184.216.34:443"));
        assert_eq!(named.flow.direction, Direction::Outbound);
        assert_eq!(named.flow.protocol, Protocol::Tcp);
    }

    #[test]
    fn an_http_request_over_ipv6_names_its_host_with_the_port_it_gives() {
        let request = b"GET /index.html HTTP/1.1\r\nUser-Agent: curl/8.5.0\r\nHost: Example.org:8080\r\nAccept: */*\r\n\r\n";
        let packet = tcp_packet(
            addr("[2001:db8::2]:50000"),
            addr("[2001:db8::1]:8080"),
            request,
        );
        let named = named(&packet).unwrap();
        assert_eq!(named.http_host.as_deref(), Some("Example.org:8080"));
        assert_eq!(named.sni, None);
        assert_eq!(named.flow.local, addr("[2001:db8::2]:50000"));
    }

    #[test]
    fn a_hello_cut_before_its_end_or_a_request_head_not_ended_names_nothing() {
        let hello = client_hello("www.example.com", 1500);
        let src = addr("10.0.0.2:40000");
        let dst = addr("93.184.216.34:443");
        // The first segment of a hello split in two: the server name is there, but the hello
        // is not whole, so nothing is read.
        assert_eq!(named(&tcp_packet(src, dst, &hello[..1400])), None);
        assert!(named(&tcp_packet(src, dst, &hello)).is_some());
        // A copy cut short by the copy length: the IP header claims more than is present.
        let mut cut = tcp_packet(src, dst, &hello);
        cut.truncate(1000);
        assert_eq!(named(&cut), None);
        let head = b"GET / HTTP/1.1\r\nHost: example.org\r\n";
        assert_eq!(named(&tcp_packet(src, dst, head)), None);
    }

    #[test]
    fn other_payloads_and_protocols_name_nothing() {
        let src = addr("10.0.0.2:40000");
        let dst = addr("10.0.0.1:22");
        assert_eq!(
            named(&tcp_packet(src, dst, b"SSH-2.0-OpenSSH_9.6\r\n")),
            None
        );
        assert_eq!(named(&tcp_packet(src, dst, b"")), None);
        let request = b"GET / HTTP/1.0\r\n\r\n";
        assert_eq!(named(&tcp_packet(src, dst, request)), None, "no host");
        let mut udp = tcp_packet(src, dst, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        udp[9] = 17;
        assert_eq!(named(&udp), None);
        for cut in 0..60 {
            let packet = tcp_packet(src, dst, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
            assert_eq!(named(&packet[..cut]), None, "cut at {cut}");
        }
    }

    #[test]
    fn a_hello_split_in_two_segments_is_read_when_the_second_follows_the_first() {
        let hello = client_hello("split.example.com", 1500);
        let src = addr("10.0.0.2:40000");
        let dst = addr("93.184.216.34:443");
        // The server name is in the first segment here, but the hello ends in the second.
        let (first, second) = hello.split_at(1400);
        let mut namer = Namer::new();
        assert_eq!(namer.named(&segment(src, dst, 1000, first)), None);
        assert_eq!(namer.pending(), 1);
        let named = namer.named(&segment(src, dst, 2400, second)).unwrap();
        assert_eq!(named.sni.as_deref(), Some("split.example.com"));
        assert_eq!(named.flow.local, src);
        assert_eq!(namer.pending(), 0);

        // A second segment that does not follow (lost, or out of order) names nothing.
        assert_eq!(namer.named(&segment(src, dst, 1000, first)), None);
        assert_eq!(namer.named(&segment(src, dst, 2401, second)), None);
        assert_eq!(namer.pending(), 0);
        // A bare ACK after the first segment ends the wait.
        assert_eq!(namer.named(&segment(src, dst, 1000, first)), None);
        assert_eq!(namer.named(&segment(src, dst, 2400, b"")), None);
        assert_eq!(namer.pending(), 0);
        // Nor does a first segment that is a cut copy, which is not kept.
        let mut cut = segment(src, dst, 1000, first);
        cut.truncate(900);
        assert_eq!(namer.named(&cut), None);
        assert_eq!(namer.pending(), 0);
        // A whole one-packet request is named directly.
        let request = b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n";
        let named = namer.named(&segment(src, dst, 5, request)).unwrap();
        assert_eq!(named.http_host.as_deref(), Some("example.org"));
    }

    #[test]
    fn kept_segments_are_bounded() {
        let head = b"GET / HTTP/1.1\r\nHost: exa";
        let dst = addr("10.0.0.1:80");
        let mut namer = Namer::new();
        for port in 0..u16::try_from(MAX_PENDING).unwrap() {
            let src = SocketAddr::new("10.0.0.2".parse().unwrap(), 10_000 + port);
            assert_eq!(namer.named(&segment(src, dst, 1, head)), None);
        }
        assert_eq!(namer.pending(), MAX_PENDING);
        let src = addr("10.0.0.3:9");
        namer.named(&segment(src, dst, 1, head));
        assert_eq!(namer.pending(), 1);
        let rest = b"mple.org\r\n\r\n";
        let len = u32::try_from(head.len()).unwrap();
        let named = namer.named(&segment(src, dst, 1 + len, rest)).unwrap();
        assert_eq!(named.http_host.as_deref(), Some("example.org"));
    }

    proptest! {
        #[test]
        fn a_hello_or_request_split_anywhere_in_two_is_named(
            // A first segment is recognised from its first bytes: 6 for TLS, the method and a
            // space for HTTP.
            split in 8usize..600,
            padding in 0usize..500,
            tls in any::<bool>(),
            seq in any::<u32>(),
        ) {
            let stream = if tls {
                client_hello("any.example.net", padding)
            } else {
                format!("GET / HTTP/1.1\r\nX-Pad: {}\r\nHost: any.example.net\r\n\r\n", "p".repeat(padding)).into_bytes()
            };
            let split = split.min(stream.len() - 1);
            let (first, second) = stream.split_at(split);
            let src = addr("10.0.0.2:40000");
            let dst = addr("10.0.0.1:443");
            let mut namer = Namer::new();
            prop_assert_eq!(namer.named(&segment(src, dst, seq, first)), None);
            let next = seq.wrapping_add(u32::try_from(split).unwrap());
            let named = namer.named(&segment(src, dst, next, second)).unwrap();
            let name = if tls { named.sni } else { named.http_host };
            prop_assert_eq!(name.as_deref(), Some("any.example.net"));
            prop_assert_eq!(namer.pending(), 0);
        }
    }

    /// The shared captures, beside the checkout.
    const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/corpus/pcap");

    /// Captures of TLS over TCP whose expected JA4 results name each connection's server.
    const TLS_CAPTURES: [&str; 10] = [
        "browsers-x509.pcapng",
        "ipv6.pcapng",
        "latest.pcapng",
        "macos_tcp_flags.pcap",
        "ssh2.pcapng",
        "tls-alpn-h2.pcap",
        "tls-handshake.pcapng",
        "tls-sni.pcapng",
        "tls12.pcap",
        "tls3.pcapng",
    ];

    /// The IP packet inside a captured frame, for the link types of these captures.
    fn ip_packet(link: palisade_dpi::capture::LinkType, frame: &[u8]) -> Option<&[u8]> {
        use palisade_dpi::capture::LinkType;
        match link {
            LinkType::Raw | LinkType::Ipv4 | LinkType::Ipv6 => Some(frame),
            LinkType::Null | LinkType::Loop => frame.get(4..),
            LinkType::LinuxSll => frame.get(16..),
            LinkType::Ethernet => {
                let mut at = 12;
                while frame.get(at..at + 2)? == [0x81, 0x00] {
                    at += 4;
                }
                match frame.get(at..at + 2)? {
                    [0x08, 0x00] | [0x86, 0xdd] => frame.get(at + 2..),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Reads every captured frame of TLS connections through one namer, as if this host had
    /// sent them (the captures' segments are what a wire sees, so long hellos come in two), and
    /// finds the server name of every connection that FoxIO's JA4 tool names.
    #[test]
    fn captured_hellos_give_the_server_names_the_ja4_tool_finds() {
        use palisade_dpi::capture::CaptureReader;

        let dir = std::path::Path::new(CORPUS);
        if !dir.is_dir() {
            assert!(
                std::env::var_os("PALISADE_CORPUS_TESTS").is_none_or(|v| v != "1"),
                "PALISADE_CORPUS_TESTS=1 but the corpus is not at {CORPUS}"
            );
            println!("skipped: corpus not found at {CORPUS}");
            return;
        }
        let mut checked = 0;
        for capture in TLS_CAPTURES {
            let path = dir.join("foxio-ja4").join(capture);
            let mut reader = CaptureReader::new(std::fs::File::open(&path).unwrap()).unwrap();
            let mut namer = Namer::new();
            let mut found = HashMap::new();
            while let Ok(Some(frame)) = reader.next_frame() {
                if let Some(named) = ip_packet(frame.link, frame.data).and_then(|p| namer.named(p))
                {
                    found.insert((named.flow.local, named.flow.remote), named.sni);
                }
            }
            let expected = dir
                .join("foxio-ja4-expected")
                .join(format!("{capture}.json"));
            let expected: Vec<serde_json::Value> =
                serde_json::from_slice(&std::fs::read(expected).unwrap()).unwrap();
            for connection in expected {
                let (Some(domain), Some(ja4)) =
                    (connection["domain"].as_str(), connection["JA4.1"].as_str())
                else {
                    continue;
                };
                if !ja4.starts_with('t') {
                    continue;
                }
                let end = |ip: &str, port: &str| {
                    SocketAddr::new(
                        connection[ip].as_str().unwrap().parse().unwrap(),
                        connection[port].as_str().unwrap().parse().unwrap(),
                    )
                };
                let key = (end("src", "srcport"), end("dst", "dstport"));
                assert_eq!(
                    found.get(&key).and_then(|sni| sni.as_deref()),
                    Some(domain),
                    "{capture}: {key:?}"
                );
                checked += 1;
            }
        }
        assert!(checked >= 100, "only {checked} connections checked");
        println!("{checked} connections named as the JA4 tool names them");
    }
}
