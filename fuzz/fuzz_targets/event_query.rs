//! The query string of `GET /api/v1/events`, split into pairs as the web layer splits it
//! (`application/x-www-form-urlencoded`, invalid UTF-8 replaced), then parsed by
//! `EventQuery::from_pairs`, cursor included. A refusal is fine; an accepted query keeps the
//! documented limits.

#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_server::events::{EventQuery, MAX_LIMIT, OutputFormat};

fuzz_target!(|data: &[u8]| {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(data)
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    let Ok(query) = EventQuery::from_pairs(&pairs) else {
        return;
    };
    assert!(query.conditions.len() <= pairs.len());
    if let Some(limit) = query.limit {
        assert!(limit >= 1, "limit {limit}");
        if query.format == OutputFormat::Json {
            assert!(limit <= MAX_LIMIT, "page of {limit}");
        }
    }
    if query.after.is_some() {
        assert!(pairs.iter().any(|(name, _)| name == "cursor"));
    }
});
