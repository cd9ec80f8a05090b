//! The connection fields a policy can name, their types and how to read them from a connection.

use std::fmt;
use std::net::IpAddr;

use palisade_proto::{Connection, Direction, Protocol};

use crate::condition::Scalar;

/// A field of a [`Connection`] that rules and conditions can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// Executable path.
    AppPath,
    /// Process name.
    AppName,
    /// SHA-256 of the executable.
    AppSha256,
    /// Command line.
    Cmdline,
    /// User name.
    User,
    /// Numeric user id.
    Uid,
    /// Parent executable path.
    ParentPath,
    /// Cgroup path.
    Cgroup,
    /// Systemd unit.
    Unit,
    /// Container id.
    ContainerId,
    /// Domain name of the remote side.
    Domain,
    /// Source address.
    SrcIp,
    /// Source port.
    SrcPort,
    /// Destination address.
    DstIp,
    /// Destination port.
    DstPort,
    /// Transport protocol.
    Protocol,
    /// Outbound or inbound.
    Direction,
    /// Where the remote side is (derived from its address).
    Scope,
}

/// The type of a field's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text.
    Text,
    /// A non-negative integer no larger than `max`.
    Int {
        /// Largest valid value.
        max: u64,
    },
    /// An IP address.
    Ip,
    /// One of a fixed set of keywords.
    Keyword(&'static [&'static str]),
}

/// A field's value in one connection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldValue<'a> {
    /// Text.
    Text(&'a str),
    /// An integer.
    Int(u64),
    /// An address.
    Ip(IpAddr),
    /// A keyword (`tcp`, `outbound`, `lan`, ...).
    Keyword(&'static str),
}

impl fmt::Display for FieldValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldValue::Text(s) => f.write_str(&crate::source::quote(s)),
            FieldValue::Int(i) => write!(f, "{i}"),
            FieldValue::Ip(ip) => write!(f, "{ip}"),
            FieldValue::Keyword(k) => f.write_str(k),
        }
    }
}

const PROTOCOLS: &[&str] = &["tcp", "udp", "icmp"];
const DIRECTIONS: &[&str] = &["outbound", "inbound"];
const SCOPES: &[&str] = &["localhost", "lan", "internet"];

impl Field {
    /// Every field, in the order the language reference lists them.
    pub const ALL: [Field; 18] = [
        Field::AppPath,
        Field::AppName,
        Field::AppSha256,
        Field::Cmdline,
        Field::User,
        Field::Uid,
        Field::ParentPath,
        Field::Cgroup,
        Field::Unit,
        Field::ContainerId,
        Field::Domain,
        Field::SrcIp,
        Field::SrcPort,
        Field::DstIp,
        Field::DstPort,
        Field::Protocol,
        Field::Direction,
        Field::Scope,
    ];

    /// The field's name in policies and connection JSON.
    pub fn name(self) -> &'static str {
        match self {
            Field::AppPath => "app_path",
            Field::AppName => "app_name",
            Field::AppSha256 => "app_sha256",
            Field::Cmdline => "cmdline",
            Field::User => "user",
            Field::Uid => "uid",
            Field::ParentPath => "parent_path",
            Field::Cgroup => "cgroup",
            Field::Unit => "unit",
            Field::ContainerId => "container_id",
            Field::Domain => "domain",
            Field::SrcIp => "src_ip",
            Field::SrcPort => "src_port",
            Field::DstIp => "dst_ip",
            Field::DstPort => "dst_port",
            Field::Protocol => "protocol",
            Field::Direction => "direction",
            Field::Scope => "scope",
        }
    }

    /// Looks a field up by name.
    pub fn from_name(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The type of the field's values.
    pub fn kind(self) -> Kind {
        match self {
            Field::Uid => Kind::Int {
                max: u64::from(u32::MAX),
            },
            Field::SrcPort | Field::DstPort => Kind::Int {
                max: u64::from(u16::MAX),
            },
            Field::SrcIp | Field::DstIp => Kind::Ip,
            Field::Protocol => Kind::Keyword(PROTOCOLS),
            Field::Direction => Kind::Keyword(DIRECTIONS),
            Field::Scope => Kind::Keyword(SCOPES),
            _ => Kind::Text,
        }
    }

    /// The field's value in `conn`, if the connection has one.
    pub fn get(self, conn: &Connection) -> Option<FieldValue<'_>> {
        fn text(v: &Option<String>) -> Option<FieldValue<'_>> {
            v.as_deref().map(FieldValue::Text)
        }
        match self {
            Field::AppPath => text(&conn.app_path),
            Field::AppName => text(&conn.app_name),
            Field::AppSha256 => text(&conn.app_sha256),
            Field::Cmdline => text(&conn.cmdline),
            Field::User => text(&conn.user),
            Field::Uid => conn.uid.map(|u| FieldValue::Int(u64::from(u))),
            Field::ParentPath => text(&conn.parent_path),
            Field::Cgroup => text(&conn.cgroup),
            Field::Unit => text(&conn.unit),
            Field::ContainerId => text(&conn.container_id),
            Field::Domain => text(&conn.domain),
            Field::SrcIp => conn.src_ip.map(FieldValue::Ip),
            Field::SrcPort => conn.src_port.map(|p| FieldValue::Int(u64::from(p))),
            Field::DstIp => conn.dst_ip.map(FieldValue::Ip),
            Field::DstPort => conn.dst_port.map(|p| FieldValue::Int(u64::from(p))),
            Field::Protocol => conn.protocol.map(|p| FieldValue::Keyword(p.as_str())),
            Field::Direction => Some(FieldValue::Keyword(conn.direction.as_str())),
            Field::Scope => conn.scope().map(|s| FieldValue::Keyword(s.as_str())),
        }
    }

    /// The address this field names in `conn`: `src_ip` for [`Field::SrcIp`], otherwise
    /// `dst_ip`.
    pub fn address(self, conn: &Connection) -> Option<IpAddr> {
        if self == Field::SrcIp {
            conn.src_ip
        } else {
            conn.dst_ip
        }
    }

    /// The port this field names in `conn`: `src_port` for [`Field::SrcPort`], otherwise
    /// `dst_port`.
    pub fn port(self, conn: &Connection) -> Option<u16> {
        if self == Field::SrcPort {
            conn.src_port
        } else {
            conn.dst_port
        }
    }

    /// Sets the field in `conn` from a value of the field's kind (keywords as text). Returns an
    /// error for values of the wrong type and for `scope`, which is derived.
    pub fn set(self, conn: &mut Connection, value: &Scalar) -> Result<(), String> {
        let wrong = || format!("{} cannot be set to {value}", self.name());
        match (self, value) {
            (Field::Scope, _) => {
                Err("scope is derived from the remote address; set dst_ip or src_ip".into())
            }
            (Field::Uid, Scalar::Int(i)) => {
                conn.uid = Some(u32::try_from(*i).map_err(|_| wrong())?);
                Ok(())
            }
            (Field::SrcPort | Field::DstPort, Scalar::Int(i)) => {
                let port = u16::try_from(*i).map_err(|_| wrong())?;
                *if self == Field::SrcPort {
                    &mut conn.src_port
                } else {
                    &mut conn.dst_port
                } = Some(port);
                Ok(())
            }
            (Field::SrcIp | Field::DstIp, Scalar::Ip(ip)) => {
                *if self == Field::SrcIp {
                    &mut conn.src_ip
                } else {
                    &mut conn.dst_ip
                } = Some(*ip);
                Ok(())
            }
            (Field::Protocol, Scalar::Text(k)) => {
                let protocol = Protocol::ALL.into_iter().find(|p| p.as_str() == k);
                conn.protocol = Some(protocol.ok_or_else(wrong)?);
                Ok(())
            }
            (Field::Direction, Scalar::Text(k)) => {
                let direction = Direction::ALL.into_iter().find(|d| d.as_str() == k);
                conn.direction = direction.ok_or_else(wrong)?;
                Ok(())
            }
            (_, Scalar::Text(s)) => {
                let slot = match self {
                    Field::AppPath => &mut conn.app_path,
                    Field::AppName => &mut conn.app_name,
                    Field::AppSha256 => &mut conn.app_sha256,
                    Field::Cmdline => &mut conn.cmdline,
                    Field::User => &mut conn.user,
                    Field::ParentPath => &mut conn.parent_path,
                    Field::Cgroup => &mut conn.cgroup,
                    Field::Unit => &mut conn.unit,
                    Field::ContainerId => &mut conn.container_id,
                    Field::Domain => &mut conn.domain,
                    _ => return Err(wrong()),
                };
                *slot = Some(s.clone());
                Ok(())
            }
            _ => Err(wrong()),
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_round_trips_by_name() {
        for field in Field::ALL {
            assert_eq!(Field::from_name(field.name()), Some(field));
        }
        assert_eq!(Field::from_name("port"), None);
    }

    #[test]
    fn set_then_get_returns_the_value() {
        let mut conn = Connection::default();
        Field::DstPort.set(&mut conn, &Scalar::Int(443)).unwrap();
        Field::Unit
            .set(&mut conn, &Scalar::Text("sshd.service".into()))
            .unwrap();
        Field::Protocol
            .set(&mut conn, &Scalar::Text("udp".into()))
            .unwrap();
        assert_eq!(Field::DstPort.get(&conn), Some(FieldValue::Int(443)));
        assert_eq!(
            Field::Unit.get(&conn),
            Some(FieldValue::Text("sshd.service"))
        );
        assert_eq!(Field::Protocol.get(&conn), Some(FieldValue::Keyword("udp")));
        assert!(Field::DstPort.set(&mut conn, &Scalar::Int(70_000)).is_err());
        assert!(
            Field::Scope
                .set(&mut conn, &Scalar::Text("lan".into()))
                .is_err()
        );
    }
}
