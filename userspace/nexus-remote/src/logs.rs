//! The `obs.logs` stream: logd (the sender) to a collector.
//!
//! Every frame body starts with `magic "RL" | version 1 | op u8`; all
//! integers little-endian. The collector speaks first, with OPEN; the
//! sender answers with HEADER, then sends CHUNK and GAP frames in id order.
//!
//! ```text
//! OPEN    op 1  resume_after u64 | max_records_per_chunk u16           (collector → sender)
//! HEADER  op 2  sample_ppm u32 | flags u8 | rate_events_per_s u32
//!               | rate_bytes_per_s u32 | start u64 | gap u64           (sender → collector)
//!         flags: bit 0 warn/error exempt from sampling,
//!                bit 1 restarted (resume_after was not from this journal);
//!                other bits must be 0
//! CHUNK   op 3  count u16 (1..) | record * count
//!   record      id u64 | level u8 | ts_ns u64 | line u16-len (JSON line, UTF-8, no line feed)
//! GAP     op 4  after_id u64 | missing u64 (1..) | reason u8 (1 evicted, 2 rate_limited)
//! ```
//!
//! Semantics (also in `docs/observability/remote.md`):
//!
//! * `resume_after` is the last id the collector accounted for; 0 means
//!   from the beginning of the journal. `max_records_per_chunk` is
//!   1..=[`MAX_RECORDS_PER_CHUNK`].
//! * `start` is the first id the stream considers (> `resume_after`, or
//!   ≥ 1 when `restarted`); `gap` is how many ids between the resume point
//!   and `start` no longer exist (normally `start - 1 - resume_after`).
//! * A GAP says the ids `after_id + 1 ..= after_id + missing` will not be
//!   sent, for `reason`. Ids a sender skips because [`keep`] refused them
//!   are not reported: the rule is deterministic, so skipping them is not
//!   a loss. A rate-limited range may contain such ids too.
//! * Rate limits of 0 mean "none"; `sample_ppm` is 0..=1,000,000.

use alloc::vec::Vec;

use nexus_log::{json::record_to_json, Level, Record};
use nexus_wire::{Reader, WireError, Writer};

use crate::frame::MAX_FRAME;
use crate::RemoteError;

/// Protocol tag of every `obs.logs` frame.
pub const MAGIC: [u8; 2] = *b"RL";
/// The version this crate speaks.
pub const VERSION: u8 = 1;
/// Parts per million: a `sample_ppm` of this keeps everything.
pub const PPM: u32 = 1_000_000;
/// Most records a collector may ask for in one chunk.
pub const MAX_RECORDS_PER_CHUNK: u16 = 1024;
/// Bytes of the common prefix (magic, version, op).
pub const PREFIX_LEN: usize = 4;
/// Fixed bytes of one record in a chunk (id, level, ts, line length).
pub const RECORD_OVERHEAD: usize = 8 + 1 + 8 + 2;
/// Longest JSON line that fits a chunk on its own.
pub const MAX_LINE: usize = MAX_FRAME - PREFIX_LEN - 2 - RECORD_OVERHEAD;

const FLAG_EXEMPT: u8 = 1;
const FLAG_RESTARTED: u8 = 2;

nexus_wire::byte_enum! {
    /// Frame ops of `obs.logs`.
    pub enum Op {
        /// Collector's request.
        Open = 1 => "open",
        /// Sender's first frame.
        Header = 2 => "header",
        /// Records.
        Chunk = 3 => "chunk",
        /// A range of ids that will not be sent.
        Gap = 4 => "gap",
    }
}

nexus_wire::byte_enum! {
    /// Why a range of ids is not sent.
    pub enum GapReason {
        /// Evicted from the journal before the sender reached them.
        Evicted = 1 => "evicted",
        /// Dropped by the sender's rate limit.
        RateLimited = 2 => "rate_limited",
    }
}

/// The collector's OPEN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Open {
    /// Last id the collector accounted for; 0 = from the beginning.
    pub resume_after: u64,
    /// Most records per chunk, 1..=[`MAX_RECORDS_PER_CHUNK`].
    pub max_records_per_chunk: u16,
}

/// The sender's HEADER: its policy and where the stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderHeader {
    /// Sampling ratio in parts per million (see [`keep`]).
    pub sample_ppm: u32,
    /// Warn and error records are always kept.
    pub exempt_warn_error: bool,
    /// The OPEN's `resume_after` was at or past the journal's next id (a
    /// cursor from another journal): the stream starts over from id 0.
    pub restarted: bool,
    /// Records per second the sender sends at most (0: no limit).
    pub rate_events_per_s: u32,
    /// Line bytes per second the sender sends at most (0: no limit).
    pub rate_bytes_per_s: u32,
    /// First id the stream considers.
    pub start: u64,
    /// Ids between the resume point and `start` that no longer exist.
    pub gap: u64,
}

/// One record of a chunk, borrowed from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRecord<'a> {
    /// Journal id.
    pub id: u64,
    /// Severity.
    pub level: Level,
    /// logd's timestamp.
    pub ts_ns: u64,
    /// The record as nexus-log's JSON line (no trailing line feed).
    pub line: &'a str,
}

/// A GAP notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// Last id before the range.
    pub after_id: u64,
    /// Length of the range (≥ 1).
    pub missing: u64,
    /// Why.
    pub reason: GapReason,
}

/// A decoded `obs.logs` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogFrame<'a> {
    /// OPEN.
    Open(Open),
    /// HEADER.
    Header(SenderHeader),
    /// CHUNK, records in frame order.
    Chunk(Vec<LogRecord<'a>>),
    /// GAP.
    Gap(Gap),
}

fn prefix(w: &mut Writer<'_>, op: Op) {
    w.bytes(&MAGIC).u8(VERSION).u8(op.as_u8());
}

fn encode(f: impl FnOnce(&mut Writer<'_>)) -> Result<Vec<u8>, RemoteError> {
    let mut out = Vec::with_capacity(48);
    Writer::append(&mut out, MAX_FRAME, f)?;
    Ok(out)
}

/// Encodes an OPEN (`BadValue` for a chunk size outside the bounds).
pub fn encode_open(o: &Open) -> Result<Vec<u8>, RemoteError> {
    if !(1..=MAX_RECORDS_PER_CHUNK).contains(&o.max_records_per_chunk) {
        return Err(WireError::BadValue.into());
    }
    encode(|w| {
        prefix(w, Op::Open);
        w.u64(o.resume_after).u16(o.max_records_per_chunk);
    })
}

/// Encodes a HEADER (`BadValue` for a ratio over [`PPM`]).
pub fn encode_header(h: &SenderHeader) -> Result<Vec<u8>, RemoteError> {
    if h.sample_ppm > PPM || h.start == 0 || h.gap >= h.start {
        return Err(WireError::BadValue.into());
    }
    let flags = if h.exempt_warn_error { FLAG_EXEMPT } else { 0 }
        | if h.restarted { FLAG_RESTARTED } else { 0 };
    encode(|w| {
        prefix(w, Op::Header);
        w.u32(h.sample_ppm)
            .u8(flags)
            .u32(h.rate_events_per_s)
            .u32(h.rate_bytes_per_s)
            .u64(h.start)
            .u64(h.gap);
    })
}

/// Encodes a GAP (`BadValue` for an empty range or one past `u64::MAX`).
pub fn encode_gap(g: &Gap) -> Result<Vec<u8>, RemoteError> {
    if g.missing == 0 || g.after_id.checked_add(g.missing).is_none() {
        return Err(WireError::BadValue.into());
    }
    encode(|w| {
        prefix(w, Op::Gap);
        w.u64(g.after_id).u64(g.missing).u8(g.reason.as_u8());
    })
}

/// Builds one CHUNK frame, record by record, under both the collector's
/// record count and [`MAX_FRAME`].
#[derive(Debug)]
pub struct ChunkWriter {
    buf: Vec<u8>,
    count: u16,
    max: u16,
}

impl ChunkWriter {
    /// An empty chunk of at most `max_records` (clamped to
    /// 1..=[`MAX_RECORDS_PER_CHUNK`]) records.
    pub fn new(max_records: u16) -> Self {
        let mut buf = Vec::with_capacity(256);
        let mut w = Writer::new(&mut buf);
        prefix(&mut w, Op::Chunk);
        w.u16(0);
        Self {
            buf,
            count: 0,
            max: max_records.clamp(1, MAX_RECORDS_PER_CHUNK),
        }
    }

    /// Records so far.
    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    /// True if no record was added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Adds a record. `Ok(false)` when the chunk is full (by count or
    /// bytes): send it and start another. `Err` when the record can never
    /// be sent (a line longer than [`MAX_LINE`], or with a line feed).
    pub fn push(
        &mut self,
        id: u64,
        level: Level,
        ts_ns: u64,
        line: &str,
    ) -> Result<bool, RemoteError> {
        if line.len() > MAX_LINE || line.contains('\n') {
            return Err(WireError::BadValue.into());
        }
        if self.count >= self.max {
            return Ok(false);
        }
        let added = Writer::append(&mut self.buf, MAX_FRAME, |w| {
            w.u64(id).u8(level.as_u8()).u64(ts_ns).str_u16(line);
        });
        match added {
            Ok(_) => {
                self.count = self.count.saturating_add(1);
                Ok(true)
            }
            Err(_) => Ok(false),
        }
    }

    /// Adds a journal record as its standard JSON line.
    pub fn push_record(&mut self, r: &Record) -> Result<bool, RemoteError> {
        self.push(r.id, r.level, r.ts_ns, &record_to_json(r))
    }

    /// The frame body; `None` if no record was added.
    pub fn finish(mut self) -> Option<Vec<u8>> {
        if self.count == 0 {
            return None;
        }
        let count = self.count;
        Writer::new(&mut self.buf).patch_u16(PREFIX_LEN, count);
        Some(self.buf)
    }
}

/// Decodes any `obs.logs` frame body. Never panics.
pub fn decode(body: &[u8]) -> Result<LogFrame<'_>, RemoteError> {
    let mut r = Reader::new(body);
    if r.array::<2>()? != MAGIC {
        return Err(RemoteError::BadMagic);
    }
    let version = r.u8()?;
    if version != VERSION {
        return Err(RemoteError::BadVersion(version));
    }
    let op = r.u8()?;
    let frame = match Op::from_u8(op) {
        Some(Op::Open) => {
            let resume_after = r.u64()?;
            let max_records_per_chunk = r.u16()?;
            if !(1..=MAX_RECORDS_PER_CHUNK).contains(&max_records_per_chunk) {
                return Err(WireError::BadValue.into());
            }
            LogFrame::Open(Open {
                resume_after,
                max_records_per_chunk,
            })
        }
        Some(Op::Header) => {
            let sample_ppm = r.u32()?;
            let flags = r.u8()?;
            let h = SenderHeader {
                sample_ppm,
                exempt_warn_error: flags & FLAG_EXEMPT != 0,
                restarted: flags & FLAG_RESTARTED != 0,
                rate_events_per_s: r.u32()?,
                rate_bytes_per_s: r.u32()?,
                start: r.u64()?,
                gap: r.u64()?,
            };
            if sample_ppm > PPM
                || flags & !(FLAG_EXEMPT | FLAG_RESTARTED) != 0
                || h.start == 0
                || h.gap >= h.start
            {
                return Err(WireError::BadValue.into());
            }
            LogFrame::Header(h)
        }
        Some(Op::Chunk) => {
            let count = r.u16()?;
            if count == 0 {
                return Err(WireError::BadValue.into());
            }
            let mut records =
                Vec::with_capacity(usize::from(count).min(r.remaining() / RECORD_OVERHEAD));
            for _ in 0..count {
                let id = r.u64()?;
                let level = r.enum_u8(Level::from_u8)?;
                let ts_ns = r.u64()?;
                let line = r.str_u16()?;
                if line.contains('\n') {
                    return Err(WireError::BadValue.into());
                }
                records.push(LogRecord {
                    id,
                    level,
                    ts_ns,
                    line,
                });
            }
            LogFrame::Chunk(records)
        }
        Some(Op::Gap) => {
            let g = Gap {
                after_id: r.u64()?,
                missing: r.u64()?,
                reason: r.enum_u8(GapReason::from_u8)?,
            };
            if g.missing == 0 || g.after_id.checked_add(g.missing).is_none() {
                return Err(WireError::BadValue.into());
            }
            LogFrame::Gap(g)
        }
        None => return Err(RemoteError::BadOp(op)),
    };
    r.finish()?;
    Ok(frame)
}

/// The splitmix64 finaliser (Steele, Lea, Flood): a bijective 64-bit mix.
pub const fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The sampling rule: whether the record `record_id` of the node
/// `peer_id` is sent.
///
/// * `exempt_warn_error` and `level >= Warn`: kept;
/// * otherwise `h = splitmix64(splitmix64(peer_id) ^ record_id)` is mapped
///   onto `0..1_000_000` as `(h × 1_000_000) >> 64` (128-bit product, no
///   modulo bias), and the record is kept iff that is below `ratio_ppm`.
///   So 0 keeps none, [`PPM`] (or more) keeps all.
///
/// Pure: the same inputs always give the same answer, so a resumed stream
/// or a second collector of the same node skips exactly the same records.
pub fn keep(
    peer_id: u64,
    record_id: u64,
    level: Level,
    ratio_ppm: u32,
    exempt_warn_error: bool,
) -> bool {
    if exempt_warn_error && level >= Level::Warn {
        return true;
    }
    if ratio_ppm >= PPM {
        return true;
    }
    let h = splitmix64(splitmix64(peer_id) ^ record_id);
    let slot = (u128::from(h) * u128::from(PPM)) >> 64;
    slot < u128::from(ratio_ppm)
}

/// The collector's bookkeeping for one sender, kept across reconnects.
///
/// Call [`Resume::open`] for every new stream and send the OPEN it
/// returns; pass every frame the sender sends to [`Resume::on_frame`]. Any
/// error means: disconnect with [`RemoteError::reason`] (the state stays
/// as it was before the bad frame, so the next stream resumes correctly).
///
/// Invariant: every id in `1..=last()` was either delivered once (counted
/// in `received`), covered by a gap (counted in `missing_*`), or skipped
/// by the sampling rule.
#[derive(Debug, Clone)]
pub struct Resume {
    last: u64,
    max_per_chunk: u16,
    awaiting_header: bool,
    in_stream: bool,
    received: u64,
    missing_evicted: u64,
    missing_rate_limited: u64,
    restarts: u64,
    sessions: u64,
}

impl Resume {
    /// A collector that has seen nothing, asking for at most
    /// `max_records_per_chunk` (clamped to 1..=[`MAX_RECORDS_PER_CHUNK`]).
    pub fn new(max_records_per_chunk: u16) -> Self {
        Self {
            last: 0,
            max_per_chunk: max_records_per_chunk.clamp(1, MAX_RECORDS_PER_CHUNK),
            awaiting_header: false,
            in_stream: false,
            received: 0,
            missing_evicted: 0,
            missing_rate_limited: 0,
            restarts: 0,
            sessions: 0,
        }
    }

    /// Starts a new stream: the OPEN to send as its first frame.
    pub fn open(&mut self) -> Open {
        self.awaiting_header = true;
        self.in_stream = false;
        self.sessions = self.sessions.saturating_add(1);
        Open {
            resume_after: self.last,
            max_records_per_chunk: self.max_per_chunk,
        }
    }

    /// Decodes a sender frame and applies it.
    pub fn on_frame<'a>(&mut self, body: &'a [u8]) -> Result<LogFrame<'a>, RemoteError> {
        let f = decode(body)?;
        match &f {
            LogFrame::Header(h) => self.on_header(h)?,
            LogFrame::Chunk(records) => self.on_chunk(records)?,
            LogFrame::Gap(g) => self.on_gap(g)?,
            LogFrame::Open(_) => return Err(RemoteError::Unexpected),
        }
        Ok(f)
    }

    /// Applies the sender's HEADER (exactly once, first, per stream).
    pub fn on_header(&mut self, h: &SenderHeader) -> Result<(), RemoteError> {
        if !self.awaiting_header {
            return Err(RemoteError::Unexpected);
        }
        let base = if h.restarted { 0 } else { self.last };
        if h.start <= base {
            return Err(RemoteError::OutOfOrder {
                last: base,
                got: h.start,
            });
        }
        if h.gap > h.start - 1 - base {
            return Err(WireError::BadValue.into());
        }
        if h.restarted {
            self.restarts = self.restarts.saturating_add(1);
        }
        self.missing_evicted = self.missing_evicted.saturating_add(h.gap);
        self.last = h.start - 1;
        self.awaiting_header = false;
        self.in_stream = true;
        Ok(())
    }

    /// Applies a CHUNK: ids strictly increasing and above `last()`, at
    /// most the OPEN's count; all or nothing.
    pub fn on_chunk(&mut self, records: &[LogRecord<'_>]) -> Result<(), RemoteError> {
        if !self.in_stream {
            return Err(RemoteError::Unexpected);
        }
        let count = u16::try_from(records.len()).unwrap_or(u16::MAX);
        if count > self.max_per_chunk {
            return Err(RemoteError::ChunkTooLarge {
                count,
                max: self.max_per_chunk,
            });
        }
        let mut last = self.last;
        for r in records {
            if r.id <= last {
                return Err(RemoteError::OutOfOrder { last, got: r.id });
            }
            last = r.id;
        }
        self.last = last;
        self.received = self.received.saturating_add(u64::from(count));
        Ok(())
    }

    /// Applies a GAP: the range must start at or after `last()`.
    pub fn on_gap(&mut self, g: &Gap) -> Result<(), RemoteError> {
        if !self.in_stream {
            return Err(RemoteError::Unexpected);
        }
        if g.after_id < self.last {
            return Err(RemoteError::OutOfOrder {
                last: self.last,
                got: g.after_id,
            });
        }
        let end = g
            .after_id
            .checked_add(g.missing)
            .ok_or(RemoteError::Wire(WireError::BadValue))?;
        match g.reason {
            GapReason::Evicted => {
                self.missing_evicted = self.missing_evicted.saturating_add(g.missing)
            }
            GapReason::RateLimited => {
                self.missing_rate_limited = self.missing_rate_limited.saturating_add(g.missing)
            }
        }
        self.last = end;
        Ok(())
    }

    /// Last id accounted for (what the next OPEN resumes after).
    pub fn last(&self) -> u64 {
        self.last
    }
    /// Records delivered, over all streams.
    pub fn received(&self) -> u64 {
        self.received
    }
    /// Ids reported evicted (HEADER gaps and GAP notices).
    pub fn missing_evicted(&self) -> u64 {
        self.missing_evicted
    }
    /// Ids reported dropped by the sender's rate limit.
    pub fn missing_rate_limited(&self) -> u64 {
        self.missing_rate_limited
    }
    /// Streams whose sender said the journal restarted.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }
    /// Streams opened.
    pub fn sessions(&self) -> u64 {
        self.sessions
    }
}
