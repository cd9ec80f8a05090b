//! The typed records of conn, dns, ssl and http logs: the fields detection uses, by Zeek's names.

use std::net::IpAddr;

use serde::Serialize;

use super::fields::{
    Row, addr, boolean, count, interval, intervals, port, required, string, strings, time,
};
use super::{LineError, LogKind};

/// A connection's endpoints (Zeek's `id` record): `id.orig_h`, `id.orig_p`, `id.resp_h`,
/// `id.resp_p`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct ConnId {
    /// The originator's (client's) address.
    pub orig_h: IpAddr,
    /// The originator's port (for ICMP, the message type).
    pub orig_p: u16,
    /// The responder's (server's) address.
    pub resp_h: IpAddr,
    /// The responder's port (for ICMP, the code).
    pub resp_p: u16,
}

/// One line of `conn.log`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conn {
    /// First packet, seconds since the Unix epoch.
    pub ts: f64,
    /// Zeek's connection id, shared with the other logs' lines about this connection.
    pub uid: String,
    /// The endpoints.
    pub id: ConnId,
    /// Transport protocol: `tcp`, `udp` or `icmp`.
    pub proto: String,
    /// Protocols recognised on it (`http,ssl`), if any.
    pub service: Option<String>,
    /// Seconds from first to last packet, when known.
    pub duration: Option<f64>,
    /// Payload bytes the originator sent.
    pub orig_bytes: Option<u64>,
    /// Payload bytes the responder sent.
    pub resp_bytes: Option<u64>,
    /// Zeek's connection state (`SF`, `S0`, `RSTO`, ...).
    pub conn_state: Option<String>,
    /// Packets the originator sent.
    pub orig_pkts: Option<u64>,
    /// IP-level bytes the originator sent (headers included).
    pub orig_ip_bytes: Option<u64>,
    /// Packets the responder sent.
    pub resp_pkts: Option<u64>,
    /// IP-level bytes the responder sent (headers included).
    pub resp_ip_bytes: Option<u64>,
}

/// One line of `dns.log`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dns {
    /// The query, seconds since the Unix epoch.
    pub ts: f64,
    /// Zeek's connection id.
    pub uid: String,
    /// The endpoints.
    pub id: ConnId,
    /// Transport protocol: `udp` or `tcp`.
    pub proto: String,
    /// The name asked for.
    pub query: Option<String>,
    /// The query type by name (`A`, `AAAA`, `TXT`, ...).
    pub qtype_name: Option<String>,
    /// The response code by name (`NOERROR`, `NXDOMAIN`, ...).
    pub rcode_name: Option<String>,
    /// The answers (addresses, names, texts), in order.
    pub answers: Vec<String>,
    /// The answers' TTLs in seconds, in the same order.
    pub ttls: Vec<f64>,
}

/// One line of `ssl.log`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ssl {
    /// The handshake, seconds since the Unix epoch.
    pub ts: f64,
    /// Zeek's connection id.
    pub uid: String,
    /// The endpoints.
    pub id: ConnId,
    /// Negotiated version (`TLSv13`, ...).
    pub version: Option<String>,
    /// Server name indication: the name the client asked for.
    pub server_name: Option<String>,
    /// Whether the handshake completed.
    pub established: Option<bool>,
}

/// One line of `http.log`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Http {
    /// The request, seconds since the Unix epoch.
    pub ts: f64,
    /// Zeek's connection id.
    pub uid: String,
    /// The endpoints.
    pub id: ConnId,
    /// Request method (`GET`, `CONNECT`, ...).
    pub method: Option<String>,
    /// The Host header: through a proxy, the real destination.
    pub host: Option<String>,
    /// Request target.
    pub uri: Option<String>,
    /// User-Agent header.
    pub user_agent: Option<String>,
    /// Response status code.
    pub status_code: Option<u64>,
    /// Request body bytes.
    pub request_body_len: Option<u64>,
    /// Response body bytes.
    pub response_body_len: Option<u64>,
}

/// A record of any of the logs read.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "log", rename_all = "lowercase")]
pub enum Record {
    /// A `conn.log` line.
    Conn(Conn),
    /// A `dns.log` line.
    Dns(Dns),
    /// An `ssl.log` line.
    Ssl(Ssl),
    /// An `http.log` line.
    Http(Http),
}

impl Record {
    pub(crate) fn parse(kind: LogKind, row: &impl Row) -> Result<Record, LineError> {
        Ok(match kind {
            LogKind::Conn => Record::Conn(Conn {
                ts: time(row, "ts")?,
                uid: required(row, "uid")?.into_owned(),
                id: conn_id(row)?,
                proto: required(row, "proto")?.into_owned(),
                service: string(row, "service")?,
                duration: interval(row, "duration")?,
                orig_bytes: count(row, "orig_bytes")?,
                resp_bytes: count(row, "resp_bytes")?,
                conn_state: string(row, "conn_state")?,
                orig_pkts: count(row, "orig_pkts")?,
                orig_ip_bytes: count(row, "orig_ip_bytes")?,
                resp_pkts: count(row, "resp_pkts")?,
                resp_ip_bytes: count(row, "resp_ip_bytes")?,
            }),
            LogKind::Dns => Record::Dns(Dns {
                ts: time(row, "ts")?,
                uid: required(row, "uid")?.into_owned(),
                id: conn_id(row)?,
                proto: required(row, "proto")?.into_owned(),
                query: string(row, "query")?,
                qtype_name: string(row, "qtype_name")?,
                rcode_name: string(row, "rcode_name")?,
                answers: strings(row, "answers")?,
                ttls: intervals(row, "TTLs")?,
            }),
            LogKind::Ssl => Record::Ssl(Ssl {
                ts: time(row, "ts")?,
                uid: required(row, "uid")?.into_owned(),
                id: conn_id(row)?,
                version: string(row, "version")?,
                server_name: string(row, "server_name")?,
                established: boolean(row, "established")?,
            }),
            LogKind::Http => Record::Http(Http {
                ts: time(row, "ts")?,
                uid: required(row, "uid")?.into_owned(),
                id: conn_id(row)?,
                method: string(row, "method")?,
                host: string(row, "host")?,
                uri: string(row, "uri")?,
                user_agent: string(row, "user_agent")?,
                status_code: count(row, "status_code")?,
                request_body_len: count(row, "request_body_len")?,
                response_body_len: count(row, "response_body_len")?,
            }),
        })
    }
}

fn conn_id(row: &impl Row) -> Result<ConnId, LineError> {
    Ok(ConnId {
        orig_h: addr(row, "id.orig_h")?,
        orig_p: port(row, "id.orig_p")?,
        resp_h: addr(row, "id.resp_h")?,
        resp_p: port(row, "id.resp_p")?,
    })
}
