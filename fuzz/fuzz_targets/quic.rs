//! QUIC client Initial decoding of arbitrary bytes, three ways: as the plaintext of an Initial
//! packet (`crypto_frames`), as up to four raw datagrams of one flow, and as up to eight frame
//! payloads sealed into real Initial packets, so that the fuzzer reaches the frame decoder and the
//! CRYPTO reassembly behind the AEAD check (random bytes essentially never pass it). Any answer
//! but a panic is fine; a returned ClientHello must be a whole handshake message of type 1.

#![no_main]

use std::sync::OnceLock;

use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit};
use aes_gcm::Aes128Gcm;
use aes_gcm::aead::AeadInPlace;
use aes_gcm::aead::generic_array::GenericArray;
use hkdf::Hkdf;
use libfuzzer_sys::fuzz_target;
use palisade_dpi::quic::{self, ClientInitials, MAX_CRYPTO_LEN};
use sha2::Sha256;

/// Client Initial key, IV and header protection key.
type Keys = ([u8; 16], [u8; 12], [u8; 16]);

/// The keys for `DCID`, derived once.
static KEYS: OnceLock<Keys> = OnceLock::new();

/// The DCID of RFC 9001 Appendix A.
const DCID: [u8; 8] = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];
const INITIAL_SALT: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad,
    0xcc, 0xbb, 0x7f, 0x0a,
];

fuzz_target!(|data: &[u8]| {
    if let Ok(frames) = quic::crypto_frames(data) {
        let held: usize = frames.iter().map(|f| f.data.len()).sum();
        assert!(held <= data.len(), "frames hold more bytes than the input");
    }

    let mut raw = ClientInitials::new();
    for datagram in split(data, 4) {
        check(raw.push_datagram(datagram));
    }

    let keys = KEYS.get_or_init(|| keys(&DCID));
    let mut sealed = ClientInitials::new();
    for (payload, pn) in split(data, 8).into_iter().zip(0u32..) {
        if let Some(packet) = seal(keys, pn, payload) {
            check(sealed.push_datagram(&packet));
        }
    }
});

/// Splits `data` into at most `max` parts, each a two-byte big-endian length and that many bytes
/// (the last part takes whatever is left).
fn split(mut data: &[u8], max: usize) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    while !data.is_empty() && parts.len() < max {
        let (len, rest) = match data {
            [high, low, rest @ ..] => (usize::from(u16::from_be_bytes([*high, *low])), rest),
            _ => (data.len(), data),
        };
        let (part, rest) = rest.split_at(len.min(rest.len()));
        parts.push(part);
        data = rest;
    }
    parts
}

fn check(result: Result<Option<Vec<u8>>, quic::QuicError>) {
    if let Ok(Some(hello)) = result {
        let [kind, l0, l1, l2, ..] = hello[..] else {
            panic!("ClientHello shorter than its header: {hello:02x?}");
        };
        assert_eq!(kind, 1, "first handshake message is not a ClientHello");
        let len = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
        assert_eq!(hello.len(), 4 + len, "ClientHello length");
        assert!(hello.len() <= MAX_CRYPTO_LEN);
    }
}

/// `payload` as a client Initial packet for `DCID` with a 4-byte packet number, protected as
/// RFC 9001 §5 says; `None` when it is too long for a 2-byte Length field.
fn seal(&(key, iv, hp): &Keys, pn: u32, payload: &[u8]) -> Option<Vec<u8>> {
    let length = u16::try_from(4 + payload.len() + 16)
        .ok()
        .filter(|&l| l < 0x4000)?;
    let mut packet = vec![0xc3, 0, 0, 0, 1, 8];
    packet.extend(DCID);
    packet.extend([0, 0]);
    packet.extend((0x4000 | length).to_be_bytes());
    let pn_offset = packet.len();
    packet.extend(pn.to_be_bytes());
    let mut nonce = iv;
    for (n, p) in nonce.iter_mut().rev().zip(u64::from(pn).to_le_bytes()) {
        *n ^= p;
    }
    let mut body = payload.to_vec();
    let tag = Aes128Gcm::new(&GenericArray::from(key))
        .encrypt_in_place_detached(&GenericArray::from(nonce), &packet, &mut body)
        .ok()?;
    packet.extend(body);
    packet.extend(tag);
    let mut mask = GenericArray::clone_from_slice(&packet[pn_offset + 4..pn_offset + 20]);
    Aes128::new(&GenericArray::from(hp)).encrypt_block(&mut mask);
    packet[0] ^= mask[0] & 0x0f;
    for i in 0..4 {
        packet[pn_offset + i] ^= mask[1 + i];
    }
    Some(packet)
}

/// Client Initial key, IV and header protection key for a DCID (RFC 9001 §5.2).
fn keys(dcid: &[u8]) -> Keys {
    fn expand(secret: &Hkdf<Sha256>, label: &[u8], out: &mut [u8]) {
        let len = u16::try_from(out.len()).unwrap().to_be_bytes();
        let label_len = u8::try_from(6 + label.len()).unwrap();
        secret
            .expand_multi_info(&[&len, &[label_len], b"tls13 ", label, &[0]], out)
            .unwrap();
    }
    let (_, initial) = Hkdf::<Sha256>::extract(Some(&INITIAL_SALT), dcid);
    let mut client = [0; 32];
    expand(&initial, b"client in", &mut client);
    let client = Hkdf::<Sha256>::from_prk(&client).unwrap();
    let (mut key, mut iv, mut hp) = ([0; 16], [0; 12], [0; 16]);
    expand(&client, b"quic key", &mut key);
    expand(&client, b"quic iv", &mut iv);
    expand(&client, b"quic hp", &mut hp);
    (key, iv, hp)
}
