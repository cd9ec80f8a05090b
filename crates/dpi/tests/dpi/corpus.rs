//! The capture reader and packet decoder on the real captures in the shared corpus. The
//! expected figures were taken from `capinfos` and `tshark` (Wireshark 4.0); the tests do not
//! need either. When the corpus is not there, each test says so and passes.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::IpAddr;
use std::path::Path;

use palisade_dpi::capture::{CaptureError, CaptureReader, Format, LinkType};
use palisade_dpi::packet::{self, Transport, Tunnel};

use crate::corpus;

/// Frames per file (`capinfos -c`), and the frames `decode` skips, all of them ARP
/// (`tshark` says `eth:ethertype:arp`).
const EXPECTED: &[(&str, usize, usize)] = &[
    ("foxio-ja4/CVE-2018-6794.pcap", 33, 0),
    ("foxio-ja4/badcurveball.pcap", 12, 0),
    ("foxio-ja4/browsers-x509.pcapng", 179, 0),
    (
        "foxio-ja4/chrome-cloudflare-quic-with-secrets.pcapng",
        83,
        0,
    ),
    ("foxio-ja4/dhcp.pcapng", 4, 0),
    ("foxio-ja4/dhcpv6.pcap", 12, 0),
    ("foxio-ja4/dtls-udp.notest.cap", 7, 0),
    ("foxio-ja4/gre-erspan-vxlan.pcap", 7, 0),
    ("foxio-ja4/gre-sample.pcap", 40, 0),
    ("foxio-ja4/http-empty-useragent.pcap", 16, 0),
    ("foxio-ja4/http1-with-cookies.pcapng", 12, 0),
    ("foxio-ja4/http1.pcapng", 184, 0),
    ("foxio-ja4/http2-with-cookies.pcapng", 1607, 0),
    ("foxio-ja4/https-connect.pcap", 18, 0),
    ("foxio-ja4/https3-301-get.pcap", 23, 0),
    ("foxio-ja4/ipv6.pcapng", 9, 0),
    ("foxio-ja4/latest.pcapng", 209, 2),
    ("foxio-ja4/macos_tcp_flags.pcap", 43, 0),
    ("foxio-ja4/quic-tls-handshake.pcapng", 1, 0),
    ("foxio-ja4/quic-with-several-tls-frames.pcapng", 1, 0),
    ("foxio-ja4/single-packets.pcap", 9, 0),
    ("foxio-ja4/socks-https-example.pcap", 93, 0),
    ("foxio-ja4/socks4-https.pcap", 16, 0),
    ("foxio-ja4/ssh-r.pcap", 1852, 0),
    ("foxio-ja4/ssh-scp-1050.pcap", 1000, 0),
    ("foxio-ja4/ssh.pcapng", 318, 0),
    ("foxio-ja4/ssh2-malformed.pcap", 22, 0),
    ("foxio-ja4/ssh2-moloch-crash.pcap", 22, 0),
    ("foxio-ja4/ssh2.pcapng", 1391, 8),
    ("foxio-ja4/sshv1.pcap", 161, 0),
    ("foxio-ja4/tcpdump-geneve.pcap", 39, 0),
    ("foxio-ja4/tls-alpn-h2.pcap", 9, 0),
    ("foxio-ja4/tls-handshake.pcapng", 193, 0),
    ("foxio-ja4/tls-non-ascii-alpn.pcapng", 2, 0),
    ("foxio-ja4/tls-sni.pcapng", 84, 0),
    ("foxio-ja4/tls12.pcap", 1, 0),
    ("foxio-ja4/tls3.pcapng", 1189, 9),
    ("foxio-ja4/v6.pcap", 161, 0),
    ("misc/dns_icmp.pcap", 32, 0),
    ("misc/http.pcap", 43, 0),
    ("misc/nb6-http.pcap", 62, 6),
    ("misc/test_dns.pcap", 10, 0),
    ("misc/truncated_dns.pcap", 1, 0),
    ("misc/truncated_dns_2.pcap", 1, 0),
];

/// A flow as counted here: (tunnel, protocol, lower end, higher end).
type FlowKey = (Option<Tunnel>, u8, (IpAddr, u16), (IpAddr, u16));

/// What reading a whole file gave.
struct Read {
    format: Format,
    frames: usize,
    /// Skipped frames by reason.
    skipped: BTreeMap<&'static str, usize>,
    /// Decoded packets by flow.
    flows: BTreeMap<FlowKey, usize>,
    first_ts_ns: Option<i64>,
    last_ts_ns: Option<i64>,
    /// (captured, original) length of the first frame.
    first_lengths: Option<(usize, u32)>,
    end: Option<CaptureError>,
}

fn read(path: &Path) -> Read {
    let file = File::open(path).unwrap();
    let mut capture =
        CaptureReader::new(file).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut read = Read {
        format: capture.format(),
        frames: 0,
        skipped: BTreeMap::new(),
        flows: BTreeMap::new(),
        first_ts_ns: None,
        last_ts_ns: None,
        first_lengths: None,
        end: None,
    };
    loop {
        let frame = match capture.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => {
                read.end = Some(e);
                break;
            }
        };
        read.frames += 1;
        read.first_ts_ns.get_or_insert(frame.ts_ns);
        read.last_ts_ns = Some(frame.ts_ns);
        read.first_lengths
            .get_or_insert((frame.data.len(), frame.orig_len));
        match packet::decode(frame.link, frame.data) {
            Ok(packet) => {
                let (src_port, dst_port) = packet.transport.ports();
                let a = (packet.src, src_port);
                let b = (packet.dst, dst_port);
                let key = (
                    packet.tunnel,
                    packet.transport.protocol_number(),
                    a.min(b),
                    a.max(b),
                );
                *read.flows.entry(key).or_default() += 1;
            }
            Err(skip) => *read.skipped.entry(skip.reason()).or_default() += 1,
        }
    }
    read
}

/// Every capture under `foxio-ja4/` and `misc/`, by its path relative to the corpus.
fn captures(corpus: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for dir in ["foxio-ja4", "misc"] {
        for entry in std::fs::read_dir(corpus.join(dir)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if [".pcap", ".pcapng", ".cap"]
                .iter()
                .any(|ext| name.ends_with(ext))
            {
                names.push(format!("{dir}/{name}"));
            }
        }
    }
    names.sort();
    names
}

#[test]
fn every_capture_reads_to_the_end_and_decodes() {
    let Some(corpus) = corpus() else { return };
    let names = captures(&corpus);
    assert!(names.len() >= EXPECTED.len(), "corpus files: {names:?}");
    for name in &names {
        let read = read(&corpus.join(name));
        let skipped: usize = read.skipped.values().sum();
        println!(
            "{name}: {:?}, {} frames, skipped {:?}",
            read.format, read.frames, read.skipped
        );
        if name == "misc/truncated_dns_2.pcap" {
            // The second record's 16-byte header is cut after 7 bytes (tshark: "cut short in
            // the middle of a packet").
            let end = read.end.as_ref().unwrap();
            assert!(end.is_truncated(), "{name}: {end}");
            assert_eq!(end.offset, 240, "{name}");
        } else {
            assert!(read.end.is_none(), "{name}: {:?}", read.end);
        }
        if let Some(&(_, frames, arp)) = EXPECTED.iter().find(|(n, ..)| n == name) {
            assert_eq!(read.frames, frames, "{name}");
            assert_eq!(skipped, arp, "{name}: {:?}", read.skipped);
            if arp > 0 {
                assert_eq!(
                    read.skipped.keys().copied().collect::<Vec<_>>(),
                    ["unsupported_ethertype"]
                );
            }
        }
    }
}

#[test]
fn formats_timestamps_and_lengths() {
    let Some(corpus) = corpus() else { return };
    let http2 = read(&corpus.join("foxio-ja4/http2-with-cookies.pcapng"));
    assert_eq!(http2.format, Format::PcapNg);
    // tshark -T fields -e frame.time_epoch: first and last frame.
    assert_eq!(http2.first_ts_ns, Some(1_695_393_093_408_216_000));
    assert_eq!(http2.last_ts_ns, Some(1_695_393_096_061_475_000));
    // Named .pcapng, but a classic pcap file of BSD loopback frames.
    let ipv6 = read(&corpus.join("foxio-ja4/ipv6.pcapng"));
    assert_eq!(ipv6.format, Format::Pcap);
    assert_eq!(ipv6.first_ts_ns, Some(1_593_980_608_621_087_000));
    let mut capture =
        CaptureReader::new(File::open(corpus.join("foxio-ja4/ipv6.pcapng")).unwrap()).unwrap();
    assert_eq!(capture.next_frame().unwrap().unwrap().link, LinkType::Null);
    // Captured with a 200-byte snapshot length: the DNS response was 238 bytes long.
    let truncated = read(&corpus.join("misc/truncated_dns.pcap"));
    assert_eq!(truncated.first_lengths, Some((200, 238)));
    assert_eq!(truncated.skipped.len(), 0, "the cut packet still decodes");
}

fn v4(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// The flows of a tunnel capture: (tunnel, protocol, one end, the other end, packets).
type Flows<'a> = &'a [(Tunnel, u8, (&'a str, u16), (&'a str, u16), usize)];

fn assert_flows(corpus: &Path, name: &str, expected: Flows<'_>) {
    let read = read(&corpus.join(name));
    assert!(read.end.is_none() && read.skipped.is_empty(), "{name}");
    let expected: BTreeMap<_, _> = expected
        .iter()
        .map(|&(tunnel, protocol, (a, a_port), (b, b_port), packets)| {
            let (a, b) = ((v4(a), a_port), (v4(b), b_port));
            ((Some(tunnel), protocol, a.min(b), a.max(b)), packets)
        })
        .collect();
    assert_eq!(read.flows, expected, "{name}");
}

#[test]
fn tunnel_captures_decode_to_their_inner_flows() {
    let Some(corpus) = corpus() else { return };
    // GRE (no optional fields) between 172.27.1.66 and 66.59.109.137; inside, a host behind
    // each end pings, resolves, keeps time and logs in with SSH. Frames 34 and 36 are ICMP
    // errors about the DNS queries.
    assert_flows(
        &corpus,
        "foxio-ja4/gre-sample.pcap",
        &[
            (Tunnel::Gre, 1, ("172.28.2.3", 0), ("66.59.111.190", 0), 10),
            (
                Tunnel::Gre,
                6,
                ("172.28.2.3", 22),
                ("66.59.111.190", 40264),
                22,
            ),
            (
                Tunnel::Gre,
                17,
                ("129.170.17.4", 123),
                ("66.59.111.190", 123),
                2,
            ),
            (
                Tunnel::Gre,
                17,
                ("172.28.2.3", 53),
                ("66.59.111.190", 37675),
                2,
            ),
            (
                Tunnel::Gre,
                17,
                ("18.26.4.105", 123),
                ("66.59.111.190", 123),
                2,
            ),
            (
                Tunnel::Gre,
                17,
                ("66.59.111.182", 123),
                ("66.59.111.190", 123),
                2,
            ),
        ],
    );
    // ERSPAN type II in GRE, mirroring VXLAN-GPE (UDP 4789 -> 4790, next protocol Ethernet)
    // that carries an HTTP connection.
    assert_flows(
        &corpus,
        "foxio-ja4/gre-erspan-vxlan.pcap",
        &[(
            Tunnel::Erspan,
            6,
            ("10.16.27.12", 65174),
            ("10.16.27.131", 80),
            7,
        )],
    );
    // Geneve between 20.0.0.1 and 20.0.0.2 carrying Ethernet: pings and an SSH session.
    assert_flows(
        &corpus,
        "foxio-ja4/tcpdump-geneve.pcap",
        &[
            (Tunnel::Geneve, 1, ("30.0.0.1", 0), ("30.0.0.2", 0), 6),
            (Tunnel::Geneve, 6, ("30.0.0.1", 22), ("30.0.0.2", 51225), 33),
        ],
    );
    // The innermost IP length is the one reported (tshark: ip.len 140, 90, 40).
    let mut capture =
        CaptureReader::new(File::open(corpus.join("foxio-ja4/gre-erspan-vxlan.pcap")).unwrap())
            .unwrap();
    let frame = capture.next_frame().unwrap().unwrap();
    let packet = packet::decode(frame.link, frame.data).unwrap();
    assert_eq!(packet.ip_len, 40);
    assert!(matches!(
        packet.transport,
        Transport::Tcp { flags: 0x02, .. }
    ));
    assert_eq!(packet.src_mac, Some([0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xa1]));
}
