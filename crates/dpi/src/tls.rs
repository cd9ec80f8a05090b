//! TLS handshake hellos (RFC 8446, RFC 5246): the ClientHello and ServerHello that open a TLS
//! connection, read from the first bytes of each direction of a TCP stream, and the JA3 and JA4
//! client fingerprints computed from a ClientHello.
//!
//! What a firewall needs from a hello is decoded: versions, cipher suites, extension types,
//! server name (SNI), ALPN protocols, supported versions, groups, point formats and signature
//! algorithms. Key shares, session ids and the rest are checked for their framing only.
//!
//! Framing is checked strictly, because a middlebox that reads a hello differently from the
//! server can be steered: every length must match what it frames, a message must not end with
//! bytes its fields do not account for, and an extension type may appear once only (RFC 8446
//! §4.2), so there is no "first or second server_name" for a client to play with. Lists whose
//! minimum length the RFCs set above zero (cipher suites, ALPN names) are accepted empty, so odd
//! clients still get a fingerprint.
//!
//! SSL 2.0 hellos (the old two-byte record header) are not decoded: they are [`TlsError::NotTls`].

use std::collections::HashSet;

use md5::Md5;
use sha2::{Digest as _, Sha256};

/// Longest plaintext record fragment (RFC 8446 §5.1, RFC 5246 §6.2.1).
pub const MAX_RECORD_LEN: usize = 1 << 14;

const RECORD_HEADER_LEN: usize = 5;
const HANDSHAKE_HEADER_LEN: usize = 4;
const CONTENT_HANDSHAKE: u8 = 22;

const EXT_SERVER_NAME: u16 = 0;
const EXT_SUPPORTED_GROUPS: u16 = 10;
const EXT_EC_POINT_FORMATS: u16 = 11;
const EXT_SIGNATURE_ALGORITHMS: u16 = 13;
const EXT_ALPN: u16 = 16;
const EXT_SUPPORTED_VERSIONS: u16 = 43;

/// What JA4 writes for an empty cipher or extension list instead of a hash.
const JA4_EMPTY_HASH: &str = "000000000000";

/// Why bytes could not be read as a TLS hello.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// The bytes hold only the start of the hello: at least `needed` bytes are required.
    #[error("incomplete TLS hello: {needed} bytes needed")]
    Incomplete {
        /// For the `*_from_stream` functions, how many bytes of the stream are needed, record
        /// headers included; for `parse_*`, how many bytes of the handshake message. When the
        /// hello spans records not seen yet this is a lower bound: call again with more bytes.
        needed: usize,
    },
    /// The stream does not start with a TLS handshake record: another protocol, an SSL 2.0
    /// hello, or a record of another TLS content type (an alert, say).
    #[error("not a TLS handshake")]
    NotTls,
    /// The bytes are a TLS handshake but not a valid hello.
    #[error("invalid TLS hello at byte {offset}: {reason}")]
    Invalid {
        /// Where the problem is: in the stream for the `*_from_stream` functions, in the
        /// handshake message for `parse_*`.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
}

/// A decoded ClientHello. Every list is in wire order with GREASE values (RFC 8701) kept; the
/// fingerprints leave them out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// `legacy_version` of the handshake body (0x0303 for TLS 1.2 and 1.3 clients).
    pub version: u16,
    /// Offered cipher suites.
    pub cipher_suites: Vec<u16>,
    /// Extension types.
    pub extensions: Vec<u16>,
    /// The `host_name` of the server_name extension, converted from bytes with lossy UTF-8
    /// (bytes that are not UTF-8 become U+FFFD). Kept as sent: not lowercased, not checked to be
    /// a valid host name.
    pub sni: Option<String>,
    /// ALPN protocol names, as raw bytes.
    pub alpn: Vec<Vec<u8>>,
    /// The supported_versions extension.
    pub supported_versions: Vec<u16>,
    /// The supported_groups extension (called elliptic_curves before RFC 7919).
    pub groups: Vec<u16>,
    /// The ec_point_formats extension.
    pub ec_point_formats: Vec<u8>,
    /// The signature_algorithms extension.
    pub signature_algorithms: Vec<u16>,
}

/// A decoded ServerHello (a HelloRetryRequest has the same form and decodes as one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHello {
    /// The negotiated version: the supported_versions extension if present (TLS 1.3), else
    /// `legacy_version`.
    pub version: u16,
    /// The chosen cipher suite.
    pub cipher_suite: u16,
    /// The protocol chosen by ALPN. TLS 1.3 servers send ALPN in the encrypted extensions, so it
    /// is only seen here for TLS 1.2 and earlier.
    pub alpn: Option<Vec<u8>>,
}

/// What carried the ClientHello, the first character of a JA4 fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ja4Transport {
    /// TLS over TCP: `t`.
    Tcp,
    /// QUIC: `q`.
    Quic,
    /// DTLS: `d`.
    Dtls,
}

/// Decodes one handshake message that must be a ClientHello: type 1, a 24-bit length, the body.
/// Bytes after the message are ignored (they are other messages). Error offsets count from the
/// start of `handshake`.
pub fn parse_client_hello(handshake: &[u8]) -> Result<ClientHello, TlsError> {
    let mut r = handshake_body(handshake, &CLIENT_HELLO)?;
    client_hello_body(&mut r)
}

/// Decodes one handshake message that must be a ServerHello (see [`parse_client_hello`]).
pub fn parse_server_hello(handshake: &[u8]) -> Result<ServerHello, TlsError> {
    let mut r = handshake_body(handshake, &SERVER_HELLO)?;
    server_hello_body(&mut r)
}

/// Decodes the ClientHello at the start of a TCP stream from client to server: handshake
/// records (content type 22), the hello possibly split over several of them. Bytes after the
/// hello are ignored. Returns [`TlsError::NotTls`] when the first record is not a handshake
/// record, and [`TlsError::Incomplete`] with the number of stream bytes needed when the hello
/// is not all there yet; error offsets count from the start of the stream.
pub fn client_hello_from_stream(stream: &[u8]) -> Result<ClientHello, TlsError> {
    let message = reassemble(stream, &CLIENT_HELLO)?;
    parse_client_hello(&message.bytes).map_err(|e| message.in_stream(e))
}

/// Decodes the ServerHello at the start of a TCP stream from server to client, as
/// [`client_hello_from_stream`] does for the client side.
pub fn server_hello_from_stream(stream: &[u8]) -> Result<ServerHello, TlsError> {
    let message = reassemble(stream, &SERVER_HELLO)?;
    parse_server_hello(&message.bytes).map_err(|e| message.in_stream(e))
}

/// Whether a stream starts like a TLS ClientHello: a handshake record header with version 3.x
/// and a plausible length, then handshake type 1. Looks at the first 6 bytes only; false when
/// fewer are given.
pub fn looks_like_client_hello(stream: &[u8]) -> bool {
    match stream.get(..6) {
        Some(&[CONTENT_HANDSHAKE, 3, minor, high, low, 1]) => {
            let len = usize::from(u16::from_be_bytes([high, low]));
            minor <= 4 && (1..=MAX_RECORD_LEN).contains(&len)
        }
        _ => false,
    }
}

/// The name of a protocol version: `TLS 1.3`, `TLS 1.2`, ..., `SSL 3.0`, `SSL 2.0`, `DTLS 1.3`,
/// ..., or `unknown`.
pub fn version_name(v: u16) -> &'static str {
    match v {
        0x0304 => "TLS 1.3",
        0x0303 => "TLS 1.2",
        0x0302 => "TLS 1.1",
        0x0301 => "TLS 1.0",
        0x0300 => "SSL 3.0",
        0x0002 => "SSL 2.0",
        0xfeff => "DTLS 1.0",
        0xfefd => "DTLS 1.2",
        0xfefc => "DTLS 1.3",
        _ => "unknown",
    }
}

impl ClientHello {
    /// The JA3 string (Salesforce JA3): `SSLVersion,Ciphers,Extensions,EllipticCurves,
    /// EllipticCurvePointFormats`, each list in wire order, decimal, joined with `-`, GREASE
    /// values left out. The version is `legacy_version`.
    pub fn ja3_string(&self) -> String {
        fn join<T: ToString>(values: impl Iterator<Item = T>) -> String {
            values.map(|v| v.to_string()).collect::<Vec<_>>().join("-")
        }
        let no_grease = |list: &[u16]| join(list.iter().copied().filter(|&v| !is_grease(v)));
        format!(
            "{},{},{},{},{}",
            self.version,
            no_grease(&self.cipher_suites),
            no_grease(&self.extensions),
            no_grease(&self.groups),
            join(self.ec_point_formats.iter()),
        )
    }

    /// The JA3 fingerprint: the MD5 of [`ClientHello::ja3_string`], in lowercase hex.
    pub fn ja3(&self) -> String {
        hex(&Md5::digest(self.ja3_string().as_bytes()))
    }

    /// The JA4 client fingerprint (FoxIO JA4), such as
    /// `t13d1516h2_8daaf6152771_e5627efa2ab1`: transport, version, `d` if there is a
    /// server_name extension else `i`, cipher and extension counts (at most 99), the first and
    /// last characters of the first ALPN name; then the truncated SHA-256 of the sorted cipher
    /// list and of the sorted extension list (without SNI and ALPN) with the signature
    /// algorithms. GREASE values are left out everywhere, signature algorithms included.
    ///
    /// Where the spec leaves room: the version is the numerically highest non-GREASE value of
    /// supported_versions (as FoxIO's tools compute it), or `legacy_version` when the extension
    /// is absent or holds only GREASE; an empty list hashes to `000000000000`.
    pub fn ja4(&self, transport: Ja4Transport) -> String {
        let parts = self.ja4_parts(transport);
        let ciphers = if parts.ciphers.is_empty() {
            JA4_EMPTY_HASH.to_owned()
        } else {
            sha256_12(&parts.ciphers)
        };
        let extensions = if parts.extensions.is_empty() {
            JA4_EMPTY_HASH.to_owned()
        } else {
            sha256_12(&parts.extensions_and_signatures())
        };
        format!("{}_{ciphers}_{extensions}", parts.prefix)
    }

    /// The raw JA4 fingerprint (JA4_r): the same first part, then the sorted cipher list and
    /// the sorted extension list with the signature algorithms, unhashed.
    pub fn ja4_r(&self, transport: Ja4Transport) -> String {
        let parts = self.ja4_parts(transport);
        format!(
            "{}_{}_{}",
            parts.prefix,
            parts.ciphers,
            parts.extensions_and_signatures()
        )
    }

    fn ja4_parts(&self, transport: Ja4Transport) -> Ja4Parts {
        let protocol = match transport {
            Ja4Transport::Tcp => 't',
            Ja4Transport::Quic => 'q',
            Ja4Transport::Dtls => 'd',
        };
        // "The highest value in the extension", as a number (as FoxIO's tools compare), when
        // the extension is there with a value that is not GREASE.
        let version = if self.extensions.contains(&EXT_SUPPORTED_VERSIONS) {
            non_grease(&self.supported_versions)
                .max()
                .unwrap_or(self.version)
        } else {
            self.version
        };
        let destination = if self.extensions.contains(&EXT_SERVER_NAME) {
            'd'
        } else {
            'i'
        };
        let mut ciphers: Vec<u16> = non_grease(&self.cipher_suites).collect();
        let mut extensions: Vec<u16> = non_grease(&self.extensions).collect();
        let prefix = format!(
            "{protocol}{}{destination}{:02}{:02}{}",
            ja4_version(version),
            ciphers.len().min(99),
            extensions.len().min(99),
            ja4_alpn(self.alpn.first().map(Vec::as_slice).unwrap_or_default()),
        );
        ciphers.sort_unstable();
        extensions.retain(|&e| e != EXT_SERVER_NAME && e != EXT_ALPN);
        extensions.sort_unstable();
        let signatures: Vec<u16> = non_grease(&self.signature_algorithms).collect();
        Ja4Parts {
            prefix,
            ciphers: hex_list(&ciphers),
            extensions: hex_list(&extensions),
            signatures: hex_list(&signatures),
        }
    }
}

/// What differs between the ClientHello and the ServerHello decoders.
struct HelloKind {
    handshake_type: u8,
    /// The longest body the format allows, given its length prefixes.
    max_body: usize,
    wrong_type: &'static str,
    too_long: &'static str,
}

const CLIENT_HELLO: HelloKind = HelloKind {
    handshake_type: 1,
    // version, random, session id, cipher suites, compression methods, extensions.
    max_body: 2 + 32 + (1 + 32) + (2 + 0xfffe) + (1 + 0xff) + (2 + 0xffff),
    wrong_type: "handshake message is not a ClientHello",
    too_long: "handshake length longer than a ClientHello can be",
};

const SERVER_HELLO: HelloKind = HelloKind {
    handshake_type: 2,
    // version, random, session id, cipher suite, compression method, extensions.
    max_body: 2 + 32 + (1 + 32) + 2 + 1 + (2 + 0xffff),
    wrong_type: "handshake message is not a ServerHello",
    too_long: "handshake length longer than a ServerHello can be",
};

struct Ja4Parts {
    prefix: String,
    ciphers: String,
    extensions: String,
    signatures: String,
}

impl Ja4Parts {
    /// The extension list, then `_` and the signature algorithms if there are any.
    fn extensions_and_signatures(&self) -> String {
        if self.signatures.is_empty() {
            self.extensions.clone()
        } else {
            format!("{}_{}", self.extensions, self.signatures)
        }
    }
}

/// GREASE values (RFC 8701): 0x0a0a, 0x1a1a, ..., 0xfafa.
fn is_grease(v: u16) -> bool {
    let [high, low] = v.to_be_bytes();
    high == low && low & 0x0f == 0x0a
}

fn non_grease(values: &[u16]) -> impl Iterator<Item = u16> + '_ {
    values.iter().copied().filter(|&v| !is_grease(v))
}

fn ja4_version(v: u16) -> &'static str {
    match v {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xfeff => "d1",
        0xfefd => "d2",
        0xfefc => "d3",
        _ => "00",
    }
}

/// The first and last characters of the first ALPN name; if either is not an ASCII letter or
/// digit, the first and last characters of the name in hex; `00` for no name.
fn ja4_alpn(name: &[u8]) -> String {
    let (Some(&first), Some(&last)) = (name.first(), name.last()) else {
        return "00".to_owned();
    };
    if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() {
        [char::from(first), char::from(last)].iter().collect()
    } else {
        format!("{:x}{:x}", first >> 4, last & 0x0f)
    }
}

fn hex(bytes: &[u8]) -> String {
    let digit = |nibble: u8| char::from_digit(u32::from(nibble), 16).unwrap_or('0');
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(digit(b >> 4));
        out.push(digit(b & 0x0f));
    }
    out
}

/// Four lower-case hex digits per value, comma-separated.
fn hex_list(values: &[u16]) -> String {
    let mut out = String::with_capacity(values.len() * 5);
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&hex(&value.to_be_bytes()));
    }
    out
}

/// The first 12 hex characters of the SHA-256 of `text`.
fn sha256_12(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    hex(digest.get(..6).unwrap_or_default())
}

fn invalid(offset: usize, reason: &'static str) -> TlsError {
    TlsError::Invalid { offset, reason }
}

/// Checks the handshake header at the start of `message` as far as it goes: the type if there
/// is a byte, the length if there are four. Returns the whole message's length once known.
fn check_handshake_header(message: &[u8], kind: &HelloKind) -> Result<Option<usize>, TlsError> {
    if message.first().is_some_and(|&t| t != kind.handshake_type) {
        return Err(invalid(0, kind.wrong_type));
    }
    let Some(&[_, a, b, c]) = message.get(..HANDSHAKE_HEADER_LEN) else {
        return Ok(None);
    };
    let len = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
    if len > kind.max_body {
        return Err(invalid(1, kind.too_long));
    }
    Ok(Some(HANDSHAKE_HEADER_LEN + len))
}

/// A reader over the body of the hello at the start of `handshake`.
fn handshake_body<'m>(handshake: &'m [u8], kind: &HelloKind) -> Result<Reader<'m>, TlsError> {
    let total = check_handshake_header(handshake, kind)?.ok_or(TlsError::Incomplete {
        needed: HANDSHAKE_HEADER_LEN,
    })?;
    if handshake.len() < total {
        return Err(TlsError::Incomplete { needed: total });
    }
    Ok(Reader {
        msg: handshake,
        pos: HANDSHAKE_HEADER_LEN,
        end: total,
    })
}

fn client_hello_body(r: &mut Reader<'_>) -> Result<ClientHello, TlsError> {
    let version = r.u16("version runs past the end")?;
    r.bytes(32, "random runs past the end")?;
    session_id(r)?;
    let cipher_suites = r
        .sub16("cipher suites run past the end")?
        .u16_list("cipher suites are not a list of 2-byte values")?;
    r.sub8("compression methods run past the end")?;
    let mut hello = ClientHello {
        version,
        cipher_suites,
        extensions: Vec::new(),
        sni: None,
        alpn: Vec::new(),
        supported_versions: Vec::new(),
        groups: Vec::new(),
        ec_point_formats: Vec::new(),
        signature_algorithms: Vec::new(),
    };
    for_each_extension(r, |ext, data| {
        hello.extensions.push(ext);
        match ext {
            EXT_SERVER_NAME => hello.sni = server_name(data)?,
            EXT_ALPN => hello.alpn = alpn_names(data)?,
            EXT_SUPPORTED_VERSIONS => {
                hello.supported_versions = data
                    .sub8("supported versions run past the extension")?
                    .u16_list("supported versions are not a list of 2-byte values")?;
            }
            EXT_SUPPORTED_GROUPS => {
                hello.groups = data
                    .sub16("supported groups run past the extension")?
                    .u16_list("supported groups are not a list of 2-byte values")?;
            }
            EXT_EC_POINT_FORMATS => {
                let mut formats = data.sub8("point formats run past the extension")?;
                hello.ec_point_formats = formats.rest().to_vec();
            }
            EXT_SIGNATURE_ALGORITHMS => {
                hello.signature_algorithms = data
                    .sub16("signature algorithms run past the extension")?
                    .u16_list("signature algorithms are not a list of 2-byte values")?;
            }
            _ => {
                data.rest();
            }
        }
        Ok(())
    })?;
    Ok(hello)
}

/// Walks the extensions block that ends a hello, if there is one (hellos from before TLS 1.2
/// may end without it): each extension's type and data go to `visit`, which must read the data
/// to its end. An extension type may appear once.
fn for_each_extension<'m>(
    r: &mut Reader<'m>,
    mut visit: impl FnMut(u16, &mut Reader<'m>) -> Result<(), TlsError>,
) -> Result<(), TlsError> {
    if r.is_empty() {
        return Ok(());
    }
    let mut block = r.sub16("extensions run past the end")?;
    r.done("bytes after the extensions")?;
    let mut seen = HashSet::new();
    while !block.is_empty() {
        let at = block.pos;
        let ext = block.u16("extension type runs past the end")?;
        let mut data = block.sub16("extension runs past the end")?;
        if !seen.insert(ext) {
            return Err(invalid(at, "extension type appears twice"));
        }
        visit(ext, &mut data)?;
        data.done("extension longer than its fields")?;
    }
    Ok(())
}

fn server_hello_body(r: &mut Reader<'_>) -> Result<ServerHello, TlsError> {
    let legacy_version = r.u16("version runs past the end")?;
    r.bytes(32, "random runs past the end")?;
    session_id(r)?;
    let cipher_suite = r.u16("cipher suite runs past the end")?;
    r.u8("compression method runs past the end")?;
    let mut hello = ServerHello {
        version: legacy_version,
        cipher_suite,
        alpn: None,
    };
    for_each_extension(r, |ext, data| {
        match ext {
            EXT_SUPPORTED_VERSIONS => {
                hello.version = data.u16("selected version runs past the extension")?;
            }
            EXT_ALPN => {
                let at = data.pos;
                let mut names = alpn_names(data)?;
                if names.len() != 1 {
                    return Err(invalid(
                        at,
                        "server ALPN does not name exactly one protocol",
                    ));
                }
                hello.alpn = names.pop();
            }
            _ => {
                data.rest();
            }
        }
        Ok(())
    })?;
    Ok(hello)
}

fn session_id(r: &mut Reader<'_>) -> Result<(), TlsError> {
    let at = r.pos;
    if r.sub8("session id runs past the end")?.remaining() > 32 {
        return Err(invalid(at, "session id longer than 32 bytes"));
    }
    Ok(())
}

/// The server_name extension's data (RFC 6066 §3): the host name, if the list has one. An empty
/// extension (as servers send it) has none.
fn server_name(data: &mut Reader<'_>) -> Result<Option<String>, TlsError> {
    if data.is_empty() {
        return Ok(None);
    }
    let mut list = data.sub16("server name list runs past the extension")?;
    let mut host = None;
    while !list.is_empty() {
        let at = list.pos;
        let name_type = list.u8("server name type runs past the list")?;
        let name = list.sub16("server name runs past the list")?.rest();
        if name_type == 0 {
            if host.is_some() {
                return Err(invalid(at, "more than one host name"));
            }
            host = Some(String::from_utf8_lossy(name).into_owned());
        }
    }
    Ok(host)
}

/// The ALPN extension's data (RFC 7301 §3.1): the protocol names in order.
fn alpn_names(data: &mut Reader<'_>) -> Result<Vec<Vec<u8>>, TlsError> {
    let mut list = data.sub16("ALPN list runs past the extension")?;
    let mut names = Vec::new();
    while !list.is_empty() {
        names.push(list.sub8("ALPN name runs past the list")?.rest().to_vec());
    }
    Ok(names)
}

/// A handshake message put together from the records of a stream, and where each record's
/// piece of it was in the stream.
struct Reassembled {
    bytes: Vec<u8>,
    /// (offset in the message, offset in the stream) of each piece, in order.
    pieces: Vec<(usize, usize)>,
}

impl Reassembled {
    /// Moves an error's offset from the message to the stream.
    fn in_stream(&self, error: TlsError) -> TlsError {
        match error {
            TlsError::Invalid { offset, reason } => TlsError::Invalid {
                offset: self.stream_offset(offset),
                reason,
            },
            other => other,
        }
    }

    fn stream_offset(&self, offset: usize) -> usize {
        self.pieces
            .iter()
            .rev()
            .find(|&&(in_message, _)| in_message <= offset)
            .map_or(offset, |&(in_message, in_stream)| {
                in_stream + (offset - in_message)
            })
    }
}

/// Collects the first handshake message of a stream from its records, checking its type and
/// length as soon as their bytes arrive so a hostile stream is refused early.
fn reassemble(stream: &[u8], kind: &HelloKind) -> Result<Reassembled, TlsError> {
    let mut message = Reassembled {
        bytes: Vec::new(),
        pieces: Vec::new(),
    };
    let mut pos = 0;
    let mut total = None;
    loop {
        if let Some(total) = total.filter(|&t| message.bytes.len() >= t) {
            message.bytes.truncate(total);
            return Ok(message);
        }
        // At least the handshake header is needed before the length is known.
        let target = total.unwrap_or(HANDSHAKE_HEADER_LEN);
        let missing = target.saturating_sub(message.bytes.len()).max(1);
        let record = stream.get(pos..).unwrap_or_default();
        check_record_prefix(record, pos)?;
        let Some(&[_, _, _, high, low]) = record.get(..RECORD_HEADER_LEN) else {
            return Err(TlsError::Incomplete {
                needed: pos + RECORD_HEADER_LEN + missing,
            });
        };
        let len = usize::from(u16::from_be_bytes([high, low]));
        if len == 0 {
            return Err(invalid(pos + 3, "empty handshake record"));
        }
        if len > MAX_RECORD_LEN {
            return Err(invalid(pos + 3, "record longer than 2^14 bytes"));
        }
        let start = pos + RECORD_HEADER_LEN;
        let fragment = record.get(RECORD_HEADER_LEN..).unwrap_or_default();
        let fragment = fragment.get(..len).unwrap_or(fragment);
        let before = message.bytes.len();
        message.pieces.push((before, start));
        message.bytes.extend_from_slice(fragment);
        total = check_handshake_header(&message.bytes, kind).map_err(|e| message.in_stream(e))?;
        let complete = total.is_some_and(|t| message.bytes.len() >= t);
        // The rest of a cut record matters only if the message is not all there yet.
        if fragment.len() < len && !complete {
            let end = start + len;
            let target = total.unwrap_or(HANDSHAKE_HEADER_LEN);
            let with_record = before + len;
            let needed = if with_record >= target {
                end
            } else {
                end + RECORD_HEADER_LEN + (target - with_record)
            };
            return Err(TlsError::Incomplete { needed });
        }
        pos = start + len;
    }
}

/// Checks as much of a record header as `record` holds: a handshake record of version 3.x. The
/// first record decides whether this is TLS at all; later ones must continue the handshake.
fn check_record_prefix(record: &[u8], pos: usize) -> Result<(), TlsError> {
    let refuse = |offset: usize, reason| {
        if pos == 0 {
            TlsError::NotTls
        } else {
            invalid(pos + offset, reason)
        }
    };
    if record.first().is_some_and(|&t| t != CONTENT_HANDSHAKE) {
        return Err(refuse(
            0,
            "record of another type inside the handshake message",
        ));
    }
    if record.get(1).is_some_and(|&major| major != 3)
        || record.get(2).is_some_and(|&minor| minor > 4)
    {
        return Err(refuse(1, "record version is not TLS"));
    }
    Ok(())
}

/// A cursor over `msg[..end]`; offsets in errors count from the start of `msg`.
struct Reader<'m> {
    msg: &'m [u8],
    pos: usize,
    end: usize,
}

impl<'m> Reader<'m> {
    fn remaining(&self) -> usize {
        self.end.saturating_sub(self.pos)
    }

    fn is_empty(&self) -> bool {
        self.pos >= self.end
    }

    fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'m [u8], TlsError> {
        let stop = self
            .pos
            .checked_add(n)
            .filter(|&stop| stop <= self.end)
            .ok_or(invalid(self.pos, what))?;
        let bytes = self
            .msg
            .get(self.pos..stop)
            .ok_or(invalid(self.pos, what))?;
        self.pos = stop;
        Ok(bytes)
    }

    /// Everything left.
    fn rest(&mut self) -> &'m [u8] {
        let rest = self.msg.get(self.pos..self.end).unwrap_or_default();
        self.pos = self.end.max(self.pos);
        rest
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, TlsError> {
        let at = self.pos;
        self.bytes(1, what)?
            .first()
            .copied()
            .ok_or(invalid(at, what))
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, TlsError> {
        let at = self.pos;
        match self.bytes(2, what)? {
            &[high, low] => Ok(u16::from_be_bytes([high, low])),
            _ => Err(invalid(at, what)),
        }
    }

    /// A reader over the next `len` bytes, which this one skips.
    fn sub(&mut self, len: usize, what: &'static str) -> Result<Reader<'m>, TlsError> {
        let start = self.pos;
        self.bytes(len, what)?;
        Ok(Reader {
            msg: self.msg,
            pos: start,
            end: self.pos,
        })
    }

    /// A reader over a vector with a one-byte length prefix.
    fn sub8(&mut self, what: &'static str) -> Result<Reader<'m>, TlsError> {
        let len = self.u8(what)?;
        self.sub(usize::from(len), what)
    }

    /// A reader over a vector with a two-byte length prefix.
    fn sub16(&mut self, what: &'static str) -> Result<Reader<'m>, TlsError> {
        let len = self.u16(what)?;
        self.sub(usize::from(len), what)
    }

    /// The rest as big-endian 16-bit values.
    fn u16_list(mut self, what: &'static str) -> Result<Vec<u16>, TlsError> {
        if self.remaining() % 2 != 0 {
            return Err(invalid(self.pos, what));
        }
        let mut values = Vec::with_capacity(self.remaining() / 2);
        while !self.is_empty() {
            values.push(self.u16(what)?);
        }
        Ok(values)
    }

    /// Fails unless everything was read.
    fn done(&self, what: &'static str) -> Result<(), TlsError> {
        if self.pos == self.end {
            Ok(())
        } else {
            Err(invalid(self.pos, what))
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The ClientHello of stream 0 of FoxIO's `tls-sni.pcapng` capture (Chrome to
    /// clientservices.googleapis.com), as one TLS record, without the 186 zero bytes of its
    /// trailing padding extension: see [`capture_client_hello`].
    const CAPTURE_CLIENT_HELLO: [&str; 8] = [
        "1603010200010001fc03030f9e38acb9a54a7c6e00e29a70ac2feee180ff76d7f25dca84932a66a42d1e5a20",
        "bc58b92f865e6b9aa4a6371cadcb0afe1da1c0f705209a11d52357f56d5dd9620020aaaa130113021303c02b",
        "c02fc02cc030cca9cca8c013c014009c009d002f0035010001939a9a0000ff010001000033002b00290a0a00",
        "0100001d0020cf55af2603e92f59eb321779706a18fa6b96b16c16404c2264ed687a59401878002d00020101",
        "000500050100000000446900050003026832000d00120010040308040401050308050501080606010010000e",
        "000c02683208687474702f312e3100230000001b0003020002002b0007060a0a030403030000002200200000",
        "1d636c69656e7473657276696365732e676f6f676c65617069732e636f6d00120000000a000a00080a0a001d",
        "0017001800170000000b000201006a6a000100001500ba",
    ];

    /// The ServerHello record of stream 0 of FoxIO's `tls-non-ascii-alpn.pcapng` (TLS 1.3).
    const CAPTURE_SERVER_HELLO: [&str; 3] = [
        "160303007a020000760303897c232e3ee313314f2b662307ff4f7e2cf1caeec1b27711bca77f469519168520",
        "bc58b92f865e6b9aa4a6371cadcb0afe1da1c0f705209a11d52357f56d5dd962130100002e00330024001d00",
        "2076b8b7ed0f96b63a773d85ab6f3a87a151c130529785b41a4defb53184055957002b00020304",
    ];

    fn unhex(lines: &[&str]) -> Vec<u8> {
        let text = lines.concat();
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    fn capture_client_hello() -> Vec<u8> {
        let mut stream = unhex(&CAPTURE_CLIENT_HELLO);
        stream.extend([0; 186]);
        assert_eq!(stream.len(), 517, "the captured record is 517 bytes");
        stream
    }

    fn u16s(values: &[u16]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_be_bytes()).collect()
    }

    fn vec8(bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![u8::try_from(bytes.len()).unwrap()];
        out.extend_from_slice(bytes);
        out
    }

    fn vec16(bytes: &[u8]) -> Vec<u8> {
        let mut out = u16::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
        out.extend_from_slice(bytes);
        out
    }

    type Extension = (u16, Vec<u8>);

    fn sni(host: &[u8]) -> Extension {
        let mut entry = vec![0];
        entry.extend(vec16(host));
        (EXT_SERVER_NAME, vec16(&entry))
    }

    fn alpn(names: &[&[u8]]) -> Extension {
        let list: Vec<u8> = names.iter().flat_map(|n| vec8(n)).collect();
        (EXT_ALPN, vec16(&list))
    }

    fn versions(values: &[u16]) -> Extension {
        (EXT_SUPPORTED_VERSIONS, vec8(&u16s(values)))
    }

    fn groups(values: &[u16]) -> Extension {
        (EXT_SUPPORTED_GROUPS, vec16(&u16s(values)))
    }

    fn point_formats(values: &[u8]) -> Extension {
        (EXT_EC_POINT_FORMATS, vec8(values))
    }

    fn signatures(values: &[u16]) -> Extension {
        (EXT_SIGNATURE_ALGORITHMS, vec16(&u16s(values)))
    }

    /// A ClientHello to encode. `extensions: None` leaves out the extensions block.
    #[derive(Debug, Clone)]
    struct Hello {
        version: u16,
        session_id: Vec<u8>,
        ciphers: Vec<u16>,
        extensions: Option<Vec<Extension>>,
    }

    impl Hello {
        fn new(ciphers: &[u16], extensions: Vec<Extension>) -> Self {
            Hello {
                version: 0x0303,
                session_id: vec![7; 32],
                ciphers: ciphers.to_vec(),
                extensions: Some(extensions),
            }
        }

        fn body(&self) -> Vec<u8> {
            let mut body = self.version.to_be_bytes().to_vec();
            body.extend([0x5a; 32]);
            body.extend(vec8(&self.session_id));
            body.extend(vec16(&u16s(&self.ciphers)));
            body.extend([1, 0]);
            if let Some(extensions) = &self.extensions {
                let block: Vec<u8> = extensions
                    .iter()
                    .flat_map(|(ext, data)| {
                        let mut out = ext.to_be_bytes().to_vec();
                        out.extend(vec16(data));
                        out
                    })
                    .collect();
                body.extend(vec16(&block));
            }
            body
        }

        fn handshake(&self) -> Vec<u8> {
            handshake(1, &self.body())
        }
    }

    fn handshake(handshake_type: u8, body: &[u8]) -> Vec<u8> {
        let len = u32::try_from(body.len()).unwrap().to_be_bytes();
        let mut out = vec![handshake_type, len[1], len[2], len[3]];
        out.extend_from_slice(body);
        out
    }

    /// Handshake bytes cut into handshake records of at most `fragment` bytes.
    fn records(handshake: &[u8], fragment: usize) -> Vec<u8> {
        handshake
            .chunks(fragment)
            .flat_map(|chunk| {
                let mut out = vec![22, 3, 1];
                out.extend(vec16(chunk));
                out
            })
            .collect()
    }

    fn server_hello(legacy_version: u16, cipher: u16, extensions: &[Extension]) -> Vec<u8> {
        let mut body = legacy_version.to_be_bytes().to_vec();
        body.extend([0x33; 32]);
        body.extend(vec8(&[9; 32]));
        body.extend(cipher.to_be_bytes());
        body.push(0);
        let block: Vec<u8> = extensions
            .iter()
            .flat_map(|(ext, data)| {
                let mut out = ext.to_be_bytes().to_vec();
                out.extend(vec16(data));
                out
            })
            .collect();
        body.extend(vec16(&block));
        handshake(2, &body)
    }

    /// The hello of FoxIO's JA4 worked example: its ciphers and extensions in the order of its
    /// JA4_ro string, with GREASE values added where Chrome puts them.
    fn foxio_example(signature_algorithms: &[u16]) -> Hello {
        let ciphers = [
            0x2a2a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
            0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
        ];
        let extensions = vec![
            (0x7a7a, Vec::new()),
            (0x001b, vec8(&u16s(&[2]))),
            sni(b"example.com"),
            (0x0033, vec16(&[])),
            alpn(&[b"h2", b"http/1.1"]),
            (0x4469, vec16(&vec8(b"h2"))),
            (0x0017, Vec::new()),
            (0x002d, vec8(&[1])),
            signatures(signature_algorithms),
            (0x0005, vec![1, 0, 0, 0, 0]),
            (0x0023, Vec::new()),
            (0x0012, Vec::new()),
            versions(&[0x8a8a, 0x0304, 0x0303]),
            (0xff01, vec![0]),
            point_formats(&[0]),
            groups(&[0x6a6a, 0x001d, 0x0017, 0x0018]),
            (0x0015, vec![0; 3]),
            (0x1a1a, vec![0]),
        ];
        Hello::new(&ciphers, extensions)
    }

    const SPEC_CIPHERS: &str =
        "002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9";
    const SPEC_EXTENSIONS: &str =
        "0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01";
    const SPEC_SIGNATURES: &str = "0403,0804,0401,0503,0805,0501,0806,0601";
    const SPEC_SIGNATURE_VALUES: [u16; 8] = [
        0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
    ];

    #[test]
    fn every_field_is_decoded_in_wire_order() {
        let hello = Hello::new(
            &[0x0a0a, 0x1301, 0xc02f],
            vec![
                (0x0a0a, Vec::new()),
                sni(b"Example.COM"),
                alpn(&[b"h2", b"http/1.1"]),
                versions(&[0x3a3a, 0x0304, 0x0303]),
                groups(&[0x4a4a, 29, 23]),
                point_formats(&[0, 1]),
                signatures(&[0x0804, 0x0403]),
                (0x0033, vec16(&[0, 29, 0, 1, 0xff])),
            ],
        );
        assert_eq!(
            parse_client_hello(&hello.handshake()).unwrap(),
            ClientHello {
                version: 0x0303,
                cipher_suites: vec![0x0a0a, 0x1301, 0xc02f],
                extensions: vec![0x0a0a, 0, 16, 43, 10, 11, 13, 0x33],
                sni: Some("Example.COM".into()),
                alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
                supported_versions: vec![0x3a3a, 0x0304, 0x0303],
                groups: vec![0x4a4a, 29, 23],
                ec_point_formats: vec![0, 1],
                signature_algorithms: vec![0x0804, 0x0403],
            }
        );
    }

    #[test]
    fn a_hello_without_extensions() {
        let hello = Hello {
            version: 0x0301,
            session_id: Vec::new(),
            ciphers: vec![0x002f, 0x0035],
            extensions: None,
        };
        let parsed = parse_client_hello(&hello.handshake()).unwrap();
        assert_eq!(parsed.version, 0x0301);
        assert!(parsed.extensions.is_empty() && parsed.sni.is_none());
        assert_eq!(parsed.ja3_string(), "769,47-53,,,");
        assert_eq!(parsed.ja3(), "dac4920d4335e769327dbf4e1b759e15");
        // No extension: the extension hash is twelve zeros, as the spec says.
        assert_eq!(
            parsed.ja4(Ja4Transport::Tcp),
            "t10i020000_f54dd463d39b_000000000000"
        );
        assert_eq!(parsed.ja4_r(Ja4Transport::Tcp), "t10i020000_002f,0035_");
    }

    #[test]
    fn sni_bytes_that_are_not_utf8_are_replaced() {
        let hello = Hello::new(&[0x1301], vec![sni(b"bad\xffname")]);
        assert_eq!(
            parse_client_hello(&hello.handshake())
                .unwrap()
                .sni
                .as_deref(),
            Some("bad\u{fffd}name")
        );
    }

    #[test]
    fn ja3_of_a_hand_built_hello() {
        let hello = Hello::new(
            &[0x0a0a, 0xc02b, 0xc02f, 0x009c],
            vec![
                (0x1a1a, Vec::new()),
                sni(b"example.com"),
                groups(&[0x2a2a, 29, 23]),
                point_formats(&[0]),
                signatures(&[0x0403, 0x0804]),
                alpn(&[b"h2"]),
            ],
        );
        let parsed = parse_client_hello(&hello.handshake()).unwrap();
        assert_eq!(
            parsed.ja3_string(),
            "771,49195-49199-156,0-10-11-13-16,29-23,0"
        );
        // MD5 of the string above, computed independently.
        assert_eq!(parsed.ja3(), "39caaa1effaf38f3252dff979040bfd4");
        assert_eq!(
            parsed.ja4_r(Ja4Transport::Tcp),
            "t12d0305h2_009c,c02b,c02f_000a,000b,000d_0403,0804"
        );
        assert_eq!(
            parsed.ja4(Ja4Transport::Tcp),
            "t12d0305h2_b80a1783d7a2_876bcc86782c"
        );
    }

    #[test]
    fn ja4_of_the_foxio_worked_example() {
        let parsed =
            parse_client_hello(&foxio_example(&SPEC_SIGNATURE_VALUES).handshake()).unwrap();
        // The spec's JA4_r: ciphers sorted, extensions sorted without SNI and ALPN, then the
        // signature algorithms in wire order; GREASE left out everywhere.
        assert_eq!(
            parsed.ja4_r(Ja4Transport::Tcp),
            format!("t13d1516h2_{SPEC_CIPHERS}_{SPEC_EXTENSIONS}_{SPEC_SIGNATURES}")
        );
        assert_eq!(
            parsed.ja4(Ja4Transport::Tcp),
            "t13d1516h2_8daaf6152771_e5627efa2ab1"
        );
        assert_eq!(
            parsed.ja4(Ja4Transport::Quic),
            "q13d1516h2_8daaf6152771_e5627efa2ab1"
        );
        assert_eq!(
            parsed.ja4(Ja4Transport::Dtls),
            "d13d1516h2_8daaf6152771_e5627efa2ab1"
        );
    }

    #[test]
    fn ja4_without_signature_algorithms_has_no_underscore_part() {
        let parsed = parse_client_hello(&foxio_example(&[]).handshake()).unwrap();
        assert_eq!(
            parsed.ja4_r(Ja4Transport::Tcp),
            format!("t13d1516h2_{SPEC_CIPHERS}_{SPEC_EXTENSIONS}")
        );
        // The spec's example value for this list.
        assert_eq!(
            parsed.ja4(Ja4Transport::Tcp),
            "t13d1516h2_8daaf6152771_6d807ffa2a79"
        );
    }

    #[test]
    fn ja4_grease_signature_algorithms_are_left_out() {
        let mut with_grease = vec![0x0a0a];
        with_grease.extend(SPEC_SIGNATURE_VALUES);
        let parsed = parse_client_hello(&foxio_example(&with_grease).handshake()).unwrap();
        assert_eq!(
            parsed.ja4(Ja4Transport::Tcp),
            "t13d1516h2_8daaf6152771_e5627efa2ab1"
        );
    }

    #[test]
    fn ja4_version_destination_and_counts() {
        let ja4_a = |hello: &Hello| {
            parse_client_hello(&hello.handshake())
                .unwrap()
                .ja4(Ja4Transport::Tcp)[..10]
                .to_owned()
        };
        // supported_versions wins over legacy_version; GREASE is not a version.
        assert_eq!(
            ja4_a(&Hello::new(&[1], vec![versions(&[0xfafa, 0x0303, 0x0304])])),
            "t13i010100"
        );
        // Only GREASE in supported_versions: legacy_version is used.
        assert_eq!(
            ja4_a(&Hello::new(&[1], vec![versions(&[0xfafa])])),
            "t12i010100"
        );
        let mut old = Hello::new(&[1], vec![]);
        old.version = 0x0300;
        assert_eq!(ja4_a(&old), "ts3i010000");
        old.version = 0x7f1c;
        assert_eq!(ja4_a(&old), "t00i010000");
        // An SNI extension without a name still means a domain.
        let empty_sni = Hello::new(&[1], vec![(EXT_SERVER_NAME, Vec::new())]);
        assert_eq!(
            parse_client_hello(&empty_sni.handshake()).unwrap().sni,
            None
        );
        assert_eq!(ja4_a(&empty_sni), "t12d010100");
        // Counts stop at 99.
        let ciphers: Vec<u16> = (0x0100..0x0100 + 120).collect();
        let many: Vec<Extension> = (0x0100..0x0100 + 105).map(|e| (e, Vec::new())).collect();
        assert_eq!(ja4_a(&Hello::new(&ciphers, many)), "t12i999900");
        // No cipher: twelve zeros instead of a hash.
        let none = parse_client_hello(&Hello::new(&[], vec![groups(&[29])]).handshake()).unwrap();
        assert!(
            none.ja4(Ja4Transport::Tcp)
                .starts_with("t12i000100_000000000000_")
        );
        // Only SNI and ALPN: the sorted extension list is empty, so is its hash.
        let named = Hello::new(&[1], vec![sni(b"a.example"), alpn(&[b"h2"])]);
        let named = parse_client_hello(&named.handshake()).unwrap();
        assert!(named.ja4(Ja4Transport::Tcp).ends_with("_000000000000"));
    }

    #[test]
    fn ja4_alpn_characters_follow_the_spec_examples() {
        let cases: [(&[u8], &str); 10] = [
            (b"", "00"),
            (b"h2", "h2"),
            (b"http/1.1", "h1"),
            (b"h", "hh"),
            (b"spdy/3", "s3"),
            (&[0xab], "ab"),
            (&[0xab, 0xcd], "ad"),
            (&[0x30, 0xab], "3b"),
            (&[0x30, 0x31, 0xab, 0xcd], "3d"),
            (&[0x30, 0xab, 0xcd, 0x31], "01"),
        ];
        for (name, expected) in cases {
            assert_eq!(ja4_alpn(name), expected, "ALPN {name:02x?}");
        }
        let no_alpn = parse_client_hello(&Hello::new(&[1], vec![alpn(&[])]).handshake()).unwrap();
        assert_eq!(&no_alpn.ja4(Ja4Transport::Tcp)[8..10], "00");
    }

    #[test]
    fn the_captured_chrome_hello_matches_foxio_expected_output() {
        let stream = capture_client_hello();
        assert!(looks_like_client_hello(&stream));
        let hello = client_hello_from_stream(&stream).unwrap();
        assert_eq!(hello.sni.as_deref(), Some("clientservices.googleapis.com"));
        assert_eq!(hello.alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert_eq!(hello.version, 0x0303);
        assert_eq!(hello.supported_versions, vec![0x0a0a, 0x0304, 0x0303]);
        assert_eq!(hello.groups, vec![0x0a0a, 0x001d, 0x0017, 0x0018]);
        assert_eq!(hello.cipher_suites.len(), 16);
        assert_eq!(hello.extensions.len(), 18);
        assert_eq!(hello, parse_client_hello(&stream[5..]).unwrap());
        // From foxio-ja4-expected/tls-sni.pcapng.json, stream 0.
        assert_eq!(
            hello.ja4(Ja4Transport::Tcp),
            "t13d1516h2_8daaf6152771_e5627efa2ab1"
        );
        assert_eq!(
            hello.ja4_r(Ja4Transport::Tcp),
            format!("t13d1516h2_{SPEC_CIPHERS}_{SPEC_EXTENSIONS}_{SPEC_SIGNATURES}")
        );
        assert_eq!(
            hello.ja3_string(),
            "771,4865-4866-4867-49195-49199-49196-49200-52393-52392-49171-49172-156-157-47-53,\
             65281-51-45-5-17513-13-16-35-27-43-0-18-10-23-11-21,29-23-24,0"
        );
    }

    #[test]
    fn a_non_alphanumeric_alpn_uses_hex_characters() {
        // tls-non-ascii-alpn.pcapng is the same hello with the first ALPN name 0xba 0xad. The
        // current spec gives "bd" (hex "baad", first and last); FoxIO's expected JSON for that
        // capture still shows "99", from an older rule.
        let mut stream = capture_client_hello();
        let at = stream
            .windows(4)
            .position(|w| w == [2, b'h', b'2', 8])
            .unwrap();
        stream[at + 1..at + 3].copy_from_slice(&[0xba, 0xad]);
        let hello = client_hello_from_stream(&stream).unwrap();
        assert_eq!(hello.alpn[0], vec![0xba, 0xad]);
        assert_eq!(
            hello.ja4(Ja4Transport::Tcp),
            "t13d1516bd_8daaf6152771_e5627efa2ab1"
        );
    }

    #[test]
    fn the_captured_tls13_server_hello() {
        let mut stream = unhex(&CAPTURE_SERVER_HELLO);
        // The ChangeCipherSpec and encrypted records that follow are not looked at.
        stream.extend([0x14, 3, 3, 0, 1, 1, 0x17, 3, 3, 0x12, 0x72]);
        assert!(!looks_like_client_hello(&stream));
        let hello = server_hello_from_stream(&stream).unwrap();
        assert_eq!(
            hello,
            ServerHello {
                version: 0x0304,
                cipher_suite: 0x1301,
                alpn: None
            }
        );
        assert_eq!(version_name(hello.version), "TLS 1.3");
        assert_eq!(
            client_hello_from_stream(&stream).unwrap_err(),
            invalid(5, "handshake message is not a ClientHello")
        );
    }

    #[test]
    fn a_tls12_server_hello_with_alpn() {
        let message = server_hello(0x0303, 0xc02f, &[(0xff01, vec![0]), alpn(&[b"h2"])]);
        let hello = server_hello_from_stream(&records(&message, 100)).unwrap();
        assert_eq!(hello.version, 0x0303);
        assert_eq!(hello.cipher_suite, 0xc02f);
        assert_eq!(hello.alpn.as_deref(), Some(&b"h2"[..]));
        assert_eq!(parse_server_hello(&message).unwrap(), hello);
        let two = server_hello(0x0303, 0xc02f, &[alpn(&[b"h2", b"h3"])]);
        assert!(matches!(
            parse_server_hello(&two),
            Err(TlsError::Invalid {
                reason: "server ALPN does not name exactly one protocol",
                ..
            })
        ));
    }

    #[test]
    fn a_hello_split_over_records_is_put_together() {
        let handshake = capture_client_hello()[5..].to_vec();
        let whole = parse_client_hello(&handshake).unwrap();
        for fragment in [1, 2, 3, 5, 100, 511] {
            assert_eq!(
                client_hello_from_stream(&records(&handshake, fragment)).unwrap(),
                whole,
                "records of {fragment} bytes"
            );
        }
        // Another handshake message in the same record after the hello is ignored, even when
        // the stream so far holds only part of it.
        let mut two_messages = handshake.clone();
        two_messages.extend([11, 0, 0, 3, 0, 0, 0]);
        let stream = records(&two_messages, 2000);
        assert_eq!(client_hello_from_stream(&stream).unwrap(), whole);
        assert_eq!(
            client_hello_from_stream(&stream[..stream.len() - 2]).unwrap(),
            whole
        );
        assert_eq!(
            client_hello_from_stream(&stream[..stream.len() - 8]),
            Err(TlsError::Incomplete {
                needed: stream.len()
            })
        );
    }

    #[test]
    fn streams_that_are_not_tls() {
        for stream in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"SSH-2.0-OpenSSH_9.6\r\n",
            &[0x15, 3, 3, 0, 2, 2, 40],                  // an alert record
            &[0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15], // an SSL 2.0 hello
            &[22, 2, 0],                                 // handshake, but not version 3.x
            &[22, 3, 9],
        ] {
            assert_eq!(
                client_hello_from_stream(stream),
                Err(TlsError::NotTls),
                "{stream:?}"
            );
            assert_eq!(
                server_hello_from_stream(stream),
                Err(TlsError::NotTls),
                "{stream:?}"
            );
            assert!(!looks_like_client_hello(stream));
        }
        // Too little to tell: the record header and the handshake header are needed.
        assert_eq!(
            client_hello_from_stream(&[]),
            Err(TlsError::Incomplete { needed: 9 })
        );
        assert_eq!(
            client_hello_from_stream(&[22, 3]),
            Err(TlsError::Incomplete { needed: 9 })
        );
        assert!(!looks_like_client_hello(&[22, 3, 1, 2, 0]));
    }

    #[test]
    fn looks_like_client_hello_checks_the_record_and_handshake_headers() {
        assert!(looks_like_client_hello(&[22, 3, 1, 0, 1, 1]));
        assert!(looks_like_client_hello(&[22, 3, 0, 0x40, 0, 1]));
        assert!(!looks_like_client_hello(&[22, 3, 1, 0, 0, 1])); // empty record
        assert!(!looks_like_client_hello(&[22, 3, 1, 0x40, 1, 1])); // longer than 2^14
        assert!(!looks_like_client_hello(&[22, 3, 1, 0, 1, 2])); // a ServerHello
        assert!(!looks_like_client_hello(&[23, 3, 3, 0, 1, 1]));
    }

    #[test]
    fn version_names() {
        assert_eq!(version_name(0x0303), "TLS 1.2");
        assert_eq!(version_name(0x0301), "TLS 1.0");
        assert_eq!(version_name(0x0300), "SSL 3.0");
        assert_eq!(version_name(0xfefd), "DTLS 1.2");
        assert_eq!(version_name(0x0a0a), "unknown");
    }

    #[test]
    fn handshake_messages_that_are_short() {
        let handshake = Hello::new(&[1], vec![sni(b"example.com")]).handshake();
        assert_eq!(
            parse_client_hello(&[]),
            Err(TlsError::Incomplete { needed: 4 })
        );
        assert_eq!(
            parse_client_hello(&handshake[..3]),
            Err(TlsError::Incomplete { needed: 4 })
        );
        assert_eq!(
            parse_client_hello(&handshake[..10]),
            Err(TlsError::Incomplete {
                needed: handshake.len()
            })
        );
        assert_eq!(
            parse_client_hello(&[2]),
            Err(invalid(0, "handshake message is not a ClientHello"))
        );
    }

    #[test]
    fn every_truncation_of_the_captured_hello_is_incomplete() {
        let stream = capture_client_hello();
        for end in 0..stream.len() {
            let needed = match client_hello_from_stream(&stream[..end]) {
                Err(TlsError::Incomplete { needed }) => needed,
                other => panic!("prefix of {end} bytes: {other:?}"),
            };
            // One record: once its header is in, the exact length is known.
            let expected = if end < 5 { 9 } else { stream.len() };
            assert_eq!(needed, expected, "prefix of {end} bytes");
        }
    }

    fn reason(result: Result<ClientHello, TlsError>) -> &'static str {
        match result {
            Err(TlsError::Invalid { reason, .. }) => reason,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn framing_errors_are_refused() {
        let parse = |hello: &Hello| parse_client_hello(&hello.handshake());
        // Two server_name extensions: which one would the server use?
        let twice = Hello::new(&[1], vec![sni(b"allowed.example"), sni(b"blocked.example")]);
        assert_eq!(reason(parse(&twice)), "extension type appears twice");
        // Two host names in one extension.
        let mut list = vec![0];
        list.extend(vec16(b"a.example"));
        list.push(0);
        list.extend(vec16(b"b.example"));
        let two_names = Hello::new(&[1], vec![(EXT_SERVER_NAME, vec16(&list))]);
        assert_eq!(reason(parse(&two_names)), "more than one host name");
        // A name of another type is skipped.
        let mut other = vec![1];
        other.extend(vec16(b"xyz"));
        other.push(0);
        other.extend(vec16(b"c.example"));
        let other = Hello::new(&[1], vec![(EXT_SERVER_NAME, vec16(&other))]);
        assert_eq!(parse(&other).unwrap().sni.as_deref(), Some("c.example"));
        // An extension with bytes after its fields.
        let mut long = versions(&[0x0304]);
        long.1.push(0);
        assert_eq!(
            reason(parse(&Hello::new(&[1], vec![long]))),
            "extension longer than its fields"
        );
        // A list of 2-byte values with an odd length.
        let odd = Hello::new(&[1], vec![(EXT_SUPPORTED_GROUPS, vec16(&[0, 29, 0]))]);
        assert_eq!(
            reason(parse(&odd)),
            "supported groups are not a list of 2-byte values"
        );
        let mut session = Hello::new(&[1], vec![]);
        session.session_id = vec![0; 33];
        assert_eq!(reason(parse(&session)), "session id longer than 32 bytes");
        // Bytes after the extensions block, inside the handshake message.
        let mut body = Hello::new(&[1], vec![]).body();
        body.push(0);
        assert_eq!(
            parse_client_hello(&handshake(1, &body)),
            Err(invalid(4 + body.len() - 1, "bytes after the extensions"))
        );
        // An odd cipher suite list.
        let mut body = Hello::new(&[], vec![]).body();
        body[2 + 32 + 33 + 1] = 1;
        assert_eq!(
            reason(parse_client_hello(&handshake(1, &body))),
            "cipher suites are not a list of 2-byte values"
        );
    }

    #[test]
    fn record_errors_are_refused_early_with_stream_offsets() {
        let message = Hello::new(&[0x1301], vec![sni(b"example.com")]).handshake();
        // A length no ClientHello can have is refused before its bytes arrive.
        assert_eq!(
            client_hello_from_stream(&[22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff]),
            Err(invalid(
                6,
                "handshake length longer than a ClientHello can be"
            ))
        );
        // The handshake header split over records: the offset is where its byte is.
        assert_eq!(
            client_hello_from_stream(&records(&[1, 0x7f, 0xff, 0xff], 1)),
            Err(invalid(
                11,
                "handshake length longer than a ClientHello can be"
            ))
        );
        assert_eq!(
            client_hello_from_stream(&[22, 3, 1, 0, 0]),
            Err(invalid(3, "empty handshake record"))
        );
        assert_eq!(
            client_hello_from_stream(&[22, 3, 1, 0x40, 1]),
            Err(invalid(3, "record longer than 2^14 bytes"))
        );
        // An alert where the second record of the hello should be.
        let mut stream = records(&message[..10], 10);
        stream.extend([21, 3, 3, 0, 2, 2, 40]);
        assert_eq!(
            client_hello_from_stream(&stream),
            Err(invalid(
                15,
                "record of another type inside the handshake message"
            ))
        );
        // An error inside the third record of a fragmented hello: a cipher suite list of 3
        // bytes, which starts at message offset 4 + 2 + 32 + 33 + 2 = 73. That is in the third
        // 30-byte record (message bytes 60..90, at stream offsets 75..105): stream offset 88.
        let mut body = Hello::new(&[0x1301], vec![]).body();
        body[2 + 32 + 33 + 1] = 3;
        assert_eq!(
            client_hello_from_stream(&records(&handshake(1, &body), 30)),
            Err(invalid(88, "cipher suites are not a list of 2-byte values"))
        );
    }

    /// A generated ClientHello: what is encoded and what decoding must give back.
    fn arbitrary_hello() -> impl Strategy<Value = (Hello, ClientHello)> {
        let known = [0u16, 10, 11, 13, 16, 43];
        (
            any::<u16>(),
            prop::collection::vec(any::<u16>(), 0..40),
            prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
            prop::option::of(prop::collection::vec(
                prop::collection::vec(any::<u8>(), 0..12),
                0..4,
            )),
            prop::option::of(prop::collection::vec(any::<u16>(), 0..8)),
            prop::option::of(prop::collection::vec(any::<u16>(), 0..12)),
            prop::option::of(prop::collection::vec(any::<u8>(), 0..4)),
            prop::option::of(prop::collection::vec(any::<u16>(), 0..20)),
            prop::collection::btree_map(
                any::<u16>().prop_filter("decoded type", move |t| !known.contains(t)),
                prop::collection::vec(any::<u8>(), 0..30),
                0..8,
            ),
            prop::collection::vec(any::<u32>(), 16),
        )
            .prop_map(
                |(version, ciphers, host, names, vers, grps, formats, sigs, others, keys)| {
                    let mut extensions: Vec<Extension> = others.into_iter().collect();
                    if let Some(host) = &host {
                        extensions.push(sni(host));
                    }
                    if let Some(names) = &names {
                        let names: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
                        extensions.push(alpn(&names));
                    }
                    extensions.extend(vers.as_deref().map(versions));
                    extensions.extend(grps.as_deref().map(groups));
                    extensions.extend(formats.as_deref().map(point_formats));
                    extensions.extend(sigs.as_deref().map(signatures));
                    let mut order: Vec<(u32, Extension)> =
                        keys.into_iter().zip(extensions).collect();
                    order.sort_by_key(|(key, _)| *key);
                    let extensions: Vec<Extension> = order.into_iter().map(|(_, e)| e).collect();
                    let expected = ClientHello {
                        version,
                        cipher_suites: ciphers.clone(),
                        extensions: extensions.iter().map(|(t, _)| *t).collect(),
                        sni: host.map(|h| String::from_utf8_lossy(&h).into_owned()),
                        alpn: names.unwrap_or_default(),
                        supported_versions: vers.unwrap_or_default(),
                        groups: grps.unwrap_or_default(),
                        ec_point_formats: formats.unwrap_or_default(),
                        signature_algorithms: sigs.unwrap_or_default(),
                    };
                    let mut hello = Hello::new(&ciphers, extensions);
                    hello.version = version;
                    (hello, expected)
                },
            )
    }

    proptest! {
        #[test]
        fn decoding_gives_back_what_was_encoded((hello, expected) in arbitrary_hello()) {
            prop_assert_eq!(parse_client_hello(&hello.handshake()), Ok(expected));
        }

        #[test]
        fn any_split_into_records_decodes_the_same(
            (hello, expected) in arbitrary_hello(),
            fragment in 1usize..200,
        ) {
            let stream = records(&hello.handshake(), fragment);
            prop_assert_eq!(client_hello_from_stream(&stream), Ok(expected));
        }

        #[test]
        fn every_truncation_of_a_stream_is_incomplete(
            (hello, _) in arbitrary_hello(),
            fragment in 1usize..300,
        ) {
            let stream = records(&hello.handshake(), fragment);
            for end in 0..stream.len() {
                match client_hello_from_stream(&stream[..end]) {
                    // A lower bound: more than was given, no more than the whole hello.
                    Err(TlsError::Incomplete { needed }) => {
                        prop_assert!(end < needed && needed <= stream.len(), "{end}: {needed}")
                    }
                    other => prop_assert!(false, "prefix of {end} bytes: {other:?}"),
                }
            }
        }

        #[test]
        fn server_hellos_decode(
            legacy in any::<u16>(),
            cipher in any::<u16>(),
            selected in prop::option::of(any::<u16>()),
            protocol in prop::option::of(prop::collection::vec(any::<u8>(), 0..20)),
            fragment in 1usize..100,
        ) {
            let mut extensions = Vec::new();
            extensions.extend(selected.map(|v| (EXT_SUPPORTED_VERSIONS, v.to_be_bytes().to_vec())));
            extensions.extend(protocol.as_deref().map(|p| alpn(&[p])));
            let stream = records(&server_hello(legacy, cipher, &extensions), fragment);
            let expected = ServerHello {
                version: selected.unwrap_or(legacy),
                cipher_suite: cipher,
                alpn: protocol,
            };
            prop_assert_eq!(server_hello_from_stream(&stream), Ok(expected));
            for end in 0..stream.len() {
                let incomplete = matches!(
                    server_hello_from_stream(&stream[..end]),
                    Err(TlsError::Incomplete { needed }) if needed > end
                );
                prop_assert!(incomplete, "prefix of {end} bytes");
            }
        }

        #[test]
        fn arbitrary_bytes_give_a_hello_or_a_bounded_error(
            bytes in prop::collection::vec(any::<u8>(), 0..600),
            as_record in any::<bool>(),
        ) {
            // Half the cases get a plausible record and handshake header, to reach the body.
            let stream = if as_record {
                let mut stream = vec![22, 3, 1];
                stream.extend(vec16(&handshake(1, &bytes)));
                stream
            } else {
                bytes.clone()
            };
            let results = [
                (client_hello_from_stream(&stream), stream.len()),
                (parse_client_hello(&bytes), bytes.len()),
            ];
            for (result, given) in results {
                match result {
                    Ok(hello) => {
                        prop_assert_eq!(hello.ja4(Ja4Transport::Tcp).len(), 36);
                        prop_assert_eq!(hello.ja3().len(), 32);
                    }
                    Err(TlsError::Incomplete { needed }) => prop_assert!(needed > given),
                    Err(TlsError::Invalid { offset, .. }) => prop_assert!(offset <= given),
                    Err(TlsError::NotTls) => prop_assert!(!looks_like_client_hello(&stream)),
                }
            }
            match server_hello_from_stream(&bytes) {
                Ok(_) | Err(TlsError::NotTls) => {}
                Err(TlsError::Incomplete { needed }) => prop_assert!(needed > bytes.len()),
                Err(TlsError::Invalid { offset, .. }) => prop_assert!(offset <= bytes.len()),
            }
        }
    }
}
