//! The server name a connection asks for, read from a copy of its first data packet (see
//! [`crate::nflog`]): the server name (SNI) of a TLS ClientHello, or the `Host` of an HTTP/1.x
//! request.
//!
//! Each packet is read by itself, with the decoders of [`palisade_dpi`]: a request or hello that
//! does not fit in the copied packet is missed. At the `OUTPUT` hook a packet is what TCP hands
//! to IP before segmentation offload, so a hello or request head written at once usually arrives
//! whole; it is cut only when longer than [`crate::nflog::COPY_LEN`] or on an interface that
//! segments in software, where a hello above one segment (post-quantum key shares make it about
//! 1.8 kB) may put its server name in the second segment, and the connection goes unnamed.
//!
//! The names are kept as sent: the SNI as the ClientHello carries it, the HTTP host with its
//! port if the request gives one (`example.com:8080`); neither is lowercased or checked.

use palisade_dpi::{http, tls};
use palisade_proto::{Direction, Protocol};

use crate::flow::FlowKey;
use crate::packet::headers;

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
/// or is cut before the name.
pub fn named(packet: &[u8]) -> Option<Named> {
    let h = headers(packet)?;
    if h.protocol != Some(Protocol::Tcp) {
        return None;
    }
    let (sni, http_host) = if tls::looks_like_client_hello(h.payload) {
        (tls::client_hello_from_stream(h.payload).ok()?.sni, None)
    } else if http::looks_like_request(h.payload) {
        (None, http::parse_request(h.payload).ok()?.host)
    } else {
        return None;
    };
    if sni.is_none() && http_host.is_none() {
        return None;
    }
    Some(Named {
        flow: FlowKey {
            protocol: Protocol::Tcp,
            local: h.src,
            remote: h.dst,
            direction: Direction::Outbound,
        },
        sni,
        http_host,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::{IpAddr, SocketAddr};

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
        let mut tcp = src.port().to_be_bytes().to_vec();
        tcp.extend(dst.port().to_be_bytes());
        tcp.extend([0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
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
}
