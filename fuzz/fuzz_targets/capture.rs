//! Capture files of arbitrary bytes, read to the end: any answer but a panic is fine, and every
//! frame is a part of the file that starts after the previous frame's record.

#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_dpi::capture::CaptureReader;

fuzz_target!(|data: &[u8]| {
    let Ok(mut capture) = CaptureReader::new(data) else {
        return;
    };
    let mut previous: Option<u64> = None;
    while let Ok(Some(frame)) = capture.next_frame() {
        assert!(previous.is_none_or(|p| p < frame.offset), "offsets go back");
        let end = frame.offset as usize + frame.data.len();
        assert!(
            end <= data.len(),
            "frame ends at {end} in a file of {}",
            data.len()
        );
        previous = Some(frame.offset);
    }
});
