//! Frames in, flow records out: the loop shared by `palisade analyze` (capture files) and
//! `palisade sensor` (live capture). Each frame is decoded ([`crate::packet`]) and added to the
//! flow table ([`crate::flow`]); a frame that cannot be decoded is counted by reason and skipped.

use serde::Serialize;

use crate::capture::Frame;
use crate::counters::Counters;
use crate::flow::{FlowConfig, FlowStats, FlowTable};
use crate::packet::{self, Packet};
use crate::record::FlowRecord;

/// Decodes frames into flows.
pub struct Analyzer {
    table: FlowTable,
    totals: Totals,
}

/// What an analysis saw, for the totals a user reads at the end.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Frames read.
    pub frames: u64,
    /// Bytes of the frames as they were on the wire.
    pub wire_bytes: u64,
    /// Frames decoded to a packet of a flow.
    pub packets: u64,
    /// Frames skipped, by reason (`truncated_ipv4`, `unsupported_ethertype`, ...).
    pub skipped: Counters,
    /// Flow records written.
    pub flows: u64,
    /// Flows evicted to keep the table within its bound.
    pub evicted: u64,
    /// Content a decoder refused, by reason.
    pub decode_errors: Counters,
    /// First and last frame time, nanoseconds since the epoch.
    #[serde(skip)]
    pub span_ns: Option<(i64, i64)>,
}

impl Analyzer {
    /// An analyzer whose flow table has `config`.
    pub fn new(config: FlowConfig) -> Self {
        Analyzer {
            table: FlowTable::new(config),
            totals: Totals::default(),
        }
    }

    /// Adds one frame; records of flows that ended are passed to `emit`.
    pub fn frame(&mut self, frame: &Frame<'_>, emit: &mut impl FnMut(FlowRecord)) {
        self.frame_with(frame, &mut |_| {}, emit);
    }

    /// Adds one frame like [`Analyzer::frame`], and shows its decoded packet to `on_packet`
    /// first (before any record the frame ends is emitted): how the network sensor learns
    /// devices ([`crate::devices`]) from the same decoding.
    pub fn frame_with(
        &mut self,
        frame: &Frame<'_>,
        on_packet: &mut impl FnMut(&Packet<'_>),
        emit: &mut impl FnMut(FlowRecord),
    ) {
        let totals = &mut self.totals;
        totals.frames += 1;
        totals.wire_bytes += u64::from(frame.orig_len);
        totals.span_ns = Some(match totals.span_ns {
            Some((first, last)) => (first.min(frame.ts_ns), last.max(frame.ts_ns)),
            None => (frame.ts_ns, frame.ts_ns),
        });
        match packet::decode(frame.link, frame.data) {
            Ok(packet) => {
                totals.packets += 1;
                on_packet(&packet);
                self.table.observe(frame.ts_ns, &packet, emit);
            }
            Err(skip) => totals.skipped.add(skip.reason()),
        }
    }

    /// Moves time to `now_ns` without a frame, ending flows idle past their timeout (a live
    /// capture calls it when no frame has come for a while); see [`FlowTable::advance`].
    pub fn advance(&mut self, now_ns: i64, emit: &mut impl FnMut(FlowRecord)) {
        self.table.advance(now_ns, emit);
    }

    /// Ends every flow still open and returns the totals.
    pub fn finish(mut self, emit: &mut impl FnMut(FlowRecord)) -> Totals {
        self.table.flush(emit);
        let FlowStats {
            flows,
            evicted,
            decode_errors,
            ..
        } = self.table.stats().clone();
        Totals {
            flows,
            evicted,
            decode_errors,
            ..self.totals
        }
    }
}
