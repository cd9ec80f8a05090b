//! The facts about one connection that a policy can match on.
//!
//! Field names are the names used in the policy language and in the JSON that `palisade policy
//! eval --conn` reads, so one vocabulary serves rules, events and the command line.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// One connection as the endpoint sees it: the application behind it and where it goes.
///
/// For an outbound connection `dst_*` is the remote peer; for an inbound one `dst_*` is the local
/// address and port that was connected to and `src_ip` is the remote peer. Every field is
/// optional because not every enforcement point knows everything (a network sensor has no
/// process, a packet without DNS has no domain).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    /// Absolute path of the executable that owns the socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_path: Option<String>,
    /// Process name; [`Connection::normalize`] derives it from `app_path` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_name: Option<String>,
    /// SHA-256 of the executable, lowercase hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_sha256: Option<String>,
    /// Full command line, arguments separated by spaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    /// Name of the user the process runs as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Numeric user id the process runs as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Executable path of the parent process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_path: Option<String>,
    /// The process's cgroup path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// The systemd unit the process belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// The container the process runs in, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// The domain name the remote address was resolved from (lowercase, no trailing dot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Source address of the connection's first packet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_ip: Option<IpAddr>,
    /// Source port of the connection's first packet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_port: Option<u16>,
    /// Destination address of the connection's first packet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_ip: Option<IpAddr>,
    /// Destination port of the connection's first packet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_port: Option<u16>,
    /// Transport protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// Whether the local endpoint opened the connection (outbound) or accepted it (inbound).
    #[serde(default)]
    pub direction: Direction,
}

impl Connection {
    /// Brings the fields into the form the policy engine compares against: the domain in lower
    /// case without a trailing dot, the executable hash in lower case, IPv4-mapped IPv6
    /// addresses as IPv4, and `app_name` taken from the last component of `app_path` when it
    /// was not given.
    ///
    /// ```
    /// use palisade_proto::Connection;
    ///
    /// let conn = Connection {
    ///     app_path: Some("/usr/bin/curl".into()),
    ///     domain: Some("WWW.Example.com.".into()),
    ///     ..Connection::default()
    /// }
    /// .normalize();
    /// assert_eq!(conn.domain.as_deref(), Some("www.example.com"));
    /// assert_eq!(conn.app_name.as_deref(), Some("curl"));
    /// ```
    pub fn normalize(mut self) -> Self {
        if let Some(domain) = self.domain.take() {
            let trimmed = domain.trim_end_matches('.').to_ascii_lowercase();
            self.domain = (!trimmed.is_empty()).then_some(trimmed);
        }
        if let Some(hash) = &mut self.app_sha256 {
            hash.make_ascii_lowercase();
        }
        self.src_ip = self.src_ip.map(|ip| ip.to_canonical());
        self.dst_ip = self.dst_ip.map(|ip| ip.to_canonical());
        if self.app_name.is_none() {
            self.app_name = self
                .app_path
                .as_deref()
                .and_then(|path| path.rsplit('/').next())
                .filter(|name| !name.is_empty())
                .map(str::to_owned);
        }
        self
    }

    /// The address of the other side: `dst_ip` for outbound connections, `src_ip` for inbound.
    pub fn remote_ip(&self) -> Option<IpAddr> {
        match self.direction {
            Direction::Outbound => self.dst_ip,
            Direction::Inbound => self.src_ip,
        }
    }

    /// Where the other side is: this host, the local network, or the internet.
    pub fn scope(&self) -> Option<Scope> {
        self.remote_ip().map(Scope::of)
    }
}

/// Transport protocol of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP or ICMPv6.
    Icmp,
}

impl Protocol {
    /// Every protocol.
    pub const ALL: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Icmp];

    /// The keyword used in policies and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
        }
    }
}

/// Which side opened the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Opened by a local application.
    #[default]
    Outbound,
    /// Accepted by a local application.
    Inbound,
}

impl Direction {
    /// Both directions.
    pub const ALL: [Direction; 2] = [Direction::Outbound, Direction::Inbound];

    /// The keyword used in policies and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }
}

/// Where the remote side of a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// This host: loopback and unspecified addresses.
    Localhost,
    /// The local network: private, link-local, unique-local, shared (CGNAT), multicast and
    /// broadcast addresses.
    Lan,
    /// Everything else.
    Internet,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 3] = [Scope::Localhost, Scope::Lan, Scope::Internet];

    /// The keyword used in policies and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Localhost => "localhost",
            Scope::Lan => "lan",
            Scope::Internet => "internet",
        }
    }

    /// Classifies an address. IPv4-mapped IPv6 addresses are classified as their IPv4 address.
    ///
    /// ```
    /// use palisade_proto::Scope;
    ///
    /// assert_eq!(Scope::of("127.0.0.1".parse().unwrap()), Scope::Localhost);
    /// assert_eq!(Scope::of("192.168.1.10".parse().unwrap()), Scope::Lan);
    /// assert_eq!(Scope::of("::ffff:10.0.0.1".parse().unwrap()), Scope::Lan);
    /// assert_eq!(Scope::of("93.184.215.14".parse().unwrap()), Scope::Internet);
    /// ```
    pub fn of(ip: IpAddr) -> Scope {
        match ip {
            IpAddr::V4(v4) => Scope::of_v4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Scope::of_v4(v4),
                None => Scope::of_v6(v6),
            },
        }
    }

    fn of_v4(ip: Ipv4Addr) -> Scope {
        let [a, b, ..] = ip.octets();
        if ip.is_loopback() || ip.is_unspecified() {
            Scope::Localhost
        } else if ip.is_private()
            || ip.is_link_local()
            || ip.is_multicast()
            || ip.is_broadcast()
            || (a == 100 && (64..128).contains(&b))
        {
            Scope::Lan
        } else {
            Scope::Internet
        }
    }

    fn of_v6(ip: Ipv6Addr) -> Scope {
        let first = ip.segments()[0];
        if ip.is_loopback() || ip.is_unspecified() {
            Scope::Localhost
        } else if ip.is_multicast() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80 {
            Scope::Lan
        } else {
            Scope::Internet
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(ip: &str) -> Scope {
        Scope::of(ip.parse().unwrap())
    }

    #[test]
    fn scopes_of_well_known_addresses() {
        assert_eq!(scope("127.0.0.1"), Scope::Localhost);
        assert_eq!(scope("::1"), Scope::Localhost);
        assert_eq!(scope("10.1.2.3"), Scope::Lan);
        assert_eq!(scope("172.20.0.1"), Scope::Lan);
        assert_eq!(scope("192.168.1.1"), Scope::Lan);
        assert_eq!(scope("100.64.0.1"), Scope::Lan);
        assert_eq!(scope("169.254.1.1"), Scope::Lan);
        assert_eq!(scope("fe80::1"), Scope::Lan);
        assert_eq!(scope("fd00::1"), Scope::Lan);
        assert_eq!(scope("::ffff:192.168.0.1"), Scope::Lan);
        assert_eq!(scope("93.184.215.14"), Scope::Internet);
        assert_eq!(scope("2606:2800:220:1::"), Scope::Internet);
        assert_eq!(scope("100.128.0.1"), Scope::Internet);
    }

    #[test]
    fn normalize_lowercases_domain_and_derives_name() {
        let conn = Connection {
            app_path: Some("/usr/bin/curl".into()),
            domain: Some("Example.COM.".into()),
            app_sha256: Some("ABCDEF".into()),
            dst_ip: Some("::ffff:10.0.0.1".parse().unwrap()),
            ..Connection::default()
        }
        .normalize();
        assert_eq!(conn.app_sha256.as_deref(), Some("abcdef"));
        assert_eq!(conn.dst_ip, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(conn.domain.as_deref(), Some("example.com"));
        assert_eq!(conn.app_name.as_deref(), Some("curl"));
    }

    #[test]
    fn unknown_json_fields_are_rejected() {
        let err = serde_json::from_str::<Connection>(r#"{"dst_prot": 443}"#).unwrap_err();
        assert!(err.to_string().contains("dst_prot"), "{err}");
    }

    #[test]
    fn inbound_scope_looks_at_the_source() {
        let conn = Connection {
            direction: Direction::Inbound,
            src_ip: Some("8.8.8.8".parse().unwrap()),
            dst_ip: Some("192.168.1.5".parse().unwrap()),
            ..Connection::default()
        };
        assert_eq!(conn.scope(), Some(Scope::Internet));
    }
}
