//! The spool: the agent's local, durable queue of connection events, between the enforcement
//! loop that appends one event per connection and the uplink that sends them to the server.
//!
//! On disk the spool is a directory (mode 0700) of append-only segment files (mode 0600) named
//! after the sequence number of their first event (`00000000000000000042.seg`), and a small
//! `state` file, replaced atomically, that remembers what the server acknowledged, what was
//! evicted and how much damage was found. A segment is a run of frames:
//!
//! ```text
//! magic "PSv1" | length u32 LE | CRC-32 u32 LE of (length, payload) | payload: the event as JSON
//! ```
//!
//! Durability: events are buffered in memory and reach the file on [`Spool::sync`], on
//! [`Spool::peek`], or when the buffer fills; [`Fsync`] says how often the file is forced to
//! the disk. After a `kill -9` or a power loss the spool opens cleanly: a torn or damaged frame is
//! found by its checksum, cut out (the file is repaired), counted in
//! [`SpoolStats::corrupt_records`], and reading continues at the next intact frame, which the
//! magic and the checksum let it find again. A damaged region counts once, however many events it
//! held (their number is unknowable once the framing is gone).
//!
//! Delivery: [`Spool::peek`] hands out the oldest unacknowledged events without removing them;
//! [`Spool::ack`] records that the server has them, and whole segments are deleted once every
//! event in them is acknowledged. Events are sent at least once; the server recognises a re-sent
//! event by its sequence number.
//!
//! Bound: when an append would take the spool past [`SpoolConfig::max_bytes`], the oldest
//! segments are deleted and their unsent events counted in [`SpoolStats::evicted_events`], which
//! survives restarts so the server can be told.
//!
//! One process owns a spool directory at a time.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use palisade_proto::ConnectionEvent;
use serde::{Deserialize, Serialize};

/// The four bytes that open every frame.
pub const FRAME_MAGIC: [u8; 4] = *b"PSv1";
/// Bytes before a frame's payload: magic, length and checksum.
pub const FRAME_HEADER_BYTES: usize = 12;
/// The largest payload a frame may have; a longer length field is damage.
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// How big the spool may grow and how often it forces its writes to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolConfig {
    /// A segment is closed and a new one started once it would pass this size.
    pub segment_bytes: u64,
    /// The spool's size bound; at least twice `segment_bytes`. Past it the oldest segments are
    /// evicted.
    pub max_bytes: u64,
    /// When appended events are forced to the disk.
    pub fsync: Fsync,
}

impl Default for SpoolConfig {
    /// 8 MiB segments, 256 MiB in all, forced to the disk every 100 ms.
    fn default() -> Self {
        SpoolConfig {
            segment_bytes: 8 << 20,
            max_bytes: 256 << 20,
            fsync: Fsync::Every(Duration::from_millis(100)),
        }
    }
}

/// When appended events are forced to the disk (what a power loss can take).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// After every append: nothing acknowledged by `append` is lost, at the cost of one disk
    /// flush per event.
    Always,
    /// At the first append (or [`Spool::sync_if_due`]) once this long has passed since the last
    /// flush; also before [`Spool::peek`] hands events out. A power loss takes at most about this
    /// much of the most recent events.
    Every(Duration),
    /// Only when [`Spool::sync`] is called; the operating system writes back when it likes.
    Never,
}

/// What the spool holds and what it lost; the last two are reported to the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Events appended and not yet acknowledged (nor evicted).
    pub pending_events: u64,
    /// Size of the segment files.
    pub bytes_on_disk: u64,
    /// Number of segment files.
    pub segments: usize,
    /// The highest sequence number the server acknowledged.
    pub acked_seq: u64,
    /// Events deleted unsent because the spool reached its size bound, oldest first; kept across
    /// restarts.
    pub evicted_events: u64,
    /// Damaged regions cut out of segment files (torn writes, flipped bits), each at least one
    /// lost event; kept across restarts.
    pub corrupt_records: u64,
}

/// What went wrong with the spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file or the directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The configuration cannot work.
    #[error("spool configuration: {0}")]
    Config(&'static str),
    /// The event's sequence number is not above every number appended before.
    #[error("event {seq} appended after event {last}: sequence numbers must increase")]
    SeqNotIncreasing {
        /// The event's number.
        seq: u64,
        /// The highest number appended so far.
        last: u64,
    },
    /// The event is too large for a frame or for the spool's size bound.
    #[error("an event of {bytes} bytes does not fit the spool")]
    RecordTooLarge {
        /// Its encoded size.
        bytes: usize,
    },
    /// The acknowledgement names an event that was never appended.
    #[error("acknowledged through event {acked}, but the last event appended is {last}")]
    AckBeyondAppended {
        /// The acknowledged number.
        acked: u64,
        /// The highest number appended.
        last: u64,
    },
    /// The event could not be encoded.
    #[error("encoding an event: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The agent's durable queue of connection events; see the module documentation.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    config: SpoolConfig,
    /// Oldest first; the last one takes appends while `writer` is open.
    segments: VecDeque<Segment>,
    writer: Option<BufWriter<File>>,
    /// Position, in the first segment, of the first event not yet acknowledged nor evicted.
    head: Cursor,
    state: State,
    next_seq: u64,
    bytes_on_disk: u64,
    /// Bytes reached the file (or its buffer) but not the disk.
    unsynced: bool,
    /// A segment file was created since the directory was last forced to the disk.
    dir_unsynced: bool,
    last_sync: Instant,
    frame: Vec<u8>,
}

impl Spool {
    /// Opens the spool in `dir`, creating it (mode 0700) if needed, and repairs damage left by
    /// a crash: damaged frames are cut out of their segment and counted.
    pub fn open(dir: &Path, config: SpoolConfig) -> Result<Spool, SpoolError> {
        if config.segment_bytes == 0 {
            return Err(SpoolError::Config("segment_bytes must be above zero"));
        }
        if config.max_bytes < config.segment_bytes.saturating_mul(2) {
            return Err(SpoolError::Config(
                "max_bytes must be at least twice segment_bytes",
            ));
        }
        create_private_dir(dir).map_err(io_at(dir))?;
        let state_path = dir.join(STATE_FILE);
        let (mut state, mut state_changed) = match std::fs::read(&state_path) {
            Ok(bytes) => match serde_json::from_slice::<State>(&bytes) {
                Ok(state) => (state, false),
                // Unreadable although it is replaced atomically: start over (the server
                // recognises events sent again) and count the damage.
                Err(_) => (
                    State {
                        corrupt_records: 1,
                        ..State::default()
                    },
                    true,
                ),
            },
            Err(err) if err.kind() == io::ErrorKind::NotFound => (State::default(), false),
            Err(err) => return Err(io_at(&state_path)(err)),
        };

        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_at(dir))? {
            let entry = entry.map_err(io_at(dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(TMP_SUFFIX) {
                remove_if_present(&entry.path())?;
            } else if let Some(first_seq) = parse_segment_name(name) {
                names.push(first_seq);
            }
        }
        names.sort_unstable();

        let done = state.done_through();
        let mut segments = VecDeque::new();
        let mut highest = state.acked_seq.max(state.evicted_through);
        for first_seq in names {
            let path = dir.join(segment_name(first_seq));
            let (segment, damaged) = repair_segment(path)?;
            if damaged > 0 {
                state.corrupt_records = state.corrupt_records.saturating_add(damaged);
                state_changed = true;
            }
            highest = highest.max(segment.last_seq);
            if segment.records == 0 || segment.last_seq <= done {
                remove_if_present(&segment.path)?;
            } else {
                segments.push_back(segment);
            }
        }

        let mut spool = Spool {
            dir: dir.to_path_buf(),
            config,
            bytes_on_disk: segments.iter().map(|s| s.bytes).sum(),
            segments,
            writer: None,
            head: Cursor::default(),
            state,
            next_seq: highest.saturating_add(1),
            unsynced: false,
            dir_unsynced: false,
            last_sync: monotonic_now(),
            frame: Vec::with_capacity(512),
        };
        let corrupt_before = spool.state.corrupt_records;
        spool.advance_head()?;
        if state_changed || spool.state.corrupt_records != corrupt_before {
            spool.save_state()?;
        }
        Ok(spool)
    }

    /// Appends one event. Its `seq` must be at least [`Spool::next_seq`]. Evicts the oldest
    /// segments first if the event would take the spool past its size bound.
    pub fn append(&mut self, event: &ConnectionEvent) -> Result<(), SpoolError> {
        if event.seq < self.next_seq {
            return Err(SpoolError::SeqNotIncreasing {
                seq: event.seq,
                last: self.next_seq.saturating_sub(1),
            });
        }
        encode_frame(event, &mut self.frame)?;
        let frame_bytes = u64::try_from(self.frame.len()).unwrap_or(u64::MAX);
        if self.frame.len() > FRAME_HEADER_BYTES + MAX_RECORD_BYTES
            || frame_bytes > self.config.max_bytes
        {
            return Err(SpoolError::RecordTooLarge {
                bytes: self.frame.len(),
            });
        }

        let active_bytes = match (&self.writer, self.segments.back()) {
            (Some(_), Some(segment)) => segment.bytes,
            _ => 0,
        };
        if self.writer.is_some()
            && active_bytes > 0
            && active_bytes.saturating_add(frame_bytes) > self.config.segment_bytes
        {
            self.close_active()?;
        }
        while self.bytes_on_disk.saturating_add(frame_bytes) > self.config.max_bytes
            && !self.segments.is_empty()
        {
            self.evict_oldest()?;
        }

        if self.writer.is_none() {
            self.start_segment(event.seq)?;
        }
        let (Some(writer), Some(segment)) = (self.writer.as_mut(), self.segments.back_mut()) else {
            return Err(SpoolError::Config("no segment to append to"));
        };
        if let Err(err) = writer.write_all(&self.frame) {
            // What reached the file is unknown: leave the segment (its reader stops at the bytes
            // counted so far, and opening repairs it) and start a new one next time.
            let err = io_at(&segment.path)(err);
            self.writer = None;
            return Err(err);
        }
        segment.bytes = segment.bytes.saturating_add(frame_bytes);
        segment.records = segment.records.saturating_add(1);
        segment.last_seq = event.seq;
        self.bytes_on_disk = self.bytes_on_disk.saturating_add(frame_bytes);
        self.next_seq = event.seq.saturating_add(1);
        self.unsynced = true;

        match self.config.fsync {
            Fsync::Always => self.sync(),
            Fsync::Every(_) => self.sync_if_due(),
            Fsync::Never => Ok(()),
        }
    }

    /// One above the highest sequence number ever appended or acknowledged, also after a
    /// restart: the number for the next event.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Writes buffered events to the file and forces the file (and any new segment's directory
    /// entry) to the disk.
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        if let (Some(writer), Some(segment)) = (self.writer.as_mut(), self.segments.back()) {
            writer.flush().map_err(io_at(&segment.path))?;
            if self.unsynced {
                writer.get_ref().sync_data().map_err(io_at(&segment.path))?;
            }
        }
        if self.dir_unsynced {
            sync_dir(&self.dir)?;
        }
        self.unsynced = false;
        self.dir_unsynced = false;
        self.last_sync = monotonic_now();
        Ok(())
    }

    /// Under [`Fsync::Every`], syncs if the interval has passed since the last sync; the
    /// caller's loop calls this when it is idle so the last events do not wait for the next one.
    pub fn sync_if_due(&mut self) -> Result<(), SpoolError> {
        if let Fsync::Every(interval) = self.config.fsync {
            if (self.unsynced || self.dir_unsynced)
                && monotonic_now().saturating_duration_since(self.last_sync) >= interval
            {
                return self.sync();
            }
        }
        Ok(())
    }

    /// Up to `max` of the oldest events not yet acknowledged, in order; they stay in the spool
    /// until [`Spool::ack`]. Unless the policy is [`Fsync::Never`], they are on the disk before
    /// they are handed out, so a crash cannot make their sequence numbers be used again.
    pub fn peek(&mut self, max: usize) -> Result<Vec<ConnectionEvent>, SpoolError> {
        if self.config.fsync == Fsync::Never {
            self.flush()?;
        } else {
            self.sync()?;
        }
        let done = self.state.done_through();
        let mut events = Vec::new();
        for (index, segment) in self.segments.iter().enumerate() {
            if events.len() >= max {
                break;
            }
            let from = if index == 0 { self.head.offset } else { 0 };
            let bytes = read_range(&segment.path, from, segment.bytes)?;
            for frame in Frames::new(&bytes) {
                if events.len() >= max {
                    break;
                }
                // Damage is skipped here and counted when the head passes it.
                if let Frame::Record { event, .. } = frame {
                    if event.seq > done {
                        events.push(*event);
                    }
                }
            }
        }
        Ok(events)
    }

    /// Records that the server has every event up to and including `through_seq`; segments
    /// holding only such events are deleted. The position survives a restart.
    pub fn ack(&mut self, through_seq: u64) -> Result<(), SpoolError> {
        let last = self.next_seq.saturating_sub(1);
        if through_seq > last {
            return Err(SpoolError::AckBeyondAppended {
                acked: through_seq,
                last,
            });
        }
        if through_seq <= self.state.acked_seq {
            return Ok(());
        }
        self.state.acked_seq = through_seq;
        // The state reaches the disk before any segment is deleted: otherwise a crash could
        // lose both the events and the memory of their numbers.
        self.save_state()?;
        let corrupt_before = self.state.corrupt_records;
        self.advance_head()?;
        if self.state.corrupt_records != corrupt_before {
            self.save_state()?;
        }
        Ok(())
    }

    /// What the spool holds and what it lost.
    pub fn stats(&self) -> SpoolStats {
        let records: u64 = self.segments.iter().map(|s| s.records).sum();
        SpoolStats {
            pending_events: records.saturating_sub(self.head.skipped),
            bytes_on_disk: self.bytes_on_disk,
            segments: self.segments.len(),
            acked_seq: self.state.acked_seq,
            evicted_events: self.state.evicted_events,
            corrupt_records: self.state.corrupt_records,
        }
    }

    /// Moves the head past every event at or below the done position, deleting segments that
    /// hold nothing else and counting damage it passes.
    fn advance_head(&mut self) -> Result<(), SpoolError> {
        let done = self.state.done_through();
        while let Some(front) = self.segments.front() {
            if front.last_seq <= done {
                self.remove_front()?;
                continue;
            }
            if self.writer.is_some() && self.segments.len() == 1 {
                self.flush()?;
            }
            let Some(front) = self.segments.front() else {
                break;
            };
            let base = self.head.offset;
            let bytes = read_range(&front.path, base, front.bytes)?;
            for frame in Frames::new(&bytes) {
                match frame {
                    Frame::Record { event, .. } if event.seq > done => break,
                    Frame::Record { end, .. } => {
                        self.head.skipped = self.head.skipped.saturating_add(1);
                        self.head.offset = base.saturating_add(to_u64(end));
                    }
                    Frame::Damaged { end, .. } => {
                        self.state.corrupt_records = self.state.corrupt_records.saturating_add(1);
                        self.head.offset = base.saturating_add(to_u64(end));
                    }
                }
            }
            break;
        }
        Ok(())
    }

    /// Deletes the oldest segment because of the size bound, counting its unsent events.
    fn evict_oldest(&mut self) -> Result<(), SpoolError> {
        let Some(front) = self.segments.front() else {
            return Ok(());
        };
        let lost = front.records.saturating_sub(self.head.skipped);
        self.state.evicted_events = self.state.evicted_events.saturating_add(lost);
        self.state.evicted_through = self.state.evicted_through.max(front.last_seq);
        self.save_state()?;
        self.remove_front()
    }

    fn remove_front(&mut self) -> Result<(), SpoolError> {
        let Some(front) = self.segments.pop_front() else {
            return Ok(());
        };
        if self.segments.is_empty() {
            // It was the segment taking appends: the next append starts a new one.
            self.writer = None;
            self.unsynced = false;
        }
        self.bytes_on_disk = self.bytes_on_disk.saturating_sub(front.bytes);
        self.head = Cursor::default();
        remove_if_present(&front.path)
    }

    /// Finishes the segment taking appends; the next append starts a new one.
    fn close_active(&mut self) -> Result<(), SpoolError> {
        if self.config.fsync == Fsync::Never {
            self.flush()?;
        } else {
            self.sync()?;
        }
        self.writer = None;
        Ok(())
    }

    fn start_segment(&mut self, first_seq: u64) -> Result<(), SpoolError> {
        let path = self.dir.join(segment_name(first_seq));
        let file = private_options()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(io_at(&path))?;
        self.writer = Some(BufWriter::with_capacity(WRITE_BUFFER_BYTES, file));
        self.segments.push_back(Segment {
            path,
            bytes: 0,
            records: 0,
            last_seq: 0,
        });
        self.dir_unsynced = true;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SpoolError> {
        if let (Some(writer), Some(segment)) = (self.writer.as_mut(), self.segments.back()) {
            writer.flush().map_err(io_at(&segment.path))?;
        }
        Ok(())
    }

    fn save_state(&mut self) -> Result<(), SpoolError> {
        let path = self.dir.join(STATE_FILE);
        let tmp = self.dir.join(format!("{STATE_FILE}{TMP_SUFFIX}"));
        let bytes = serde_json::to_vec(&self.state)?;
        write_replace(&tmp, &path, &bytes)?;
        sync_dir(&self.dir)
    }
}

/// One thing found in a segment's bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// An intact frame holding an event; `start..end` are its bytes.
    Record {
        /// Offset of the frame's first byte.
        start: usize,
        /// Offset just past the frame.
        end: usize,
        /// The event.
        event: Box<ConnectionEvent>,
    },
    /// Bytes that are not an intact frame (torn, flipped, or an intact frame whose payload is
    /// not an event), up to the next intact frame or the end.
    Damaged {
        /// Offset of the first damaged byte.
        start: usize,
        /// Offset of the next intact frame, or the end.
        end: usize,
    },
}

/// Reads the frames of a segment's bytes in order; hostile bytes give [`Frame::Damaged`], never
/// a panic.
#[derive(Debug, Clone)]
pub struct Frames<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Frames<'a> {
    /// Frames from the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Frames { bytes, pos: 0 }
    }
}

impl Iterator for Frames<'_> {
    type Item = Frame;

    fn next(&mut self) -> Option<Frame> {
        let start = self.pos;
        let rest = self.bytes.get(start..).filter(|rest| !rest.is_empty())?;
        match intact_frame(rest) {
            Some(payload) => {
                let end = start + FRAME_HEADER_BYTES + payload.len();
                self.pos = end;
                Some(match serde_json::from_slice(payload) {
                    Ok(event) => Frame::Record { start, end, event },
                    Err(_) => Frame::Damaged { start, end },
                })
            }
            None => {
                let end = next_intact_frame(self.bytes, start + 1);
                self.pos = end;
                Some(Frame::Damaged { start, end })
            }
        }
    }
}

/// Encodes one event as a frame into `out` (cleared first).
pub fn encode_frame(event: &ConnectionEvent, out: &mut Vec<u8>) -> Result<(), SpoolError> {
    out.clear();
    out.extend_from_slice(&FRAME_MAGIC);
    out.extend_from_slice(&[0; 8]);
    serde_json::to_writer(&mut *out, event)?;
    let payload_len = out.len().saturating_sub(FRAME_HEADER_BYTES);
    let len = u32::try_from(payload_len)
        .map_err(|_| SpoolError::RecordTooLarge { bytes: payload_len })?;
    let len = len.to_le_bytes();
    let crc = checksum(len, out.get(FRAME_HEADER_BYTES..).unwrap_or_default());
    if let Some(field) = out.get_mut(4..8) {
        field.copy_from_slice(&len);
    }
    if let Some(field) = out.get_mut(8..FRAME_HEADER_BYTES) {
        field.copy_from_slice(&crc.to_le_bytes());
    }
    Ok(())
}

const STATE_FILE: &str = "state";
const SEGMENT_SUFFIX: &str = ".seg";
const TMP_SUFFIX: &str = ".tmp";
const WRITE_BUFFER_BYTES: usize = 256 * 1024;

/// What the spool remembers besides the events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    acked_seq: u64,
    /// The highest sequence number evicted.
    evicted_through: u64,
    evicted_events: u64,
    corrupt_records: u64,
}

impl State {
    /// Every event at or below this is acknowledged or evicted.
    fn done_through(&self) -> u64 {
        self.acked_seq.max(self.evicted_through)
    }
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    /// Bytes of intact frames written (some may still be in the write buffer).
    bytes: u64,
    records: u64,
    /// Zero while empty.
    last_seq: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Cursor {
    offset: u64,
    /// Events in the first segment before `offset`.
    skipped: u64,
}

/// The payload of the intact frame at the start of `bytes`, if there is one.
fn intact_frame(bytes: &[u8]) -> Option<&[u8]> {
    if bytes.get(..4)? != FRAME_MAGIC {
        return None;
    }
    let len: [u8; 4] = bytes.get(4..8)?.try_into().ok()?;
    let crc: [u8; 4] = bytes.get(8..12)?.try_into().ok()?;
    let payload_len = usize::try_from(u32::from_le_bytes(len)).ok()?;
    if payload_len > MAX_RECORD_BYTES {
        return None;
    }
    let payload = bytes.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES.checked_add(payload_len)?)?;
    (checksum(len, payload) == u32::from_le_bytes(crc)).then_some(payload)
}

/// The offset of the first intact frame at or after `from`, or the end.
fn next_intact_frame(bytes: &[u8], from: usize) -> usize {
    let mut at = from;
    while let Some(rest) = bytes.get(at..) {
        let Some(found) = rest.windows(4).position(|w| w == FRAME_MAGIC) else {
            break;
        };
        at += found;
        if bytes.get(at..).and_then(intact_frame).is_some() {
            return at;
        }
        at += 1;
    }
    bytes.len()
}

fn checksum(len: [u8; 4], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len);
    hasher.update(payload);
    hasher.finalize()
}

/// Reads a segment, cuts damaged regions out of it (truncating a damaged tail, rewriting the
/// file otherwise) and returns what it holds and how many damaged regions it had.
fn repair_segment(path: PathBuf) -> Result<(Segment, u64), SpoolError> {
    let bytes = std::fs::read(&path).map_err(io_at(&path))?;
    let mut segment = Segment {
        path,
        bytes: 0,
        records: 0,
        last_seq: 0,
    };
    let mut kept: Vec<(usize, usize)> = Vec::new();
    let mut damaged = 0_u64;
    let mut damaged_only_at_end = true;
    for frame in Frames::new(&bytes) {
        match frame {
            Frame::Record { start, end, event } => {
                if damaged > 0 {
                    damaged_only_at_end = false;
                }
                kept.push((start, end));
                segment.records += 1;
                segment.last_seq = segment.last_seq.max(event.seq);
                segment.bytes = segment.bytes.saturating_add(to_u64(end - start));
            }
            Frame::Damaged { .. } => damaged += 1,
        }
    }
    if damaged == 0 {
        return Ok((segment, 0));
    }
    if damaged_only_at_end {
        let file = OpenOptions::new()
            .write(true)
            .open(&segment.path)
            .map_err(io_at(&segment.path))?;
        file.set_len(segment.bytes).map_err(io_at(&segment.path))?;
        file.sync_all().map_err(io_at(&segment.path))?;
    } else {
        let mut repaired = Vec::with_capacity(bytes.len());
        for (start, end) in kept {
            repaired.extend_from_slice(bytes.get(start..end).unwrap_or_default());
        }
        let mut tmp = segment.path.clone().into_os_string();
        tmp.push(TMP_SUFFIX);
        write_replace(Path::new(&tmp), &segment.path, &repaired)?;
    }
    Ok((segment, damaged))
}

fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}{SEGMENT_SUFFIX}")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn read_range(path: &Path, from: u64, to: u64) -> Result<Vec<u8>, SpoolError> {
    let mut file = File::open(path).map_err(io_at(path))?;
    file.seek(SeekFrom::Start(from)).map_err(io_at(path))?;
    let mut bytes = Vec::new();
    file.take(to.saturating_sub(from))
        .read_to_end(&mut bytes)
        .map_err(io_at(path))?;
    Ok(bytes)
}

/// Writes `bytes` to `tmp`, forces it to the disk and renames it over `path`.
fn write_replace(tmp: &Path, path: &Path, bytes: &[u8]) -> Result<(), SpoolError> {
    let mut file = private_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)
        .map_err(io_at(tmp))?;
    file.write_all(bytes).map_err(io_at(tmp))?;
    file.sync_all().map_err(io_at(tmp))?;
    std::fs::rename(tmp, path).map_err(io_at(path))
}

fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))?;
    Ok(())
}

fn remove_if_present(path: &Path) -> Result<(), SpoolError> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(io_at(path)(err)),
        _ => Ok(()),
    }
}

fn io_at(path: &Path) -> impl Fn(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[allow(
    clippy::disallowed_methods,
    reason = "the monotonic clock only spaces disk flushes; no decision depends on it"
)]
fn monotonic_now() -> Instant {
    Instant::now()
}

#[cfg(test)]
mod tests {
    use palisade_proto::{Action, Connection, Protocol, Traffic, Verdict};

    use super::*;

    fn event(seq: u64) -> ConnectionEvent {
        ConnectionEvent {
            seq,
            time_ms: 1_700_000_000_000 + i64::try_from(seq).unwrap(),
            connection: Connection {
                app_path: Some("/usr/bin/curl".into()),
                user: Some("alice".into()),
                domain: Some("example.com".into()),
                dst_ip: Some("192.0.2.1".parse().unwrap()),
                dst_port: Some(443),
                protocol: Some(Protocol::Tcp),
                ..Connection::default()
            },
            pid: Some(4242),
            sni: Some("example.com".into()),
            http_host: None,
            action: Action::Allow,
            verdict: Verdict::Allow,
            rule: Some("web".into()),
            policy_version: Some(3),
            update_of: None,
            traffic: Traffic::default(),
        }
    }

    fn frame_bytes() -> u64 {
        let mut frame = Vec::new();
        encode_frame(&event(1), &mut frame).unwrap();
        frame.len() as u64
    }

    fn config(events_per_segment: u64, segments: u64) -> SpoolConfig {
        SpoolConfig {
            // Sequence numbers below 10 encode one byte shorter; leave room for that.
            segment_bytes: events_per_segment * frame_bytes() + 8,
            max_bytes: segments * (events_per_segment * frame_bytes() + 8),
            fsync: Fsync::Never,
        }
    }

    fn append_range(spool: &mut Spool, seqs: std::ops::RangeInclusive<u64>) {
        for seq in seqs {
            spool.append(&event(seq)).unwrap();
        }
    }

    fn seqs(events: &[ConnectionEvent]) -> Vec<u64> {
        events.iter().map(|e| e.seq).collect()
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        files.sort();
        files
    }

    #[test]
    fn appended_events_are_peeked_in_order_until_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), config(4, 100)).unwrap();
        assert_eq!(spool.next_seq(), 1);
        append_range(&mut spool, 1..=10);
        assert_eq!(spool.next_seq(), 11);
        // Seen without any sync (the write buffer is flushed for reading).
        assert_eq!(seqs(&spool.peek(4).unwrap()), [1, 2, 3, 4]);
        assert_eq!(
            spool.peek(4).unwrap(),
            spool.peek(4).unwrap(),
            "peek does not consume"
        );
        assert_eq!(spool.peek(1).unwrap(), [event(1)], "events come back whole");
        spool.ack(6).unwrap();
        assert_eq!(seqs(&spool.peek(100).unwrap()), [7, 8, 9, 10]);
        let stats = spool.stats();
        assert_eq!(stats.pending_events, 4);
        assert_eq!(stats.acked_seq, 6);
        assert_eq!(stats.segments, 2, "the first segment (1..=4) is gone");
        spool.ack(10).unwrap();
        assert!(spool.peek(100).unwrap().is_empty());
        assert_eq!(spool.stats().bytes_on_disk, 0);
        assert!(segment_files(dir.path()).is_empty());
        // Appending goes on after everything was acknowledged.
        append_range(&mut spool, 11..=12);
        assert_eq!(seqs(&spool.peek(100).unwrap()), [11, 12]);
    }

    #[test]
    fn bad_sequence_numbers_and_acknowledgements_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), config(4, 10)).unwrap();
        append_range(&mut spool, 5..=6);
        assert!(matches!(
            spool.append(&event(6)),
            Err(SpoolError::SeqNotIncreasing { seq: 6, last: 6 })
        ));
        assert!(matches!(
            spool.ack(7),
            Err(SpoolError::AckBeyondAppended { acked: 7, last: 6 })
        ));
        assert_eq!(seqs(&spool.peek(10).unwrap()), [5, 6]);
        let bad = SpoolConfig {
            segment_bytes: 1000,
            max_bytes: 1999,
            fsync: Fsync::Never,
        };
        assert!(matches!(
            Spool::open(dir.path(), bad),
            Err(SpoolError::Config(_))
        ));
    }

    #[test]
    fn a_restart_keeps_unacknowledged_events_and_drops_acknowledged_ones() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut spool = Spool::open(dir.path(), config(4, 100)).unwrap();
            append_range(&mut spool, 1..=30);
            spool.ack(13).unwrap();
            spool.sync().unwrap();
        }
        let mut spool = Spool::open(dir.path(), config(4, 100)).unwrap();
        let expected: Vec<u64> = (14..=30).collect();
        assert_eq!(seqs(&spool.peek(100).unwrap()), expected);
        let stats = spool.stats();
        assert_eq!(stats.pending_events, 17);
        assert_eq!(stats.acked_seq, 13);
        assert_eq!(stats.corrupt_records, 0);
        assert_eq!(spool.next_seq(), 31);
        spool.ack(20).unwrap();
        assert_eq!(spool.peek(1).unwrap(), [event(21)]);
    }

    #[test]
    fn next_seq_survives_a_restart_even_with_every_event_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut spool = Spool::open(dir.path(), config(4, 10)).unwrap();
            append_range(&mut spool, 1..=9);
            spool.ack(9).unwrap();
        }
        assert!(segment_files(dir.path()).is_empty());
        let mut spool = Spool::open(dir.path(), config(4, 10)).unwrap();
        assert_eq!(spool.next_seq(), 10);
        assert!(spool.append(&event(9)).is_err(), "numbers are never reused");
        spool.append(&event(10)).unwrap();
        drop(spool);
        let spool = Spool::open(dir.path(), config(4, 10)).unwrap();
        assert_eq!(spool.next_seq(), 11);
        assert_eq!(spool.stats().pending_events, 1);
    }

    #[test]
    fn a_torn_last_record_is_cut_off_and_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut spool = Spool::open(dir.path(), config(100, 10)).unwrap();
            append_range(&mut spool, 1..=5);
            spool.sync().unwrap();
        }
        let segment = segment_files(dir.path()).pop().unwrap();
        let full = std::fs::metadata(&segment).unwrap().len();
        let file = OpenOptions::new().write(true).open(&segment).unwrap();
        file.set_len(full - 7).unwrap();
        drop(file);

        let mut spool = Spool::open(dir.path(), config(100, 10)).unwrap();
        assert_eq!(seqs(&spool.peek(100).unwrap()), [1, 2, 3, 4]);
        assert_eq!(spool.stats().corrupt_records, 1);
        assert_eq!(spool.stats().pending_events, 4);
        assert_eq!(spool.next_seq(), 5, "the torn event was never handed out");
        assert_eq!(
            std::fs::metadata(&segment).unwrap().len(),
            full - frame_bytes(),
            "the tail is cut off the file"
        );
        append_range(&mut spool, 5..=6);
        drop(spool);
        let mut spool = Spool::open(dir.path(), config(100, 10)).unwrap();
        assert_eq!(seqs(&spool.peek(100).unwrap()), [1, 2, 3, 4, 5, 6]);
        assert_eq!(spool.stats().corrupt_records, 1, "counted once");
    }

    #[test]
    fn a_damaged_middle_record_is_skipped_and_reading_continues_after_it() {
        let size = usize::try_from(frame_bytes()).unwrap();
        // A flipped byte in the magic, the length, the checksum and the payload of event 3.
        for at in [1, 5, 9, size / 2] {
            let dir = tempfile::tempdir().unwrap();
            {
                let mut spool = Spool::open(dir.path(), config(100, 10)).unwrap();
                append_range(&mut spool, 1..=5);
                spool.sync().unwrap();
            }
            let segment = segment_files(dir.path()).pop().unwrap();
            let mut bytes = std::fs::read(&segment).unwrap();
            // Events 1 to 9 encode to frames of equal size.
            bytes[2 * size + at] ^= 0x40;
            std::fs::write(&segment, &bytes).unwrap();

            let mut spool = Spool::open(dir.path(), config(100, 10)).unwrap();
            assert_eq!(seqs(&spool.peek(100).unwrap()), [1, 2, 4, 5], "byte {at}");
            assert_eq!(spool.stats().corrupt_records, 1, "byte {at}");
            assert_eq!(spool.stats().pending_events, 4, "byte {at}");
            assert_eq!(spool.next_seq(), 6);
            drop(spool);
            let mut spool = Spool::open(dir.path(), config(100, 10)).unwrap();
            assert_eq!(spool.stats().corrupt_records, 1, "repaired, counted once");
            assert_eq!(seqs(&spool.peek(100).unwrap()), [1, 2, 4, 5]);
        }
    }

    #[test]
    fn the_oldest_segments_are_evicted_counted_and_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(4, 3);
        {
            let mut spool = Spool::open(dir.path(), config).unwrap();
            append_range(&mut spool, 1..=6);
            spool.ack(2).unwrap();
            append_range(&mut spool, 7..=20);
            let stats = spool.stats();
            assert!(stats.bytes_on_disk <= config.max_bytes);
            // Segments 1..=4 (two of them acknowledged) and 5..=8 were evicted.
            assert_eq!(stats.evicted_events, 2 + 4);
            assert_eq!(stats.pending_events, 12);
            assert_eq!(stats.segments, 3);
            assert_eq!(seqs(&spool.peek(1).unwrap()), [9]);
        }
        let mut spool = Spool::open(dir.path(), config).unwrap();
        assert_eq!(spool.stats().evicted_events, 6);
        assert_eq!(spool.stats().acked_seq, 2);
        let expected: Vec<u64> = (9..=20).collect();
        assert_eq!(seqs(&spool.peek(100).unwrap()), expected);
        assert_eq!(spool.next_seq(), 21);
    }

    #[test]
    fn fsync_policies_decide_when_events_reach_the_file() {
        let on_disk = |dir: &Path| -> Vec<u64> {
            segment_files(dir)
                .iter()
                .flat_map(|path| {
                    let bytes = std::fs::read(path).unwrap();
                    Frames::new(&bytes)
                        .filter_map(|frame| match frame {
                            Frame::Record { event, .. } => Some(event.seq),
                            Frame::Damaged { .. } => None,
                        })
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        for (fsync, written) in [
            (Fsync::Always, vec![1, 2, 3]),
            (Fsync::Every(Duration::ZERO), vec![1, 2, 3]),
            (Fsync::Every(Duration::from_secs(3600)), vec![]),
            (Fsync::Never, vec![]),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let mut spool = Spool::open(
                dir.path(),
                SpoolConfig {
                    fsync,
                    ..config(100, 10)
                },
            )
            .unwrap();
            append_range(&mut spool, 1..=3);
            assert_eq!(on_disk(dir.path()), written, "{fsync:?}");
            spool.sync().unwrap();
            assert_eq!(on_disk(dir.path()), [1, 2, 3], "{fsync:?}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn the_directory_is_private_and_so_are_its_files() {
        use std::os::unix::fs::PermissionsExt;

        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("spool");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut spool = Spool::open(&dir, config(4, 10)).unwrap();
        append_range(&mut spool, 1..=6);
        spool.ack(1).unwrap();
        spool.sync().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        let files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 3, "two segments and the state: {files:?}");
        for file in files {
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
    }

    #[test]
    fn any_single_damaged_byte_or_cut_loses_at_most_what_it_touched() {
        let mut segment = Vec::new();
        let mut frame = Vec::new();
        for seq in 1..=5 {
            encode_frame(&event(seq), &mut frame).unwrap();
            segment.extend_from_slice(&frame);
        }
        let size = frame.len();
        let read = |bytes: &[u8]| -> Vec<u64> {
            let mut at = 0;
            let mut found = Vec::new();
            for frame in Frames::new(bytes) {
                let (start, end) = match frame {
                    Frame::Record { start, end, event } => {
                        found.push(event.seq);
                        (start, end)
                    }
                    Frame::Damaged { start, end } => (start, end),
                };
                assert!(
                    start == at && end > start,
                    "frames cover the bytes in order"
                );
                at = end;
            }
            assert_eq!(at, bytes.len());
            found
        };
        for at in 0..segment.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut bytes = segment.clone();
                bytes[at] ^= flip;
                let hit = u64::try_from(at / size).unwrap() + 1;
                let expected: Vec<u64> = (1..=5).filter(|&seq| seq != hit).collect();
                assert_eq!(read(&bytes), expected, "byte {at} ^ {flip:#x}");
            }
        }
        for len in 0..segment.len() {
            let whole = u64::try_from(len / size).unwrap();
            let expected: Vec<u64> = (1..=whole).collect();
            assert_eq!(read(&segment[..len]), expected, "cut at {len}");
        }
    }

    #[test]
    fn intact_frames_are_found_among_garbage() {
        let mut bytes = b"PSv1\xff\xff\x00\x00garbagePSv".to_vec();
        let mut frame = Vec::new();
        encode_frame(&event(7), &mut frame).unwrap();
        bytes.extend_from_slice(&frame);
        bytes.extend_from_slice(&frame[..20]);
        let frames: Vec<Frame> = Frames::new(&bytes).collect();
        let start = bytes.len() - frame.len() - 20;
        assert_eq!(
            frames,
            [
                Frame::Damaged {
                    start: 0,
                    end: start
                },
                Frame::Record {
                    start,
                    end: start + frame.len(),
                    event: Box::new(event(7))
                },
                Frame::Damaged {
                    start: start + frame.len(),
                    end: bytes.len()
                },
            ]
        );
    }
}
