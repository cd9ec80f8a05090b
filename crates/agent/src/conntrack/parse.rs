//! The ctnetlink message format: netlink headers, the netfilter header and nested attributes,
//! read into [`CtEvent`]s.
//!
//! Netlink headers and attribute headers are in the host's byte order; the conntrack values
//! inside them (addresses, ports, counters, marks, ids, times) are big-endian.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{Accounting, Counters, CtEvent, Tuple};
use crate::netlink::{Attr, Framing, Message, Messages};

/// Why bytes are not a valid ctnetlink datagram. Offsets count from the start of the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CtError {
    /// A length field claims more bytes than its message or attribute holds.
    #[error("truncated at byte {offset}")]
    Truncated {
        /// Where the header with the length begins.
        offset: usize,
    },
    /// A value has a size or content the format does not allow.
    #[error("invalid {what} at byte {offset}")]
    Invalid {
        /// Where the value's attribute begins.
        offset: usize,
        /// What was wrong.
        what: &'static str,
    },
    /// A conntrack message lacks an attribute the kernel always sends.
    #[error("message at byte {offset} has no {attribute}")]
    Missing {
        /// Where the message begins.
        offset: usize,
        /// The attribute that is missing.
        attribute: &'static str,
    },
}

impl From<Framing> for CtError {
    fn from(framing: Framing) -> CtError {
        match framing {
            Framing::Truncated { offset } => CtError::Truncated { offset },
            Framing::BadLength { offset } => CtError::Invalid {
                offset,
                what: "netlink message length",
            },
        }
    }
}

impl CtError {
    /// Where in the datagram the problem is.
    pub fn offset(&self) -> usize {
        match *self {
            CtError::Truncated { offset }
            | CtError::Invalid { offset, .. }
            | CtError::Missing { offset, .. } => offset,
        }
    }
}

/// Reads every message of one netlink datagram and returns the conntrack events among them, in
/// order.
///
/// Netlink control messages, other netfilter subsystems and conntrack update messages (a
/// `NEW` without `NLM_F_CREATE`) give no event; unknown attributes are skipped. The first
/// malformed message makes the whole datagram an error.
pub fn parse(bytes: &[u8]) -> Result<Vec<CtEvent>, CtError> {
    let mut events = Vec::new();
    for message in Messages::new(bytes) {
        if let Some(event) = event(&message?)? {
            events.push(event);
        }
    }
    Ok(events)
}

/// The event `message` announces, if it is one the agent uses.
pub(super) fn event(message: &Message<'_>) -> Result<Option<CtEvent>, CtError> {
    if message.kind >> 8 != NFNL_SUBSYS_CTNETLINK {
        return Ok(None);
    }
    let destroy = match message.kind & 0xff {
        IPCTNL_MSG_CT_NEW if message.flags & NLM_F_CREATE != 0 => false,
        IPCTNL_MSG_CT_DELETE => true,
        _ => return Ok(None),
    };

    let mut orig = None;
    let mut id = None;
    let mut mark = 0;
    let mut counters_orig = None;
    let mut counters_reply = None;
    let mut start_ns = None;
    let mut stop_ns = None;
    for attr in message.attrs()? {
        let attr = attr?;
        match attr.kind {
            CTA_TUPLE_ORIG => orig = Some(tuple(&attr)?),
            CTA_ID => id = Some(attr.be_u32()?),
            CTA_MARK => mark = attr.be_u32()?,
            CTA_COUNTERS_ORIG => counters_orig = Some(counters(&attr)?),
            CTA_COUNTERS_REPLY => counters_reply = Some(counters(&attr)?),
            CTA_TIMESTAMP => {
                for inner in attr.nested() {
                    let inner = inner?;
                    match inner.kind {
                        CTA_TIMESTAMP_START => start_ns = Some(inner.be_u64()?),
                        CTA_TIMESTAMP_STOP => stop_ns = Some(inner.be_u64()?),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }

    let missing = |attribute| CtError::Missing {
        offset: message.offset,
        attribute,
    };
    let orig = orig.ok_or(missing("CTA_TUPLE_ORIG"))?;
    let id = id.ok_or(missing("CTA_ID"))?;
    if !destroy {
        return Ok(Some(CtEvent::New { id, orig, mark }));
    }
    let acct = match (counters_orig, counters_reply) {
        (Some(orig), Some(reply)) => Some(Accounting { orig, reply }),
        (None, None) => None,
        (None, Some(_)) => return Err(missing("CTA_COUNTERS_ORIG")),
        (Some(_), None) => return Err(missing("CTA_COUNTERS_REPLY")),
    };
    Ok(Some(CtEvent::Destroy {
        id,
        orig,
        mark,
        acct,
        start_ns,
        stop_ns,
    }))
}

/// Reads `CTA_TUPLE_ORIG`: `CTA_TUPLE_IP` with both addresses and `CTA_TUPLE_PROTO` with the
/// protocol number and, for protocols with ports, both ports.
fn tuple(attr: &Attr<'_>) -> Result<Tuple, CtError> {
    let mut src = None;
    let mut dst = None;
    let mut protocol = None;
    let mut src_port = 0;
    let mut dst_port = 0;
    for part in attr.nested() {
        let part = part?;
        match part.kind {
            CTA_TUPLE_IP => {
                for ip in part.nested() {
                    let ip = ip?;
                    match ip.kind {
                        CTA_IP_V4_SRC => src = Some(IpAddr::V4(ip.ipv4()?)),
                        CTA_IP_V4_DST => dst = Some(IpAddr::V4(ip.ipv4()?)),
                        CTA_IP_V6_SRC => src = Some(IpAddr::V6(ip.ipv6()?)),
                        CTA_IP_V6_DST => dst = Some(IpAddr::V6(ip.ipv6()?)),
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for proto in part.nested() {
                    let proto = proto?;
                    match proto.kind {
                        CTA_PROTO_NUM => protocol = Some(proto.u8()?),
                        CTA_PROTO_SRC_PORT => src_port = proto.be_u16()?,
                        CTA_PROTO_DST_PORT => dst_port = proto.be_u16()?,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let missing = |attribute| CtError::Missing {
        offset: attr.offset,
        attribute,
    };
    let src = src.ok_or(missing("source address"))?;
    let dst = dst.ok_or(missing("destination address"))?;
    if src.is_ipv4() != dst.is_ipv4() {
        return Err(CtError::Invalid {
            offset: attr.offset,
            what: "tuple mixing IPv4 and IPv6",
        });
    }
    Ok(Tuple {
        protocol: protocol.ok_or(missing("CTA_PROTO_NUM"))?,
        src: SocketAddr::new(src, src_port),
        dst: SocketAddr::new(dst, dst_port),
    })
}

/// Reads `CTA_COUNTERS_ORIG` or `CTA_COUNTERS_REPLY`, in their 64-bit or old 32-bit form.
fn counters(attr: &Attr<'_>) -> Result<Counters, CtError> {
    let mut packets = None;
    let mut bytes = None;
    for inner in attr.nested() {
        let inner = inner?;
        match inner.kind {
            CTA_COUNTERS_PACKETS => packets = Some(inner.be_u64()?),
            CTA_COUNTERS_BYTES => bytes = Some(inner.be_u64()?),
            CTA_COUNTERS32_PACKETS => packets = Some(u64::from(inner.be_u32()?)),
            CTA_COUNTERS32_BYTES => bytes = Some(u64::from(inner.be_u32()?)),
            _ => {}
        }
    }
    match (packets, bytes) {
        (Some(packets), Some(bytes)) => Ok(Counters { packets, bytes }),
        _ => Err(CtError::Missing {
            offset: attr.offset,
            attribute: "packet or byte counter",
        }),
    }
}

/// Reading conntrack's values (big-endian, of a fixed size) from attributes.
trait Value {
    fn fixed<const N: usize>(&self, what: &'static str) -> Result<[u8; N], CtError>;

    fn u8(&self) -> Result<u8, CtError> {
        let [value] = self.fixed::<1>("8-bit value")?;
        Ok(value)
    }

    fn be_u16(&self) -> Result<u16, CtError> {
        self.fixed("16-bit value").map(u16::from_be_bytes)
    }

    fn be_u32(&self) -> Result<u32, CtError> {
        self.fixed("32-bit value").map(u32::from_be_bytes)
    }

    fn be_u64(&self) -> Result<u64, CtError> {
        self.fixed("64-bit value").map(u64::from_be_bytes)
    }

    fn ipv4(&self) -> Result<Ipv4Addr, CtError> {
        self.fixed::<4>("IPv4 address").map(Ipv4Addr::from)
    }

    fn ipv6(&self) -> Result<Ipv6Addr, CtError> {
        self.fixed::<16>("IPv6 address").map(Ipv6Addr::from)
    }
}

impl Value for Attr<'_> {
    fn fixed<const N: usize>(&self, what: &'static str) -> Result<[u8; N], CtError> {
        <[u8; N]>::try_from(self.payload).map_err(|_| CtError::Invalid {
            offset: self.offset,
            what,
        })
    }
}

const NLM_F_CREATE: u16 = 0x400;

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_DELETE: u16 = 2;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_MARK: u16 = 8;
const CTA_COUNTERS_ORIG: u16 = 9;
const CTA_COUNTERS_REPLY: u16 = 10;
const CTA_ID: u16 = 12;
const CTA_TIMESTAMP: u16 = 20;

const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;

const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;

const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;

const CTA_COUNTERS_PACKETS: u16 = 1;
const CTA_COUNTERS_BYTES: u16 = 2;
const CTA_COUNTERS32_PACKETS: u16 = 3;
const CTA_COUNTERS32_BYTES: u16 = 4;

const CTA_TIMESTAMP_START: u16 = 1;
const CTA_TIMESTAMP_STOP: u16 = 2;

#[cfg(test)]
pub(super) mod tests {
    //! Messages built by hand as the kernel lays them out (`ctnetlink_conntrack_event`).

    use super::*;
    use crate::netlink::{NFGENMSG_LEN, NLA_HDRLEN, NLMSG_HDRLEN};

    pub(crate) fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let len = u16::try_from(NLA_HDRLEN + payload.len()).unwrap();
        let mut out = Vec::new();
        out.extend_from_slice(&len.to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(payload);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out
    }

    pub(crate) fn nest(kind: u16, children: &[Vec<u8>]) -> Vec<u8> {
        const NLA_F_NESTED: u16 = 0x8000;
        attr(kind | NLA_F_NESTED, &children.concat())
    }

    pub(crate) fn message(msg_type: u16, flags: u16, family: u8, attrs: &[Vec<u8>]) -> Vec<u8> {
        let body = attrs.concat();
        let len = u32::try_from(NLMSG_HDRLEN + NFGENMSG_LEN + body.len()).unwrap();
        let mut out = Vec::new();
        out.extend_from_slice(&len.to_ne_bytes());
        out.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | msg_type).to_ne_bytes());
        out.extend_from_slice(&flags.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes()); // sequence
        out.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
        out.extend_from_slice(&[family, 0, 0, 0]); // nfgenmsg: family, version, resource id
        out.extend_from_slice(&body);
        out
    }

    pub(crate) fn tuple_attr(src: SocketAddr, dst: SocketAddr, protocol: u8) -> Vec<u8> {
        let ip = match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => vec![
                attr(CTA_IP_V4_SRC, &s.octets()),
                attr(CTA_IP_V4_DST, &d.octets()),
            ],
            (IpAddr::V6(s), IpAddr::V6(d)) => vec![
                attr(CTA_IP_V6_SRC, &s.octets()),
                attr(CTA_IP_V6_DST, &d.octets()),
            ],
            _ => panic!("mixed families"),
        };
        nest(
            CTA_TUPLE_ORIG,
            &[
                nest(CTA_TUPLE_IP, &ip),
                nest(
                    CTA_TUPLE_PROTO,
                    &[
                        attr(CTA_PROTO_NUM, &[protocol]),
                        attr(CTA_PROTO_SRC_PORT, &src.port().to_be_bytes()),
                        attr(CTA_PROTO_DST_PORT, &dst.port().to_be_bytes()),
                    ],
                ),
            ],
        )
    }

    pub(crate) fn counters_attr(kind: u16, packets: u64, bytes: u64) -> Vec<u8> {
        nest(
            kind,
            &[
                attr(CTA_COUNTERS_PACKETS, &packets.to_be_bytes()),
                attr(CTA_COUNTERS_BYTES, &bytes.to_be_bytes()),
            ],
        )
    }

    /// A DESTROY message for a TCP connection 10.0.0.5:40000 -> 93.184.216.34:443 with
    /// counters, timestamps and a mark, as a kernel with accounting and timestamps sends it.
    pub(crate) fn destroy_v4(id: u32) -> Vec<u8> {
        let src: SocketAddr = "10.0.0.5:40000".parse().unwrap();
        let dst: SocketAddr = "93.184.216.34:443".parse().unwrap();
        message(
            IPCTNL_MSG_CT_DELETE,
            0,
            AF_INET,
            &[
                tuple_attr(src, dst, 6),
                tuple_attr_reply(dst, src),
                attr(CTA_STATUS, &0x18eu32.to_be_bytes()),
                counters_attr(CTA_COUNTERS_ORIG, 12, 1_840),
                counters_attr(CTA_COUNTERS_REPLY, 10, 48_211),
                nest(
                    CTA_TIMESTAMP,
                    &[
                        attr(
                            CTA_TIMESTAMP_START,
                            &1_700_000_000_000_000_000u64.to_be_bytes(),
                        ),
                        attr(
                            CTA_TIMESTAMP_STOP,
                            &1_700_000_002_500_000_000u64.to_be_bytes(),
                        ),
                    ],
                ),
                attr(CTA_MARK, &0x0000_0002u32.to_be_bytes()),
                attr(CTA_ID, &id.to_be_bytes()),
            ],
        )
    }

    fn tuple_attr_reply(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
        let mut reply = tuple_attr(src, dst, 6);
        // Same layout under CTA_TUPLE_REPLY (type 2), which the parser does not need.
        reply.splice(2..4, (CTA_TUPLE_REPLY | 0x8000).to_ne_bytes());
        reply
    }

    const AF_INET: u8 = 2;
    const AF_INET6: u8 = 10;
    const CTA_TUPLE_REPLY: u16 = 2;
    const CTA_STATUS: u16 = 3;
    const CTA_PROTOINFO: u16 = 4;
    const NLMSG_DONE: u16 = 3;

    #[test]
    fn a_new_ipv4_connection_gives_its_original_tuple_and_id() {
        let bytes = message(
            IPCTNL_MSG_CT_NEW,
            NLM_F_CREATE | 0x200,
            AF_INET,
            &[
                tuple_attr(
                    "192.168.1.20:51000".parse().unwrap(),
                    "1.1.1.1:53".parse().unwrap(),
                    17,
                ),
                attr(CTA_ID, &77u32.to_be_bytes()),
            ],
        );
        assert_eq!(
            parse(&bytes).unwrap(),
            vec![CtEvent::New {
                id: 77,
                orig: Tuple {
                    protocol: 17,
                    src: "192.168.1.20:51000".parse().unwrap(),
                    dst: "1.1.1.1:53".parse().unwrap(),
                },
                mark: 0,
            }]
        );
    }

    #[test]
    fn a_destroyed_connection_gives_counters_times_and_mark() {
        let events = parse(&destroy_v4(9)).unwrap();
        let [
            CtEvent::Destroy {
                id,
                orig,
                mark,
                acct,
                start_ns,
                stop_ns,
            },
        ] = events.as_slice()
        else {
            panic!("expected one destroy event, got {events:?}");
        };
        assert_eq!(*id, 9);
        assert_eq!(*mark, 2);
        assert_eq!(orig.src, "10.0.0.5:40000".parse().unwrap());
        assert_eq!(orig.dst, "93.184.216.34:443".parse().unwrap());
        let acct = acct.unwrap();
        assert_eq!(
            (
                acct.orig.packets,
                acct.orig.bytes,
                acct.reply.packets,
                acct.reply.bytes
            ),
            (12, 1_840, 10, 48_211)
        );
        assert_eq!(
            stop_ns.unwrap() - start_ns.unwrap(),
            2_500_000_000,
            "connection lasted 2.5 s"
        );
    }

    #[test]
    fn an_ipv6_destroy_without_accounting_has_no_counters() {
        let src: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        let dst: SocketAddr = "[2001:db8::2]:60000".parse().unwrap();
        let bytes = message(
            IPCTNL_MSG_CT_DELETE,
            0,
            AF_INET6,
            &[tuple_attr(src, dst, 6), attr(CTA_ID, &5u32.to_be_bytes())],
        );
        assert_eq!(
            parse(&bytes).unwrap(),
            vec![CtEvent::Destroy {
                id: 5,
                orig: Tuple {
                    protocol: 6,
                    src,
                    dst
                },
                mark: 0,
                acct: None,
                start_ns: None,
                stop_ns: None,
            }]
        );
    }

    #[test]
    fn icmp_has_no_ports_and_unknown_attributes_are_skipped() {
        let bytes = message(
            IPCTNL_MSG_CT_NEW,
            NLM_F_CREATE,
            AF_INET,
            &[
                attr(999, b"future attribute"),
                nest(
                    CTA_TUPLE_ORIG,
                    &[
                        nest(
                            CTA_TUPLE_IP,
                            &[
                                attr(CTA_IP_V4_SRC, &[10, 0, 0, 5]),
                                attr(CTA_IP_V4_DST, &[8, 8, 8, 8]),
                            ],
                        ),
                        nest(
                            CTA_TUPLE_PROTO,
                            &[
                                attr(CTA_PROTO_NUM, &[1]),
                                attr(4, &0x1234u16.to_be_bytes()), // CTA_PROTO_ICMP_ID
                                attr(5, &[8]),                     // CTA_PROTO_ICMP_TYPE
                            ],
                        ),
                        attr(3, &1u16.to_be_bytes()), // CTA_TUPLE_ZONE
                    ],
                ),
                nest(CTA_PROTOINFO, &[nest(1, &[attr(1, &[3])])]),
                attr(CTA_ID, &1u32.to_be_bytes()),
            ],
        );
        let events = parse(&bytes).unwrap();
        let [CtEvent::New { orig, .. }] = events.as_slice() else {
            panic!("expected one new event, got {events:?}");
        };
        assert_eq!(orig.protocol, 1);
        assert_eq!(orig.src, "10.0.0.5:0".parse().unwrap());
        assert_eq!(orig.dst, "8.8.8.8:0".parse().unwrap());
    }

    #[test]
    fn updates_control_messages_and_other_subsystems_give_no_event() {
        let tuple = tuple_attr(
            "10.0.0.5:1".parse().unwrap(),
            "10.0.0.6:2".parse().unwrap(),
            6,
        );
        let id = attr(CTA_ID, &1u32.to_be_bytes());
        let update = message(IPCTNL_MSG_CT_NEW, 0, AF_INET, &[tuple.clone(), id.clone()]);
        let mut done = message(0, 0, AF_INET, &[]);
        done.splice(4..6, NLMSG_DONE.to_ne_bytes());
        let mut expectation = message(IPCTNL_MSG_CT_NEW, NLM_F_CREATE, AF_INET, &[tuple, id]);
        expectation.splice(4..6, (2u16 << 8).to_ne_bytes()); // NFNL_SUBSYS_CTNETLINK_EXP
        let datagram = [update, done, expectation, destroy_v4(4)].concat();
        let events = parse(&datagram).unwrap();
        assert_eq!(events.len(), 1);
        assert!(matches!(events[0], CtEvent::Destroy { id: 4, .. }));
    }

    #[test]
    fn several_messages_in_one_datagram_come_out_in_order() {
        let datagram = [destroy_v4(1), destroy_v4(2), destroy_v4(3)].concat();
        let ids: Vec<u32> = parse(&datagram)
            .unwrap()
            .iter()
            .map(|event| match event {
                CtEvent::New { id, .. } | CtEvent::Destroy { id, .. } => *id,
            })
            .collect();
        assert_eq!(ids, [1, 2, 3]);
    }

    #[test]
    fn a_cut_datagram_is_truncated_at_the_message_start() {
        let datagram = [destroy_v4(1), destroy_v4(2)].concat();
        let second = destroy_v4(1).len();
        for cut in [datagram.len() - 1, second + 20, second + 3] {
            assert_eq!(
                parse(&datagram[..cut]),
                Err(CtError::Truncated { offset: second }),
                "cut at {cut}"
            );
        }
        assert_eq!(parse(&[]), Ok(vec![]));
    }

    #[test]
    fn an_attribute_longer_than_its_message_is_truncated() {
        let mut bytes = destroy_v4(1);
        // The first attribute (CTA_TUPLE_ORIG) claims 4 bytes more than the message holds.
        let first = NLMSG_HDRLEN + NFGENMSG_LEN;
        let rest = u16::try_from(bytes.len() - first + 4).unwrap();
        bytes.splice(first..first + 2, rest.to_ne_bytes());
        assert_eq!(parse(&bytes), Err(CtError::Truncated { offset: first }));
    }

    #[test]
    fn an_attribute_shorter_than_its_header_is_truncated() {
        let mut bytes = destroy_v4(1);
        let first = NLMSG_HDRLEN + NFGENMSG_LEN;
        bytes.splice(first..first + 2, 2u16.to_ne_bytes());
        assert_eq!(parse(&bytes), Err(CtError::Truncated { offset: first }));
    }

    #[test]
    fn wrong_sized_values_and_missing_attributes_are_refused() {
        let src: SocketAddr = "10.0.0.5:1".parse().unwrap();
        let dst: SocketAddr = "10.0.0.6:2".parse().unwrap();
        let short_id = message(
            IPCTNL_MSG_CT_DELETE,
            0,
            AF_INET,
            &[tuple_attr(src, dst, 6), attr(CTA_ID, &[0, 1])],
        );
        assert!(matches!(
            parse(&short_id),
            Err(CtError::Invalid {
                what: "32-bit value",
                ..
            })
        ));
        let no_tuple = message(
            IPCTNL_MSG_CT_DELETE,
            0,
            AF_INET,
            &[attr(CTA_ID, &1u32.to_be_bytes())],
        );
        assert_eq!(
            parse(&no_tuple),
            Err(CtError::Missing {
                offset: 0,
                attribute: "CTA_TUPLE_ORIG"
            })
        );
        let one_sided = message(
            IPCTNL_MSG_CT_DELETE,
            0,
            AF_INET,
            &[
                tuple_attr(src, dst, 6),
                counters_attr(CTA_COUNTERS_ORIG, 1, 60),
                attr(CTA_ID, &1u32.to_be_bytes()),
            ],
        );
        assert!(matches!(
            parse(&one_sided),
            Err(CtError::Missing {
                attribute: "CTA_COUNTERS_REPLY",
                ..
            })
        ));
    }

    #[test]
    fn a_message_length_below_the_header_is_invalid() {
        let mut bytes = destroy_v4(1);
        bytes.splice(0..4, 8u32.to_ne_bytes());
        assert!(matches!(
            parse(&bytes),
            Err(CtError::Invalid { offset: 0, .. })
        ));
    }

    /// Parses a datagram of 40 DESTROY messages over and over and prints the rate.
    #[test]
    #[ignore = "measurement; run with --ignored --nocapture in release"]
    #[allow(clippy::disallowed_methods, reason = "a measurement reads the clock")]
    fn parse_rate() {
        let datagram: Vec<u8> = (0..40).flat_map(destroy_v4).collect();
        let rounds = 50_000;
        let start = std::time::Instant::now();
        let mut events = 0;
        for _ in 0..rounds {
            events += std::hint::black_box(parse(std::hint::black_box(&datagram)))
                .unwrap()
                .len();
        }
        let elapsed = start.elapsed();
        println!(
            "{events} DESTROY events ({} bytes each) in {elapsed:?}: {:.0} events/s",
            destroy_v4(0).len(),
            events as f64 / elapsed.as_secs_f64()
        );
        assert_eq!(events, 40 * rounds);
    }
}
