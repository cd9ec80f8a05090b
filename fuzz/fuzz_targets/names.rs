//! The agent's address → name cache fed DNS messages decoded from arbitrary bytes: it never
//! holds more addresses than its bound, and every name it gives for an address is a
//! name a response asked about (lower-cased, without a trailing dot).

#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_agent::names::NameCache;
use palisade_dpi::dns;

fuzz_target!(|data: &[u8]| {
    let mut cache = NameCache::new(4);
    let mut asked = Vec::new();
    let mut rest = data;
    let mut now_ms = 0;
    // The bytes are a TCP stream of DNS messages, so one input holds several.
    while let Ok((message, used)) = dns::parse_tcp(rest) {
        asked.extend(message.questions.iter().map(|q| q.name.clone()));
        cache.observe_dns(&message, now_ms);
        assert!(cache.len() <= 4, "{} addresses", cache.len());
        for record in &message.answers {
            let ip = match record.data {
                dns::RecordData::A(a) => a.into(),
                dns::RecordData::Aaaa(a) => a.into(),
                _ => continue,
            };
            if let Some(name) = cache.name_of(ip, now_ms) {
                let was_asked = |q: &String| {
                    q.eq_ignore_ascii_case(name)
                        || q.strip_suffix('.')
                            .is_some_and(|q| q.eq_ignore_ascii_case(name))
                };
                assert!(asked.iter().any(was_asked), "{ip} named {name}");
            }
        }
        now_ms += 1000;
        rest = rest.get(used..).unwrap_or_default();
    }
});
