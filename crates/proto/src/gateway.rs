//! The agent gateway's gRPC protocol (`proto/palisade/gateway/v1/gateway.proto`), generated at
//! build time, and the mapping between its event messages and [`ConnectionEvent`].
//!
//! Events arrive from the network: [`ConnectionEvent::try_from`] refuses a message whose IP
//! address, port or keyword is not valid instead of guessing.

use std::net::IpAddr;

use crate::{Action, Connection, ConnectionEvent, Direction, Protocol, Traffic, Verdict};

/// Version 1 of the protocol.
#[allow(missing_docs, clippy::all, clippy::pedantic, unused_qualifications)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/palisade.gateway.v1.rs"));
}

/// The name the gateway's certificate carries. Agents verify the server against this name, not
/// against the address they dial, so one certificate serves any address.
pub const SERVER_NAME: &str = "gateway.palisade.internal";

/// Largest message either side decodes, in bytes; a larger one is refused with
/// `OUT_OF_RANGE` ("decoded message length too large").
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// What the server's CA signs of a policy: every field but the signature, in a fixed layout
/// (a label, the numbers big-endian, then each text with its length), so the agent can check
/// the policy it keeps on disk came from its server unchanged.
pub fn policy_signed_bytes(p: &v1::Policy) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + p.name.len() + p.format.len() + p.source.len());
    out.extend_from_slice(b"palisade policy v1\0");
    out.extend_from_slice(&p.policy_id.to_be_bytes());
    out.extend_from_slice(&p.version.to_be_bytes());
    out.push(u8::from(p.isolation));
    for text in [&p.name, &p.format, &p.source] {
        out.extend_from_slice(&(text.len() as u64).to_be_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    out
}

/// An event message that does not describe a valid connection event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidEvent(pub String);

impl std::fmt::Display for InvalidEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid event: {}", self.0)
    }
}

impl std::error::Error for InvalidEvent {}

impl From<&ConnectionEvent> for v1::Event {
    fn from(e: &ConnectionEvent) -> v1::Event {
        let c = &e.connection;
        v1::Event {
            seq: e.seq,
            time_ms: e.time_ms,
            connection: Some(v1::Connection {
                app_path: c.app_path.clone(),
                app_name: c.app_name.clone(),
                app_sha256: c.app_sha256.clone(),
                cmdline: c.cmdline.clone(),
                user: c.user.clone(),
                uid: c.uid,
                parent_path: c.parent_path.clone(),
                cgroup: c.cgroup.clone(),
                unit: c.unit.clone(),
                container_id: c.container_id.clone(),
                domain: c.domain.clone(),
                src_ip: c.src_ip.map(|ip| ip.to_string()),
                src_port: c.src_port.map(u32::from),
                dst_ip: c.dst_ip.map(|ip| ip.to_string()),
                dst_port: c.dst_port.map(u32::from),
                protocol: c.protocol.map(|p| p.as_str().to_owned()),
                direction: c.direction.as_str().to_owned(),
            }),
            pid: e.pid,
            sni: e.sni.clone(),
            http_host: e.http_host.clone(),
            update_of: e.update_of,
            action: e.action.as_str().to_owned(),
            verdict: verdict_str(e.verdict).to_owned(),
            rule: e.rule.clone(),
            policy_version: e.policy_version,
            traffic: Some(v1::Traffic {
                bytes_out: e.traffic.bytes_out,
                bytes_in: e.traffic.bytes_in,
                packets_out: e.traffic.packets_out,
                packets_in: e.traffic.packets_in,
                duration_ms: e.traffic.duration_ms,
            }),
        }
    }
}

impl TryFrom<v1::Event> for ConnectionEvent {
    type Error = InvalidEvent;

    fn try_from(e: v1::Event) -> Result<ConnectionEvent, InvalidEvent> {
        let seq = e.seq;
        let bad = |what: String| InvalidEvent(format!("event {seq}: {what}"));
        let c = e.connection.unwrap_or_default();
        let connection = Connection {
            src_ip: ip(c.src_ip.as_deref(), "src_ip").map_err(bad)?,
            src_port: port(c.src_port, "src_port").map_err(bad)?,
            dst_ip: ip(c.dst_ip.as_deref(), "dst_ip").map_err(bad)?,
            dst_port: port(c.dst_port, "dst_port").map_err(bad)?,
            protocol: c
                .protocol
                .map(|p| {
                    Protocol::ALL
                        .into_iter()
                        .find(|k| k.as_str() == p)
                        .ok_or_else(|| format!("protocol {p:?} is not tcp, udp or icmp"))
                })
                .transpose()
                .map_err(bad)?,
            direction: match c.direction.as_str() {
                "" | "outbound" => Direction::Outbound,
                "inbound" => Direction::Inbound,
                other => {
                    return Err(bad(format!(
                        "direction {other:?} is not outbound or inbound"
                    )));
                }
            },
            app_path: c.app_path,
            app_name: c.app_name,
            app_sha256: c.app_sha256,
            cmdline: c.cmdline,
            user: c.user,
            uid: c.uid,
            parent_path: c.parent_path,
            cgroup: c.cgroup,
            unit: c.unit,
            container_id: c.container_id,
            domain: c.domain,
        };
        let action = Action::from_keyword(&e.action).ok_or_else(|| {
            bad(format!(
                "action {:?} is not allow, block, alert or log",
                e.action
            ))
        })?;
        let verdict = match e.verdict.as_str() {
            "allow" => Verdict::Allow,
            "block" => Verdict::Block,
            other => return Err(bad(format!("verdict {other:?} is not allow or block"))),
        };
        let t = e.traffic.unwrap_or_default();
        Ok(ConnectionEvent {
            seq: e.seq,
            time_ms: e.time_ms,
            connection,
            pid: e.pid,
            sni: e.sni,
            http_host: e.http_host,
            update_of: e.update_of,
            action,
            verdict,
            rule: e.rule,
            policy_version: e.policy_version,
            traffic: Traffic {
                bytes_out: t.bytes_out,
                bytes_in: t.bytes_in,
                packets_out: t.packets_out,
                packets_in: t.packets_in,
                duration_ms: t.duration_ms,
            },
        })
    }
}

fn verdict_str(v: Verdict) -> &'static str {
    match v {
        Verdict::Allow => "allow",
        Verdict::Block => "block",
    }
}

fn ip(text: Option<&str>, field: &str) -> Result<Option<IpAddr>, String> {
    text.map(|t| {
        t.parse::<IpAddr>()
            .map_err(|_| format!("{field} {t:?} is not an IP address"))
    })
    .transpose()
}

fn port(value: Option<u32>, field: &str) -> Result<Option<u16>, String> {
    value
        .map(|p| u16::try_from(p).map_err(|_| format!("{field} {p} is not a port (0-65535)")))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ConnectionEvent {
        ConnectionEvent {
            seq: 9,
            time_ms: 1_700_000_000_000,
            connection: Connection {
                app_path: Some("/usr/bin/curl".into()),
                user: Some("alice".into()),
                uid: Some(1000),
                domain: Some("example.com".into()),
                src_ip: Some("192.0.2.7".parse().unwrap()),
                src_port: Some(50_000),
                dst_ip: Some("2001:db8::1".parse().unwrap()),
                dst_port: Some(443),
                protocol: Some(Protocol::Tcp),
                direction: Direction::Inbound,
                ..Connection::default()
            },
            pid: Some(42),
            sni: Some("example.com".into()),
            http_host: Some("example.com:8080".into()),
            action: Action::Block,
            verdict: Verdict::Allow,
            rule: Some("no-curl".into()),
            policy_version: Some(3),
            update_of: Some(2),
            traffic: Traffic {
                bytes_out: 1,
                bytes_in: 2,
                packets_out: 3,
                packets_in: 4,
                duration_ms: 5,
            },
        }
    }

    #[test]
    fn events_round_trip() {
        let event = sample();
        let wire = v1::Event::from(&event);
        assert_eq!(ConnectionEvent::try_from(wire), Ok(event));
    }

    #[test]
    fn malformed_events_are_refused() {
        let mut wire = v1::Event::from(&sample());
        if let Some(c) = wire.connection.as_mut() {
            c.dst_ip = Some("300.1.1.1".into());
        }
        let err = ConnectionEvent::try_from(wire).unwrap_err();
        assert!(err.to_string().contains("dst_ip \"300.1.1.1\""), "{err}");

        let mut wire = v1::Event::from(&sample());
        if let Some(c) = wire.connection.as_mut() {
            c.dst_port = Some(70_000);
        }
        assert!(ConnectionEvent::try_from(wire).is_err());

        let mut wire = v1::Event::from(&sample());
        wire.action = "deny".into();
        assert!(ConnectionEvent::try_from(wire).is_err());
    }
}
