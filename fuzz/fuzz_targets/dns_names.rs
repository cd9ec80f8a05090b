//! A DNS name from arbitrary bytes: split at its registrable domain or refused, never a panic;
//! when split, the parts put together give the name back, and the DNS-tunnel tracker takes it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_detect::dns_tunnel::{Config, Tracker};
use palisade_detect::names;

fuzz_target!(|data: &[u8]| {
    let name = String::from_utf8_lossy(data);
    if let Some(split) = names::split(&name) {
        let trimmed = name.strip_suffix('.').unwrap_or(&name);
        let joined = match split.subdomain {
            "" => split.registrable.to_owned(),
            sub => format!("{sub}.{}", split.registrable),
        };
        assert_eq!(joined, trimmed);
        assert_eq!(names::registrable_domain(&name), Some(split.registrable));
    }
    let mut tracker = Tracker::new(Config::default());
    for i in 0..8 {
        let _ = tracker.observe(i, "s", &name, Some("TXT"), "id");
    }
});
