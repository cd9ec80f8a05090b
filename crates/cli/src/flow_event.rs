//! A network sensor's flow record as the connection event its server stores: the client's
//! connection to the server (outbound), named by what the sensor read on the wire, allowed (a
//! sensor only watches), with the flow's traffic. A sensor sees no process, so no application
//! field is set; the device's MAC address and host name have no field in an event and are not
//! carried.

use std::net::IpAddr;

use palisade_dpi::record::{AppProto, FlowRecord, Proto};
use palisade_proto::{Action, Connection, ConnectionEvent, Direction, Protocol, Traffic, Verdict};

const NANOS_PER_MILLI: i64 = 1_000_000;

/// The event numbered `seq` for an ended flow.
pub fn flow_event(record: &FlowRecord, seq: u64) -> ConnectionEvent {
    let protocol = match record.proto {
        Proto::TCP => Some(Protocol::Tcp),
        Proto::UDP => Some(Protocol::Udp),
        Proto::ICMP | Proto::ICMPV6 => Some(Protocol::Icmp),
        Proto(_) => None,
    };
    // Only TCP and UDP have ports; the record says 0 for the others.
    let ports = matches!(protocol, Some(Protocol::Tcp | Protocol::Udp));
    let sni = record
        .tls
        .as_ref()
        .and_then(|tls| tls.sni.clone())
        .or_else(|| record.quic.as_ref().and_then(|quic| quic.sni.clone()));
    let http_host = record.http.as_ref().and_then(|http| http.host.clone());
    let dns_name = record
        .dns
        .as_ref()
        .filter(|_| record.app_proto == AppProto::Dns)
        .and_then(|dns| dns.queries.first())
        .map(|query| query.name.clone());
    let domain = sni
        .clone()
        .or_else(|| http_host.as_deref().and_then(host_name))
        .or(dns_name);
    let connection = Connection {
        domain,
        src_ip: Some(record.src_ip),
        src_port: ports.then_some(record.src_port),
        dst_ip: Some(record.dst_ip),
        dst_port: ports.then_some(record.dst_port),
        protocol,
        direction: Direction::Outbound,
        ..Connection::default()
    }
    .normalize();
    let duration_ns = record.ts_end.saturating_sub(record.ts_start).max(0);
    ConnectionEvent {
        seq,
        time_ms: record.ts_start.div_euclid(NANOS_PER_MILLI),
        connection,
        pid: None,
        sni,
        http_host,
        action: Action::Allow,
        verdict: Verdict::Allow,
        rule: None,
        policy_version: None,
        traffic: Traffic {
            bytes_out: record.bytes_out,
            bytes_in: record.bytes_in,
            packets_out: record.pkts_out,
            packets_in: record.pkts_in,
            duration_ms: u64::try_from(duration_ns / NANOS_PER_MILLI).unwrap_or(0),
        },
        update_of: None,
    }
}

/// The name in an HTTP `Host` (without its port); none for an address.
fn host_name(host: &str) -> Option<String> {
    if host.starts_with('[') {
        return None;
    }
    let name = host.split(':').next().unwrap_or(host);
    (!name.is_empty() && name.parse::<IpAddr>().is_err()).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use palisade_dpi::record::{DnsInfo, DnsQuery, EndReason, HttpInfo, TlsInfo};

    use super::*;

    const START: i64 = 1_700_000_000_123_456_789;

    fn record(proto: Proto, app_proto: AppProto) -> FlowRecord {
        FlowRecord {
            ts_start: START,
            ts_end: START + 2_500_000_000,
            src_ip: IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20)),
            src_port: 51_000,
            dst_ip: IpAddr::V4(Ipv4Addr::new(93, 184, 216, 34)),
            dst_port: 443,
            proto,
            app_proto,
            pkts_out: 12,
            pkts_in: 10,
            bytes_out: 1_500,
            bytes_in: 48_000,
            tcp_state: None,
            end: EndReason::Idle,
            src_mac: None,
            dst_mac: None,
            vlan: None,
            tunnel: None,
            fragments: 0,
            dns: None,
            tls: None,
            http: None,
            quic: None,
            device: None,
        }
    }

    fn tls(sni: Option<&str>) -> TlsInfo {
        TlsInfo {
            sni: sni.map(str::to_owned),
            alpn: Vec::new(),
            version: "1.3",
            ja3: String::new(),
            ja3_string: String::new(),
            ja4: String::new(),
        }
    }

    fn http(host: Option<&str>) -> HttpInfo {
        HttpInfo {
            method: "GET".into(),
            host: host.map(str::to_owned),
            path: "/".into(),
            user_agent: None,
        }
    }

    #[test]
    fn a_tls_flow_is_an_allowed_outbound_connection_with_its_traffic() {
        let mut flow = record(Proto::TCP, AppProto::Tls);
        flow.tls = Some(tls(Some("WWW.Example.com")));
        let event = flow_event(&flow, 7);
        assert_eq!(event.seq, 7);
        assert_eq!(event.time_ms, 1_700_000_000_123);
        let conn = &event.connection;
        assert_eq!(conn.src_ip, Some(flow.src_ip));
        assert_eq!(conn.src_port, Some(51_000));
        assert_eq!(conn.dst_ip, Some(flow.dst_ip));
        assert_eq!(conn.dst_port, Some(443));
        assert_eq!(conn.protocol, Some(Protocol::Tcp));
        assert_eq!(conn.direction, Direction::Outbound);
        assert_eq!(conn.domain.as_deref(), Some("www.example.com"));
        assert_eq!(event.sni.as_deref(), Some("WWW.Example.com"));
        assert_eq!(event.http_host, None);
        assert_eq!(
            (event.action, event.verdict),
            (Action::Allow, Verdict::Allow)
        );
        assert_eq!(
            (event.rule, event.policy_version, event.update_of),
            (None, None, None)
        );
        assert_eq!(
            event.traffic,
            Traffic {
                bytes_out: 1_500,
                bytes_in: 48_000,
                packets_out: 12,
                packets_in: 10,
                duration_ms: 2_500,
            }
        );
        // A sensor sees no process.
        assert_eq!(
            (conn.app_path.as_ref(), conn.app_name.as_ref()),
            (None, None)
        );
        assert_eq!((conn.user.as_ref(), event.pid), (None, None));
    }

    #[test]
    fn the_domain_is_the_server_name_else_the_http_host_else_the_dns_question() {
        let mut flow = record(Proto::TCP, AppProto::Http);
        flow.http = Some(http(Some("intranet.example:8080")));
        let event = flow_event(&flow, 1);
        assert_eq!(event.connection.domain.as_deref(), Some("intranet.example"));
        assert_eq!(event.http_host.as_deref(), Some("intranet.example:8080"));
        assert_eq!(event.sni, None);

        flow.tls = Some(tls(Some("sni.example")));
        let event = flow_event(&flow, 2);
        assert_eq!(event.connection.domain.as_deref(), Some("sni.example"));
        assert_eq!(event.http_host.as_deref(), Some("intranet.example:8080"));

        let mut dns = record(Proto::UDP, AppProto::Dns);
        dns.dst_port = 53;
        dns.dns = Some(DnsInfo {
            queries: vec![DnsQuery {
                name: "Printer.Example.".into(),
                qtype: "A".into(),
            }],
            ..DnsInfo::default()
        });
        let event = flow_event(&dns, 3);
        assert_eq!(event.connection.domain.as_deref(), Some("printer.example"));
        assert_eq!(event.connection.protocol, Some(Protocol::Udp));
        assert_eq!(event.connection.dst_port, Some(53));
    }

    #[test]
    fn an_address_is_no_domain() {
        for host in ["10.0.0.1", "10.0.0.1:8080", "[::1]:80", ""] {
            let mut flow = record(Proto::TCP, AppProto::Http);
            flow.http = Some(http(Some(host)));
            assert_eq!(flow_event(&flow, 1).connection.domain, None, "{host}");
        }
        let flow = record(Proto::TCP, AppProto::Unknown);
        assert_eq!(flow_event(&flow, 1).connection.domain, None);
    }

    #[test]
    fn flows_without_ports_have_none() {
        let icmp = record(Proto::ICMP, AppProto::Unknown);
        let event = flow_event(&icmp, 1);
        assert_eq!(event.connection.protocol, Some(Protocol::Icmp));
        assert_eq!(
            (event.connection.src_port, event.connection.dst_port),
            (None, None)
        );
        let gre = record(Proto(47), AppProto::Unknown);
        let event = flow_event(&gre, 1);
        assert_eq!(event.connection.protocol, None);
        assert_eq!(event.connection.dst_port, None);
        assert_eq!(event.connection.dst_ip, Some(gre.dst_ip));
    }

    #[test]
    fn a_record_ending_before_it_starts_lasts_nothing() {
        let mut flow = record(Proto::TCP, AppProto::Unknown);
        flow.ts_end = flow.ts_start - 1;
        assert_eq!(flow_event(&flow, 1).traffic.duration_ms, 0);
    }
}
