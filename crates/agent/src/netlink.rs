//! Netlink framing shared by the agent's readers of netfilter messages (conntrack events, NFLOG
//! copies): the messages of a datagram and the attributes of a message, with their offsets in
//! the datagram so that errors can say where. Headers are in the host's byte order.

/// Length of a netlink message header (`struct nlmsghdr`).
pub(crate) const NLMSG_HDRLEN: usize = 16;
/// Length of the netfilter header after it (`struct nfgenmsg`).
pub(crate) const NFGENMSG_LEN: usize = 4;
/// Length of an attribute header (`struct nlattr`).
pub(crate) const NLA_HDRLEN: usize = 4;
/// Clears `NLA_F_NESTED` and `NLA_F_NET_BYTEORDER` from an attribute type.
pub(crate) const NLA_TYPE_MASK: u16 = 0x3fff;

/// Why a datagram's framing is broken; each reader turns it into its own error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// A length field claims more bytes than its message or attribute holds.
    Truncated {
        /// Where the header with the length begins.
        offset: usize,
    },
    /// A message's length is shorter than its own header.
    BadLength {
        /// Where the message begins.
        offset: usize,
    },
}

/// One netlink message whose framing is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Message<'a> {
    /// Where it begins in the datagram.
    pub(crate) offset: usize,
    /// Its type (for netfilter: subsystem << 8 | message).
    pub(crate) kind: u16,
    /// Its flags.
    pub(crate) flags: u16,
    /// Its sequence number.
    pub(crate) seq: u32,
    /// Everything after the netlink header.
    pub(crate) body: &'a [u8],
}

impl<'a> Message<'a> {
    /// The attributes after the netfilter header (`struct nfgenmsg`).
    pub(crate) fn attrs(&self) -> Result<Attrs<'a>, Framing> {
        let attrs = self.body.get(NFGENMSG_LEN..).ok_or(Framing::Truncated {
            offset: self.offset,
        })?;
        Ok(Attrs::new(attrs, self.offset + NLMSG_HDRLEN + NFGENMSG_LEN))
    }
}

/// The messages of a datagram, one by one; a framing error ends the iteration.
pub(crate) struct Messages<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Messages<'a> {
    /// The messages of `datagram`.
    pub(crate) fn new(datagram: &'a [u8]) -> Self {
        Messages {
            bytes: datagram,
            pos: 0,
        }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Message<'a>, Framing>;

    fn next(&mut self) -> Option<Self::Item> {
        let offset = self.pos;
        let rest = self.bytes.get(offset..).filter(|rest| !rest.is_empty())?;
        match message(rest, offset) {
            Ok((len, message)) => {
                self.pos = offset.saturating_add(align4(len));
                Some(Ok(message))
            }
            Err(error) => {
                self.pos = self.bytes.len();
                Some(Err(error))
            }
        }
    }
}

/// The message at the start of `rest` (at `offset` in the datagram) and its length.
fn message(rest: &[u8], offset: usize) -> Result<(usize, Message<'_>), Framing> {
    let header = rest
        .get(..NLMSG_HDRLEN)
        .ok_or(Framing::Truncated { offset })?;
    let len = usize::try_from(ne_u32(header, 0)).unwrap_or(usize::MAX);
    if len < NLMSG_HDRLEN {
        return Err(Framing::BadLength { offset });
    }
    let body = rest
        .get(NLMSG_HDRLEN..len)
        .ok_or(Framing::Truncated { offset })?;
    let message = Message {
        offset,
        kind: ne_u16(header, 4),
        flags: ne_u16(header, 6),
        seq: ne_u32(header, 8),
        body,
    };
    Ok((len, message))
}

/// One attribute: its type (without the nested and byte-order flags) and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Attr<'a> {
    /// Where its header begins in the datagram.
    pub(crate) offset: usize,
    /// Its type.
    pub(crate) kind: u16,
    /// Its value.
    pub(crate) payload: &'a [u8],
}

impl<'a> Attr<'a> {
    /// The attributes nested in this one.
    pub(crate) fn nested(&self) -> Attrs<'a> {
        Attrs::new(self.payload, self.offset + NLA_HDRLEN)
    }
}

/// The attributes in a run of bytes; an error ends the iteration.
pub(crate) struct Attrs<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Offset of `bytes` in the datagram.
    base: usize,
}

impl<'a> Attrs<'a> {
    fn new(bytes: &'a [u8], base: usize) -> Self {
        Attrs {
            bytes,
            pos: 0,
            base,
        }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<Attr<'a>, Framing>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.bytes.get(self.pos..).filter(|rest| !rest.is_empty())?;
        let offset = self.base + self.pos;
        let len = rest
            .get(..NLA_HDRLEN)
            .map_or(0, |header| usize::from(ne_u16(header, 0)));
        let payload = if len >= NLA_HDRLEN {
            rest.get(NLA_HDRLEN..len)
        } else {
            None
        };
        let Some(payload) = payload else {
            self.pos = self.bytes.len();
            return Some(Err(Framing::Truncated { offset }));
        };
        self.pos = self.pos.saturating_add(align4(len));
        Some(Ok(Attr {
            offset,
            kind: ne_u16(rest, 2) & NLA_TYPE_MASK,
            payload,
        }))
    }
}

/// `len` rounded up to the next multiple of 4, as attributes and messages are aligned.
pub(crate) fn align4(len: usize) -> usize {
    len.saturating_add(3) & !3
}

/// A host-order `u16` at `at`; 0 when the bytes are not there (callers check lengths first).
pub(crate) fn ne_u16(bytes: &[u8], at: usize) -> u16 {
    bytes
        .get(at..at.saturating_add(2))
        .and_then(|b| <[u8; 2]>::try_from(b).ok())
        .map_or(0, u16::from_ne_bytes)
}

/// A host-order `u32` at `at`; 0 when the bytes are not there (callers check lengths first).
pub(crate) fn ne_u32(bytes: &[u8], at: usize) -> u32 {
    bytes
        .get(at..at.saturating_add(4))
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_ne_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_and_short_reads() {
        assert_eq!([0, 1, 4, 5, 8].map(align4), [0, 4, 4, 8, 8]);
        assert_eq!(ne_u16(&[1], 0), 0);
        assert_eq!(ne_u32(&[1, 2, 3], 0), 0);
        assert_eq!(ne_u16(&7u16.to_ne_bytes(), 0), 7);
        assert_eq!(ne_u32(&[0, 0, 0, 0, 9, 0, 0, 0], usize::MAX), 0);
    }
}
