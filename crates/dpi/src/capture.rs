//! Capture files: classic pcap and pcapng, read as a stream from any [`Read`].
//!
//! The reader keeps one buffer and hands out frames that borrow from it, so reading a file costs
//! one large `read` call per buffer-full and no allocation per frame. The format is sniffed from
//! the first four bytes:
//!
//! - classic pcap in either byte order, with microsecond (`a1b2c3d4`) or nanosecond (`a1b23c4d`)
//!   timestamps, and the "modified" pcap of old Linux patches (`a1b2cd34`, 8 more bytes per
//!   record header);
//! - pcapng: every section (each with its own byte order), every interface description (each
//!   with its own link type, `if_tsresol` in powers of 10 or of 2, and `if_tsoffset`), enhanced,
//!   simple and obsolete packet blocks. Other blocks (statistics, name resolution, secrets,
//!   custom) are skipped.
//!
//! Input is hostile: a record or block longer than [`MAX_RECORD_LEN`] is an error rather than a
//! reason to allocate, and so is a length field that does not fit the record or block that holds
//! it. Errors carry the byte offset of the record or block they are about.

use std::io::{self, Read};

/// Longest record (classic pcap) or block (pcapng) the reader accepts, in bytes. Real captures
/// stay far below it (snapshot lengths are at most 256 KiB); a longer one is treated as
/// corruption instead of making the reader allocate.
pub const MAX_RECORD_LEN: usize = 16 * 1024 * 1024;

/// Most interfaces one pcapng section may describe (each costs a few bytes of memory).
const MAX_INTERFACES: usize = 1 << 16;

/// How much the reader asks the operating system for at a time; also the buffer's initial size.
const CHUNK_LEN: usize = 256 * 1024;

const PCAP_HEADER_LEN: usize = 24;
const PCAP_RECORD_HEADER_LEN: usize = 16;
const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_IDB: u32 = 1;
const PCAPNG_PB: u32 = 2;
const PCAPNG_SPB: u32 = 3;
const PCAPNG_EPB: u32 = 6;

const TRUNCATED: &str = "the file ends inside this record";

/// The link layer of a frame: what its first byte is (pcap LINKTYPE numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// 0: BSD loopback, a 4-byte address family in the byte order of the capturing machine.
    Null,
    /// 1: Ethernet II (and 802.3) frames.
    Ethernet,
    /// 101 (and 12 or 14, which some writers used for the same): raw IPv4 or IPv6, told apart by
    /// the version nibble.
    Raw,
    /// 113: Linux "cooked" capture, version 1 (16-byte header).
    LinuxSll,
    /// 108: OpenBSD loopback, a 4-byte address family in network byte order.
    Loop,
    /// 228: raw IPv4.
    Ipv4,
    /// 229: raw IPv6.
    Ipv6,
    /// 276: Linux "cooked" capture, version 2 (20-byte header).
    LinuxSll2,
    /// Any other link type, by number.
    Other(u32),
}

impl LinkType {
    /// The link type a LINKTYPE number names.
    pub fn from_number(number: u32) -> Self {
        match number {
            0 => Self::Null,
            1 => Self::Ethernet,
            12 | 14 | 101 => Self::Raw,
            108 => Self::Loop,
            113 => Self::LinuxSll,
            228 => Self::Ipv4,
            229 => Self::Ipv6,
            276 => Self::LinuxSll2,
            other => Self::Other(other),
        }
    }

    /// The LINKTYPE number (101 for [`LinkType::Raw`]).
    pub fn number(self) -> u32 {
        match self {
            Self::Null => 0,
            Self::Ethernet => 1,
            Self::Raw => 101,
            Self::Loop => 108,
            Self::LinuxSll => 113,
            Self::Ipv4 => 228,
            Self::Ipv6 => 229,
            Self::LinuxSll2 => 276,
            Self::Other(number) => number,
        }
    }
}

/// One captured frame, borrowed from the reader's buffer until the next call to
/// [`CaptureReader::next_frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// When the frame was captured, in nanoseconds since the Unix epoch. A pcapng simple packet
    /// block has no timestamp: it gets the previous frame's (0 if it is the first).
    pub ts_ns: i64,
    /// The link layer of `data`.
    pub link: LinkType,
    /// The captured bytes (possibly fewer than `orig_len`: see the capture's snapshot length).
    pub data: &'a [u8],
    /// The length of the frame on the wire.
    pub orig_len: u32,
    /// Byte offset of this frame's record (pcap) or block (pcapng) in the file.
    pub offset: u64,
}

/// Why a capture file could not be read further.
#[derive(Debug, thiserror::Error)]
#[error("at byte {offset}: {reason}")]
pub struct CaptureError {
    /// Byte offset in the file of the record or block that could not be read (for an I/O error,
    /// of the first byte that could not be read).
    pub offset: u64,
    /// What is wrong, in words.
    pub reason: &'static str,
    /// The I/O error, when reading failed.
    #[source]
    pub io: Option<io::Error>,
}

impl CaptureError {
    /// Whether the file ends in the middle of a record or block (as a capture still being
    /// written, or one cut short when copied, does). Frames read before it are good.
    pub fn is_truncated(&self) -> bool {
        self.reason == TRUNCATED
    }
}

/// The container format of a capture file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Classic libpcap format.
    Pcap,
    /// pcapng.
    PcapNg,
}

/// Reads frames from a capture file, streaming: it never holds more than one buffer of the file.
///
/// `reader` need not be buffered: the capture reader asks it for large chunks.
pub struct CaptureReader<R: Read> {
    reader: R,
    /// `buf[start..end]` holds the file's bytes from `offset` on that have not been consumed.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    offset: u64,
    format: Format,
    /// Byte order of the classic pcap file or of the current pcapng section.
    endian: Endian,
    /// Classic pcap: the link type, timestamp unit and record header length of the file.
    pcap: PcapFile,
    /// pcapng: the interfaces described so far in the current section.
    interfaces: Vec<Interface>,
    /// The timestamp of the last frame, for simple packet blocks.
    last_ts_ns: i64,
}

impl<R: Read> CaptureReader<R> {
    /// Reads the file header (classic pcap) or first section header (pcapng) and gets ready to
    /// read frames.
    pub fn new(reader: R) -> Result<Self, CaptureError> {
        let mut capture = Self {
            reader,
            buf: vec![0; CHUNK_LEN],
            start: 0,
            end: 0,
            offset: 0,
            format: Format::Pcap,
            endian: Endian::Little,
            pcap: PcapFile {
                link: LinkType::Other(0),
                nanos: false,
                record_header_len: PCAP_RECORD_HEADER_LEN,
            },
            interfaces: Vec::new(),
            last_ts_ns: 0,
        };
        if !capture.fill(4)? {
            return Err(error(0, "shorter than a capture file header"));
        }
        let magic = capture.array::<4>();
        if u32::from_be_bytes(magic) == PCAPNG_SHB {
            capture.format = Format::PcapNg;
            // The first block must be a section header; reading it sets the byte order.
            capture.next_pcapng_block()?;
            return Ok(capture);
        }
        let (endian, nanos, record_header_len) = match magic {
            [0xa1, 0xb2, 0xc3, 0xd4] => (Endian::Big, false, 16),
            [0xd4, 0xc3, 0xb2, 0xa1] => (Endian::Little, false, 16),
            [0xa1, 0xb2, 0x3c, 0x4d] => (Endian::Big, true, 16),
            [0x4d, 0x3c, 0xb2, 0xa1] => (Endian::Little, true, 16),
            [0xa1, 0xb2, 0xcd, 0x34] => (Endian::Big, false, 24),
            [0x34, 0xcd, 0xb2, 0xa1] => (Endian::Little, false, 24),
            _ => return Err(error(0, "not a pcap or pcapng file (unknown magic number)")),
        };
        if !capture.fill(PCAP_HEADER_LEN)? {
            return Err(error(0, "the file ends inside the pcap file header"));
        }
        let header = capture.array::<PCAP_HEADER_LEN>();
        let [_, _, _, _, major_a, major_b, ..] = header;
        if endian.u16([major_a, major_b]) != 2 {
            return Err(error(0, "unsupported pcap version (not 2.x)"));
        }
        let [.., l0, l1, l2, l3] = header;
        // The low 16 bits are the link type; the high bits may say how long the frame check
        // sequence at the end of each frame is, which decoding does not need.
        let link = endian.u32([l0, l1, l2, l3]) & 0xffff;
        capture.endian = endian;
        capture.pcap = PcapFile {
            link: LinkType::from_number(link),
            nanos,
            record_header_len,
        };
        capture.consume(PCAP_HEADER_LEN);
        Ok(capture)
    }

    /// The container format of the file.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The next frame, or `None` at a clean end of file. A file that ends inside a record is an
    /// error naming the offset where that record starts ([`CaptureError::is_truncated`]).
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        let record = match self.format {
            Format::Pcap => self.next_pcap_record()?,
            Format::PcapNg => loop {
                match self.next_pcapng_block()? {
                    None => break None,
                    Some(Block::Packet(record)) => break Some(record),
                    Some(Block::Other) => {}
                }
            },
        };
        let Some(record) = record else {
            return Ok(None);
        };
        self.last_ts_ns = record.ts_ns;
        let data = self
            .buf
            .get(record.data_start..record.data_end)
            .ok_or(error(
                record.offset,
                "internal error: frame outside the buffer",
            ))?;
        Ok(Some(Frame {
            ts_ns: record.ts_ns,
            link: record.link,
            data,
            orig_len: record.orig_len,
            offset: record.offset,
        }))
    }

    fn next_pcap_record(&mut self) -> Result<Option<Record>, CaptureError> {
        let offset = self.offset;
        let header_len = self.pcap.record_header_len;
        if !self.fill(header_len)? {
            return if self.available() == 0 {
                Ok(None)
            } else {
                Err(error(offset, TRUNCATED))
            };
        }
        let [
            s0,
            s1,
            s2,
            s3,
            f0,
            f1,
            f2,
            f3,
            c0,
            c1,
            c2,
            c3,
            o0,
            o1,
            o2,
            o3,
        ] = self.array::<16>();
        let e = self.endian;
        let captured = to_usize(e.u32([c0, c1, c2, c3]));
        if captured > MAX_RECORD_LEN {
            return Err(error(offset, "record longer than the 16 MiB limit"));
        }
        if !self.fill(header_len + captured)? {
            return Err(error(offset, TRUNCATED));
        }
        let seconds = i64::from(e.u32([s0, s1, s2, s3]));
        let fraction = i64::from(e.u32([f0, f1, f2, f3]));
        let ts_ns = seconds * 1_000_000_000
            + if self.pcap.nanos {
                fraction
            } else {
                fraction * 1000
            };
        let data_start = self.start + header_len;
        self.consume(header_len + captured);
        Ok(Some(Record {
            ts_ns,
            link: self.pcap.link,
            data_start,
            data_end: data_start + captured,
            orig_len: e.u32([o0, o1, o2, o3]),
            offset,
        }))
    }

    /// Reads one pcapng block: a section header or interface description updates the reader's
    /// state, a packet block is returned, anything else is skipped.
    fn next_pcapng_block(&mut self) -> Result<Option<Block>, CaptureError> {
        let offset = self.offset;
        if !self.fill(8)? {
            return if self.available() == 0 {
                Ok(None)
            } else {
                Err(error(offset, TRUNCATED))
            };
        }
        let [t0, t1, t2, t3, n0, n1, n2, n3] = self.array::<8>();
        // The section header's type reads the same in both byte orders; its byte-order magic
        // says how to read everything else in the section, its own length included.
        let block_type = u32::from_be_bytes([t0, t1, t2, t3]);
        if block_type == PCAPNG_SHB {
            if !self.fill(12)? {
                return Err(error(offset, TRUNCATED));
            }
            self.endian = match self.array::<12>() {
                [.., 0x1a, 0x2b, 0x3c, 0x4d] => Endian::Big,
                [.., 0x4d, 0x3c, 0x2b, 0x1a] => Endian::Little,
                _ => return Err(error(offset, "section header with a bad byte-order magic")),
            };
        }
        let e = self.endian;
        let block_type = e.u32([t0, t1, t2, t3]);
        let total_len = to_usize(e.u32([n0, n1, n2, n3]));
        if total_len < 12 || total_len % 4 != 0 {
            return Err(error(
                offset,
                "block length is not a multiple of 4 of at least 12",
            ));
        }
        if total_len > MAX_RECORD_LEN {
            return Err(error(offset, "block longer than the 16 MiB limit"));
        }
        if !self.fill(total_len)? {
            return Err(error(offset, TRUNCATED));
        }
        let body_start = self.start + 8;
        let body_end = self.start + total_len - 4;
        let trailer = self
            .buf
            .get(body_end..body_end + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(|b| e.u32(b));
        if trailer.map(to_usize) != Some(total_len) {
            return Err(error(
                offset,
                "block's trailing length differs from its leading length",
            ));
        }
        self.consume(total_len);
        let body = self.buf.get(body_start..body_end).unwrap_or_default();
        let bad = |reason| Err(error(offset, reason));
        match block_type {
            PCAPNG_SHB => {
                let Some(&[_, _, _, _, v0, v1, ..]) = body.first_chunk::<16>() else {
                    return bad("section header shorter than its fields");
                };
                if e.u16([v0, v1]) != 1 {
                    return bad("unsupported pcapng version (not 1.x)");
                }
                self.interfaces.clear();
                Ok(Some(Block::Other))
            }
            PCAPNG_IDB => {
                let Some((&[l0, l1, _, _, s0, s1, s2, s3], options)) = body.split_first_chunk()
                else {
                    return bad("interface description shorter than its fields");
                };
                if self.interfaces.len() >= MAX_INTERFACES {
                    return bad("more than 65536 interfaces in one section");
                }
                let mut interface = Interface {
                    link: LinkType::from_number(u32::from(e.u16([l0, l1]))),
                    snaplen: e.u32([s0, s1, s2, s3]),
                    scale: Scale::Multiply(1000),
                    offset_ns: 0,
                };
                for option in Options::new(options, e) {
                    match option {
                        Err(reason) => return bad(reason),
                        Ok((9, &[resolution, ..])) => interface.scale = Scale::new(resolution),
                        Ok((14, value)) => {
                            if let Some(&seconds) = value.first_chunk::<8>() {
                                interface.offset_ns = i128::from(e.i64(seconds)) * 1_000_000_000;
                            }
                        }
                        Ok(_) => {}
                    }
                }
                self.interfaces.push(interface);
                Ok(Some(Block::Other))
            }
            PCAPNG_EPB | PCAPNG_PB => {
                let Some((fields, _)) = body.split_first_chunk::<20>() else {
                    return bad("packet block shorter than its fields");
                };
                let &[
                    i0,
                    i1,
                    i2,
                    i3,
                    h0,
                    h1,
                    h2,
                    h3,
                    l0,
                    l1,
                    l2,
                    l3,
                    c0,
                    c1,
                    c2,
                    c3,
                    o0,
                    o1,
                    o2,
                    o3,
                ] = fields;
                let interface_id = if block_type == PCAPNG_EPB {
                    e.u32([i0, i1, i2, i3])
                } else {
                    // The obsolete packet block has a 16-bit interface id and a drop count.
                    u32::from(e.u16([i0, i1]))
                };
                let captured = to_usize(e.u32([c0, c1, c2, c3]));
                if captured > body.len() - 20 {
                    return bad("packet data runs past its block");
                }
                let Some(interface) = self.interfaces.get(to_usize(interface_id)) else {
                    return bad("packet block names an interface not described in its section");
                };
                let units =
                    u64::from(e.u32([h0, h1, h2, h3])) << 32 | u64::from(e.u32([l0, l1, l2, l3]));
                Ok(Some(Block::Packet(Record {
                    ts_ns: interface.nanoseconds(units),
                    link: interface.link,
                    data_start: body_start + 20,
                    data_end: body_start + 20 + captured,
                    orig_len: e.u32([o0, o1, o2, o3]),
                    offset,
                })))
            }
            PCAPNG_SPB => {
                let Some((&length, data)) = body.split_first_chunk::<4>() else {
                    return bad("simple packet block shorter than its fields");
                };
                let Some(interface) = self.interfaces.first() else {
                    return bad("simple packet block in a section without interfaces");
                };
                let orig_len = e.u32(length);
                // The captured length is implied: the original length, cut at the snapshot length
                // (0 means none), and never more than the block holds.
                let mut captured = to_usize(orig_len).min(data.len());
                if interface.snaplen != 0 {
                    captured = captured.min(to_usize(interface.snaplen));
                }
                Ok(Some(Block::Packet(Record {
                    ts_ns: self.last_ts_ns,
                    link: interface.link,
                    data_start: body_start + 4,
                    data_end: body_start + 4 + captured,
                    orig_len,
                    offset,
                })))
            }
            _ => Ok(Some(Block::Other)),
        }
    }

    /// Makes sure `need` unconsumed bytes are in the buffer, reading more if necessary; `false`
    /// if the file ends first. `need` is at most [`MAX_RECORD_LEN`].
    fn fill(&mut self, need: usize) -> Result<bool, CaptureError> {
        if self.available() >= need {
            return Ok(true);
        }
        if self.buf.len() - self.start < need {
            // Move the unconsumed bytes to the front, and grow the buffer if a record needs it.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.buf.len() < need {
                self.buf.resize(need.next_multiple_of(CHUNK_LEN), 0);
            }
        }
        while self.available() < need {
            let free = self.buf.get_mut(self.end..).unwrap_or_default();
            match self.reader.read(free) {
                Ok(0) => return Ok(false),
                Ok(n) => self.end = (self.end + n).min(self.buf.len()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(CaptureError {
                        offset: self.offset + self.available() as u64,
                        reason: "reading the file failed",
                        io: Some(e),
                    });
                }
            }
        }
        Ok(true)
    }

    fn available(&self) -> usize {
        self.end - self.start
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.offset += n as u64;
    }

    /// The first `N` unconsumed bytes; the caller has filled them.
    fn array<const N: usize>(&self) -> [u8; N] {
        self.buf
            .get(self.start..)
            .and_then(|b| b.first_chunk::<N>())
            .copied()
            .unwrap_or([0; N])
    }
}

#[derive(Debug, Clone, Copy)]
enum Endian {
    Little,
    Big,
}

impl Endian {
    fn u16(self, bytes: [u8; 2]) -> u16 {
        match self {
            Self::Little => u16::from_le_bytes(bytes),
            Self::Big => u16::from_be_bytes(bytes),
        }
    }

    fn u32(self, bytes: [u8; 4]) -> u32 {
        match self {
            Self::Little => u32::from_le_bytes(bytes),
            Self::Big => u32::from_be_bytes(bytes),
        }
    }

    fn i64(self, bytes: [u8; 8]) -> i64 {
        match self {
            Self::Little => i64::from_le_bytes(bytes),
            Self::Big => i64::from_be_bytes(bytes),
        }
    }
}

struct PcapFile {
    link: LinkType,
    nanos: bool,
    record_header_len: usize,
}

struct Interface {
    link: LinkType,
    snaplen: u32,
    scale: Scale,
    /// `if_tsoffset`, in nanoseconds.
    offset_ns: i128,
}

impl Interface {
    fn nanoseconds(&self, units: u64) -> i64 {
        let units = i128::from(units);
        let ns = match self.scale {
            Scale::Multiply(factor) => units * i128::from(factor),
            Scale::Divide(per_second) => units * 1_000_000_000 / per_second,
            Scale::Unusable => 0,
        };
        let ns = ns.saturating_add(self.offset_ns);
        i64::try_from(ns).unwrap_or(if ns < 0 { i64::MIN } else { i64::MAX })
    }
}

/// How an interface's timestamp units become nanoseconds.
#[derive(Debug, Clone, Copy)]
enum Scale {
    /// Units of 10^-n seconds with n <= 9: multiply.
    Multiply(u32),
    /// Finer units, or units of 2^-n seconds: this many per second.
    Divide(i128),
    /// A resolution too fine to represent (more than 10^38 or 2^126 units per second).
    Unusable,
}

impl Scale {
    /// From an `if_tsresol` byte: the high bit says power of 2 (set) or of 10 (clear).
    fn new(resolution: u8) -> Self {
        let exponent = u32::from(resolution & 0x7f);
        if resolution & 0x80 == 0 {
            if let Some(factor) = 9u32
                .checked_sub(exponent)
                .and_then(|e| 10u32.checked_pow(e))
            {
                return Self::Multiply(factor);
            }
            10i128
                .checked_pow(exponent)
                .map_or(Self::Unusable, Self::Divide)
        } else {
            2i128
                .checked_pow(exponent)
                .map_or(Self::Unusable, Self::Divide)
        }
    }
}

/// A frame found in the buffer: `buf[data_start..data_end]`.
struct Record {
    ts_ns: i64,
    link: LinkType,
    data_start: usize,
    data_end: usize,
    orig_len: u32,
    offset: u64,
}

enum Block {
    Packet(Record),
    Other,
}

/// The options of a pcapng block: (code, value) pairs up to the end-of-options option or the
/// end of the block.
struct Options<'a> {
    rest: &'a [u8],
    endian: Endian,
}

impl<'a> Options<'a> {
    fn new(rest: &'a [u8], endian: Endian) -> Self {
        Self { rest, endian }
    }
}

impl<'a> Iterator for Options<'a> {
    type Item = Result<(u16, &'a [u8]), &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&[c0, c1, l0, l1], rest) = self.rest.split_first_chunk()?;
        let code = self.endian.u16([c0, c1]);
        if code == 0 {
            self.rest = &[];
            return None;
        }
        let len = usize::from(self.endian.u16([l0, l1]));
        let Some(value) = rest.get(..len) else {
            self.rest = &[];
            return Some(Err("option runs past the end of its block"));
        };
        self.rest = rest.get(len.next_multiple_of(4)..).unwrap_or_default();
        Some(Ok((code, value)))
    }
}

fn error(offset: u64, reason: &'static str) -> CaptureError {
    CaptureError {
        offset,
        reason,
        io: None,
    }
}

fn to_usize(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}
