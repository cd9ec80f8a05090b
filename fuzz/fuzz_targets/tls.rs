//! TLS hello decoding of arbitrary bytes, as the start of a client stream, as one handshake
//! message and as the start of a server stream: any answer but a panic is fine, an incomplete
//! hello always asks for more bytes than it was given, and a decoded ClientHello always has
//! fingerprints of the fixed shape.

#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_dpi::tls::{self, ClientHello, Ja4Transport, TlsError};

fn check(result: Result<ClientHello, TlsError>, given: usize) {
    match result {
        Ok(hello) => {
            assert_eq!(hello.ja3().len(), 32);
            for transport in [Ja4Transport::Tcp, Ja4Transport::Quic, Ja4Transport::Dtls] {
                assert_eq!(hello.ja4(transport).len(), 36);
                let _ = hello.ja4_r(transport);
            }
        }
        Err(TlsError::Incomplete { needed }) => {
            assert!(needed > given, "needs {needed} of {given} bytes")
        }
        Err(TlsError::Invalid { offset, .. }) => assert!(offset <= given),
        Err(TlsError::NotTls) => {}
    }
}

fuzz_target!(|data: &[u8]| {
    check(tls::client_hello_from_stream(data), data.len());
    check(tls::parse_client_hello(data), data.len());
    let _ = tls::looks_like_client_hello(data);
    if let Err(TlsError::Incomplete { needed }) = tls::server_hello_from_stream(data) {
        assert!(
            needed > data.len(),
            "needs {needed} of {} bytes",
            data.len()
        );
    }
});
