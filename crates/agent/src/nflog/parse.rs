//! The nfnetlink_log message format: netlink headers, the netfilter header and attributes, read
//! into the bytes of the logged packets (`NFULA_PAYLOAD`, the packet from its IP header on).
//!
//! Netlink headers and attribute headers are in the host's byte order.

use crate::netlink::{self, Framing, Messages, ne_u32};

/// Why bytes are not a valid nfnetlink_log datagram. Offsets count from the start of the
/// datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NflogError {
    /// A length field claims more bytes than its message or attribute holds.
    #[error("truncated at byte {offset}")]
    Truncated {
        /// Where the header with the length begins.
        offset: usize,
    },
    /// A value has a size or content the format does not allow.
    #[error("invalid {what} at byte {offset}")]
    Invalid {
        /// Where the message or attribute begins.
        offset: usize,
        /// What was wrong.
        what: &'static str,
    },
}

impl From<Framing> for NflogError {
    fn from(framing: Framing) -> NflogError {
        match framing {
            Framing::Truncated { offset } => NflogError::Truncated { offset },
            Framing::BadLength { offset } => NflogError::Invalid {
                offset,
                what: "netlink message length",
            },
        }
    }
}

impl NflogError {
    /// Where in the datagram the problem is.
    pub fn offset(&self) -> usize {
        match *self {
            NflogError::Truncated { offset } | NflogError::Invalid { offset, .. } => offset,
        }
    }
}

/// Reads every message of one netlink datagram and returns the logged packets among them, in
/// order, each as the bytes the kernel copied (from the IP header on, possibly cut short).
///
/// Netlink control messages and other netfilter subsystems give nothing; unknown attributes are
/// skipped. The first malformed message makes the whole datagram an error.
pub fn parse(bytes: &[u8]) -> Result<Vec<&[u8]>, NflogError> {
    let mut packets = Vec::new();
    for message in messages(bytes) {
        if let Message::Packet(packet) = message? {
            packets.push(packet);
        }
    }
    Ok(packets)
}

/// The logged packets of a datagram from the kernel, copied out; a malformed message is counted
/// in `malformed` and skipped, and one whose framing is broken ends the datagram.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(super) fn packets(datagram: &[u8], malformed: &mut u64) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    for message in messages(datagram) {
        match message {
            Ok(Message::Packet(packet)) => packets.push(packet.to_vec()),
            Ok(_) => {}
            Err(_) => *malformed = malformed.saturating_add(1),
        }
    }
    packets
}

/// One message of a datagram, as far as the agent cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Message<'a> {
    /// A logged packet.
    Packet(&'a [u8]),
    /// The kernel's answer to a request of ours: `error` is 0 for success, else a negative
    /// errno.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    Ack {
        /// The sequence number of the request.
        seq: u32,
        /// 0 or a negative errno.
        error: i32,
    },
    /// Anything else (other subsystems, the end of a multipart batch).
    Other,
}

/// The messages of a datagram, one by one; a framing error ends the iteration.
pub(super) fn messages(datagram: &[u8]) -> impl Iterator<Item = Result<Message<'_>, NflogError>> {
    Messages::new(datagram).map(|framed| message(&framed?))
}

/// Reads one message whose framing is valid.
fn message<'a>(framed: &netlink::Message<'a>) -> Result<Message<'a>, NflogError> {
    let offset = framed.offset;
    if framed.kind == NLMSG_ERROR {
        let error = framed
            .body
            .get(..4)
            .map(|b| ne_u32(b, 0))
            .ok_or(NflogError::Truncated { offset })?;
        return Ok(Message::Ack {
            seq: framed.seq,
            error: i32::from_ne_bytes(error.to_ne_bytes()),
        });
    }
    if framed.kind != NFULNL_MSG_PACKET_TYPE {
        return Ok(Message::Other);
    }
    let mut payload = None;
    for attr in framed.attrs()? {
        let attr = attr?;
        if attr.kind == NFULA_PAYLOAD {
            if payload.is_some() {
                return Err(NflogError::Invalid {
                    offset: attr.offset,
                    what: "second packet payload",
                });
            }
            payload = Some(attr.payload);
        }
    }
    payload.map(Message::Packet).ok_or(NflogError::Invalid {
        offset,
        what: "logged packet without its payload",
    })
}

const NLMSG_ERROR: u16 = 2;

/// The netfilter subsystem of NFLOG (`NFNL_SUBSYS_ULOG`).
pub(super) const NFNL_SUBSYS_ULOG: u16 = 4;
/// `NFULNL_MSG_PACKET` in the ULOG subsystem.
const NFULNL_MSG_PACKET_TYPE: u16 = NFNL_SUBSYS_ULOG << 8;
const NFULA_PAYLOAD: u16 = 9;

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::netlink::{NLA_HDRLEN, NLMSG_HDRLEN, align4};

    /// One attribute, padded.
    pub(crate) fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let len = u16::try_from(NLA_HDRLEN + value.len()).unwrap();
        let mut a = len.to_ne_bytes().to_vec();
        a.extend(kind.to_ne_bytes());
        a.extend(value);
        a.resize(align4(a.len()), 0);
        a
    }

    /// One netlink message of `kind` with a netfilter header and `attrs`, padded.
    pub(crate) fn message(kind: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let len = u32::try_from(NLMSG_HDRLEN + body.len()).unwrap();
        let mut m = len.to_ne_bytes().to_vec();
        m.extend(kind.to_ne_bytes());
        m.extend(0u16.to_ne_bytes());
        m.extend(seq.to_ne_bytes());
        m.extend(0u32.to_ne_bytes());
        m.extend(body);
        m.resize(align4(m.len()), 0);
        m
    }

    /// A logged-packet message as the kernel sends it: netfilter header (AF_INET, group 7),
    /// packet header, mark, then the payload.
    pub(crate) fn logged(packet: &[u8]) -> Vec<u8> {
        let mut body = vec![2, 0, 0, 7];
        body.extend(attr(1, &[0x08, 0x00, 3, 0]));
        body.extend(attr(2, &0x0400_0000u32.to_be_bytes()));
        body.extend(attr(NFULA_PAYLOAD, packet));
        message(NFULNL_MSG_PACKET_TYPE, 0, &body)
    }

    #[test]
    fn a_batch_gives_each_logged_packet_and_skips_the_done_message() {
        let done = message(3, 0, &0u32.to_ne_bytes());
        // An odd length, so the next message starts after padding.
        let datagram = [logged(b"first"), logged(b"second packet"), done].concat();
        assert_eq!(
            parse(&datagram).unwrap(),
            [&b"first"[..], &b"second packet"[..]]
        );
    }

    #[test]
    fn an_ack_carries_its_sequence_and_errno() {
        let mut body = (-16i32).to_ne_bytes().to_vec();
        body.extend([0; 16]);
        let datagram = message(NLMSG_ERROR, 42, &body);
        let read: Vec<_> = messages(&datagram).collect();
        assert_eq!(
            read,
            [Ok(Message::Ack {
                seq: 42,
                error: -16
            })]
        );
        assert_eq!(parse(&datagram).unwrap(), Vec::<&[u8]>::new());
    }

    #[test]
    fn a_packet_message_without_payload_is_counted_and_the_rest_still_read() {
        let no_payload = message(NFULNL_MSG_PACKET_TYPE, 0, &[2, 0, 0, 7]);
        let datagram = [logged(b"one"), no_payload, logged(b"two")].concat();
        let mut malformed = 0;
        assert_eq!(
            packets(&datagram, &mut malformed),
            [b"one".to_vec(), b"two".to_vec()]
        );
        assert_eq!(malformed, 1);
        assert!(matches!(
            parse(&datagram),
            Err(NflogError::Invalid { what, .. }) if what.contains("without")
        ));
    }

    #[test]
    fn every_truncation_is_an_error_inside_the_datagram() {
        let datagram = logged(b"GET / HTTP/1.1\r\n");
        for cut in 1..datagram.len() {
            // The message claims its full length but the datagram ends early.
            let mut bytes = datagram[..cut].to_vec();
            let error = parse(&bytes).unwrap_err();
            assert_eq!(error, NflogError::Truncated { offset: 0 }, "cut at {cut}");
            // The message's length fits, but it ends inside or before the payload attribute.
            if cut >= NLMSG_HDRLEN {
                bytes[..4].copy_from_slice(&u32::try_from(cut).unwrap().to_ne_bytes());
                let error = parse(&bytes).unwrap_err();
                assert!(error.offset() < cut, "cut at {cut}: {error}");
            }
        }
        let mut malformed = 0;
        assert!(packets(&datagram[..datagram.len() - 1], &mut malformed).is_empty());
        assert_eq!(malformed, 1);
    }

    #[test]
    fn a_message_shorter_than_its_header_is_invalid() {
        let mut datagram = logged(b"x");
        datagram[..4].copy_from_slice(&3u32.to_ne_bytes());
        assert!(matches!(
            parse(&datagram),
            Err(NflogError::Invalid { offset: 0, .. })
        ));
    }

    proptest! {
        #[test]
        fn a_damaged_datagram_is_an_error_inside_it_or_packets_inside_it(
            at in 0usize..200,
            byte in any::<u8>(),
            len in 0usize..200,
        ) {
            let mut datagram = [logged(b"GET / HTTP/1.1\r\n\r\n"), logged(&[0x45; 40])].concat();
            let at = at % datagram.len();
            datagram[at] = byte;
            datagram.truncate(len.max(1));
            match parse(&datagram) {
                Ok(packets) => {
                    for packet in packets {
                        let start = packet.as_ptr() as usize - datagram.as_ptr() as usize;
                        prop_assert!(start + packet.len() <= datagram.len());
                    }
                }
                Err(error) => prop_assert!(error.offset() < datagram.len()),
            }
            let mut malformed = 0;
            packets(&datagram, &mut malformed);
        }
    }
}
