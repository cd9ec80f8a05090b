//! An agent's event batch as the gateway's `SendEvents` receives it: the protobuf `EventBatch`
//! is decoded, its events converted as the gateway converts them, and the batch checked and
//! normalised as `events::ingest` does before storing anything. The first 8 bytes (little
//! endian) are the arrival time in milliseconds. A refusal is fine; an accepted batch must keep
//! every documented limit, as the database will receive it.

#![no_main]

use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;
use palisade_proto::ConnectionEvent;
use palisade_proto::gateway::v1::EventBatch;
use palisade_server::events::{
    self, MAX_AGE_MS, MAX_AHEAD_MS, MAX_BATCH_EVENTS, MAX_DOMAIN_LEN, MAX_TEXT_LEN,
};
use prost::Message;

/// Agent ids come from the server (the certificate), not from the batch.
const AGENT: &str = "agent-00112233445566778899aabbccddeeff";

fuzz_target!(|data: &[u8]| {
    let Some((clock, wire)) = data.split_first_chunk::<8>() else {
        return;
    };
    // The server's clock is a jiff timestamp: keep the arrival time within its range.
    let received_ms = i64::from_le_bytes(*clock).clamp(
        Timestamp::MIN.as_millisecond(),
        Timestamp::MAX.as_millisecond(),
    );
    let Ok(batch) = EventBatch::decode(wire) else {
        return;
    };
    let sent_seq = batch.batch_seq;
    let Ok(sent) = batch
        .events
        .into_iter()
        .map(ConnectionEvent::try_from)
        .collect::<Result<Vec<_>, _>>()
    else {
        return;
    };
    let Ok(checked) = events::check_batch(AGENT, sent_seq, sent.clone(), received_ms) else {
        return;
    };
    assert_eq!(u64::try_from(checked.batch_seq).ok(), Some(sent_seq));
    assert_eq!(checked.agent_id, AGENT);
    let stored = checked.events;
    assert_eq!(stored.len(), sent.len());
    assert!(stored.len() <= MAX_BATCH_EVENTS);
    for (event, original) in stored.iter().zip(&sent) {
        assert_eq!(event.seq, original.seq);
        assert_eq!(event.time_ms, original.time_ms);
        assert!(
            event.seq >= 1 && i64::try_from(event.seq).is_ok(),
            "seq {}",
            event.seq
        );
        assert!(
            event.time_ms >= received_ms.saturating_sub(MAX_AGE_MS)
                && event.time_ms <= received_ms.saturating_add(MAX_AHEAD_MS),
            "time {} for arrival {received_ms}",
            event.time_ms
        );
        let c = &event.connection;
        // Normalising is done once, for good.
        assert_eq!(&c.clone().normalize(), c);
        for (value, max) in [
            (&c.app_path, MAX_TEXT_LEN),
            (&c.app_name, MAX_TEXT_LEN),
            (&c.app_sha256, MAX_TEXT_LEN),
            (&c.cmdline, MAX_TEXT_LEN),
            (&c.user, MAX_TEXT_LEN),
            (&c.parent_path, MAX_TEXT_LEN),
            (&c.cgroup, MAX_TEXT_LEN),
            (&c.unit, MAX_TEXT_LEN),
            (&c.container_id, MAX_TEXT_LEN),
            (&c.domain, MAX_DOMAIN_LEN),
            (&event.sni, MAX_DOMAIN_LEN),
            (&event.rule, MAX_TEXT_LEN),
        ] {
            if let Some(text) = value {
                assert!(text.len() <= max, "{} bytes, limit {max}", text.len());
                assert!(!text.contains('\0'), "NUL in {text:?}");
            }
        }
        let t = &event.traffic;
        for n in [
            t.bytes_out,
            t.bytes_in,
            t.packets_out,
            t.packets_in,
            t.duration_ms,
        ] {
            assert!(i64::try_from(n).is_ok(), "traffic counter {n}");
        }
    }
});
