//! TCP stream reassembly for one direction of a flow, kept only for the first bytes: enough to
//! read a TLS ClientHello, an HTTP request head or DNS messages that span segments.
//!
//! Segments are placed by sequence number (wrapping, RFC 9293 §3.4): retransmitted bytes are
//! dropped, overlapping segments contribute only their new bytes (the first copy wins), and
//! segments that arrive early wait until the gap before them is filled. The buffer never holds
//! more than its cap; past that the stream is marked [`Stream::overflowed`] and stops growing.

/// Segments waiting for a gap to close, at most.
const MAX_PENDING: usize = 16;

/// One direction of a TCP connection, reassembled from its start.
#[derive(Debug)]
pub struct Stream {
    /// The sequence number of the next byte expected; `None` until a SYN or the first segment.
    next_seq: Option<u32>,
    data: Vec<u8>,
    pending: Vec<(u32, Vec<u8>)>,
    cap: usize,
    overflowed: bool,
}

impl Stream {
    /// An empty stream that buffers at most `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Stream {
            next_seq: None,
            data: Vec::new(),
            pending: Vec::new(),
            cap,
            overflowed: false,
        }
    }

    /// A SYN with sequence number `seq`: the stream's first byte is `seq + 1`.
    pub fn syn(&mut self, seq: u32) {
        if self.next_seq.is_none() {
            self.next_seq = Some(seq.wrapping_add(1));
        }
    }

    /// Adds a segment's payload. Returns whether the contiguous data grew.
    pub fn push(&mut self, seq: u32, payload: &[u8]) -> bool {
        if payload.is_empty() || self.overflowed {
            return false;
        }
        let next = *self.next_seq.get_or_insert(seq);
        let before = self.data.len();
        match seq_diff(seq, next) {
            ahead if ahead > 0 => self.hold(seq, payload),
            behind => self.append(payload, behind.unsigned_abs()),
        }
        self.drain_pending();
        self.data.len() > before
    }

    /// The bytes received so far, in order, without gaps.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Bytes held: the contiguous data and the segments waiting for a gap.
    pub fn buffered(&self) -> usize {
        self.data.len()
            + self
                .pending
                .iter()
                .map(|(_, bytes)| bytes.len())
                .sum::<usize>()
    }

    /// Drops the first `n` bytes (a consumed message); later bytes keep their place.
    pub fn consume(&mut self, n: usize) {
        self.data.drain(..n.min(self.data.len()));
    }

    /// Whether bytes were refused because the buffer was full.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Appends the part of `payload` after its first `skip` bytes (already received).
    fn append(&mut self, payload: &[u8], skip: u64) {
        let Some(new) = usize::try_from(skip)
            .ok()
            .and_then(|skip| payload.get(skip..))
        else {
            return;
        };
        if new.is_empty() {
            return;
        }
        let room = self.cap.saturating_sub(self.data.len());
        let taken = new.get(..room).unwrap_or(new);
        self.data.extend_from_slice(taken);
        self.advance(taken.len());
        if taken.len() < new.len() {
            self.overflowed = true;
            self.pending.clear();
        }
    }

    fn advance(&mut self, n: usize) {
        if let (Some(next), Ok(n)) = (self.next_seq, u32::try_from(n)) {
            self.next_seq = Some(next.wrapping_add(n));
        }
    }

    /// Keeps a segment that arrived before the bytes in front of it.
    fn hold(&mut self, seq: u32, payload: &[u8]) {
        let held: usize = self.pending.iter().map(|(_, bytes)| bytes.len()).sum();
        if self.pending.len() >= MAX_PENDING || self.data.len() + held + payload.len() > self.cap {
            return;
        }
        self.pending.push((seq, payload.to_vec()));
    }

    /// Appends every held segment that the stream has now reached.
    fn drain_pending(&mut self) {
        while let Some(next) = self.next_seq {
            let Some(i) = self
                .pending
                .iter()
                .position(|(seq, _)| seq_diff(*seq, next) <= 0)
            else {
                return;
            };
            let (seq, bytes) = self.pending.swap_remove(i);
            self.append(&bytes, seq_diff(seq, next).unsigned_abs());
        }
    }
}

/// `a - b` in sequence space: positive when `a` is after `b`.
fn seq_diff(a: u32, b: u32) -> i64 {
    i64::from(i32::from_ne_bytes(a.wrapping_sub(b).to_ne_bytes()))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn in_order_segments_concatenate() {
        let mut stream = Stream::new(64);
        stream.syn(999);
        assert!(stream.push(1000, b"hello "));
        assert!(stream.push(1006, b"world"));
        assert_eq!(stream.data(), b"hello world");
    }

    #[test]
    fn retransmissions_and_overlaps_add_only_new_bytes() {
        let mut stream = Stream::new(64);
        stream.syn(0);
        stream.push(1, b"abcd");
        assert!(!stream.push(1, b"abcd"));
        assert!(stream.push(3, b"cdef"));
        assert_eq!(stream.data(), b"abcdef");
    }

    #[test]
    fn early_segments_wait_for_the_gap() {
        let mut stream = Stream::new(64);
        stream.syn(10);
        assert!(!stream.push(16, b"fgh"));
        assert!(!stream.push(13, b"cd"));
        assert_eq!(stream.data(), b"");
        assert!(stream.push(11, b"ab"));
        assert_eq!(stream.data(), b"abcd");
        assert!(stream.push(15, b"e"));
        assert_eq!(stream.data(), b"abcdefgh");
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut stream = Stream::new(64);
        stream.syn(u32::MAX - 1);
        stream.push(u32::MAX, b"ab");
        stream.push(1, b"cd");
        assert_eq!(stream.data(), b"abcd");
    }

    #[test]
    fn without_a_syn_the_first_segment_starts_the_stream() {
        let mut stream = Stream::new(64);
        stream.push(500, b"xy");
        stream.push(502, b"z");
        assert_eq!(stream.data(), b"xyz");
    }

    #[test]
    fn the_cap_holds_and_is_reported() {
        let mut stream = Stream::new(4);
        stream.syn(0);
        stream.push(1, b"abc");
        assert!(!stream.overflowed());
        stream.push(4, b"def");
        assert_eq!(stream.data(), b"abcd");
        assert!(stream.overflowed());
        assert!(!stream.push(5, b"ef"));
    }

    #[test]
    fn consumed_bytes_leave_the_rest_in_place() {
        let mut stream = Stream::new(8);
        stream.syn(0);
        stream.push(1, b"abcdef");
        stream.consume(4);
        stream.push(7, b"gh");
        assert_eq!(stream.data(), b"efgh");
    }

    proptest! {
        /// Any arrival order, with duplicates, gives back the original bytes.
        #[test]
        fn any_order_reassembles(
            bytes in proptest::collection::vec(any::<u8>(), 1..200),
            cuts in proptest::collection::vec(0usize..200, 0..8),
            order in proptest::collection::vec(any::<prop::sample::Index>(), 0..24),
            isn in any::<u32>(),
        ) {
            let mut bounds: Vec<usize> = cuts.into_iter().map(|c| c % bytes.len()).collect();
            bounds.extend([0, bytes.len()]);
            bounds.sort_unstable();
            bounds.dedup();
            let segments: Vec<(usize, usize)> = bounds.windows(2).map(|w| (w[0], w[1])).collect();
            let mut stream = Stream::new(256);
            stream.syn(isn);
            let send = |stream: &mut Stream, (start, end): (usize, usize)| {
                let seq = isn.wrapping_add(1).wrapping_add(u32::try_from(start).unwrap());
                stream.push(seq, &bytes[start..end]);
            };
            for index in order {
                send(&mut stream, segments[index.index(segments.len())]);
            }
            for &segment in &segments {
                send(&mut stream, segment);
            }
            prop_assert_eq!(stream.data(), &bytes[..]);
        }
    }
}
