//! A SOCKS handshake from arbitrary client and proxy bytes (the first byte splits the input):
//! any answer but a panic is fine, and a finished handshake never claims more bytes than it had.

#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_dpi::socks::{self, Handshake};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let (client, server) = rest.split_at(usize::from(split).min(rest.len()));
    if let Handshake::Done {
        client: c,
        server: s,
        ..
    } = socks::handshake(client, server)
    {
        assert!(c <= client.len() && s <= server.len());
    }
});
