//! DHCPv4 messages (RFC 2131, options RFC 2132): the fields that tell who a device is — its MAC
//! address, the host name it announces, and the address it asks for or is given. The network
//! sensor uses them to name devices.

use std::net::Ipv4Addr;

/// Bytes before the options: the BOOTP header (236) and the magic cookie (4).
const FIXED_LEN: usize = 240;
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];

/// Why bytes could not be read as a DHCP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DhcpError {
    /// The bytes are not a DHCP message.
    #[error("invalid DHCP message at byte {offset}: {reason}")]
    Invalid {
        /// Where in the message the problem is.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
}

/// What a DHCP message says about a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// BOOTP op: 1 request (from a client), 2 reply (from a server).
    pub op: u8,
    /// DHCP message type (option 53): 1 DISCOVER, 3 REQUEST, 5 ACK, ...
    pub message_type: Option<u8>,
    /// The client's hardware address, when it is an Ethernet (6-byte) address.
    pub client_mac: Option<[u8; 6]>,
    /// `ciaddr`: the address the client already has.
    pub client_ip: Option<Ipv4Addr>,
    /// `yiaddr`: the address a server gives the client.
    pub your_ip: Option<Ipv4Addr>,
    /// Option 50: the address the client asks for.
    pub requested_ip: Option<Ipv4Addr>,
    /// Option 12: the client's host name (lossy UTF-8).
    pub hostname: Option<String>,
}

/// Decodes one DHCP message (a UDP payload on port 67 or 68).
pub fn parse(msg: &[u8]) -> Result<Message, DhcpError> {
    let invalid = |offset, reason| DhcpError::Invalid { offset, reason };
    let fixed = msg
        .get(..FIXED_LEN)
        .ok_or(invalid(msg.len(), "shorter than the fixed header"))?;
    if fixed.get(236..240) != Some(&MAGIC_COOKIE[..]) {
        return Err(invalid(236, "no DHCP magic cookie"));
    }
    let op = fixed.first().copied().unwrap_or_default();
    if !matches!(op, 1 | 2) {
        return Err(invalid(0, "op is neither request nor reply"));
    }
    let (htype, hlen) = (fixed.get(1).copied(), fixed.get(2).copied());
    let client_mac = if htype == Some(1) && hlen == Some(6) {
        fixed
            .get(28..34)
            .and_then(|mac| <[u8; 6]>::try_from(mac).ok())
    } else {
        None
    };
    let mut message = Message {
        op,
        message_type: None,
        client_mac,
        client_ip: address(fixed.get(12..16)),
        your_ip: address(fixed.get(16..20)),
        requested_ip: None,
        hostname: None,
    };
    let mut pos = FIXED_LEN;
    while let Some(&code) = msg.get(pos) {
        match code {
            0 => {
                pos += 1;
                continue;
            }
            255 => break,
            _ => {}
        }
        let len = usize::from(
            *msg.get(pos + 1)
                .ok_or(invalid(pos + 1, "option without length"))?,
        );
        let value = msg
            .get(pos + 2..pos + 2 + len)
            .ok_or(invalid(pos, "option runs past the message"))?;
        match code {
            12 if !value.is_empty() => {
                message.hostname = Some(String::from_utf8_lossy(value).into_owned());
            }
            50 => message.requested_ip = address(Some(value)),
            53 => message.message_type = value.first().copied(),
            _ => {}
        }
        pos += 2 + len;
    }
    Ok(message)
}

/// An IPv4 address from exactly four bytes; the unspecified address means none.
fn address(bytes: Option<&[u8]>) -> Option<Ipv4Addr> {
    let octets = <[u8; 4]>::try_from(bytes?).ok()?;
    let addr = Ipv4Addr::from(octets);
    (!addr.is_unspecified()).then_some(addr)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A DHCPREQUEST from 00:11:22:33:44:55 named `laptop-7` asking for 192.168.1.23.
    fn request() -> Vec<u8> {
        let mut msg = vec![0u8; FIXED_LEN];
        msg[..4].copy_from_slice(&[1, 1, 6, 0]);
        msg[28..34].copy_from_slice(&[0x00, 0x11, 0x22, 0x33, 0x44, 0x55]);
        msg[236..240].copy_from_slice(&MAGIC_COOKIE);
        msg.extend([53, 1, 3]);
        msg.extend([0]);
        msg.extend([50, 4, 192, 168, 1, 23]);
        msg.extend([12, 8]);
        msg.extend(b"laptop-7");
        msg.push(255);
        msg
    }

    #[test]
    fn reads_who_the_device_is() {
        let message = parse(&request()).unwrap();
        assert_eq!(
            message,
            Message {
                op: 1,
                message_type: Some(3),
                client_mac: Some([0x00, 0x11, 0x22, 0x33, 0x44, 0x55]),
                client_ip: None,
                your_ip: None,
                requested_ip: Some(Ipv4Addr::new(192, 168, 1, 23)),
                hostname: Some("laptop-7".into()),
            }
        );
    }

    #[test]
    fn a_reply_gives_the_address() {
        let mut msg = request();
        msg[0] = 2;
        msg[16..20].copy_from_slice(&[10, 0, 0, 9]);
        assert_eq!(
            parse(&msg).unwrap().your_ip,
            Some(Ipv4Addr::new(10, 0, 0, 9))
        );
    }

    #[test]
    fn broken_messages_name_the_offset() {
        let short = request()[..100].to_vec();
        assert_eq!(
            parse(&short),
            Err(DhcpError::Invalid {
                offset: 100,
                reason: "shorter than the fixed header"
            })
        );
        let mut no_cookie = request();
        no_cookie[236] = 0;
        assert!(matches!(
            parse(&no_cookie),
            Err(DhcpError::Invalid { offset: 236, .. })
        ));
        let mut overrun = request();
        overrun.truncate(overrun.len() - 3);
        assert!(matches!(
            parse(&overrun),
            Err(DhcpError::Invalid {
                reason: "option runs past the message",
                ..
            })
        ));
    }

    #[test]
    fn reads_the_corpus_capture() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/corpus/pcap/foxio-ja4/dhcp.pcapng"
        );
        let Ok(bytes) = std::fs::read(path) else {
            println!("skipped: corpus not found");
            return;
        };
        // The client's DISCOVER names its MAC; find the UDP payloads by their magic cookie.
        let found: Vec<Message> = bytes
            .windows(4)
            .enumerate()
            .filter(|(_, w)| *w == MAGIC_COOKIE)
            .filter_map(|(i, _)| {
                i.checked_sub(236)
                    .and_then(|start| parse(&bytes[start..]).ok())
            })
            .collect();
        assert_eq!(found.len(), 4);
        assert_eq!(found[0].message_type, Some(1));
        assert_eq!(
            found[0].client_mac,
            Some([0x00, 0x0b, 0x82, 0x01, 0xfc, 0x42])
        );
    }

    proptest! {
        #[test]
        fn options_never_read_past_the_end(tail in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut msg = request();
            msg.truncate(FIXED_LEN);
            msg.extend(&tail);
            if let Ok(message) = parse(&msg) {
                prop_assert_eq!(message.client_mac, Some([0x00, 0x11, 0x22, 0x33, 0x44, 0x55]));
            }
        }
    }
}
