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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A frame as written: timestamp in nanoseconds, captured bytes, original length.
    type Written = (i64, Vec<u8>, u32);

    fn put16(out: &mut Vec<u8>, big: bool, v: u16) {
        out.extend(if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        });
    }

    fn put32(out: &mut Vec<u8>, big: bool, v: u32) {
        out.extend(if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        });
    }

    /// A classic pcap file; `magic` picks the timestamp unit (and the modified format).
    fn pcap(big: bool, magic: u32, link: u32, frames: &[Written]) -> Vec<u8> {
        let mut out = Vec::new();
        put32(&mut out, big, magic);
        put16(&mut out, big, 2);
        put16(&mut out, big, 4);
        put32(&mut out, big, 0);
        put32(&mut out, big, 0);
        put32(&mut out, big, 65535);
        put32(&mut out, big, link);
        for (ts, data, orig) in frames {
            let ts = u64::try_from(*ts).unwrap();
            let (seconds, fraction) = match magic {
                0xa1b2_3c4d => (ts / 1_000_000_000, ts % 1_000_000_000),
                _ => (ts / 1_000_000_000, ts % 1_000_000_000 / 1000),
            };
            put32(&mut out, big, u32::try_from(seconds).unwrap());
            put32(&mut out, big, u32::try_from(fraction).unwrap());
            put32(&mut out, big, u32::try_from(data.len()).unwrap());
            put32(&mut out, big, *orig);
            if magic == 0xa1b2_cd34 {
                out.extend([0; 8]);
            }
            out.extend(data);
        }
        out
    }

    /// Writes pcapng blocks, one section at a time.
    struct Ng {
        out: Vec<u8>,
        big: bool,
    }

    impl Ng {
        fn new() -> Self {
            Ng {
                out: Vec::new(),
                big: false,
            }
        }

        fn block(&mut self, block_type: u32, body: &[u8]) -> &mut Self {
            let mut body = body.to_vec();
            while body.len() % 4 != 0 {
                body.push(0);
            }
            let len = u32::try_from(body.len() + 12).unwrap();
            let big = self.big;
            put32(&mut self.out, big, block_type);
            put32(&mut self.out, big, len);
            self.out.extend(body);
            put32(&mut self.out, big, len);
            self
        }

        fn section(&mut self, big: bool) -> &mut Self {
            self.big = big;
            let mut body = Vec::new();
            put32(&mut body, big, 0x1a2b_3c4d);
            put16(&mut body, big, 1);
            put16(&mut body, big, 0);
            body.extend((-1i64).to_le_bytes());
            self.block(PCAPNG_SHB, &body)
        }

        /// An option list from (code, value) pairs, with the end-of-options option.
        fn options(&self, options: &[(u16, &[u8])]) -> Vec<u8> {
            let mut out = Vec::new();
            for (code, value) in options {
                put16(&mut out, self.big, *code);
                put16(&mut out, self.big, u16::try_from(value.len()).unwrap());
                out.extend(*value);
                while out.len() % 4 != 0 {
                    out.push(0);
                }
            }
            if !options.is_empty() {
                out.extend([0; 4]);
            }
            out
        }

        fn interface(&mut self, link: u16, snaplen: u32, options: &[(u16, &[u8])]) -> &mut Self {
            let mut body = Vec::new();
            put16(&mut body, self.big, link);
            put16(&mut body, self.big, 0);
            put32(&mut body, self.big, snaplen);
            body.extend(self.options(options));
            self.block(PCAPNG_IDB, &body)
        }

        fn packet(&mut self, interface: u32, units: u64, data: &[u8], orig: u32) -> &mut Self {
            let mut body = Vec::new();
            put32(&mut body, self.big, interface);
            put32(&mut body, self.big, u32::try_from(units >> 32).unwrap());
            put32(
                &mut body,
                self.big,
                u32::try_from(units & 0xffff_ffff).unwrap(),
            );
            put32(&mut body, self.big, u32::try_from(data.len()).unwrap());
            put32(&mut body, self.big, orig);
            body.extend(data);
            while body.len() % 4 != 0 {
                body.push(0);
            }
            body.extend(self.options(&[(1, b"a comment")]));
            self.block(PCAPNG_EPB, &body)
        }

        fn simple(&mut self, data: &[u8], orig: u32) -> &mut Self {
            let mut body = Vec::new();
            put32(&mut body, self.big, orig);
            body.extend(data);
            self.block(PCAPNG_SPB, &body)
        }

        fn obsolete(&mut self, interface: u16, units: u64, data: &[u8]) -> &mut Self {
            let mut body = Vec::new();
            put16(&mut body, self.big, interface);
            put16(&mut body, self.big, 0);
            put32(&mut body, self.big, u32::try_from(units >> 32).unwrap());
            put32(
                &mut body,
                self.big,
                u32::try_from(units & 0xffff_ffff).unwrap(),
            );
            put32(&mut body, self.big, u32::try_from(data.len()).unwrap());
            put32(&mut body, self.big, u32::try_from(data.len()).unwrap());
            body.extend(data);
            self.block(PCAPNG_PB, &body)
        }
    }

    /// What a frame says, owned: (ts_ns, link, data, orig_len, offset).
    type Read = (i64, LinkType, Vec<u8>, u32, u64);

    /// Reads every frame; the error that ended the file, if one did.
    fn read_all(mut reader: impl io::Read) -> (Vec<Read>, Option<CaptureError>) {
        let mut capture = match CaptureReader::new(&mut reader) {
            Ok(capture) => capture,
            Err(e) => return (Vec::new(), Some(e)),
        };
        let mut frames = Vec::new();
        loop {
            match capture.next_frame() {
                Ok(Some(f)) => {
                    frames.push((f.ts_ns, f.link, f.data.to_vec(), f.orig_len, f.offset))
                }
                Ok(None) => return (frames, None),
                Err(e) => return (frames, Some(e)),
            }
        }
    }

    fn sample_frames() -> Vec<Written> {
        vec![
            (1_700_000_000_123_456_000, vec![1, 2, 3, 4, 5], 60),
            (1_700_000_001_000_001_000, Vec::new(), 0),
            (4_294_967_295_999_999_000, vec![0xff; 70], 70),
        ]
    }

    #[test]
    fn classic_pcap_in_both_byte_orders_and_both_units() {
        for big in [false, true] {
            for magic in [0xa1b2_c3d4, 0xa1b2_3c4d, 0xa1b2_cd34] {
                let mut frames = sample_frames();
                if magic == 0xa1b2_3c4d {
                    frames[0].0 += 789; // nanoseconds survive in the nanosecond format
                }
                let file = pcap(big, magic, 1, &frames);
                let mut capture = CaptureReader::new(file.as_slice()).unwrap();
                assert_eq!(capture.format(), Format::Pcap);
                let record_header = if magic == 0xa1b2_cd34 { 24 } else { 16 };
                let mut offset = 24;
                for (ts, data, orig) in &frames {
                    let frame = capture.next_frame().unwrap().unwrap();
                    assert_eq!(
                        (
                            frame.ts_ns,
                            frame.link,
                            frame.data,
                            frame.orig_len,
                            frame.offset
                        ),
                        (*ts, LinkType::Ethernet, data.as_slice(), *orig, offset),
                        "big {big} magic {magic:x}"
                    );
                    offset += record_header + data.len() as u64;
                }
                assert!(capture.next_frame().unwrap().is_none());
                assert!(
                    capture.next_frame().unwrap().is_none(),
                    "the end stays the end"
                );
            }
        }
    }

    #[test]
    fn link_types_by_number() {
        for (number, link) in [
            (0, LinkType::Null),
            (1, LinkType::Ethernet),
            (12, LinkType::Raw),
            (14, LinkType::Raw),
            (101, LinkType::Raw),
            (108, LinkType::Loop),
            (113, LinkType::LinuxSll),
            (228, LinkType::Ipv4),
            (229, LinkType::Ipv6),
            (276, LinkType::LinuxSll2),
            (147, LinkType::Other(147)),
        ] {
            assert_eq!(LinkType::from_number(number), link);
            assert_eq!(LinkType::from_number(link.number()), link);
        }
        // The high bits of the pcap header's link field (FCS length) are not part of the type.
        let file = pcap(false, 0xa1b2_c3d4, 0x1000_0000 | 113, &sample_frames());
        let (frames, end) = read_all(file.as_slice());
        assert!(end.is_none());
        assert!(frames.iter().all(|f| f.1 == LinkType::LinuxSll));
    }

    /// Two sections in opposite byte orders; interfaces with their own link types and
    /// resolutions; every packet block kind; blocks to skip.
    fn pcapng_file() -> Vec<u8> {
        let mut ng = Ng::new();
        ng.section(false)
            .interface(1, 0, &[])
            .interface(101, 0, &[(9, &[9]), (2, b"eth0")])
            .interface(228, 4, &[(9, &[0x80 | 20]), (14, &10i64.to_le_bytes())])
            .block(5, &[0; 28]) // interface statistics
            .packet(0, 1_600_000_000_000_001, &[1, 2, 3], 3)
            .packet(1, 1_600_000_000_000_000_007, &[4; 9], 1500)
            .block(4, &[0; 8]) // name resolution
            .packet(2, 3 << 20 | 1 << 19, &[5; 4], 4)
            .simple(&[6; 10], 10)
            .obsolete(1, 1_600_000_001_000_000_000, &[7; 2])
            .block(0x0bad, &[1, 2, 3]); // custom
        ng.section(true)
            .interface(113, 0, &[(9, &[3])])
            .packet(0, 42, &[8; 16], 16);
        ng.out
    }

    #[test]
    fn pcapng_sections_interfaces_and_packet_blocks() {
        let file = pcapng_file();
        let capture = CaptureReader::new(file.as_slice()).unwrap();
        assert_eq!(capture.format(), Format::PcapNg);
        let (frames, end) = read_all(file.as_slice());
        assert!(end.is_none(), "{end:?}");
        let summary: Vec<_> = frames
            .iter()
            .map(|f| (f.0, f.1, f.2.clone(), f.3))
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    1_600_000_000_000_001_000,
                    LinkType::Ethernet,
                    vec![1, 2, 3],
                    3
                ),
                (1_600_000_000_000_000_007, LinkType::Raw, vec![4; 9], 1500),
                // 2^-20 s units: 3.5 s, plus the interface's 10 s offset.
                (13_500_000_000, LinkType::Ipv4, vec![5; 4], 4),
                // A simple packet block: interface 0, no timestamp of its own.
                (13_500_000_000, LinkType::Ethernet, vec![6; 10], 10),
                (1_600_000_001_000_000_000, LinkType::Raw, vec![7; 2], 2),
                (42_000_000, LinkType::LinuxSll, vec![8; 16], 16),
            ]
        );
        // Offsets point at each packet's block.
        for (_, _, _, _, offset) in &frames {
            let offset = usize::try_from(*offset).unwrap();
            let block_type = &file[offset..offset + 4];
            assert!(
                [[6, 0, 0, 0], [3, 0, 0, 0], [2, 0, 0, 0], [0, 0, 0, 6]]
                    .contains(&block_type.try_into().unwrap()),
                "offset {offset} is not a packet block"
            );
        }
    }

    #[test]
    fn simple_packet_blocks_are_cut_at_the_snapshot_length() {
        let mut ng = Ng::new();
        ng.section(false).interface(1, 6, &[]).simple(&[9; 10], 100);
        let (frames, end) = read_all(ng.out.as_slice());
        assert!(end.is_none());
        assert_eq!(frames.len(), 1);
        assert_eq!((frames[0].2.as_slice(), frames[0].3), (&[9u8; 6][..], 100));
    }

    #[test]
    fn timestamp_resolutions() {
        let at = |resolution: u8, units: u64| {
            let scale = Scale::new(resolution);
            Interface {
                link: LinkType::Ethernet,
                snaplen: 0,
                scale,
                offset_ns: 0,
            }
            .nanoseconds(units)
        };
        assert_eq!(at(6, 1_500_000), 1_500_000_000);
        assert_eq!(at(0, 2), 2_000_000_000);
        assert_eq!(at(9, 7), 7);
        assert_eq!(at(12, 7_000_000_000_000), 7_000_000_000);
        assert_eq!(at(0x80, 3), 3_000_000_000);
        assert_eq!(at(0x80 | 10, 1536), 1_500_000_000);
        assert_eq!(at(0x80 | 30, 1 << 30), 1_000_000_000);
        assert_eq!(at(0x7f, u64::MAX), 0, "10^-127 s units round to 0");
        assert_eq!(at(0, u64::MAX), i64::MAX, "saturates");
    }

    /// Every prefix of a file reads the frames whose records it holds whole; it ends cleanly
    /// when cut between records, and with a truncation error at the cut record otherwise.
    fn check_prefixes(file: &[u8], record_starts: &[u64], header_len: usize) {
        let (all, end) = read_all(file);
        assert!(end.is_none());
        for cut in 0..file.len() {
            let (frames, end) = read_all(&file[..cut]);
            assert_eq!(frames, all[..frames.len()], "cut at {cut}");
            if cut < header_len {
                assert_eq!(end.unwrap().offset, 0, "cut at {cut}");
                continue;
            }
            let cut = cut as u64;
            let record = record_starts
                .iter()
                .rev()
                .find(|&&s| s <= cut)
                .copied()
                .unwrap();
            // Frames are in the records before the cut one.
            let frames_before = all.iter().filter(|f| f.4 < record).count();
            assert_eq!(frames.len(), frames_before, "cut at {cut}");
            if record == cut {
                assert!(end.is_none(), "cut at {cut} is between records: {end:?}");
            } else {
                let error = end.unwrap();
                assert!(error.is_truncated(), "cut at {cut}: {error}");
                assert_eq!(error.offset, record, "cut at {cut}");
            }
        }
    }

    #[test]
    fn every_truncation_of_a_pcap_file() {
        let file = pcap(true, 0xa1b2_c3d4, 1, &sample_frames());
        let starts: Vec<u64> = read_all(file.as_slice()).0.iter().map(|f| f.4).collect();
        assert_eq!(starts, [24, 45, 61]);
        check_prefixes(&file, &starts, 24);
    }

    #[test]
    fn every_truncation_of_a_pcapng_file() {
        let file = pcapng_file();
        // Block starts, found by walking the lengths; the second section is big-endian.
        let mut starts = Vec::new();
        let mut at = 0;
        while at < file.len() {
            starts.push(at as u64);
            let len: [u8; 4] = file[at + 4..at + 8].try_into().unwrap();
            let len = if starts.len() > 12 {
                u32::from_be_bytes(len)
            } else {
                u32::from_le_bytes(len)
            };
            at += usize::try_from(len).unwrap();
        }
        assert_eq!(at, file.len());
        // Cut inside the first section header, `new` fails; at its end, the file is empty.
        check_prefixes(&file, &starts, 28);
    }

    #[test]
    fn hostile_lengths_are_errors_at_the_record() {
        // A classic record longer than the limit.
        let mut file = pcap(false, 0xa1b2_c3d4, 1, &sample_frames()[..1]);
        let second = file.len();
        file.extend(pcap(false, 0xa1b2_c3d4, 1, &sample_frames()[..1])[24..].iter());
        file[second + 8..second + 12].copy_from_slice(&(17u32 << 20).to_le_bytes());
        let (frames, end) = read_all(file.as_slice());
        assert_eq!(frames.len(), 1);
        let error = end.unwrap();
        assert_eq!(
            (error.offset, error.reason),
            (second as u64, "record longer than the 16 MiB limit")
        );
        assert_eq!(
            error.to_string(),
            format!("at byte {second}: record longer than the 16 MiB limit")
        );
        assert!(!error.is_truncated());

        // pcapng blocks, each broken in one way, after a good section header and interface.
        let block = |f: &dyn Fn(&mut Ng, usize)| {
            let mut ng = Ng::new();
            ng.section(false).interface(1, 0, &[]);
            let at = ng.out.len();
            f(&mut ng, at);
            let (frames, end) = read_all(ng.out.as_slice());
            assert!(frames.is_empty());
            let error = end.unwrap();
            assert_eq!(error.offset, at as u64);
            error.reason
        };
        let set_u32 = |ng: &mut Ng, at: usize, value: u32| {
            ng.out[at..at + 4].copy_from_slice(&value.to_le_bytes());
        };
        assert_eq!(
            block(&|ng, at| {
                ng.packet(0, 1, &[1; 8], 8);
                set_u32(ng, at + 4, 1 << 30);
            }),
            "block longer than the 16 MiB limit"
        );
        assert_eq!(
            block(&|ng, at| {
                ng.packet(0, 1, &[1; 8], 8);
                ng.out[at + 4] += 2;
            }),
            "block length is not a multiple of 4 of at least 12"
        );
        assert_eq!(
            block(&|ng, at| {
                ng.packet(0, 1, &[1; 8], 8);
                set_u32(ng, at + 4, 8);
            }),
            "block length is not a multiple of 4 of at least 12"
        );
        assert_eq!(
            block(&|ng, _| {
                ng.packet(0, 1, &[1; 8], 8);
                let end = ng.out.len();
                ng.out[end - 4] += 4;
            }),
            "block's trailing length differs from its leading length"
        );
        assert_eq!(
            block(&|ng, _| {
                ng.packet(3, 1, &[1; 8], 8);
            }),
            "packet block names an interface not described in its section"
        );
        assert_eq!(
            block(&|ng, at| {
                ng.packet(0, 1, &[1; 8], 8);
                set_u32(ng, at + 20, 100);
            }),
            "packet data runs past its block"
        );
        assert_eq!(
            block(&|ng, _| {
                ng.block(PCAPNG_EPB, &[0; 16]);
            }),
            "packet block shorter than its fields"
        );
        assert_eq!(
            block(&|ng, _| {
                // if_tsresol claiming 8 bytes where the block has 4 left.
                ng.block(
                    PCAPNG_IDB,
                    &[1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 8, 0, 6, 0, 0, 0],
                );
            }),
            "option runs past the end of its block"
        );
        let mut no_interface = Ng::new();
        no_interface.section(false).simple(&[1, 2], 2);
        let error = read_all(no_interface.out.as_slice()).1.unwrap();
        assert_eq!(
            (error.offset, error.reason),
            (28, "simple packet block in a section without interfaces")
        );
    }

    #[test]
    fn files_that_are_not_captures() {
        for (bytes, offset, reason) in [
            (&b""[..], 0, "shorter than a capture file header"),
            (
                b"GIF89a..",
                0,
                "not a pcap or pcapng file (unknown magic number)",
            ),
            (
                &[0xd4, 0xc3, 0xb2, 0xa1, 2, 0],
                0,
                "the file ends inside the pcap file header",
            ),
            (
                &[0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 1, 2, 3, 4],
                0,
                "section header with a bad byte-order magic",
            ),
        ] {
            let error = CaptureReader::new(bytes).err().unwrap();
            assert_eq!((error.offset, error.reason), (offset, reason));
        }
        let mut version3 = pcap(false, 0xa1b2_c3d4, 1, &[]);
        version3[4] = 3;
        let error = CaptureReader::new(version3.as_slice()).err().unwrap();
        assert_eq!(error.reason, "unsupported pcap version (not 2.x)");
        let mut ng = Ng::new();
        ng.section(false);
        ng.out[12] = 2;
        let error = CaptureReader::new(ng.out.as_slice()).err().unwrap();
        assert_eq!(error.reason, "unsupported pcapng version (not 1.x)");
    }

    /// Hands out at most `step` bytes per read, with an interruption before each.
    struct Trickle<'a> {
        bytes: &'a [u8],
        step: usize,
        interrupt: bool,
    }

    impl io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.interrupt = !self.interrupt;
            if self.interrupt {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let n = self.step.min(buf.len()).min(self.bytes.len());
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    #[test]
    fn short_reads_and_large_records() {
        // Records that cross the reader's chunks, and one larger than a chunk.
        let mut frames: Vec<Written> = (0..40)
            .map(|i| {
                (
                    i * 1000,
                    vec![u8::try_from(i).unwrap(); 9000 + usize::try_from(i).unwrap()],
                    0,
                )
            })
            .collect();
        frames.push((7, vec![0xab; CHUNK_LEN * 3 + 5], 1));
        frames.push((8, vec![1; 10], 1));
        for file in [pcap(false, 0xa1b2_c3d4, 1, &frames), {
            let mut ng = Ng::new();
            ng.section(true).interface(1, 0, &[]);
            for (ts, data, orig) in &frames {
                ng.packet(0, u64::try_from(*ts).unwrap() / 1000, data, *orig);
            }
            ng.out
        }] {
            let (whole, end) = read_all(file.as_slice());
            assert!(end.is_none());
            assert_eq!(whole.len(), frames.len());
            for ((_, _, data, _, _), (_, written, _)) in whole.iter().zip(&frames) {
                assert_eq!(data, written);
            }
            for step in [1, 7, 4096] {
                let trickle = Trickle {
                    bytes: &file,
                    step,
                    interrupt: false,
                };
                let (read, end) = read_all(trickle);
                assert!(end.is_none());
                assert_eq!(read, whole, "step {step}");
            }
        }
    }

    #[test]
    fn read_errors_are_reported_with_their_cause() {
        struct Failing;
        impl io::Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let file = pcap(false, 0xa1b2_c3d4, 1, &sample_frames());
        let (frames, end) = read_all(io::Read::chain(&file[..40], Failing));
        assert!(frames.is_empty());
        let error = end.unwrap();
        assert_eq!(
            (error.offset, error.reason),
            (40, "reading the file failed")
        );
        assert_eq!(error.io.unwrap().to_string(), "disk on fire");
    }

    fn any_frames() -> impl Strategy<Value = Vec<Written>> {
        prop::collection::vec(
            (
                0i64..4_000_000_000_000_000_000,
                prop::collection::vec(any::<u8>(), 0..300),
                any::<u32>(),
            ),
            0..8,
        )
    }

    proptest! {
        #[test]
        fn pcap_round_trip(frames in any_frames(), big in any::<bool>(), nanos in any::<bool>()) {
            let magic = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
            let (read, end) = read_all(pcap(big, magic, 101, &frames).as_slice());
            prop_assert!(end.is_none());
            let read: Vec<Written> = read.into_iter().map(|f| (f.0, f.2, f.3)).collect();
            let expected: Vec<Written> = frames
                .into_iter()
                .map(|(ts, data, orig)| (if nanos { ts } else { ts / 1000 * 1000 }, data, orig))
                .collect();
            prop_assert_eq!(read, expected);
        }

        #[test]
        fn pcapng_round_trip(frames in any_frames(), big in any::<bool>(), resolution in 0u8..=9) {
            let mut ng = Ng::new();
            ng.section(big).interface(1, 0, &[(9, &[resolution])]);
            let unit = 10i64.pow(9 - u32::from(resolution));
            for (ts, data, orig) in &frames {
                ng.packet(0, u64::try_from(ts / unit).unwrap(), data, *orig);
            }
            let (read, end) = read_all(ng.out.as_slice());
            prop_assert!(end.is_none());
            let read: Vec<Written> = read.into_iter().map(|f| (f.0, f.2, f.3)).collect();
            let expected: Vec<Written> =
                frames.into_iter().map(|(ts, data, orig)| (ts / unit * unit, data, orig)).collect();
            prop_assert_eq!(read, expected);
        }

        #[test]
        fn arbitrary_bytes_give_frames_inside_the_file_or_an_error(
            head in prop::sample::select(vec![
                vec![],
                vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0],
                vec![0xa1, 0xb2, 0x3c, 0x4d, 0, 2, 0, 4],
                vec![0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0],
            ]),
            tail in prop::collection::vec(any::<u8>(), 0..2000),
        ) {
            let mut file = head;
            file.extend(tail);
            check_frames_inside(&file)?;
        }

        #[test]
        fn corrupted_files_give_frames_inside_the_file_or_an_error(
            ng in any::<bool>(),
            corruptions in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut file = if ng { pcapng_file() } else { pcap(false, 0xa1b2_c3d4, 1, &sample_frames()) };
            for (at, value) in corruptions {
                let at = at.index(file.len());
                file[at] = value;
            }
            check_frames_inside(&file)?;
        }
    }

    /// Reading ends (with or without an error), and every frame is a part of the file after
    /// the previous one's record.
    fn check_frames_inside(file: &[u8]) -> Result<(), TestCaseError> {
        let (frames, _) = read_all(file);
        let mut previous: Option<u64> = None;
        for (_, _, data, _, offset) in frames {
            prop_assert!(previous.is_none_or(|p| p < offset));
            prop_assert!(usize::try_from(offset).unwrap() + data.len() <= file.len());
            previous = Some(offset);
        }
        Ok(())
    }
}
