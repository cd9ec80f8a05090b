//! QUIC version 1 (RFC 9000, RFC 9001) client Initial packets: enough to read the TLS
//! ClientHello a client sends to open a connection, which names the server (SNI) and the
//! application protocols (ALPN).
//!
//! Initial packets are encrypted, but with keys anyone can derive from the Destination
//! Connection ID (DCID) the client chose (RFC 9001 §5.2). [`ClientInitials`] keeps the state of
//! one flow: it derives those keys, removes header protection, decrypts each client Initial
//! packet of a datagram (coalesced packets included), decodes the frames ([`crypto_frames`]) and
//! puts the CRYPTO stream back together by offset until the whole ClientHello handshake message
//! is there. Reading the ClientHello itself is the TLS decoder's job.
//!
//! Hostile input: every length is checked against the bytes that hold it, the CRYPTO stream is
//! capped at [`MAX_CRYPTO_LEN`] bytes in at most [`MAX_CRYPTO_PIECES`] separate pieces, and data
//! that contradicts bytes already received at the same offset is refused rather than picked
//! from, so the firewall never reads a ClientHello other than the one the server could read.

use std::ops::Range;

use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit};
use aes_gcm::Aes128Gcm;
use aes_gcm::aead::AeadInPlace;
use aes_gcm::aead::generic_array::GenericArray;
use hkdf::Hkdf;
use sha2::Sha256;

/// QUIC version 1 (RFC 9000), the only version decoded.
pub const VERSION_1: u32 = 0x0000_0001;

/// Most CRYPTO stream bytes kept for one flow: a ClientHello (or CRYPTO data) reaching past this
/// offset is refused with [`QuicError::TooLarge`]. Real ClientHellos, post-quantum key shares
/// included, stay well under it.
pub const MAX_CRYPTO_LEN: usize = 64 * 1024;

/// Most separate pieces of CRYPTO stream one flow holds while it waits for the gaps between them
/// to be filled; one more is refused with [`QuicError::TooLarge`].
pub const MAX_CRYPTO_PIECES: usize = 256;

/// Why bytes could not be read as client Initial packets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuicError {
    /// The datagram does not start with an Initial packet: a short-header (1-RTT) packet, a
    /// 0-RTT, Handshake or Retry packet, or not QUIC at all. The flow's state is unchanged.
    #[error("not a QUIC Initial packet")]
    NotInitial,
    /// The datagram starts with a long-header packet of another version than 1 (version 0 is
    /// version negotiation). The flow's state is unchanged.
    #[error("unsupported QUIC version {0:#010x}")]
    UnsupportedVersion(u32),
    /// The bytes break the format: a field runs past its packet, a frame is not allowed in an
    /// Initial packet, CRYPTO data contradicts data already received, ...
    #[error("invalid QUIC packet at byte {offset}: {reason}")]
    Invalid {
        /// Where the problem is: in the datagram for [`ClientInitials::push_datagram`] (a problem
        /// inside the reassembled CRYPTO stream points at the packet that brought the data), in
        /// the plaintext for [`crypto_frames`].
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// An Initial packet failed authentication: its bytes were changed on the way, or it was not
    /// protected with the Initial keys of the flow (nor with those of its own DCID).
    #[error("QUIC Initial packet does not decrypt with the flow's Initial keys")]
    Decrypt,
    /// The ClientHello, or the CRYPTO data sent for it, goes past [`MAX_CRYPTO_LEN`] bytes or
    /// arrives in more than [`MAX_CRYPTO_PIECES`] separate pieces.
    #[error("QUIC CRYPTO stream beyond the reassembly limits")]
    TooLarge,
}

/// Whether a datagram starts with a QUIC version 1 Initial packet (long header, fixed bit set,
/// Initial type). Cheap: it reads five bytes and decrypts nothing.
pub fn is_client_initial(datagram: &[u8]) -> bool {
    match datagram {
        [first, v0, v1, v2, v3, ..] => {
            first & 0xf0 == 0xc0 && u32::from_be_bytes([*v0, *v1, *v2, *v3]) == VERSION_1
        }
        _ => false,
    }
}

/// The client Initial packets of one flow (one client address and port to one server address
/// and port), read until the TLS ClientHello is complete.
///
/// The Initial keys come from the DCID of the first Initial packet that decrypts; later Initial
/// packets use them too, even after the client has switched to a DCID the server chose (RFC 9001
/// §5.2). The one exception is a client that received a Retry: it starts over with keys from the
/// DCID the server gave it, so an Initial that does not decrypt with the flow's keys and carries
/// another DCID is tried with keys from its own DCID, and the flow switches to them when that
/// works. Either way only authenticated packets reach the CRYPTO stream.
#[derive(Debug, Clone, Default)]
pub struct ClientInitials {
    keys: Option<FlowKeys>,
    crypto: CryptoStream,
    done: bool,
}

impl ClientInitials {
    /// A flow that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads one UDP payload the client sent: decrypts every client Initial packet in it
    /// (coalesced packets included; 0-RTT and Handshake packets are skipped, as is anything
    /// after a short-header packet) and adds their CRYPTO data to the stream.
    ///
    /// Returns the ClientHello handshake message (type 1, 3-byte length and body) as soon as all
    /// of it has arrived (packets after that one in the datagram are not read), `Ok(None)` while
    /// some is missing, and `Ok(None)` for every call after the one that returned it.
    ///
    /// A datagram that does not start with a version 1 Initial packet is
    /// [`QuicError::NotInitial`] or [`QuicError::UnsupportedVersion`] and changes nothing, so the
    /// caller can feed every datagram of the flow. On any other error, the data of packets before
    /// the faulty one in the datagram has been kept.
    pub fn push_datagram(&mut self, datagram: &[u8]) -> Result<Option<Vec<u8>>, QuicError> {
        if self.done {
            return Ok(None);
        }
        check_first_packet(datagram)?;
        let mut start = 0;
        let mut datagram_dcid: Option<&[u8]> = None;
        while let Some(&first) = datagram.get(start) {
            if start > 0 && (first & 0xc0 != 0xc0 || version_at(datagram, start) != Some(VERSION_1))
            {
                // A short-header packet runs to the end of the datagram; other versions and
                // padding after the last packet are no client Initial either.
                break;
            }
            let header = parse_long_header(datagram, start)?;
            // RFC 9000 §12.2: packets coalesced after the first carry the same DCID; ignore
            // those that do not.
            let same_dcid = *datagram_dcid.get_or_insert(header.dcid) == header.dcid;
            if header.packet_type == PacketType::Initial && same_dcid {
                self.take_initial(datagram, &header)?;
                if let Some(hello) = self.crypto.client_hello()? {
                    self.done = true;
                    self.crypto = CryptoStream::default();
                    return Ok(Some(hello));
                }
            }
            start = header.end;
        }
        Ok(None)
    }

    /// The Destination Connection ID the flow's Initial keys come from: that of the first
    /// Initial packet that decrypted (or of the first one after a Retry); `None` until one has.
    pub fn dcid(&self) -> Option<&[u8]> {
        self.keys.as_ref().map(|flow| flow.dcid.as_slice())
    }

    /// Decrypts the Initial packet `header` describes and adds its CRYPTO frames to the stream.
    fn take_initial(&mut self, datagram: &[u8], header: &LongHeader<'_>) -> Result<(), QuicError> {
        let opened = self.open_initial(datagram, header)?;
        let frames = crypto_frames(&opened.plaintext).map_err(|e| match e {
            QuicError::Invalid { offset, reason } => invalid(opened.payload_start + offset, reason),
            other => other,
        })?;
        for frame in &frames {
            self.crypto
                .insert(frame.offset, &frame.data, header.start)?;
        }
        Ok(())
    }

    /// Decrypts with the flow's keys, or with keys from the packet's own DCID when the flow has
    /// none yet or the packet is for another DCID (after a Retry) and the flow's keys fail.
    fn open_initial(
        &mut self,
        datagram: &[u8],
        header: &LongHeader<'_>,
    ) -> Result<Opened, QuicError> {
        if let Some(flow) = &mut self.keys {
            match open(datagram, header, &flow.keys, flow.largest_pn) {
                Ok(opened) => {
                    flow.largest_pn = Some(flow.largest_pn.map_or(opened.pn, |l| l.max(opened.pn)));
                    return Ok(opened);
                }
                Err(QuicError::Decrypt) if header.dcid != flow.dcid.as_slice() => {}
                Err(other) => return Err(other),
            }
        }
        let keys = Keys::client_initial(header.dcid).ok_or(QuicError::Decrypt)?;
        let opened = open(datagram, header, &keys, None)?;
        self.keys = Some(FlowKeys {
            dcid: header.dcid.to_vec(),
            keys,
            largest_pn: Some(opened.pn),
        });
        Ok(opened)
    }
}

/// The data of one CRYPTO frame: `data` belongs at `offset` in the CRYPTO stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoFrame {
    /// Where the data starts in the stream.
    pub offset: u64,
    /// The bytes.
    pub data: Vec<u8>,
}

/// Decodes the frames of a decrypted Initial packet payload and returns its CRYPTO frames in
/// the order they appear.
///
/// Checked and skipped: PADDING, PING, ACK (with or without ECN counts; ranges must stay at or
/// above packet number 0) and CONNECTION_CLOSE of the transport kind. Any other frame type is
/// not allowed in an Initial packet (RFC 9000 §12.4) and is an error, as is an empty payload, a
/// frame running past the end and a CRYPTO frame ending past 2^62 - 1. Offsets in errors count
/// from the start of `plaintext`.
pub fn crypto_frames(plaintext: &[u8]) -> Result<Vec<CryptoFrame>, QuicError> {
    if plaintext.is_empty() {
        return Err(invalid(0, "packet has no frames"));
    }
    let mut r = Reader {
        bytes: plaintext,
        pos: 0,
    };
    let mut frames = Vec::new();
    while let Some(&frame_type) = plaintext.get(r.pos) {
        let at = r.pos;
        r.pos += 1;
        match frame_type {
            FRAME_PADDING | FRAME_PING => {}
            FRAME_ACK | FRAME_ACK_ECN => r.ack(frame_type == FRAME_ACK_ECN)?,
            FRAME_CRYPTO => {
                let offset = r.varint("CRYPTO offset runs past the end")?;
                let len = r.varint_len("CRYPTO length runs past the end")?;
                let data = r.take(len, "CRYPTO data runs past the end")?;
                let end = u64::try_from(len).ok().and_then(|l| offset.checked_add(l));
                if end.is_none_or(|end| end > MAX_VARINT) {
                    return Err(invalid(at, "CRYPTO data ends past 2^62 - 1"));
                }
                frames.push(CryptoFrame {
                    offset,
                    data: data.to_vec(),
                });
            }
            FRAME_CONNECTION_CLOSE => {
                r.varint("CONNECTION_CLOSE error code runs past the end")?;
                r.varint("CONNECTION_CLOSE frame type runs past the end")?;
                let len = r.varint_len("CONNECTION_CLOSE reason length runs past the end")?;
                r.take(len, "CONNECTION_CLOSE reason runs past the end")?;
            }
            _ => return Err(invalid(at, "frame type not allowed in an Initial packet")),
        }
    }
    Ok(frames)
}

/// QUIC version 1 initial salt (RFC 9001 §5.2).
const INITIAL_SALT: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad,
    0xcc, 0xbb, 0x7f, 0x0a,
];
/// Longest connection ID in version 1 (RFC 9000 §17.2).
const MAX_CID_LEN: usize = 20;
/// Header protection samples 16 bytes, starting 4 bytes after the packet number starts
/// (RFC 9001 §5.4.2).
const SAMPLE_OFFSET: usize = 4;
const SAMPLE_LEN: usize = 16;
const TAG_LEN: usize = 16;
/// Largest value a variable-length integer holds.
const MAX_VARINT: u64 = (1 << 62) - 1;
/// A TLS handshake message starts with its type and a 3-byte length.
const HANDSHAKE_HEADER_LEN: usize = 4;
const CLIENT_HELLO: u8 = 1;

const FRAME_PADDING: u8 = 0x00;
const FRAME_PING: u8 = 0x01;
const FRAME_ACK: u8 = 0x02;
const FRAME_ACK_ECN: u8 = 0x03;
const FRAME_CRYPTO: u8 = 0x06;
const FRAME_CONNECTION_CLOSE: u8 = 0x1c;

fn invalid(offset: usize, reason: &'static str) -> QuicError {
    QuicError::Invalid { offset, reason }
}

/// The version of the long-header packet at `start`, if the datagram holds it.
fn version_at(datagram: &[u8], start: usize) -> Option<u32> {
    let bytes = datagram.get(start + 1..start + 5)?;
    <[u8; 4]>::try_from(bytes).ok().map(u32::from_be_bytes)
}

/// Tells which error a datagram that does not start with a version 1 Initial packet gets.
fn check_first_packet(datagram: &[u8]) -> Result<(), QuicError> {
    let first = *datagram.first().ok_or(QuicError::NotInitial)?;
    if first & 0x80 == 0 {
        return Err(QuicError::NotInitial);
    }
    let version = version_at(datagram, 0).ok_or(invalid(1, "version runs past the end"))?;
    if version != VERSION_1 {
        return Err(QuicError::UnsupportedVersion(version));
    }
    if first & 0x40 == 0 {
        return Err(invalid(0, "fixed bit is not set"));
    }
    if first & 0x30 != 0 {
        return Err(QuicError::NotInitial);
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PacketType {
    Initial,
    ZeroRtt,
    Handshake,
    Retry,
}

/// A version 1 long header, with positions in the datagram.
struct LongHeader<'d> {
    packet_type: PacketType,
    dcid: &'d [u8],
    /// Where the packet starts.
    start: usize,
    /// Where the (protected) packet number starts.
    pn_offset: usize,
    /// Where the packet ends, as its Length field says.
    end: usize,
}

/// Reads the long header of the packet at `start`, whose version the caller has checked.
fn parse_long_header(datagram: &[u8], start: usize) -> Result<LongHeader<'_>, QuicError> {
    let mut r = Reader {
        bytes: datagram,
        pos: start,
    };
    let first = r.u8("packet runs past the end")?;
    r.take(4, "version runs past the end")?;
    let packet_type = match (first >> 4) & 0x03 {
        0 => PacketType::Initial,
        1 => PacketType::ZeroRtt,
        2 => PacketType::Handshake,
        _ => PacketType::Retry,
    };
    if packet_type == PacketType::Retry {
        // A Retry has no Length field; clients never send one.
        return Err(invalid(start, "a client does not send Retry packets"));
    }
    let dcid = r.cid("destination connection ID")?;
    r.cid("source connection ID")?;
    if packet_type == PacketType::Initial {
        let len = r.varint_len("token length runs past the end")?;
        r.take(len, "token runs past the end")?;
    }
    let length_at = r.pos;
    let len = r.varint_len("packet length runs past the end")?;
    let pn_offset = r.pos;
    let end = pn_offset
        .checked_add(len)
        .filter(|&end| end <= datagram.len())
        .ok_or(invalid(
            length_at,
            "packet runs past the end of the datagram",
        ))?;
    Ok(LongHeader {
        packet_type,
        dcid,
        start,
        pn_offset,
        end,
    })
}

/// The client's Initial packet protection keys (RFC 9001 §5).
#[derive(Debug, Clone)]
struct Keys {
    key: [u8; 16],
    iv: [u8; 12],
    hp: [u8; 16],
}

impl Keys {
    /// Derives the client Initial keys from a DCID (RFC 9001 §5.2). `None` only if HKDF refuses
    /// an output length, which these fixed lengths never are.
    fn client_initial(dcid: &[u8]) -> Option<Self> {
        let (_, initial) = Hkdf::<Sha256>::extract(Some(&INITIAL_SALT), dcid);
        let mut client_secret = [0; 32];
        expand_label(&initial, b"client in", &mut client_secret)?;
        let client = Hkdf::<Sha256>::from_prk(&client_secret).ok()?;
        let mut keys = Self {
            key: [0; 16],
            iv: [0; 12],
            hp: [0; 16],
        };
        expand_label(&client, b"quic key", &mut keys.key)?;
        expand_label(&client, b"quic iv", &mut keys.iv)?;
        expand_label(&client, b"quic hp", &mut keys.hp)?;
        Some(keys)
    }
}

/// HKDF-Expand-Label of TLS 1.3 (RFC 8446 §7.1) with an empty context.
fn expand_label(secret: &Hkdf<Sha256>, label: &[u8], out: &mut [u8]) -> Option<()> {
    const PREFIX: &[u8] = b"tls13 ";
    let len = u16::try_from(out.len()).ok()?.to_be_bytes();
    let label_len = u8::try_from(PREFIX.len() + label.len()).ok()?;
    secret
        .expand_multi_info(&[&len, &[label_len], PREFIX, label, &[0]], out)
        .ok()
}

/// The header protection mask for a sample (RFC 9001 §5.4.3).
fn header_mask(hp: &[u8; 16], sample: [u8; SAMPLE_LEN]) -> [u8; 16] {
    let cipher = Aes128::new(&GenericArray::from(*hp));
    let mut block = GenericArray::from(sample);
    cipher.encrypt_block(&mut block);
    block.into()
}

#[derive(Debug, Clone)]
struct FlowKeys {
    dcid: Vec<u8>,
    keys: Keys,
    /// The largest packet number decrypted with these keys, to expand truncated ones.
    largest_pn: Option<u64>,
}

/// A decrypted packet.
struct Opened {
    pn: u64,
    plaintext: Vec<u8>,
    /// Where the payload starts in the datagram.
    payload_start: usize,
}

/// Removes header protection from the packet `header` describes and decrypts its payload.
fn open(
    datagram: &[u8],
    header: &LongHeader<'_>,
    keys: &Keys,
    largest_pn: Option<u64>,
) -> Result<Opened, QuicError> {
    let too_short = invalid(
        header.pn_offset,
        "packet too short for a header protection sample",
    );
    let sample_start = header.pn_offset + SAMPLE_OFFSET;
    let sample = datagram
        .get(sample_start..sample_start + SAMPLE_LEN)
        .filter(|_| sample_start + SAMPLE_LEN <= header.end)
        .and_then(|s| <[u8; SAMPLE_LEN]>::try_from(s).ok())
        .ok_or(too_short.clone())?;
    let mask = header_mask(&keys.hp, sample);
    let [mask_first, mask_pn @ ..] = mask;
    let first = datagram.get(header.start).ok_or(too_short.clone())? ^ (mask_first & 0x0f);
    let pn_len = usize::from(first & 0x03) + 1;
    let payload_start = header.pn_offset + pn_len;

    // The unprotected header is the associated data.
    let mut aad = datagram
        .get(header.start..payload_start)
        .ok_or(too_short.clone())?
        .to_vec();
    if let Some(byte) = aad.first_mut() {
        *byte = first;
    }
    let pn_start = header.pn_offset - header.start;
    let mut truncated_pn = 0u64;
    for (byte, m) in aad.iter_mut().skip(pn_start).zip(mask_pn) {
        *byte ^= m;
        truncated_pn = truncated_pn << 8 | u64::from(*byte);
    }
    let pn = decode_packet_number(largest_pn, truncated_pn, pn_len * 8);

    let body = datagram
        .get(payload_start..header.end)
        .ok_or(too_short.clone())?;
    let split = body.len().checked_sub(TAG_LEN).ok_or(too_short)?;
    let (ciphertext, tag) = body.split_at(split);
    let tag = <[u8; TAG_LEN]>::try_from(tag).map_err(|_| QuicError::Decrypt)?;
    let mut nonce = keys.iv;
    for (n, p) in nonce.iter_mut().rev().zip(pn.to_le_bytes()) {
        *n ^= p;
    }
    let mut plaintext = ciphertext.to_vec();
    Aes128Gcm::new(&GenericArray::from(keys.key))
        .decrypt_in_place_detached(
            &GenericArray::from(nonce),
            &aad,
            &mut plaintext,
            &GenericArray::from(tag),
        )
        .map_err(|_| QuicError::Decrypt)?;
    // RFC 9000 §17.2: the reserved bits are checked only once the packet authenticated.
    if first & 0x0c != 0 {
        return Err(invalid(header.start, "reserved header bits are set"));
    }
    Ok(Opened {
        pn,
        plaintext,
        payload_start,
    })
}

/// Expands a truncated packet number (RFC 9000 Appendix A.3).
fn decode_packet_number(largest: Option<u64>, truncated: u64, bits: usize) -> u64 {
    let expected = largest.map_or(0, |l| l.saturating_add(1));
    let window = 1u64 << bits;
    let half = window / 2;
    let candidate = (expected & !(window - 1)) | truncated;
    if expected
        .checked_sub(half)
        .is_some_and(|low| candidate <= low)
        && candidate < (1 << 62) - window
    {
        candidate + window
    } else if candidate > expected.saturating_add(half) && candidate >= window {
        candidate - window
    } else {
        candidate
    }
}

/// The CRYPTO stream of a flow, put back together from pieces received in any order.
#[derive(Debug, Clone, Default)]
struct CryptoStream {
    /// The stream from offset 0 to the end of the furthest piece; gaps hold zeros.
    bytes: Vec<u8>,
    /// The ranges of `bytes` received, sorted, neither overlapping nor touching.
    pieces: Vec<Range<usize>>,
}

impl CryptoStream {
    /// Adds `data` at `offset`. Bytes already received must be the same again (a retransmission);
    /// `packet_start` is where the packet that brought them starts, for errors.
    fn insert(&mut self, offset: u64, data: &[u8], packet_start: usize) -> Result<(), QuicError> {
        let start = usize::try_from(offset).map_err(|_| QuicError::TooLarge)?;
        let end = start.checked_add(data.len()).ok_or(QuicError::TooLarge)?;
        if end > MAX_CRYPTO_LEN {
            return Err(QuicError::TooLarge);
        }
        if data.is_empty() {
            return Ok(());
        }
        if start == 0 && data.first() != Some(&CLIENT_HELLO) {
            return Err(invalid(
                packet_start,
                "the CRYPTO stream does not start with a ClientHello",
            ));
        }
        let mut touching = 0;
        for piece in &self.pieces {
            if piece.end < start || piece.start > end {
                continue;
            }
            touching += 1;
            let (low, high) = (piece.start.max(start), piece.end.min(end));
            if low < high && self.bytes.get(low..high) != data.get(low - start..high - start) {
                return Err(invalid(
                    packet_start,
                    "CRYPTO data differs from data already received at the same offset",
                ));
            }
        }
        if self.pieces.len() + 1 - touching > MAX_CRYPTO_PIECES {
            return Err(QuicError::TooLarge);
        }
        if self.bytes.len() < end {
            self.bytes.resize(end, 0);
        }
        if let Some(slot) = self.bytes.get_mut(start..end) {
            slot.copy_from_slice(data);
        }
        let mut merged = start..end;
        self.pieces.retain(|piece| {
            if piece.end < merged.start || piece.start > merged.end {
                return true;
            }
            merged = merged.start.min(piece.start)..merged.end.max(piece.end);
            false
        });
        let at = self
            .pieces
            .partition_point(|piece| piece.start < merged.start);
        self.pieces.insert(at, merged);
        Ok(())
    }

    /// The first handshake message (a ClientHello) once all of it has arrived.
    fn client_hello(&self) -> Result<Option<Vec<u8>>, QuicError> {
        let received = match self.pieces.first() {
            Some(piece) if piece.start == 0 => piece.end,
            _ => return Ok(None),
        };
        let Some(head) = self
            .bytes
            .get(..HANDSHAKE_HEADER_LEN)
            .filter(|_| received >= HANDSHAKE_HEADER_LEN)
        else {
            return Ok(None);
        };
        // The type byte was checked when it arrived (`insert`).
        let &[_, l0, l1, l2] = head else {
            return Ok(None);
        };
        let total =
            HANDSHAKE_HEADER_LEN + (usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2));
        if total > MAX_CRYPTO_LEN {
            return Err(QuicError::TooLarge);
        }
        if received < total {
            return Ok(None);
        }
        Ok(self.bytes.get(..total).map(<[u8]>::to_vec))
    }
}

struct Reader<'b> {
    bytes: &'b [u8],
    pos: usize,
}

impl<'b> Reader<'b> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'b [u8], QuicError> {
        let taken = self
            .bytes
            .get(self.pos..)
            .and_then(|rest| rest.get(..n))
            .ok_or(invalid(self.pos, what))?;
        self.pos += n;
        Ok(taken)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, QuicError> {
        let byte = *self.bytes.get(self.pos).ok_or(invalid(self.pos, what))?;
        self.pos += 1;
        Ok(byte)
    }

    /// A variable-length integer (RFC 9000 §16).
    fn varint(&mut self, what: &'static str) -> Result<u64, QuicError> {
        let at = self.pos;
        let first = self.u8(what)?;
        let rest = self
            .take((1 << (first >> 6)) - 1, what)
            .map_err(|_| invalid(at, what))?;
        Ok(rest.iter().fold(u64::from(first & 0x3f), |value, &b| {
            value << 8 | u64::from(b)
        }))
    }

    /// A variable-length integer used as a length.
    fn varint_len(&mut self, what: &'static str) -> Result<usize, QuicError> {
        let at = self.pos;
        usize::try_from(self.varint(what)?).map_err(|_| invalid(at, what))
    }

    /// A connection ID: a length byte (at most 20) and the ID.
    fn cid(&mut self, what: &'static str) -> Result<&'b [u8], QuicError> {
        let at = self.pos;
        let len = usize::from(self.u8("connection ID length runs past the end")?);
        if len > MAX_CID_LEN {
            return Err(invalid(at, "connection ID longer than 20 bytes"));
        }
        self.take(len, what)
    }

    /// Checks the rest of an ACK frame (RFC 9000 §19.3): no range may reach below packet
    /// number 0.
    fn ack(&mut self, ecn: bool) -> Result<(), QuicError> {
        let at = self.pos;
        let below_zero = invalid(at, "ACK range goes below packet number 0");
        let largest = self.varint("ACK largest acknowledged runs past the end")?;
        self.varint("ACK delay runs past the end")?;
        let count = self.varint("ACK range count runs past the end")?;
        let first = self.varint("first ACK range runs past the end")?;
        let mut smallest = largest.checked_sub(first).ok_or(below_zero.clone())?;
        // Each range takes at least two bytes, so a forged count ends at the end of the bytes.
        for _ in 0..count {
            let gap = self.varint("ACK gap runs past the end")?;
            let len = self.varint("ACK range length runs past the end")?;
            smallest = smallest
                .checked_sub(gap)
                .and_then(|s| s.checked_sub(2))
                .and_then(|s| s.checked_sub(len))
                .ok_or(below_zero.clone())?;
        }
        if ecn {
            for _ in 0..3 {
                self.varint("ACK ECN count runs past the end")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use aes_gcm::aead::AeadInPlace;
    use proptest::prelude::*;

    use super::*;

    /// The DCID of RFC 9001 Appendix A.
    const DCID: [u8; 8] = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];

    /// RFC 9001 Appendix A.2: the client Initial packet as sent (1200 bytes), packet number 2.
    const RFC_PROTECTED: &str = "
        c000000001088394c8f03e5157080000449e7b9aec34d1b1c98dd7689fb8ec11
        d242b123dc9bd8bab936b47d92ec356c0bab7df5976d27cd449f63300099f399
        1c260ec4c60d17b31f8429157bb35a1282a643a8d2262cad67500cadb8e7378c
        8eb7539ec4d4905fed1bee1fc8aafba17c750e2c7ace01e6005f80fcb7df6212
        30c83711b39343fa028cea7f7fb5ff89eac2308249a02252155e2347b63d58c5
        457afd84d05dfffdb20392844ae812154682e9cf012f9021a6f0be17ddd0c208
        4dce25ff9b06cde535d0f920a2db1bf362c23e596d11a4f5a6cf3948838a3aec
        4e15daf8500a6ef69ec4e3feb6b1d98e610ac8b7ec3faf6ad760b7bad1db4ba3
        485e8a94dc250ae3fdb41ed15fb6a8e5eba0fc3dd60bc8e30c5c4287e53805db
        059ae0648db2f64264ed5e39be2e20d82df566da8dd5998ccabdae053060ae6c
        7b4378e846d29f37ed7b4ea9ec5d82e7961b7f25a9323851f681d582363aa5f8
        9937f5a67258bf63ad6f1a0b1d96dbd4faddfcefc5266ba6611722395c906556
        be52afe3f565636ad1b17d508b73d8743eeb524be22b3dcbc2c7468d54119c74
        68449a13d8e3b95811a198f3491de3e7fe942b330407abf82a4ed7c1b311663a
        c69890f4157015853d91e923037c227a33cdd5ec281ca3f79c44546b9d90ca00
        f064c99e3dd97911d39fe9c5d0b23a229a234cb36186c4819e8b9c5927726632
        291d6a418211cc2962e20fe47feb3edf330f2c603a9d48c0fcb5699dbfe58964
        25c5bac4aee82e57a85aaf4e2513e4f05796b07ba2ee47d80506f8d2c25e50fd
        14de71e6c418559302f939b0e1abd576f279c4b2e0feb85c1f28ff18f58891ff
        ef132eef2fa09346aee33c28eb130ff28f5b766953334113211996d20011a198
        e3fc433f9f2541010ae17c1bf202580f6047472fb36857fe843b19f5984009dd
        c324044e847a4f4a0ab34f719595de37252d6235365e9b84392b061085349d73
        203a4a13e96f5432ec0fd4a1ee65accdd5e3904df54c1da510b0ff20dcc0c77f
        cb2c0e0eb605cb0504db87632cf3d8b4dae6e705769d1de354270123cb11450e
        fc60ac47683d7b8d0f811365565fd98c4c8eb936bcab8d069fc33bd801b03ade
        a2e1fbc5aa463d08ca19896d2bf59a071b851e6c239052172f296bfb5e724047
        90a2181014f3b94a4e97d117b438130368cc39dbb2d198065ae3986547926cd2
        162f40a29f0c3c8745c0f50fba3852e566d44575c29d39a03f0cda721984b6f4
        40591f355e12d439ff150aab7613499dbd49adabc8676eef023b15b65bfc5ca0
        6948109f23f350db82123535eb8a7433bdabcb909271a6ecbcb58b936a88cd4e
        8f2e6ff5800175f113253d8fa9ca8885c2f552e657dc603f252e1a8e308f76f0
        be79e2fb8f5d5fbbe2e30ecadd220723c8c0aea8078cdfcb3868263ff8f09400
        54da48781893a7e49ad5aff4af300cd804a6b6279ab3ff3afb64491c85194aab
        760d58a606654f9f4400e8b38591356fbf6425aca26dc85244259ff2b19c41b9
        f96f3ca9ec1dde434da7d2d392b905ddf3d1f9af93d1af5950bd493f5aa731b4
        056df31bd267b6b90a079831aaf579be0a39013137aac6d404f518cfd4684064
        7e78bfe706ca4cf5e9c5453e9f7cfd2b8b4c8d169a44e55c88d4a9a7f9474241
        e221af44860018ab0856972e194cd934";

    /// RFC 9001 Appendix A.2: the CRYPTO frame the packet carries (offset 0, 241 bytes: the
    /// ClientHello for example.com). PADDING fills the rest of the 1162-byte payload.
    const RFC_CRYPTO_FRAME: &str = "
        060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e868
        04fe3a47f06a2b69484c00000413011302010000c000000010000e00000b6578
        616d706c652e636f6dff01000100000a00080006001d00170018001000070005
        04616c706e000500050100000000003300260024001d00209370b2c9caa47fba
        baf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b000302030400
        0d0010000e0403050306030203080408050806002d00020101001c0002400100
        3900320408ffffffffffffffff05048000ffff07048000ffff08011001048000
        75300901100f088394c8f03e51570806048000ffff";

    fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    fn rfc_packet() -> Vec<u8> {
        hex(RFC_PROTECTED)
    }

    /// The decrypted payload of the RFC packet: the CRYPTO frame, then PADDING.
    fn rfc_plaintext() -> Vec<u8> {
        let mut plaintext = hex(RFC_CRYPTO_FRAME);
        plaintext.resize(1162, 0);
        plaintext
    }

    /// The RFC's ClientHello: the data of its CRYPTO frame.
    fn hello() -> Vec<u8> {
        hex(RFC_CRYPTO_FRAME)[4..].to_vec()
    }

    fn varint(value: u64) -> Vec<u8> {
        match value {
            0..=0x3f => vec![u8::try_from(value).unwrap()],
            0x40..=0x3fff => (0x4000 | u16::try_from(value).unwrap())
                .to_be_bytes()
                .to_vec(),
            0x4000..=0x3fff_ffff => (0x8000_0000 | u32::try_from(value).unwrap())
                .to_be_bytes()
                .to_vec(),
            _ => (0xc000_0000_0000_0000 | value).to_be_bytes().to_vec(),
        }
    }

    fn crypto(offset: usize, data: &[u8]) -> Vec<u8> {
        let mut frame = vec![FRAME_CRYPTO];
        frame.extend(varint(u64::try_from(offset).unwrap()));
        frame.extend(varint(u64::try_from(data.len()).unwrap()));
        frame.extend_from_slice(data);
        frame
    }

    /// A client Initial packet as a client builds it (RFC 9001 §5): a 4-byte packet number, no
    /// source connection ID, no token; `header_dcid` in the header, keys from `keys_dcid`.
    fn protect_with(
        first: u8,
        keys_dcid: &[u8],
        header_dcid: &[u8],
        pn: u32,
        payload: &[u8],
    ) -> Vec<u8> {
        let keys = Keys::client_initial(keys_dcid).unwrap();
        let mut packet = vec![first];
        packet.extend(VERSION_1.to_be_bytes());
        packet.push(u8::try_from(header_dcid.len()).unwrap());
        packet.extend_from_slice(header_dcid);
        packet.extend([0, 0]);
        let length = u16::try_from(4 + payload.len() + TAG_LEN).unwrap();
        assert!(length < 0x4000);
        packet.extend((0x4000 | length).to_be_bytes());
        let pn_offset = packet.len();
        packet.extend(pn.to_be_bytes());
        let mut nonce = keys.iv;
        for (n, p) in nonce.iter_mut().rev().zip(u64::from(pn).to_le_bytes()) {
            *n ^= p;
        }
        let mut body = payload.to_vec();
        let tag = Aes128Gcm::new(&GenericArray::from(keys.key))
            .encrypt_in_place_detached(&GenericArray::from(nonce), &packet, &mut body)
            .unwrap();
        packet.extend(body);
        packet.extend(tag);
        let sample = <[u8; 16]>::try_from(&packet[pn_offset + 4..pn_offset + 20]).unwrap();
        let mask = header_mask(&keys.hp, sample);
        packet[0] ^= mask[0] & 0x0f;
        for i in 0..4 {
            packet[pn_offset + i] ^= mask[1 + i];
        }
        packet
    }

    fn protect(keys_dcid: &[u8], header_dcid: &[u8], pn: u32, payload: &[u8]) -> Vec<u8> {
        protect_with(0xc3, keys_dcid, header_dcid, pn, payload)
    }

    /// A long-header packet of another type than Initial (0xd0 0-RTT, 0xe0 Handshake): never
    /// decrypted here.
    fn other_packet(first: u8, dcid: &[u8], payload_len: u8) -> Vec<u8> {
        let mut packet = vec![first];
        packet.extend(VERSION_1.to_be_bytes());
        packet.push(u8::try_from(dcid.len()).unwrap());
        packet.extend_from_slice(dcid);
        packet.extend([0, payload_len]);
        packet.extend(vec![0x5a; usize::from(payload_len)]);
        packet
    }

    /// The server name of a ClientHello handshake message.
    fn sni(hello: &[u8]) -> Option<String> {
        fn skip(bytes: &[u8], pos: usize, len_bytes: usize) -> Option<usize> {
            let len = bytes
                .get(pos..pos + len_bytes)?
                .iter()
                .fold(0, |n, &b| n << 8 | usize::from(b));
            Some(pos + len_bytes + len)
        }
        // Type and length (4), version (2), random (32).
        let mut pos = skip(hello, 38, 1)?; // session id
        pos = skip(hello, pos, 2)?; // cipher suites
        pos = skip(hello, pos, 1)?; // compression methods
        let end = skip(hello, pos, 2)?;
        pos += 2;
        while pos < end {
            let kind = u16::from_be_bytes(hello.get(pos..pos + 2)?.try_into().ok()?);
            let next = skip(hello, pos + 2, 2)?;
            if kind == 0 {
                // Server name list length (2), name type (1), name length (2).
                let name = hello.get(pos + 9..next)?;
                return String::from_utf8(name.to_vec()).ok();
            }
            pos = next;
        }
        None
    }

    #[test]
    fn rfc9001_client_initial_keys() {
        let keys = Keys::client_initial(&DCID).unwrap();
        assert_eq!(keys.key.to_vec(), hex("1f369613dd76d5467730efcbe3b1a22d"));
        assert_eq!(keys.iv.to_vec(), hex("fa044b2f42a3fd3b46fb255c"));
        assert_eq!(keys.hp.to_vec(), hex("9f50449e04a0e810283a1e9933adedd2"));
        let mask = header_mask(
            &keys.hp,
            <[u8; 16]>::try_from(hex("d1b1c98dd7689fb8ec11d242b123dc9b")).unwrap(),
        );
        assert_eq!(mask[..5], hex("437b9aec36"));
    }

    #[test]
    fn rfc9001_client_initial_decrypts_to_its_crypto_frame() {
        let packet = rfc_packet();
        assert_eq!(packet.len(), 1200);
        assert!(is_client_initial(&packet));

        let header = parse_long_header(&packet, 0).unwrap();
        assert_eq!(header.dcid, DCID);
        assert_eq!((header.pn_offset, header.end), (18, 1200));
        let opened = open(
            &packet,
            &header,
            &Keys::client_initial(&DCID).unwrap(),
            None,
        )
        .unwrap();
        assert_eq!(opened.pn, 2);
        assert_eq!(opened.payload_start, 22);
        assert_eq!(opened.plaintext, rfc_plaintext());
        assert_eq!(
            crypto_frames(&opened.plaintext).unwrap(),
            vec![CryptoFrame {
                offset: 0,
                data: hello()
            }]
        );

        let mut flow = ClientInitials::new();
        assert_eq!(flow.dcid(), None);
        let found = flow.push_datagram(&packet).unwrap().unwrap();
        assert_eq!(found, hello());
        assert_eq!(found.len(), 241);
        assert_eq!(sni(&found).as_deref(), Some("example.com"));
        assert_eq!(flow.dcid(), Some(&DCID[..]));
        // Once the ClientHello is out, the flow has nothing more to say.
        assert_eq!(flow.push_datagram(&packet), Ok(None));
    }

    #[test]
    fn the_test_packet_builder_reproduces_the_rfc_packet() {
        assert_eq!(protect(&DCID, &DCID, 2, &rfc_plaintext()), rfc_packet());
    }

    #[test]
    fn a_client_hello_split_over_packets_arriving_out_of_order() {
        let hello = hello();
        let first = protect(&DCID, &DCID, 0, &crypto(0, &hello[..100]));
        let second = protect(&DCID, &DCID, 1, &crypto(100, &hello[100..]));
        let mut flow = ClientInitials::new();
        assert_eq!(flow.push_datagram(&second), Ok(None));
        assert_eq!(flow.push_datagram(&second), Ok(None));
        assert_eq!(flow.push_datagram(&first), Ok(Some(hello)));
    }

    #[test]
    fn coalesced_packets_in_one_datagram() {
        let hello = hello();
        // As Chrome does: CRYPTO frames out of order with PING and PADDING between them.
        let one = [
            crypto(200, &hello[200..]),
            vec![FRAME_PING],
            crypto(0, &hello[..50]),
            vec![0; 40],
        ]
        .concat();
        let two = [vec![FRAME_ACK, 0, 0, 0, 0], crypto(50, &hello[50..150])].concat();
        let three = crypto(150, &hello[150..200]);
        let mut flow = ClientInitials::new();
        let first = [
            protect(&DCID, &DCID, 0, &one),
            protect(&DCID, &DCID, 1, &two),
            other_packet(0xe0, &DCID, 40),
            vec![0; 30],
        ]
        .concat();
        assert_eq!(flow.push_datagram(&first), Ok(None));
        let second = [
            other_packet(0xd0, &DCID, 40),
            protect(&DCID, &DCID, 2, &three),
        ]
        .concat();
        // A datagram must start with an Initial packet.
        assert_eq!(flow.push_datagram(&second), Err(QuicError::NotInitial));
        let second = [
            protect(&DCID, &DCID, 2, &three),
            other_packet(0xd0, &DCID, 40),
        ]
        .concat();
        assert_eq!(flow.push_datagram(&second), Ok(Some(hello)));
    }

    #[test]
    fn packets_after_the_one_completing_the_client_hello_are_not_read() {
        let mut broken = vec![0xc0, 0, 0, 0, 1, 30];
        broken.extend([0; 30]);
        let datagram = [
            protect(&DCID, &DCID, 0, &crypto(0, &hello())),
            broken.clone(),
        ]
        .concat();
        assert_eq!(
            ClientInitials::new().push_datagram(&datagram),
            Ok(Some(hello()))
        );
        let datagram = [protect(&DCID, &DCID, 0, &crypto(0, &hello()[..10])), broken].concat();
        assert!(matches!(
            ClientInitials::new().push_datagram(&datagram),
            Err(QuicError::Invalid {
                reason: "connection ID longer than 20 bytes",
                ..
            })
        ));
    }

    #[test]
    fn coalesced_packets_for_another_connection_are_ignored() {
        let hello = hello();
        let other = [0x11; 8];
        let datagram = [
            protect(&DCID, &DCID, 0, &crypto(0, &hello[..100])),
            protect(&other, &other, 0, &crypto(100, &hello[100..])),
        ]
        .concat();
        let mut flow = ClientInitials::new();
        assert_eq!(flow.push_datagram(&datagram), Ok(None));
        let rest = protect(&DCID, &DCID, 1, &crypto(100, &hello[100..]));
        assert_eq!(flow.push_datagram(&rest), Ok(Some(hello)));
    }

    #[test]
    fn later_initials_keep_the_first_keys_after_the_dcid_changes() {
        let hello = hello();
        let server_chosen = [0xaa; 5];
        let mut flow = ClientInitials::new();
        let first = protect(&DCID, &DCID, 0, &crypto(0, &hello[..100]));
        assert_eq!(flow.push_datagram(&first), Ok(None));
        let second = protect(&DCID, &server_chosen, 1, &crypto(100, &hello[100..]));
        assert_eq!(flow.push_datagram(&second), Ok(Some(hello)));
        assert_eq!(flow.dcid(), Some(&DCID[..]));
    }

    #[test]
    fn after_a_retry_the_keys_come_from_the_new_dcid() {
        let hello = hello();
        let from_retry = [0xbb; 20];
        let mut flow = ClientInitials::new();
        let first = protect(&DCID, &DCID, 0, &crypto(0, &hello[..100]));
        assert_eq!(flow.push_datagram(&first), Ok(None));
        // Protected with neither the flow's keys nor those of its own DCID.
        let forged = protect(&[0xcc; 8], &from_retry, 1, &crypto(100, &hello[100..]));
        assert_eq!(flow.push_datagram(&forged), Err(QuicError::Decrypt));
        assert_eq!(flow.dcid(), Some(&DCID[..]));
        let again = protect(&from_retry, &from_retry, 1, &crypto(0, &hello));
        assert_eq!(flow.push_datagram(&again), Ok(Some(hello)));
        assert_eq!(flow.dcid(), Some(&from_retry[..]));
    }

    #[test]
    fn crypto_data_contradicting_earlier_data_is_refused() {
        let hello = hello();
        let mut flow = ClientInitials::new();
        let first = protect(&DCID, &DCID, 0, &crypto(0, &hello[..100]));
        assert_eq!(flow.push_datagram(&first), Ok(None));
        let mut forged = hello[50..150].to_vec();
        forged[10] ^= 1;
        let datagram = [
            protect(&DCID, &DCID, 1, &[FRAME_PING]),
            protect(&DCID, &DCID, 2, &crypto(50, &forged)),
        ]
        .concat();
        assert_eq!(
            flow.push_datagram(&datagram),
            Err(invalid(
                protect(&DCID, &DCID, 1, &[FRAME_PING]).len(),
                "CRYPTO data differs from data already received at the same offset"
            ))
        );
        // A retransmission of the same bytes is fine.
        let resent = protect(&DCID, &DCID, 3, &crypto(50, &hello[50..150]));
        assert_eq!(flow.push_datagram(&resent), Ok(None));
        let rest = protect(&DCID, &DCID, 4, &crypto(150, &hello[150..]));
        assert_eq!(flow.push_datagram(&rest), Ok(Some(hello)));
    }

    #[test]
    fn the_stream_must_start_with_a_client_hello() {
        let server_hello = protect(&DCID, &DCID, 0, &crypto(0, &[2, 0, 0, 1, 0]));
        assert_eq!(
            ClientInitials::new().push_datagram(&server_hello),
            Err(invalid(
                0,
                "the CRYPTO stream does not start with a ClientHello"
            ))
        );
    }

    #[test]
    fn the_reassembly_limits_hold() {
        // A ClientHello that says it is 64 KiB long, plus its 4-byte header.
        let huge = protect(&DCID, &DCID, 0, &crypto(0, &[1, 1, 0, 0]));
        assert_eq!(
            ClientInitials::new().push_datagram(&huge),
            Err(QuicError::TooLarge)
        );
        let at_limit = protect(&DCID, &DCID, 0, &crypto(MAX_CRYPTO_LEN - 3, &[1, 2, 3]));
        assert_eq!(ClientInitials::new().push_datagram(&at_limit), Ok(None));
        let past_limit = protect(&DCID, &DCID, 0, &crypto(MAX_CRYPTO_LEN - 2, &[1, 2, 3]));
        assert_eq!(
            ClientInitials::new().push_datagram(&past_limit),
            Err(QuicError::TooLarge)
        );

        // 256 one-byte pieces with gaps between them, then one more.
        let mut flow = ClientInitials::new();
        let pieces: Vec<u8> = (1..=MAX_CRYPTO_PIECES)
            .flat_map(|i| crypto(2 * i, &[0]))
            .collect();
        assert_eq!(
            flow.push_datagram(&protect(&DCID, &DCID, 0, &pieces)),
            Ok(None)
        );
        let one_more = protect(&DCID, &DCID, 1, &crypto(1000, &[0]));
        assert_eq!(flow.push_datagram(&one_more), Err(QuicError::TooLarge));
        // Filling a gap joins two pieces: that is always allowed.
        let filler = protect(&DCID, &DCID, 2, &crypto(3, &[0]));
        assert_eq!(flow.push_datagram(&filler), Ok(None));
        assert_eq!(flow.push_datagram(&one_more), Ok(None));
    }

    #[test]
    fn reserved_bits_must_be_zero() {
        let packet = protect_with(0xcf, &DCID, &DCID, 0, &crypto(0, &hello()));
        assert_eq!(
            ClientInitials::new().push_datagram(&packet),
            Err(invalid(0, "reserved header bits are set"))
        );
    }

    #[test]
    fn datagrams_that_are_not_client_initials() {
        let packet = rfc_packet();
        let with_first = |first: u8| [&[first], &packet[1..]].concat();
        let with_version =
            |version: u32| [&packet[..1], &version.to_be_bytes(), &packet[5..]].concat();
        let cases = [
            (Vec::new(), QuicError::NotInitial),
            (with_first(0x43), QuicError::NotInitial), // short header
            (with_first(0xe0), QuicError::NotInitial), // Handshake
            (with_first(0xd0), QuicError::NotInitial), // 0-RTT
            (with_first(0xf0), QuicError::NotInitial), // Retry
            (
                with_version(0x6b33_43cf),
                QuicError::UnsupportedVersion(0x6b33_43cf),
            ),
            (with_version(0), QuicError::UnsupportedVersion(0)),
            (with_first(0x80), invalid(0, "fixed bit is not set")),
            (
                packet[..3].to_vec(),
                invalid(1, "version runs past the end"),
            ),
        ];
        for (datagram, error) in cases {
            assert!(!is_client_initial(&datagram));
            let mut flow = ClientInitials::new();
            assert_eq!(flow.push_datagram(&datagram), Err(error));
            assert_eq!(flow.dcid(), None);
        }
    }

    #[test]
    fn broken_long_headers() {
        let packet = rfc_packet();
        let mut long_cid = packet.clone();
        long_cid[5] = 21;
        assert_eq!(
            ClientInitials::new().push_datagram(&long_cid),
            Err(invalid(5, "connection ID longer than 20 bytes"))
        );
        // The Length field says 1182 bytes follow it.
        assert_eq!(
            ClientInitials::new().push_datagram(&packet[..1199]),
            Err(invalid(16, "packet runs past the end of the datagram"))
        );
        // Too short for a header protection sample.
        let mut tiny = packet[..16].to_vec();
        tiny.extend([0x40, 19]);
        tiny.extend([0; 19]);
        assert_eq!(
            ClientInitials::new().push_datagram(&tiny),
            Err(invalid(
                18,
                "packet too short for a header protection sample"
            ))
        );
        for end in 0..packet.len() {
            assert!(
                ClientInitials::new().push_datagram(&packet[..end]).is_err(),
                "prefix of {end} bytes"
            );
        }
    }

    #[test]
    fn frames_of_an_initial_packet() {
        let plaintext = [
            vec![FRAME_PADDING, FRAME_PADDING, FRAME_PING],
            // Largest 5, delay 0, one more range, first range 2 (3..=5), gap 0, length 1 (0..=1).
            vec![FRAME_ACK, 5, 0, 1, 2, 0, 1],
            // With ECN counts.
            vec![FRAME_ACK_ECN, 1, 0, 0, 1, 7, 8, 9],
            crypto(0x1234, b"abc"),
            // Transport error 0x0a in a frame of type 6, reason "no".
            vec![FRAME_CONNECTION_CLOSE, 0x0a, 0x06, 2, b'n', b'o'],
            crypto(0, b""),
        ]
        .concat();
        assert_eq!(
            crypto_frames(&plaintext),
            Ok(vec![
                CryptoFrame {
                    offset: 0x1234,
                    data: b"abc".to_vec()
                },
                CryptoFrame {
                    offset: 0,
                    data: Vec::new()
                },
            ])
        );
    }

    #[test]
    fn frames_that_are_refused() {
        let not_allowed = "frame type not allowed in an Initial packet";
        let cases: [(&[u8], QuicError); 8] = [
            (&[], invalid(0, "packet has no frames")),
            (&[FRAME_PING, 0x08, 0, 0], invalid(1, not_allowed)), // STREAM
            (&[0x1d, 0, 0], invalid(0, not_allowed)),             // application CONNECTION_CLOSE
            (&[0x40, 0x01], invalid(0, not_allowed)),             // PING with a 2-byte type
            (
                &[FRAME_ACK, 1, 0, 0, 2],
                invalid(1, "ACK range goes below packet number 0"),
            ),
            (
                &[FRAME_ACK, 5, 0, 1, 1, 2, 1],
                invalid(1, "ACK range goes below packet number 0"),
            ),
            (
                &[FRAME_CRYPTO, 0, 4, b'a', b'b', b'c'],
                invalid(3, "CRYPTO data runs past the end"),
            ),
            (
                &[
                    FRAME_CRYPTO,
                    0xff,
                    0xff,
                    0xff,
                    0xff,
                    0xff,
                    0xff,
                    0xff,
                    0xff,
                    1,
                    0,
                ],
                invalid(0, "CRYPTO data ends past 2^62 - 1"),
            ),
        ];
        for (plaintext, error) in cases {
            assert_eq!(crypto_frames(plaintext), Err(error), "{plaintext:02x?}");
        }
        // Inside a packet, offsets count from the start of the datagram.
        let packet = protect(&DCID, &DCID, 0, &[FRAME_PING, 0x08, 0, 0]);
        assert_eq!(
            ClientInitials::new().push_datagram(&packet),
            Err(invalid(18 + 4 + 1, not_allowed))
        );
    }

    #[test]
    fn packet_numbers_are_expanded_around_the_largest_seen() {
        // RFC 9000 Appendix A.3.
        assert_eq!(
            decode_packet_number(Some(0xa82f_30ea), 0x9b32, 16),
            0xa82f_9b32
        );
        assert_eq!(decode_packet_number(None, 2, 32), 2);
        assert_eq!(decode_packet_number(Some(0xff), 0x01, 8), 0x101);
        assert_eq!(decode_packet_number(Some(0x101), 0xff, 8), 0xff);
    }

    /// The ClientHellos the client side of a capture sends, one per QUIC flow, in the order
    /// they complete; `None` when the corpus is not on this machine.
    fn capture_client_hellos(name: &str) -> Option<Vec<Vec<u8>>> {
        let path = format!(
            "{}/../../../shared/corpus/pcap/foxio-ja4/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let Ok(file) = std::fs::read(&path) else {
            println!("skipped: corpus not found ({path})");
            return None;
        };
        let mut flows: Vec<((Vec<u8>, u16), ClientInitials)> = Vec::new();
        let mut hellos = Vec::new();
        for udp in capture::udp_datagrams(&file) {
            if udp.dst_port != 443 || !is_client_initial(&udp.payload) {
                continue;
            }
            let key = (udp.src.clone(), udp.src_port);
            let at = match flows.iter().position(|(k, _)| *k == key) {
                Some(at) => at,
                None => {
                    flows.push((key, ClientInitials::new()));
                    flows.len() - 1
                }
            };
            if let Some(hello) = flows[at].1.push_datagram(&udp.payload).unwrap() {
                hellos.push(hello);
            }
        }
        Some(hellos)
    }

    /// Expected values from the corpus's expected JSON (`domain`) where it has them, and from
    /// Wireshark's dissection (`tls.handshake.extensions_server_name`, `tls.handshake.length`)
    /// for the captures it has none for.
    #[test]
    fn client_hellos_from_captures() {
        let cases = [
            // Chrome: nine CRYPTO frames out of order, with PING and PADDING between them.
            (
                "chrome-cloudflare-quic-with-secrets.pcapng",
                "cloudflare-quic.com",
                296,
            ),
            ("quic-tls-handshake.pcapng", "www.google.com", 293),
            ("quic-with-several-tls-frames.pcapng", "ogs.google.com", 291),
        ];
        for (name, server, len) in cases {
            let Some(hellos) = capture_client_hellos(name) else {
                return;
            };
            assert_eq!(hellos.len(), 1, "{name}");
            assert_eq!(hellos[0].len(), 4 + len, "{name}");
            assert_eq!(sni(&hellos[0]).as_deref(), Some(server), "{name}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_datagrams_are_never_a_client_hello(
            datagrams in prop::collection::vec(
                prop_oneof![
                    prop::collection::vec(any::<u8>(), 0..1300),
                    prop::collection::vec(any::<u8>(), 0..1300)
                        .prop_map(|tail| [&[0xc0, 0, 0, 0, 1][..], &tail].concat()),
                ],
                1..4,
            )
        ) {
            let mut flow = ClientInitials::new();
            for datagram in &datagrams {
                let result = flow.push_datagram(datagram);
                if !is_client_initial(datagram) {
                    prop_assert!(result.is_err(), "{result:?}");
                } else {
                    prop_assert!(
                        !matches!(result, Err(QuicError::NotInitial | QuicError::UnsupportedVersion(_))),
                        "{result:?}"
                    );
                }
                prop_assert!(!matches!(result, Ok(Some(_))));
            }
        }

        #[test]
        fn corrupting_one_byte_of_the_rfc_packet_is_an_error(at in 0usize..1200, flip in 1u8..=255) {
            let mut packet = rfc_packet();
            packet[at] ^= flip;
            let result = ClientInitials::new().push_datagram(&packet);
            if at >= 5 {
                prop_assert!(
                    matches!(result, Err(QuicError::Decrypt | QuicError::Invalid { .. })),
                    "{result:?}"
                );
            } else {
                prop_assert!(result.is_err(), "{result:?}");
            }
        }

        #[test]
        fn any_split_and_order_reassembles_the_client_hello(
            mut cuts in prop::collection::vec(1usize..241, 0..12),
            order in prop::collection::vec(any::<u32>(), 13),
            per_packet in 1usize..4,
            per_datagram in 1usize..3,
            resend_first in any::<bool>(),
        ) {
            let hello = hello();
            cuts.extend([0, hello.len()]);
            cuts.sort_unstable();
            cuts.dedup();
            let mut chunks: Vec<(u32, Vec<u8>)> = cuts
                .windows(2)
                .zip(&order)
                .map(|(w, &key)| (key, crypto(w[0], &hello[w[0]..w[1]])))
                .collect();
            chunks.sort_by_key(|(key, _)| *key);
            let mut frames: Vec<Vec<u8>> = chunks.into_iter().map(|(_, frame)| frame).collect();
            if resend_first {
                let again = frames[0].clone();
                frames.last_mut().unwrap().extend(again);
            }
            let packets: Vec<Vec<u8>> = frames
                .chunks(per_packet)
                .zip(0u32..)
                .map(|(group, pn)| protect(&DCID, &DCID, pn, &group.concat()))
                .collect();
            let datagrams: Vec<Vec<u8>> = packets.chunks(per_datagram).map(<[_]>::concat).collect();
            let mut flow = ClientInitials::new();
            let (last, before) = datagrams.split_last().unwrap();
            for datagram in before {
                prop_assert_eq!(flow.push_datagram(datagram), Ok(None));
            }
            prop_assert_eq!(flow.push_datagram(last), Ok(Some(hello)));
        }

        #[test]
        fn arbitrary_plaintext_gives_frames_within_it_or_an_error(
            plaintext in prop::collection::vec(any::<u8>(), 0..600)
        ) {
            if let Ok(frames) = crypto_frames(&plaintext) {
                let data: usize = frames.iter().map(|f| f.data.len()).sum();
                prop_assert!(data + 3 * frames.len() <= plaintext.len());
            }
        }

        #[test]
        fn encoded_frames_decode_to_their_crypto_frames(
            frames in prop::collection::vec(
                prop_oneof![
                    (0u64..1 << 40, prop::collection::vec(any::<u8>(), 0..70))
                        .prop_map(|(offset, data)| Some(CryptoFrame { offset, data })),
                    Just(None),
                ],
                1..20,
            )
        ) {
            let plaintext: Vec<u8> = frames
                .iter()
                .flat_map(|frame| match frame {
                    Some(f) => {
                        let mut bytes = vec![FRAME_CRYPTO];
                        bytes.extend(varint(f.offset));
                        bytes.extend(varint(u64::try_from(f.data.len()).unwrap()));
                        bytes.extend(&f.data);
                        bytes
                    }
                    None => vec![FRAME_PING, FRAME_PADDING],
                })
                .collect();
            let expected: Vec<CryptoFrame> = frames.into_iter().flatten().collect();
            prop_assert_eq!(crypto_frames(&plaintext), Ok(expected));
        }
    }

    /// Just enough pcap and pcapng (little-endian, Ethernet) to pull UDP datagrams out of the
    /// corpus captures.
    mod capture {
        pub struct Udp {
            pub src: Vec<u8>,
            pub src_port: u16,
            pub dst_port: u16,
            pub payload: Vec<u8>,
        }

        fn u16_be(bytes: &[u8], at: usize) -> u16 {
            u16::from_be_bytes([bytes[at], bytes[at + 1]])
        }

        fn u32_le(bytes: &[u8], at: usize) -> usize {
            usize::try_from(u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())).unwrap()
        }

        /// Every UDP datagram over IPv4 or IPv6 in the capture, in capture order.
        pub fn udp_datagrams(file: &[u8]) -> Vec<Udp> {
            frames(file)
                .into_iter()
                .filter_map(|(link, frame)| udp(link, frame))
                .collect()
        }

        /// The link type and bytes of every captured frame.
        fn frames(file: &[u8]) -> Vec<(usize, &[u8])> {
            let mut out = Vec::new();
            match u32_le(file, 0) {
                0x0a0d_0d0a => {
                    assert_eq!(u32_le(file, 8), 0x1a2b_3c4d, "big-endian pcapng");
                    let mut links = Vec::new();
                    let mut pos = 0;
                    while pos + 12 <= file.len() {
                        let (kind, len) = (u32_le(file, pos), u32_le(file, pos + 4));
                        let block = &file[pos..pos + len];
                        match kind {
                            1 => links.push(usize::from(u16::from_le_bytes([block[8], block[9]]))),
                            6 => {
                                let captured = u32_le(block, 20);
                                out.push((links[u32_le(block, 8)], &block[28..28 + captured]));
                            }
                            3 => out.push((links[0], &block[12..len - 4])),
                            _ => {}
                        }
                        pos += len;
                    }
                }
                0xa1b2_c3d4 | 0xa1b2_3c4d => {
                    let link = u32_le(file, 20);
                    let mut pos = 24;
                    while pos + 16 <= file.len() {
                        let captured = u32_le(file, pos + 8);
                        out.push((link, &file[pos + 16..pos + 16 + captured]));
                        pos += 16 + captured;
                    }
                }
                magic => panic!("not a little-endian pcap or pcapng file: {magic:#x}"),
            }
            out
        }

        fn udp(link: usize, frame: &[u8]) -> Option<Udp> {
            if link != 1 {
                return None;
            }
            let mut pos = 12;
            let mut ethertype = u16_be(frame, pos);
            while ethertype == 0x8100 || ethertype == 0x88a8 {
                pos += 4;
                ethertype = u16_be(frame, pos);
            }
            let ip = &frame[pos + 2..];
            let (src, protocol, transport) = match ethertype {
                0x0800 => {
                    let header_len = usize::from(ip[0] & 0x0f) * 4;
                    (ip[12..16].to_vec(), ip[9], &ip[header_len..])
                }
                0x86dd => (ip[8..24].to_vec(), ip[6], &ip[40..]),
                _ => return None,
            };
            if protocol != 17 {
                return None;
            }
            let len = usize::from(u16_be(transport, 4));
            Some(Udp {
                src,
                src_port: u16_be(transport, 0),
                dst_port: u16_be(transport, 2),
                payload: transport[8..len].to_vec(),
            })
        }
    }
}
