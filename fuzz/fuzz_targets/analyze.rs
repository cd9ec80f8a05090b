//! The whole pipeline of `palisade analyze` on arbitrary bytes as a capture file: frames,
//! packets, flows, reassembly and every content decoder. Every frame read must be counted, and
//! the flows must account for every decoded packet.

#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_dpi::analyzer::Analyzer;
use palisade_dpi::capture::CaptureReader;
use palisade_dpi::flow::FlowConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = CaptureReader::new(data) else {
        return;
    };
    let config = FlowConfig {
        max_flows: 4,
        ..FlowConfig::default()
    };
    let mut analyzer = Analyzer::new(config);
    let mut packets = 0;
    let mut frames = 0;
    while let Ok(Some(frame)) = reader.next_frame() {
        frames += 1;
        analyzer.frame(&frame, &mut |record| {
            packets += record.pkts_out + record.pkts_in
        });
    }
    let totals = analyzer.finish(&mut |record| packets += record.pkts_out + record.pkts_in);
    assert_eq!(totals.frames, frames);
    assert_eq!(totals.packets, packets);
});
