//! A spool segment file as the agent finds it on disk after a crash or disk damage: its frames
//! are read in order. The frames must cover the bytes exactly, one after the other; and keeping
//! only the intact records, as the agent's repair does, must give a segment that reads back as
//! the same events with no damage left.

#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_agent::spool::{Frame, Frames};

fuzz_target!(|data: &[u8]| {
    let mut at = 0;
    let mut repaired = Vec::new();
    let mut events = Vec::new();
    for frame in Frames::new(data) {
        let (start, end) = match &frame {
            Frame::Record { start, end, event } => {
                repaired.extend_from_slice(&data[*start..*end]);
                events.push(event.clone());
                (*start, *end)
            }
            Frame::Damaged { start, end } => (*start, *end),
        };
        assert_eq!(start, at, "frames are contiguous");
        assert!(end > start, "every frame moves forward");
        at = end;
    }
    assert_eq!(at, data.len(), "frames cover every byte");

    let again: Vec<_> = Frames::new(&repaired)
        .map(|frame| match frame {
            Frame::Record { event, .. } => event,
            Frame::Damaged { start, end } => panic!("damage left at {start}..{end}"),
        })
        .collect();
    assert_eq!(again, events);
});
