//! The `obs.metrics` stream: metricsd (the sender) to a collector, as
//! compact binary delta frames.
//!
//! Every frame body starts with `magic "RM" | version 1 | op u8`; fixed
//! integers are little-endian, `varint` is LEB128 ([`crate::varint`]),
//! `zigzag` a zigzag varint.
//!
//! ```text
//! DEFINE    op 1  count u16 (1..) | def * count
//!   def           series u32 | kind u8 (0 counter, 1 gauge, 2 histogram)
//!                 | name u8-len | nlabels u8 | (key u8-len, value u8-len) * nlabels
//!                 | nbounds u8 | bound u64 * nbounds (0 unless histogram)
//!                 | help u8-len
//! INTERVAL  op 2  seq u64 | ts_ns u64 | flags u8 (bit 0 full, bit 1 more; others 0)
//!                 | count varint | update * count
//!   update        key varint = (skip << 2) | kind, then by kind
//!                   counter   value varint
//!                   gauge     value zigzag
//!                   histogram n u8 (= bounds + 1) | bucket varint * n | sum varint | count varint
//! ```
//!
//! Updates are in increasing series order and `skip` is the number of
//! series ids jumped over since the previous update of the frame (the
//! first update's `skip` is its series id), so ids are unique by
//! construction and usually take part of one byte. Names, labels, bounds
//! and help follow the `nexus_metrics` rules and limits and are checked
//! again when decoded.
//!
//! Rules (also in `docs/observability/remote.md`):
//!
//! * A DEFINE introduces each series once per stream (a repeat must be
//!   identical); it starts at zero.
//! * An INTERVAL with `full` carries absolute values for every series;
//!   otherwise counters and histograms carry deltas and gauges their
//!   value, for the series that changed only. The first interval of a
//!   stream is full.
//! * `seq` strictly increases from interval to interval; an interval too
//!   big for one frame is cut into frames with the same `seq`, `ts_ns` and
//!   `full`, all but the last with `more`, and nothing else between them.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use nexus_metrics::types::{Buckets, Help, Labels, MetricKind, MetricName, TypeError, MAX_BUCKETS};
use nexus_wire::{Reader, WireError, Writer};

use crate::frame::MAX_FRAME;
use crate::varint;
use crate::RemoteError;

/// Protocol tag of every `obs.metrics` frame.
pub const MAGIC: [u8; 2] = *b"RM";
/// The version this crate speaks.
pub const VERSION: u8 = 1;
/// Bytes of the common prefix (magic, version, op).
pub const PREFIX_LEN: usize = 4;
/// Fixed bytes of an INTERVAL before its count.
pub const INTERVAL_HEAD: usize = PREFIX_LEN + 8 + 8 + 1;
/// Most updates one INTERVAL frame can hold (each takes at least 2 bytes).
const MAX_UPDATES_PER_FRAME: usize = MAX_FRAME / 2;
/// Room kept for the count varint of a frame (enough for any count).
const COUNT_ROOM: usize = 3;

const FLAG_FULL: u8 = 1;
const FLAG_MORE: u8 = 2;

nexus_wire::byte_enum! {
    /// Frame ops of `obs.metrics`.
    pub enum Op {
        /// Series definitions.
        Define = 1 => "define",
        /// One interval's updates (or a part of them).
        Interval = 2 => "interval",
    }
}

/// What identifies and describes a series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    /// Kind.
    pub kind: MetricKind,
    /// Name.
    pub name: MetricName,
    /// Labels (sorted, bounded).
    pub labels: Labels,
    /// Histogram bounds; empty for other kinds.
    pub buckets: Buckets,
    /// Help text.
    pub help: Help,
}

impl Definition {
    /// A definition without help (`bounds` must be empty unless `kind`
    /// is a histogram).
    pub fn new(
        kind: MetricKind,
        name: MetricName,
        labels: Labels,
        bounds: &[u64],
    ) -> Result<Self, TypeError> {
        if kind != MetricKind::Histogram && !bounds.is_empty() {
            return Err(TypeError::Invalid);
        }
        Ok(Self {
            kind,
            name,
            labels,
            buckets: Buckets::new(bounds)?,
            help: Help::default(),
        })
    }

    /// The value a series starts at.
    pub fn zero(&self) -> Value {
        match self.kind {
            MetricKind::Counter => Value::Counter(0),
            MetricKind::Gauge => Value::Gauge(0),
            MetricKind::Histogram => Value::Histogram(HistValue {
                buckets: alloc::vec![0; self.buckets.bounds().len() + 1],
                sum: 0,
                count: 0,
            }),
        }
    }

    /// Whether `v` has this definition's kind (and bucket count).
    pub fn fits(&self, v: &Value) -> bool {
        match (self.kind, v) {
            (MetricKind::Counter, Value::Counter(_)) | (MetricKind::Gauge, Value::Gauge(_)) => true,
            (MetricKind::Histogram, Value::Histogram(h)) => {
                h.buckets.len() == self.buckets.bounds().len() + 1
            }
            _ => false,
        }
    }
}

/// A histogram's state: non-cumulative bucket counts (finite bounds, then
/// `+Inf`), sum and count of observations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistValue {
    /// Per-bucket counts, `bounds + 1` of them.
    pub buckets: Vec<u64>,
    /// Sum of observations.
    pub sum: u64,
    /// Number of observations.
    pub count: u64,
}

/// A series' value (absolute), or on the wire an update (a delta for
/// counters and histograms unless the interval is full).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Counter.
    Counter(u64),
    /// Gauge.
    Gauge(i64),
    /// Histogram.
    Histogram(HistValue),
}

impl Value {
    fn kind(&self) -> MetricKind {
        match self {
            Value::Counter(_) => MetricKind::Counter,
            Value::Gauge(_) => MetricKind::Gauge,
            Value::Histogram(_) => MetricKind::Histogram,
        }
    }

    fn is_zero(&self) -> bool {
        match self {
            Value::Counter(v) => *v == 0,
            Value::Gauge(v) => *v == 0,
            Value::Histogram(h) => h.sum == 0 && h.count == 0 && h.buckets.iter().all(|b| *b == 0),
        }
    }

    /// `self - prev` for monotonic kinds (None if anything went down),
    /// the value itself for gauges; kinds must match.
    fn delta_from(&self, prev: &Value) -> Option<Value> {
        match (self, prev) {
            (Value::Counter(c), Value::Counter(p)) => c.checked_sub(*p).map(Value::Counter),
            (Value::Gauge(g), Value::Gauge(_)) => Some(Value::Gauge(*g)),
            (Value::Histogram(c), Value::Histogram(p)) if c.buckets.len() == p.buckets.len() => {
                let mut buckets = Vec::with_capacity(c.buckets.len());
                for (a, b) in c.buckets.iter().zip(&p.buckets) {
                    buckets.push(a.checked_sub(*b)?);
                }
                Some(Value::Histogram(HistValue {
                    buckets,
                    sum: c.sum.checked_sub(p.sum)?,
                    count: c.count.checked_sub(p.count)?,
                }))
            }
            _ => None,
        }
    }

    /// `self + delta` for monotonic kinds, the update for gauges.
    fn apply(&self, update: &Value, full: bool) -> Option<Value> {
        if full {
            return Some(update.clone());
        }
        match (self, update) {
            (Value::Counter(c), Value::Counter(d)) => c.checked_add(*d).map(Value::Counter),
            (Value::Gauge(_), Value::Gauge(g)) => Some(Value::Gauge(*g)),
            (Value::Histogram(c), Value::Histogram(d)) if c.buckets.len() == d.buckets.len() => {
                let mut buckets = Vec::with_capacity(c.buckets.len());
                for (a, b) in c.buckets.iter().zip(&d.buckets) {
                    buckets.push(a.checked_add(*b)?);
                }
                Some(Value::Histogram(HistValue {
                    buckets,
                    sum: c.sum.checked_add(d.sum)?,
                    count: c.count.checked_add(d.count)?,
                }))
            }
            _ => None,
        }
    }
}

/// One series as the sender has it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    /// The sender's series id (e.g. metricsd's `SeriesId`).
    pub id: u32,
    /// Its definition.
    pub def: Definition,
    /// Its current absolute value.
    pub value: Value,
}

/// One INTERVAL frame, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interval {
    /// Interval sequence number.
    pub seq: u64,
    /// Sender's clock at the interval.
    pub ts_ns: u64,
    /// Absolute values (resync) rather than deltas.
    pub full: bool,
    /// Another frame of this interval follows.
    pub more: bool,
    /// `(series, update)` in increasing series order.
    pub updates: Vec<(u32, Value)>,
}

/// A decoded `obs.metrics` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricFrame {
    /// DEFINE.
    Define(Vec<(u32, Definition)>),
    /// INTERVAL.
    Interval(Interval),
}

fn prefix(w: &mut Writer<'_>, op: Op) {
    w.bytes(&MAGIC).u8(VERSION).u8(op.as_u8());
}

fn write_def(w: &mut Writer<'_>, id: u32, d: &Definition) {
    w.u32(id).u8(d.kind.as_u8()).str_u8(d.name.as_str());
    w.count_u8(d.labels.len());
    for (k, v) in d.labels.iter() {
        w.str_u8(k).str_u8(v);
    }
    w.count_u8(d.buckets.bounds().len());
    for b in d.buckets.bounds() {
        w.u64(*b);
    }
    w.str_u8(d.help.as_str());
}

fn read_def(r: &mut Reader<'_>) -> Result<(u32, Definition), RemoteError> {
    let bad = |_| RemoteError::Wire(WireError::BadValue);
    let id = r.u32()?;
    let kind = r.enum_u8(MetricKind::from_u8)?;
    let name = MetricName::new(r.str_u8()?).map_err(bad)?;
    let n = r.u8()?;
    let mut pairs = Vec::with_capacity(usize::from(n).min(r.remaining() / 2));
    for _ in 0..n {
        pairs.push((r.str_u8()?, r.str_u8()?));
    }
    let labels = Labels::new(&pairs).map_err(bad)?;
    let nb = r.u8()?;
    if usize::from(nb) > MAX_BUCKETS || (nb > 0 && kind != MetricKind::Histogram) {
        return Err(WireError::BadValue.into());
    }
    let mut bounds = Vec::with_capacity(usize::from(nb));
    for _ in 0..nb {
        bounds.push(r.u64()?);
    }
    let buckets = Buckets::new(&bounds).map_err(bad)?;
    let help = Help::new(r.str_u8()?).map_err(bad)?;
    Ok((
        id,
        Definition {
            kind,
            name,
            labels,
            buckets,
            help,
        },
    ))
}

/// Appends an update's payload (without its key).
fn write_payload(w: &mut Writer<'_>, v: &Value) {
    match v {
        Value::Counter(c) => varint::put_u64(w, *c),
        Value::Gauge(g) => varint::put_i64(w, *g),
        Value::Histogram(h) => {
            w.count_u8(h.buckets.len());
            for b in &h.buckets {
                varint::put_u64(w, *b);
            }
            varint::put_u64(w, h.sum);
            varint::put_u64(w, h.count);
        }
    }
}

fn read_update(r: &mut Reader<'_>, next: &mut u64) -> Result<(u32, Value), RemoteError> {
    let key = varint::get_u64(r)?;
    let series = next
        .checked_add(key >> 2)
        .and_then(|s| u32::try_from(s).ok())
        .ok_or(RemoteError::Wire(WireError::BadValue))?;
    *next = u64::from(series) + 1;
    let value = match key & 3 {
        0 => Value::Counter(varint::get_u64(r)?),
        1 => Value::Gauge(varint::get_i64(r)?),
        2 => {
            let n = r.u8()?;
            if n == 0 || usize::from(n) > MAX_BUCKETS + 1 {
                return Err(WireError::BadValue.into());
            }
            let mut buckets = Vec::with_capacity(usize::from(n));
            for _ in 0..n {
                buckets.push(varint::get_u64(r)?);
            }
            Value::Histogram(HistValue {
                buckets,
                sum: varint::get_u64(r)?,
                count: varint::get_u64(r)?,
            })
        }
        _ => return Err(WireError::BadValue.into()),
    };
    Ok((series, value))
}

/// Decodes any `obs.metrics` frame body. Never panics.
pub fn decode(body: &[u8]) -> Result<MetricFrame, RemoteError> {
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
        Some(Op::Define) => {
            let n = r.u16()?;
            if n == 0 {
                return Err(WireError::BadValue.into());
            }
            // A definition takes at least 9 bytes.
            let mut defs = Vec::with_capacity(usize::from(n).min(r.remaining() / 9));
            for _ in 0..n {
                defs.push(read_def(&mut r)?);
            }
            MetricFrame::Define(defs)
        }
        Some(Op::Interval) => {
            let seq = r.u64()?;
            let ts_ns = r.u64()?;
            let flags = r.u8()?;
            if flags & !(FLAG_FULL | FLAG_MORE) != 0 {
                return Err(WireError::BadValue.into());
            }
            let n = varint::get_u64(&mut r)?;
            let n = usize::try_from(n).map_err(|_| WireError::BadValue)?;
            if n > MAX_UPDATES_PER_FRAME {
                return Err(WireError::BadValue.into());
            }
            let mut updates = Vec::with_capacity(n.min(r.remaining() / 2));
            let mut next = 0u64;
            for _ in 0..n {
                updates.push(read_update(&mut r, &mut next)?);
            }
            MetricFrame::Interval(Interval {
                seq,
                ts_ns,
                full: flags & FLAG_FULL != 0,
                more: flags & FLAG_MORE != 0,
                updates,
            })
        }
        None => return Err(RemoteError::BadOp(op)),
    };
    r.finish()?;
    Ok(frame)
}

/// Encodes DEFINE frames for `defs`, as few as fit [`MAX_FRAME`] each.
pub fn encode_defines(defs: &[(u32, &Definition)]) -> Result<Vec<Vec<u8>>, RemoteError> {
    let mut frames = Vec::new();
    let mut cur: Option<(Vec<u8>, u16)> = None;
    for (id, d) in defs {
        let mut one = Vec::new();
        let mut w = Writer::new(&mut one);
        write_def(&mut w, *id, d);
        w.finish()?;
        let fits =
            matches!(&cur, Some((buf, n)) if buf.len() + one.len() <= MAX_FRAME && *n < u16::MAX);
        if !fits {
            if let Some(done) = cur.take() {
                frames.push(close_define(done));
            }
            let mut buf = Vec::with_capacity(PREFIX_LEN + 2 + one.len());
            let mut w = Writer::new(&mut buf);
            prefix(&mut w, Op::Define);
            w.u16(0);
            cur = Some((buf, 0));
        }
        if let Some((buf, n)) = cur.as_mut() {
            buf.extend_from_slice(&one);
            *n += 1;
        }
    }
    if let Some(done) = cur.take() {
        frames.push(close_define(done));
    }
    Ok(frames)
}

fn close_define((mut buf, n): (Vec<u8>, u16)) -> Vec<u8> {
    Writer::new(&mut buf).patch_u16(PREFIX_LEN, n);
    buf
}

/// Encodes one interval as one or more INTERVAL frames (`more` on all but
/// the last). `updates` must be in strictly increasing series order.
pub fn encode_interval(
    seq: u64,
    ts_ns: u64,
    full: bool,
    updates: &[(u32, &Value)],
) -> Result<Vec<Vec<u8>>, RemoteError> {
    // Payloads first, so frames can be cut by size.
    let mut parts: Vec<(u32, u8, Vec<u8>)> = Vec::with_capacity(updates.len());
    let mut prev: Option<u32> = None;
    for (id, v) in updates {
        if prev.is_some_and(|p| p >= *id) {
            return Err(WireError::BadValue.into());
        }
        prev = Some(*id);
        let mut p = Vec::new();
        let mut w = Writer::new(&mut p);
        write_payload(&mut w, v);
        w.finish()?;
        parts.push((*id, v.kind().as_u8(), p));
    }
    let mut frames: Vec<(Vec<u8>, usize)> = Vec::new();
    let mut body: Vec<u8> = Vec::new();
    let mut count = 0usize;
    let mut next = 0u64;
    for (id, kind, p) in &parts {
        let key_for = |next: u64| ((u64::from(*id) - next) << 2) | u64::from(*kind);
        let mut key = key_for(next);
        let mut size = varint::len_u64(key) + p.len();
        if count > 0
            && (INTERVAL_HEAD + COUNT_ROOM + body.len() + size > MAX_FRAME
                || count >= MAX_UPDATES_PER_FRAME)
        {
            frames.push((core::mem::take(&mut body), count));
            count = 0;
            next = 0;
            key = key_for(next);
            size = varint::len_u64(key) + p.len();
        }
        if INTERVAL_HEAD + COUNT_ROOM + size > MAX_FRAME {
            return Err(WireError::TooLarge.into());
        }
        let mut w = Writer::new(&mut body);
        varint::put_u64(&mut w, key);
        w.bytes(p);
        w.finish()?;
        count += 1;
        next = u64::from(*id) + 1;
    }
    frames.push((body, count));
    let last = frames.len().saturating_sub(1);
    let mut out = Vec::with_capacity(frames.len());
    for (i, (body, count)) in frames.into_iter().enumerate() {
        let flags = if full { FLAG_FULL } else { 0 } | if i < last { FLAG_MORE } else { 0 };
        let mut f = Vec::with_capacity(INTERVAL_HEAD + COUNT_ROOM + body.len());
        let mut w = Writer::bounded(&mut f, MAX_FRAME);
        prefix(&mut w, Op::Interval);
        w.u64(seq).u64(ts_ns).u8(flags);
        varint::put_u64(&mut w, count as u64);
        w.bytes(&body);
        w.finish()?;
        out.push(f);
    }
    Ok(out)
}

/// The sender side: remembers what the collector was sent on this stream
/// and turns the current values into DEFINE frames for new series and one
/// INTERVAL with only what changed.
///
/// Use one per stream. The first interval, the one after [`Self::reset`],
/// and any interval where a counter or histogram went down (the sender
/// restarted its counts) are full.
#[derive(Debug, Default)]
pub struct DeltaEncoder {
    sent: BTreeMap<u32, Series>,
    seq: u64,
    force_full: bool,
    first_done: bool,
}

impl DeltaEncoder {
    /// An encoder for a new stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets what was sent: the next `encode` repeats every DEFINE and
    /// sends a full snapshot (seq keeps increasing).
    pub fn reset(&mut self) {
        self.sent.clear();
        self.force_full = true;
    }

    /// The seq of the last interval encoded (0 before the first).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Frame bodies for this interval: DEFINEs first, then the INTERVAL
    /// frames. Errors (nothing is remembered then): two series with one
    /// id (`Redefined`), a value that does not fit its definition
    /// (`KindMismatch`), a series whose definition changed (`Redefined`).
    pub fn encode(&mut self, ts_ns: u64, current: &[Series]) -> Result<Vec<Vec<u8>>, RemoteError> {
        let mut cur: Vec<&Series> = current.iter().collect();
        cur.sort_by_key(|s| s.id);
        let mut full = self.force_full || !self.first_done;
        let mut new_defs = Vec::new();
        let mut prev: Option<u32> = None;
        for s in &cur {
            if prev == Some(s.id) {
                return Err(RemoteError::Redefined(s.id));
            }
            prev = Some(s.id);
            if !s.def.fits(&s.value) {
                return Err(RemoteError::KindMismatch(s.id));
            }
            match self.sent.get(&s.id) {
                Some(old) if old.def != s.def => return Err(RemoteError::Redefined(s.id)),
                Some(old) => {
                    if s.value.delta_from(&old.value).is_none() {
                        full = true;
                    }
                }
                None => new_defs.push((s.id, &s.def)),
            }
        }
        let mut deltas: Vec<(u32, Value)> = Vec::new();
        if !full {
            for s in &cur {
                let d = match self.sent.get(&s.id) {
                    Some(old) if old.value == s.value => continue,
                    Some(old) => s.value.delta_from(&old.value),
                    None if s.value.is_zero() => continue,
                    None => Some(s.value.clone()),
                };
                if let Some(d) = d {
                    deltas.push((s.id, d));
                }
            }
        }
        let updates: Vec<(u32, &Value)> = if full {
            cur.iter().map(|s| (s.id, &s.value)).collect()
        } else {
            deltas.iter().map(|(id, v)| (*id, v)).collect()
        };
        let seq = self.seq.saturating_add(1);
        let mut frames = encode_defines(&new_defs)?;
        frames.extend(encode_interval(seq, ts_ns, full, &updates)?);
        self.seq = seq;
        self.force_full = false;
        self.first_done = true;
        for s in cur {
            self.sent.insert(s.id, s.clone());
        }
        Ok(frames)
    }
}

/// Collector limits for one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconstructorConfig {
    /// Most series defined per stream (the label-cardinality cap); further
    /// DEFINEs are refused and counted, their updates ignored and counted.
    pub max_series: usize,
    /// Most refused series ids remembered; past it the stream is dropped
    /// (`TooManySeries`).
    pub max_refused: usize,
}

impl Default for ReconstructorConfig {
    fn default() -> Self {
        Self {
            max_series: 4096,
            max_refused: 4096,
        }
    }
}

/// Counters of a [`Reconstructor`] (kept across reconnects).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconstructorStats {
    /// Frames applied.
    pub frames: u64,
    /// Intervals completed (last frame applied).
    pub intervals: u64,
    /// Series accepted.
    pub defined: u64,
    /// DEFINEs refused by the cardinality cap.
    pub refused_defines: u64,
    /// Updates ignored because their series was refused.
    pub ignored_updates: u64,
    /// Streams started after the first.
    pub reconnects: u64,
}

/// The collector side: applies frames of one stream and holds every
/// series' absolute value.
///
/// Refused with an error (disconnect with its reason): a malformed frame,
/// an update of an undefined series or of the wrong kind, a different
/// DEFINE for a known id, a seq that does not increase, a delta before the
/// first full interval, an overflow, a broken multi-frame interval.
#[derive(Debug, Clone)]
pub struct Reconstructor {
    cfg: ReconstructorConfig,
    series: BTreeMap<u32, (Definition, Value)>,
    refused: BTreeSet<u32>,
    last_seq: Option<u64>,
    /// `(seq, full)` of an interval whose last frame has not come yet.
    open: Option<(u64, bool)>,
    baseline: bool,
    stats: ReconstructorStats,
}

impl Reconstructor {
    /// An empty reconstructor.
    pub fn new(cfg: ReconstructorConfig) -> Self {
        Self {
            cfg,
            series: BTreeMap::new(),
            refused: BTreeSet::new(),
            last_seq: None,
            open: None,
            baseline: false,
            stats: ReconstructorStats::default(),
        }
    }

    /// A new stream from the same sender: definitions, values and seq are
    /// per stream and start over (the sender's first interval is full).
    pub fn reconnect(&mut self) {
        self.series.clear();
        self.refused.clear();
        self.last_seq = None;
        self.open = None;
        self.baseline = false;
        self.stats.reconnects = self.stats.reconnects.saturating_add(1);
    }

    /// Counters.
    pub fn stats(&self) -> ReconstructorStats {
        self.stats
    }

    /// Series defined now.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// True if no series is defined.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// One series.
    pub fn get(&self, id: u32) -> Option<(&Definition, &Value)> {
        self.series.get(&id).map(|(d, v)| (d, v))
    }

    /// Every series in id order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Definition, &Value)> {
        self.series.iter().map(|(id, (d, v))| (*id, d, v))
    }

    /// Seq of the last interval frame applied.
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// Whether an interval is complete (no `more` pending): values are
    /// consistent with one instant of the sender.
    pub fn settled(&self) -> bool {
        self.open.is_none()
    }

    /// Decodes and applies one frame body. On error nothing changed.
    pub fn apply(&mut self, body: &[u8]) -> Result<(), RemoteError> {
        match decode(body)? {
            MetricFrame::Define(defs) => self.define(defs)?,
            MetricFrame::Interval(iv) => self.interval(iv)?,
        }
        self.stats.frames = self.stats.frames.saturating_add(1);
        Ok(())
    }

    fn define(&mut self, defs: Vec<(u32, Definition)>) -> Result<(), RemoteError> {
        if self.open.is_some() {
            return Err(RemoteError::Unexpected);
        }
        // Check first, so a refused frame changes nothing.
        let mut adds = 0usize;
        let mut refusals = 0usize;
        let mut seen = BTreeSet::new();
        for (id, d) in &defs {
            if !seen.insert(*id) {
                return Err(RemoteError::Redefined(*id));
            }
            match self.series.get(id) {
                Some((old, _)) if old != d => return Err(RemoteError::Redefined(*id)),
                Some(_) => {}
                None if self.refused.contains(id) => {}
                None if self.series.len() + adds < self.cfg.max_series => adds += 1,
                None => refusals += 1,
            }
        }
        if self.refused.len() + refusals > self.cfg.max_refused {
            return Err(RemoteError::TooManySeries);
        }
        for (id, d) in defs {
            if self.series.contains_key(&id) {
                continue;
            }
            if self.refused.contains(&id) || self.series.len() >= self.cfg.max_series {
                self.refused.insert(id);
                self.stats.refused_defines = self.stats.refused_defines.saturating_add(1);
                continue;
            }
            let zero = d.zero();
            self.series.insert(id, (d, zero));
            self.stats.defined = self.stats.defined.saturating_add(1);
        }
        Ok(())
    }

    fn interval(&mut self, iv: Interval) -> Result<(), RemoteError> {
        match (self.open, self.last_seq) {
            (Some((seq, full)), _) if seq != iv.seq || full != iv.full => {
                return Err(RemoteError::Unexpected)
            }
            (None, Some(last)) if iv.seq <= last => {
                return Err(RemoteError::SeqBackwards { last, got: iv.seq })
            }
            _ => {}
        }
        if !iv.full && !self.baseline {
            return Err(RemoteError::NoBaseline);
        }
        let mut new_values = Vec::with_capacity(iv.updates.len());
        let mut ignored = 0u64;
        for (id, u) in &iv.updates {
            if self.refused.contains(id) {
                ignored += 1;
                continue;
            }
            let (def, cur) = self
                .series
                .get(id)
                .ok_or(RemoteError::UndefinedSeries(*id))?;
            if !def.fits(u) {
                return Err(RemoteError::KindMismatch(*id));
            }
            let v = cur.apply(u, iv.full).ok_or(RemoteError::Overflow(*id))?;
            new_values.push((*id, v));
        }
        for (id, v) in new_values {
            if let Some(slot) = self.series.get_mut(&id) {
                slot.1 = v;
            }
        }
        self.stats.ignored_updates = self.stats.ignored_updates.saturating_add(ignored);
        self.last_seq = Some(iv.seq);
        if iv.full {
            self.baseline = true;
        }
        if iv.more {
            self.open = Some((iv.seq, iv.full));
        } else {
            self.open = None;
            self.stats.intervals = self.stats.intervals.saturating_add(1);
        }
        Ok(())
    }
}
