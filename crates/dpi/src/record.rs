//! The flow record: what `palisade analyze` and `palisade sensor` write, one JSON object per
//! flow, and what the detectors consume. Field names are the documented output format
//! (docs/dpi.md); fields with nothing to say are left out.

use std::fmt;
use std::net::IpAddr;

use serde::{Serialize, Serializer};

/// One bidirectional flow. "Out" is the client's direction: the side that sent the first packet
/// (or the SYN, or the side with the ephemeral port when the capture starts mid-flow).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowRecord {
    /// First packet, seconds since the Unix epoch (microsecond precision).
    #[serde(serialize_with = "seconds")]
    pub ts_start: i64,
    /// Last packet, seconds since the Unix epoch.
    #[serde(serialize_with = "seconds")]
    pub ts_end: i64,
    /// The client's address.
    pub src_ip: IpAddr,
    /// The client's port (0 without ports).
    pub src_port: u16,
    /// The server's address.
    pub dst_ip: IpAddr,
    /// The server's port (0 without ports).
    pub dst_port: u16,
    /// Transport protocol.
    pub proto: Proto,
    /// Application protocol, recognised from content.
    pub app_proto: AppProto,
    /// Packets from the client.
    pub pkts_out: u64,
    /// Packets from the server.
    pub pkts_in: u64,
    /// IP bytes from the client (headers included).
    pub bytes_out: u64,
    /// IP bytes from the server.
    pub bytes_in: u64,
    /// TCP connection state at the end of the record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_state: Option<TcpState>,
    /// Why the record ended.
    pub end: EndReason,
    /// The client's MAC address, when the capture has Ethernet headers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_mac: Option<Mac>,
    /// The server's (or the gateway's) MAC address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_mac: Option<Mac>,
    /// The outermost 802.1Q VLAN id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// The encapsulation the flow was carried in (`gre`, `erspan`, `vxlan`, `geneve`, `ipip`,
    /// `l2tp`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<&'static str>,
    /// First fragments of fragmented IP packets seen in the flow.
    #[serde(skip_serializing_if = "is_zero")]
    pub fragments: u64,
    /// DNS questions and answers carried by the flow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsInfo>,
    /// The TLS handshake.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsInfo>,
    /// The first HTTP request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpInfo>,
    /// The TLS ClientHello carried in QUIC Initial packets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quic: Option<QuicInfo>,
    /// The client as a device (`palisade sensor` only; the flow table leaves it empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
}

/// A transport protocol number, written by name where it has one (`tcp`, `udp`, `icmp`,
/// `icmpv6`) and as the number otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Proto(pub u8);

impl Proto {
    /// TCP.
    pub const TCP: Proto = Proto(6);
    /// UDP.
    pub const UDP: Proto = Proto(17);
    /// ICMP.
    pub const ICMP: Proto = Proto(1);
    /// ICMPv6.
    pub const ICMPV6: Proto = Proto(58);
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Proto::TCP => f.write_str("tcp"),
            Proto::UDP => f.write_str("udp"),
            Proto::ICMP => f.write_str("icmp"),
            Proto::ICMPV6 => f.write_str("icmpv6"),
            Proto(other) => write!(f, "{other}"),
        }
    }
}

impl Serialize for Proto {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Application protocols recognised from the first bytes of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AppProto {
    /// Nothing recognised (yet).
    Unknown,
    /// DNS over UDP or TCP.
    Dns,
    /// TLS over TCP.
    Tls,
    /// QUIC.
    Quic,
    /// HTTP/1.x.
    Http,
    /// SSH.
    Ssh,
    /// SSDP: HTTP-formatted discovery over UDP.
    Ssdp,
    /// NetBIOS name service: DNS-formatted, with encoded NetBIOS names.
    Nbns,
}

impl AppProto {
    /// The name used in the output.
    pub fn name(self) -> &'static str {
        match self {
            AppProto::Unknown => "unknown",
            AppProto::Dns => "dns",
            AppProto::Tls => "tls",
            AppProto::Quic => "quic",
            AppProto::Http => "http",
            AppProto::Ssh => "ssh",
            AppProto::Ssdp => "ssdp",
            AppProto::Nbns => "nbns",
        }
    }
}

/// Where a TCP connection got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TcpState {
    /// The client sent a SYN and nothing came back.
    SynSent,
    /// The server answered with SYN-ACK.
    SynReceived,
    /// The handshake completed (or data flowed both ways).
    Established,
    /// One side sent a FIN.
    Closing,
    /// Both sides sent a FIN.
    Closed,
    /// A side sent a RST.
    Reset,
    /// The capture started after the handshake.
    Midstream,
}

/// Why a flow record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// No packet for the idle timeout.
    Idle,
    /// The flow lasted the active timeout; its next packets start a new record.
    Active,
    /// Evicted to keep the table within its bound (oldest first).
    Evicted,
    /// The capture ended.
    EndOfCapture,
}

/// A MAC address, written `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// The text form, without going through the formatter (it is written once per flow record).
    fn text(&self) -> [u8; 17] {
        let digit = |nibble: u8| {
            if nibble < 10 {
                b'0' + nibble
            } else {
                b'a' + nibble - 10
            }
        };
        let mut text = [b':'; 17];
        for (pair, byte) in text.chunks_mut(3).zip(self.0) {
            if let [high, low, ..] = pair {
                (*high, *low) = (digit(byte >> 4), digit(byte & 0x0f));
            }
        }
        text
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.text()).unwrap_or_default())
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(std::str::from_utf8(&self.text()).unwrap_or_default())
    }
}

/// A device on the local network, as the network sensor knows it: its address, and where seen,
/// its MAC address and the host name it announced (DHCP option 12 or mDNS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    /// The device's MAC address, when its address was seen sent from it on the local network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<Mac>,
    /// The device's IP address.
    pub ip: IpAddr,
    /// The host name the device announced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

/// DNS carried by a flow: every distinct question, every answer, the last response code.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DnsInfo {
    /// Distinct questions, in the order first seen.
    pub queries: Vec<DnsQuery>,
    /// Answer records, in the order seen.
    pub answers: Vec<DnsAnswer>,
    /// The response code of the last response (`NOERROR`, `NXDOMAIN`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rcode: Option<String>,
    /// Questions and answers not kept because the flow had too many.
    #[serde(skip_serializing_if = "is_zero")]
    pub dropped: u64,
}

/// One question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsQuery {
    /// The name asked about.
    pub name: String,
    /// Its type (`A`, `AAAA`, `HTTPS`, ...).
    #[serde(rename = "type")]
    pub qtype: String,
}

/// One answer record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsAnswer {
    /// The owner name.
    pub name: String,
    /// The record type.
    #[serde(rename = "type")]
    pub rtype: String,
    /// The data in presentation format.
    pub data: String,
    /// Time to live, seconds.
    pub ttl: u32,
}

/// A TLS handshake over TCP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsInfo {
    /// Server name indication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// ALPN protocols the client offered.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alpn: Vec<String>,
    /// The negotiated version when the ServerHello was seen, else the highest the client offered.
    pub version: &'static str,
    /// JA3 fingerprint (MD5).
    pub ja3: String,
    /// The JA3 string the MD5 is taken of.
    pub ja3_string: String,
    /// JA4 (client) fingerprint.
    pub ja4: String,
}

/// The first HTTP/1.x request of a flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpInfo {
    /// Request method.
    pub method: String,
    /// Host header (or the target's host).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Request target.
    pub path: String,
    /// User-Agent header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// The TLS ClientHello of a QUIC connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuicInfo {
    /// Server name indication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// ALPN protocols the client offered.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alpn: Vec<String>,
    /// JA4 (client) fingerprint, with the `q` prefix.
    pub ja4: String,
}

/// Nanoseconds since the epoch as seconds with microsecond precision.
fn seconds<S: Serializer>(ns: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    // The quotient is rounded once, to the double nearest the exact value, which is also the
    // double nearest the six-decimal text: it prints as that text.
    serializer.serialize_f64(ns.div_euclid(1_000) as f64 / 1e6)
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_lower_case_hex_pairs() {
        let mac = Mac([0x00, 0x0b, 0x82, 0x01, 0xfc, 0x42]);
        assert_eq!(mac.to_string(), "00:0b:82:01:fc:42");
        assert_eq!(
            serde_json::to_string(&mac).unwrap(),
            r#""00:0b:82:01:fc:42""#
        );
    }

    #[test]
    fn times_are_seconds_with_microseconds() {
        let json = |ns: i64| {
            let mut serializer = serde_json::Serializer::new(Vec::new());
            seconds(&ns, &mut serializer).unwrap();
            String::from_utf8(serializer.into_inner()).unwrap()
        };
        assert_eq!(json(1_700_000_000_250_000_999), "1700000000.25");
        assert_eq!(json(1_700_000_000_123_456_000), "1700000000.123456");
        assert_eq!(json(-1_500), "-2e-6");
    }
}
