//! Netlink framing shared by the agent's readers of netfilter messages (conntrack events, NFLOG
//! copies): header sizes, attribute alignment, and integers in host byte order.

/// Length of a netlink message header (`struct nlmsghdr`).
pub(crate) const NLMSG_HDRLEN: usize = 16;
/// Length of the netfilter header after it (`struct nfgenmsg`).
pub(crate) const NFGENMSG_LEN: usize = 4;
/// Length of an attribute header (`struct nlattr`).
pub(crate) const NLA_HDRLEN: usize = 4;
/// Clears `NLA_F_NESTED` and `NLA_F_NET_BYTEORDER` from an attribute type.
pub(crate) const NLA_TYPE_MASK: u16 = 0x3fff;

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
