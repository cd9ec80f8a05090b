//! Which event ids the pipeline has taken, so that a batch delivered twice is counted once.
//!
//! Delivery is at least once: a batch comes again when its acknowledgement was lost, soon after
//! the first time. Per agent the newest [`KEEP`] event numbers are remembered, with the
//! application of each (an update record names the event it completes, not the application).
//! An event number older than all of those remembered is taken as seen.

use std::collections::VecDeque;

use foldhash::HashMap;

use super::intern::Sym;

/// Event numbers remembered per agent.
pub const KEEP: usize = 8_192;

#[derive(Debug, Default)]
pub struct Seen {
    agents: HashMap<Sym, Recent>,
}

#[derive(Debug, Default)]
struct Recent {
    apps: HashMap<u64, Option<Sym>>,
    order: VecDeque<u64>,
    /// The highest event number forgotten; anything at or below it counts as seen.
    forgotten: Option<u64>,
}

impl Seen {
    /// Whether event `seq` of `agent` is new; remembers it (and its application) when it is.
    pub fn first_time(&mut self, agent: Sym, seq: u64, app: Option<Sym>) -> bool {
        let recent = self.agents.entry(agent).or_default();
        if recent.forgotten.is_some_and(|f| seq <= f) || recent.apps.contains_key(&seq) {
            return false;
        }
        if recent.order.len() == KEEP
            && let Some(oldest) = recent.order.pop_front()
        {
            recent.apps.remove(&oldest);
            recent.forgotten = Some(recent.forgotten.map_or(oldest, |f| f.max(oldest)));
        }
        recent.apps.insert(seq, app);
        recent.order.push_back(seq);
        true
    }

    /// The application of a remembered event.
    pub fn app_of(&self, agent: Sym, seq: u64) -> Option<Sym> {
        self.agents
            .get(&agent)
            .and_then(|recent| recent.apps.get(&seq).copied().flatten())
    }
}
