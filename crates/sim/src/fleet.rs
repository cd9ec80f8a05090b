//! A fleet: many endpoints, some of them carrying an attack.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::attack::{Attack, Family};
use crate::endpoint::Endpoint;

const MINUTE_MS: i64 = 60_000;

/// The simulated endpoints of one organisation.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// The endpoints, `ws-0000` first.
    pub endpoints: Vec<Endpoint>,
}

impl Fleet {
    /// `count` endpoints; every fifth one (from the third) carries one attack, the families in
    /// turn, starting a few minutes after `start_ms` so that a demo shows both normal traffic
    /// and attacks within its first half hour. The same seed gives the same fleet.
    pub fn new(seed: u64, count: u32, start_ms: i64) -> Fleet {
        let mut rng = SmallRng::seed_from_u64(seed);
        let endpoints = (0..count)
            .map(|index| {
                let mut endpoint = Endpoint::new(index, rng.random());
                if index % 5 == 2 {
                    let nth = usize::try_from(index / 5).unwrap_or(0) % Family::ALL.len();
                    let family = Family::ALL.get(nth).copied().unwrap_or(Family::Beacon);
                    let duration_minutes = match family {
                        Family::PortScan => 10,
                        Family::Exfiltration => 30,
                        _ => 6 * 60,
                    };
                    endpoint.attacks.push(Attack {
                        family,
                        start_ms: start_ms + rng.random_range(1..15) * MINUTE_MS,
                        duration_ms: duration_minutes * MINUTE_MS,
                        seed: rng.random(),
                    });
                }
                endpoint
            })
            .collect();
        Fleet { endpoints }
    }
}
