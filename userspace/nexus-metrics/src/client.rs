//! The metrics client: handles resolved once, lock-free updates, batched
//! flushes that never block; spans are [`nexus_trace`] guards whose entries
//! queue here ([`SpanQueue`]) and leave with the next flush.
//!
//! ```text
//! let c = metrics.counter("requests_total", &[("route", "/a")])?;   // one REGISTER round trip, then cached
//! c.inc();                                                          // an atomic add
//! metrics.flush();                                                  // one one-way BATCH frame
//! ```
//!
//! Handles ([`Counter`], [`Gauge`], [`Histogram`]) are `Send + Sync` and
//! cheap to clone; updating one is an atomic operation on a cell that the
//! owner of the [`Metrics`] drains at [`Metrics::flush`]. A flush whose
//! frame cannot be sent (metricsd's queue full) puts the drained deltas
//! back, so counts are delayed, not lost; span events that cannot be
//! queued or sent are dropped and counted.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use nexus_bounds::Clock;
use nexus_ipc::caller::{CallError, Caller};
use nexus_ipc::{Endpoint, SendError, ServiceId};
use nexus_trace::wire::{SpanEnd, SpanStart};
use nexus_trace::{
    IdGenerator, IdSeed, SpanContext, SpanId, SpanSink, TraceId, Tracer, TracerConfig,
};
use nexus_wire::WireError;
use spinning_top::Spinlock;

use crate::proto::{
    self, BatchResult, Entry, MetricsStats, Register, Reply, ScrapePage, Status, WireSegment,
};
use crate::types::{Buckets, Help, Labels, MetricKind, MetricName, SeriesId, TypeError};

/// Why a call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsError {
    /// A name, label or bound broke its rule (refused before sending).
    Type(TypeError),
    /// The same name was registered with another kind or other buckets.
    Conflict,
    /// Transport failure.
    Send(SendError),
    /// Encoding failure (a string beyond its wire prefix).
    Encode(WireError),
    /// No reply in time.
    Timeout,
    /// A call with the same nonce is already in flight (the request was
    /// not sent; retrying later is safe).
    Busy,
    /// metricsd refused it.
    Rejected(Status),
    /// The reply does not fit the request.
    BadReply,
}

impl fmt::Display for MetricsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Type(e) => write!(f, "invalid: {e}"),
            Self::Conflict => f.write_str("registered before with another kind or buckets"),
            Self::Send(e) => write!(f, "send failed: {e}"),
            Self::Encode(e) => write!(f, "encode failed: {e}"),
            Self::Timeout => f.write_str("timed out"),
            Self::Busy => f.write_str("busy"),
            Self::Rejected(s) => write!(f, "rejected: {s}"),
            Self::BadReply => f.write_str("unexpected reply"),
        }
    }
}

impl From<CallError> for MetricsError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Send(e) => Self::Send(e),
            CallError::Timeout => Self::Timeout,
            CallError::Busy => Self::Busy,
        }
    }
}

impl From<TypeError> for MetricsError {
    fn from(e: TypeError) -> Self {
        Self::Type(e)
    }
}

#[derive(Debug)]
struct CounterCell {
    series: SeriesId,
    pending: AtomicU64,
}

#[derive(Debug)]
struct GaugeCell {
    series: SeriesId,
    value: AtomicI64,
    dirty: AtomicBool,
}

#[derive(Debug)]
struct HistCell {
    series: SeriesId,
    buckets: Buckets,
    counts: Vec<AtomicU64>,
    sum: AtomicU64,
}

/// A counter handle.
#[derive(Debug, Clone)]
pub struct Counter(Arc<CounterCell>);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.pending.fetch_add(n, Ordering::Relaxed);
    }
    /// The series metricsd assigned.
    pub fn series(&self) -> SeriesId {
        self.0.series
    }
}

/// A gauge handle. The value is kept locally and sent when changed.
#[derive(Debug, Clone)]
pub struct Gauge(Arc<GaugeCell>);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.value.store(v, Ordering::Relaxed);
        self.0.dirty.store(true, Ordering::Release);
    }
    /// Adds to the value (wrapping is impossible in practice: i64).
    pub fn add(&self, d: i64) {
        self.0.value.fetch_add(d, Ordering::Relaxed);
        self.0.dirty.store(true, Ordering::Release);
    }
    /// The local value.
    pub fn get(&self) -> i64 {
        self.0.value.load(Ordering::Relaxed)
    }
    /// The series metricsd assigned.
    pub fn series(&self) -> SeriesId {
        self.0.series
    }
}

/// A histogram handle with fixed buckets.
#[derive(Debug, Clone)]
pub struct Histogram(Arc<HistCell>);

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, v: u64) {
        let i = self.0.buckets.index(v);
        if let Some(c) = self.0.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.0.sum.fetch_add(v, Ordering::Relaxed);
    }
    /// The series metricsd assigned.
    pub fn series(&self) -> SeriesId {
        self.0.series
    }
}

/// A queued span entry, owned until the flush encodes it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SpanEvent {
    Start {
        span: SpanId,
        trace: TraceId,
        parent: Option<SpanId>,
        start_ns: u64,
        name: String,
    },
    End {
        span: SpanId,
        end_ns: u64,
        status: u8,
        attrs: Vec<(String, String)>,
    },
}

impl SpanEvent {
    /// The BATCH entry.
    fn entry(&self) -> Entry<'_> {
        match self {
            SpanEvent::Start {
                span,
                trace,
                parent,
                start_ns,
                name,
            } => Entry::SpanStart {
                span: span.get(),
                trace: trace.get(),
                parent: parent.map_or(0, SpanId::get),
                start_ns: *start_ns,
                name,
            },
            SpanEvent::End {
                span,
                end_ns,
                status,
                attrs,
            } => Entry::SpanEnd {
                span: span.get(),
                end_ns: *end_ns,
                status: *status,
                attrs: attrs
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect(),
            },
        }
    }
}

/// The [`SpanSink`] of a [`Metrics`]: span entries wait here, bounded by
/// [`MetricsConfig::max_pending_spans`], until the next flush puts them in
/// a BATCH; past the bound they are dropped and counted
/// ([`FlushStats::spans_dropped`]).
#[derive(Debug)]
pub struct SpanQueue {
    events: Spinlock<VecDeque<SpanEvent>>,
    max_events: usize,
    dropped: AtomicU64,
}

impl SpanQueue {
    fn new(max_events: usize) -> Self {
        Self {
            events: Spinlock::new(VecDeque::new()),
            max_events,
            dropped: AtomicU64::new(0),
        }
    }

    fn push(&self, e: SpanEvent) {
        let mut q = self.events.lock();
        if q.len() >= self.max_events {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            q.push_back(e);
        }
    }

    fn drain(&self) -> Vec<SpanEvent> {
        self.events.lock().drain(..).collect()
    }

    /// Entries waiting for the next flush.
    pub fn len(&self) -> usize {
        self.events.lock().len()
    }

    /// True if none is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl SpanSink for SpanQueue {
    fn start(&self, s: &SpanStart<'_>) {
        self.push(SpanEvent::Start {
            span: s.span,
            trace: s.trace,
            parent: s.parent,
            start_ns: s.start_ns,
            name: String::from(s.name),
        });
    }

    fn end(&self, e: &SpanEnd<'_>) {
        self.push(SpanEvent::End {
            span: e.span,
            end_ns: e.end_ns,
            status: e.status,
            attrs: e
                .attrs
                .iter()
                .map(|(k, v)| (String::from(*k), String::from(*v)))
                .collect(),
        });
    }
}

/// A span of a [`Metrics`] client: a [`nexus_trace::SpanGuard`] whose
/// entries go to the client's [`SpanQueue`]. Ends when dropped (or at
/// `end()`) with the clock's time at that moment.
pub type SpanGuard<C> = nexus_trace::SpanGuard<C, SpanQueue>;

/// Client bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Span events queued between flushes; beyond, dropped and counted.
    pub max_pending_spans: usize,
    /// Largest BATCH frame; a flush sends as many frames as it needs.
    pub max_batch_bytes: usize,
    /// Most entries per BATCH frame: at most metricsd's `batch.max_entries`
    /// (a larger one-way batch would be refused whole, unseen).
    pub max_batch_entries: u16,
    /// Reply timeout for REGISTER and other calls.
    pub timeout_ns: u64,
    /// Span and trace id seed: the node ([`IdSeed::node_from_key`] of its
    /// device key, or a fixed id on a single node). Default 0.
    pub node_id: u64,
    /// Id seed: the boot counter from the state store. Default 0.
    pub boot: u32,
    /// Id seed: 32 bytes of this boot's entropy (virtio-rng), if any.
    /// Default `None` (deterministic ids, for tests).
    pub entropy: Option<[u8; 32]>,
    /// Attributes kept per span; further ones are dropped client-side and
    /// counted by the tracer. Default: metricsd's `spans.max_attrs` (16).
    pub max_span_attrs: usize,
}

impl MetricsConfig {
    /// The id seed of a client whose endpoint id is `instance`.
    pub fn id_seed(&self, instance: u64) -> IdSeed {
        let seed = IdSeed::new(self.node_id, instance, u64::from(self.boot));
        match self.entropy {
            Some(e) => seed.with_entropy(e),
            None => seed,
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            max_pending_spans: 1024,
            max_batch_bytes: 16 * 1024,
            max_batch_entries: 512,
            timeout_ns: 2_000_000_000,
            node_id: 0,
            boot: 0,
            entropy: None,
            max_span_attrs: nexus_trace::tracer::DEFAULT_MAX_ATTRS,
        }
    }
}

/// What flushes did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushStats {
    /// Frames sent.
    pub frames: u64,
    /// Entries sent.
    pub entries: u64,
    /// Frames that could not be sent (their updates were put back).
    pub frames_failed: u64,
    /// Span events dropped (queue full, or their frame failed).
    pub spans_dropped: u64,
}

/// A fingerprint of kind, name and labels that does not depend on the
/// labels' order and allocates nothing: FxHash (word at a time) of the
/// name, plus a commutative sum of the hashes of each label pair.
/// At most `MAX_LABELS` labels, else `None`. Collisions are resolved by
/// comparing the full key.
fn fingerprint(kind: MetricKind, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
    use core::hash::Hasher;
    if labels.len() > crate::types::MAX_LABELS {
        return None;
    }
    let mut h = rustc_hash::FxHasher::default();
    h.write_u8(kind as u8);
    h.write(name.as_bytes());
    h.write_usize(labels.len());
    let mut pairs = 0u64;
    for (k, v) in labels {
        let mut p = rustc_hash::FxHasher::default();
        p.write(k.as_bytes());
        p.write_u8(0xff);
        p.write(v.as_bytes());
        // A sum does not depend on the order; a rare collision only costs
        // the full comparison that follows.
        pairs = pairs.wrapping_add(p.finish());
    }
    h.write_u64(pairs);
    Some(h.finish())
}

/// The fingerprint is already a hash: the index table uses it as is.
#[derive(Debug, Clone, Copy, Default)]
struct FingerprintHasher(u64);

impl core::hash::Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type FastIndex =
    hashbrown::HashMap<u64, Vec<(Key, Cell)>, core::hash::BuildHasherDefault<FingerprintHasher>>;

#[derive(Debug, Clone)]
enum Cell {
    Counter(Arc<CounterCell>),
    Gauge(Arc<GaugeCell>),
    Hist(Arc<HistCell>),
}

type Key = (MetricKind, MetricName, Labels);

/// The client of one metricsd.
#[derive(Debug)]
pub struct Metrics<E, C: Clock> {
    caller: Caller<E>,
    cfg: MetricsConfig,
    tracer: Tracer<C, SpanQueue>,
    cells: BTreeMap<Key, Cell>,
    /// The same cells by a fingerprint of the borrowed key, so a lookup of
    /// an already resolved handle allocates nothing.
    fast: FastIndex,
    /// Help texts set by [`Metrics::describe`], sent with the next
    /// registration of their name.
    help: BTreeMap<MetricName, Help>,
    stats: FlushStats,
}

impl<E: Endpoint, C: Clock> Metrics<E, C> {
    /// A client sending from `ep` to metricsd at `metricsd`. Span and trace
    /// ids come from an [`IdGenerator`] seeded with the node, boot and
    /// entropy of `cfg` and `ep`'s transport id as the instance
    /// ([`MetricsConfig::id_seed`]).
    pub fn new(ep: E, metricsd: ServiceId, clock: C, cfg: MetricsConfig) -> Self {
        let ids = IdGenerator::new(&cfg.id_seed(u64::from(ep.id().get())));
        let tracer = Tracer::new(
            clock,
            SpanQueue::new(cfg.max_pending_spans),
            ids,
            TracerConfig {
                max_attrs: cfg.max_span_attrs,
                ..TracerConfig::default()
            },
        );
        Self {
            caller: Caller::new(ep, metricsd, cfg.timeout_ns),
            tracer,
            cfg,
            cells: BTreeMap::new(),
            fast: FastIndex::default(),
            help: BTreeMap::new(),
            stats: FlushStats::default(),
        }
    }

    /// The endpoint (its id is the identity metricsd sees).
    pub fn endpoint(&self) -> &E {
        self.caller.endpoint()
    }

    /// Flush counters.
    pub fn stats(&self) -> FlushStats {
        FlushStats {
            spans_dropped: self.stats.spans_dropped + self.tracer.sink().dropped(),
            ..self.stats
        }
    }

    /// Sets the help text of metric `name` (its `# HELP` line), sent with
    /// every later registration of that name. metricsd keeps the first help
    /// it is given for a name. Call it before the first handle of `name`.
    pub fn describe(&mut self, name: &str, help: &str) -> Result<(), MetricsError> {
        self.help.insert(MetricName::new(name)?, Help::new(help)?);
        Ok(())
    }

    fn register(
        &mut self,
        kind: MetricKind,
        name: &str,
        labels: &Labels,
        bounds: &[u64],
    ) -> Result<SeriesId, MetricsError> {
        let pairs: Vec<(&str, &str)> = labels.iter().collect();
        let reg = Register {
            kind: kind as u8,
            name,
            labels: pairs,
            bounds: Vec::from(bounds),
            help: self.help.get(name).map_or("", Help::as_str),
        };
        let nonce = self.caller.next_nonce();
        let frame = proto::encode_register(nonce, &reg).map_err(MetricsError::Encode)?;
        match self.caller.call(nonce, &frame, proto::decode_reply)? {
            Reply::Registered(id) => Ok(SeriesId(id)),
            Reply::Rejected(s) => Err(MetricsError::Rejected(s)),
            _ => Err(MetricsError::BadReply),
        }
    }

    fn key(kind: MetricKind, name: &str, labels: &[(&str, &str)]) -> Result<Key, MetricsError> {
        Ok((kind, MetricName::new(name)?, Labels::new(labels)?))
    }

    /// The cell of an already resolved `kind name{labels}`, without
    /// allocating (labels in any order).
    fn lookup(&self, kind: MetricKind, name: &str, labels: &[(&str, &str)]) -> Option<&Cell> {
        let fp = fingerprint(kind, name, labels)?;
        self.fast
            .get(&fp)?
            .iter()
            .find(|(k, _)| {
                // Stored labels have unique keys: equal lengths and every
                // given pair present means the same set.
                k.0 == kind
                    && k.1.as_str() == name
                    && k.2.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(lk, lv)| k.2.iter().any(|(kk, kv)| kk == *lk && kv == *lv))
            })
            .map(|(_, c)| c)
    }

    fn remember(&mut self, key: Key, cell: Cell) {
        let labels: Vec<(&str, &str)> = key.2.iter().collect();
        if let Some(fp) = fingerprint(key.0, key.1.as_str(), &labels) {
            self.fast
                .entry(fp)
                .or_default()
                .push((key.clone(), cell.clone()));
        }
        self.cells.insert(key, cell);
    }

    /// The counter `name{labels}`, registered on first use.
    pub fn counter(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Result<Counter, MetricsError> {
        if let Some(Cell::Counter(c)) = self.lookup(MetricKind::Counter, name, labels) {
            return Ok(Counter(Arc::clone(c)));
        }
        let key = Self::key(MetricKind::Counter, name, labels)?;
        let series = self.register(MetricKind::Counter, name, &key.2, &[])?;
        let cell = Arc::new(CounterCell {
            series,
            pending: AtomicU64::new(0),
        });
        self.remember(key, Cell::Counter(Arc::clone(&cell)));
        Ok(Counter(cell))
    }

    /// The gauge `name{labels}`, registered on first use.
    pub fn gauge(&mut self, name: &str, labels: &[(&str, &str)]) -> Result<Gauge, MetricsError> {
        if let Some(Cell::Gauge(c)) = self.lookup(MetricKind::Gauge, name, labels) {
            return Ok(Gauge(Arc::clone(c)));
        }
        let key = Self::key(MetricKind::Gauge, name, labels)?;
        let series = self.register(MetricKind::Gauge, name, &key.2, &[])?;
        let cell = Arc::new(GaugeCell {
            series,
            value: AtomicI64::new(0),
            dirty: AtomicBool::new(false),
        });
        self.remember(key, Cell::Gauge(Arc::clone(&cell)));
        Ok(Gauge(cell))
    }

    /// The histogram `name{labels}` with `bounds`, registered on first use.
    pub fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        bounds: &[u64],
    ) -> Result<Histogram, MetricsError> {
        if let Some(Cell::Hist(c)) = self.lookup(MetricKind::Histogram, name, labels) {
            if c.buckets.bounds() == bounds {
                return Ok(Histogram(Arc::clone(c)));
            }
        }
        let key = Self::key(MetricKind::Histogram, name, labels)?;
        let buckets = Buckets::new(bounds)?;
        if let Some(Cell::Hist(c)) = self.cells.get(&key) {
            return if c.buckets == buckets {
                Ok(Histogram(Arc::clone(c)))
            } else {
                Err(MetricsError::Conflict)
            };
        }
        let series = self.register(MetricKind::Histogram, name, &key.2, buckets.bounds())?;
        let counts = (0..=buckets.bounds().len())
            .map(|_| AtomicU64::new(0))
            .collect();
        let cell = Arc::new(HistCell {
            series,
            buckets,
            counts,
            sum: AtomicU64::new(0),
        });
        self.remember(key, Cell::Hist(Arc::clone(&cell)));
        Ok(Histogram(cell))
    }

    /// The tracer behind [`span`](Self::span): its ids, clock, queue and
    /// counters.
    pub fn tracer(&self) -> &Tracer<C, SpanQueue> {
        &self.tracer
    }

    /// A root span: a new trace.
    pub fn span(&self, name: &str) -> SpanGuard<C> {
        self.tracer.span(name)
    }

    /// A span continuing a trace from elsewhere (e.g. propagated context).
    pub fn span_in(&self, name: &str, trace: TraceId, parent: Option<SpanId>) -> SpanGuard<C> {
        self.tracer.span_in(name, trace, parent)
    }

    /// A child of a propagated context (its trace, span and flags).
    pub fn span_from(&self, name: &str, parent: &SpanContext) -> SpanGuard<C> {
        self.tracer.span_from(name, parent)
    }

    /// Drains every handle and the span queue into BATCH entries.
    fn drain(&mut self) -> (Vec<Entry<'static>>, Vec<SpanEvent>) {
        let mut entries = Vec::new();
        for cell in self.cells.values() {
            match cell {
                Cell::Counter(c) => {
                    let d = c.pending.swap(0, Ordering::Relaxed);
                    if d > 0 {
                        entries.push(Entry::Inc {
                            series: c.series.0,
                            delta: d,
                        });
                    }
                }
                Cell::Gauge(g) => {
                    if g.dirty.swap(false, Ordering::Acquire) {
                        entries.push(Entry::Set {
                            series: g.series.0,
                            value: g.value.load(Ordering::Relaxed),
                        });
                    }
                }
                Cell::Hist(h) => {
                    let counts: Vec<u64> = h
                        .counts
                        .iter()
                        .map(|c| c.swap(0, Ordering::Relaxed))
                        .collect();
                    let sum = h.sum.swap(0, Ordering::Relaxed);
                    // A sum without counts (an observation caught between
                    // its two atomic adds) is still sent, never dropped.
                    if counts.iter().any(|c| *c > 0) || sum > 0 {
                        entries.push(Entry::Hist {
                            series: h.series.0,
                            counts,
                            sum,
                        });
                    }
                }
            }
        }
        (entries, self.tracer.sink().drain())
    }

    /// Puts drained updates back after a failed send.
    fn restore(&self, entries: &[Entry<'_>]) {
        for e in entries {
            for cell in self.cells.values() {
                match (cell, e) {
                    (Cell::Counter(c), Entry::Inc { series, delta }) if c.series.0 == *series => {
                        c.pending.fetch_add(*delta, Ordering::Relaxed);
                    }
                    (Cell::Gauge(g), Entry::Set { series, .. }) if g.series.0 == *series => {
                        g.dirty.store(true, Ordering::Release);
                    }
                    (
                        Cell::Hist(h),
                        Entry::Hist {
                            series,
                            counts,
                            sum,
                        },
                    ) if h.series.0 == *series => {
                        for (a, d) in h.counts.iter().zip(counts) {
                            a.fetch_add(*d, Ordering::Relaxed);
                        }
                        h.sum.fetch_add(*sum, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
        }
    }

    fn frames(
        &mut self,
        oneway: bool,
        entries: &[Entry<'_>],
        spans: &[SpanEvent],
    ) -> Vec<(u64, Vec<u8>, usize, usize)> {
        // (nonce, frame, update entries in it, span events in it)
        let mut out = Vec::new();
        let span_entries: Vec<Entry<'_>> = spans.iter().map(SpanEvent::entry).collect();
        let all = entries
            .iter()
            .map(|e| (e, true))
            .chain(span_entries.iter().map(|e| (e, false)));
        let mut nonce = self.caller.next_nonce();
        let mut frame = proto::begin_batch(nonce, oneway);
        let (mut n, mut nu, mut ns) = (0u16, 0usize, 0usize);
        for (e, is_update) in all {
            let mark = frame.len();
            if proto::encode_entry(&mut frame, e).is_err() {
                frame.truncate(mark);
                if !is_update {
                    self.stats.spans_dropped += 1;
                }
                continue;
            }
            if (frame.len() > self.cfg.max_batch_bytes || n >= self.cfg.max_batch_entries.max(1))
                && n > 0
            {
                frame.truncate(mark);
                proto::finish_batch(&mut frame, n);
                out.push((nonce, frame, nu, ns));
                nonce = self.caller.next_nonce();
                frame = proto::begin_batch(nonce, oneway);
                (n, nu, ns) = (0, 0, 0);
                if proto::encode_entry(&mut frame, e).is_err() {
                    continue;
                }
            }
            n += 1;
            if is_update {
                nu += 1;
            } else {
                ns += 1;
            }
        }
        if n > 0 {
            proto::finish_batch(&mut frame, n);
            out.push((nonce, frame, nu, ns));
        }
        out
    }

    /// Sends everything pending as one-way BATCH frames. Never waits.
    pub fn flush(&mut self) -> FlushStats {
        let (entries, spans) = self.drain();
        let frames = self.frames(true, &entries, &spans);
        let mut offset = 0;
        for (_, frame, nu, ns) in frames {
            let part = entries.get(offset..offset + nu).unwrap_or(&[]);
            offset += nu;
            match self.caller.send(&frame) {
                Ok(()) => {
                    self.stats.frames += 1;
                    self.stats.entries += (nu + ns) as u64;
                }
                Err(_) => {
                    self.stats.frames_failed += 1;
                    self.stats.spans_dropped += ns as u64;
                    self.restore(part);
                }
            }
        }
        self.stats()
    }

    /// Sends everything pending as answered BATCH frames and sums what
    /// metricsd accepted and refused (for tests and the selftest).
    pub fn flush_sync(&mut self) -> Result<BatchResult, MetricsError> {
        let (entries, spans) = self.drain();
        let frames = self.frames(false, &entries, &spans);
        let mut total = BatchResult {
            accepted: 0,
            rejected: 0,
            first_reject: Status::Ok,
        };
        let mut offset = 0;
        for (nonce, frame, nu, ns) in frames {
            let reply = self.caller.call(nonce, &frame, proto::decode_reply);
            if reply.is_err() {
                // Not delivered (or unknown): put this frame's and every
                // later frame's updates back.
                self.restore(entries.get(offset..).unwrap_or(&[]));
            }
            offset += nu;
            match reply? {
                Reply::Batch(b) => {
                    self.stats.frames += 1;
                    self.stats.entries += (nu + ns) as u64;
                    total.accepted = total.accepted.saturating_add(b.accepted);
                    total.rejected = total.rejected.saturating_add(b.rejected);
                    if total.first_reject == Status::Ok {
                        total.first_reject = b.first_reject;
                    }
                }
                Reply::Rejected(s) => return Err(MetricsError::Rejected(s)),
                _ => return Err(MetricsError::BadReply),
            }
        }
        Ok(total)
    }

    /// Sends a hand-built frame carrying `nonce` and waits for its reply.
    pub fn call_raw(&mut self, nonce: u64, frame: &[u8]) -> Result<Reply, MetricsError> {
        Ok(self.caller.call(nonce, frame, proto::decode_reply)?)
    }

    /// A fresh nonce for [`call_raw`](Self::call_raw).
    pub fn next_nonce(&mut self) -> u64 {
        self.caller.next_nonce()
    }

    fn request(&mut self, build: impl FnOnce(u64) -> Vec<u8>) -> Result<Reply, MetricsError> {
        let nonce = self.caller.next_nonce();
        let frame = build(nonce);
        match self.call_raw(nonce, &frame)? {
            Reply::Rejected(s) => Err(MetricsError::Rejected(s)),
            r => Ok(r),
        }
    }

    /// metricsd's counters.
    pub fn server_stats(&mut self) -> Result<MetricsStats, MetricsError> {
        match self.request(proto::encode_stats)? {
            Reply::Stats(s) => Ok(s),
            _ => Err(MetricsError::BadReply),
        }
    }

    /// The whole exposition text, page by page (at most `max_pages`).
    pub fn scrape(&mut self, max_pages: u32) -> Result<String, MetricsError> {
        let mut text = String::new();
        let mut cursor = 0;
        for _ in 0..max_pages {
            let page: ScrapePage =
                match self.request(|n| proto::encode_scrape(n, cursor, u32::MAX))? {
                    Reply::Scrape(p) => p,
                    _ => return Err(MetricsError::BadReply),
                };
            text.push_str(&page.text);
            // The cursor is a position, not a growing index: only a page
            // that does not move on stops the loop early.
            if !page.more || page.next == cursor {
                break;
            }
            cursor = page.next;
        }
        Ok(text)
    }

    /// Rollup segments of `series` in `tier` (1: 10 s, 2: 60 s).
    pub fn segments(
        &mut self,
        series: SeriesId,
        tier: u8,
    ) -> Result<Vec<WireSegment>, MetricsError> {
        match self.request(|n| proto::encode_segments(n, series.0, tier))? {
            Reply::Segments(v) => Ok(v),
            _ => Err(MetricsError::BadReply),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use alloc::vec;
    use nexus_bounds::ManualClock;
    use nexus_ipc::Frame;

    #[test]
    fn call_errors_keep_their_meaning() {
        assert_eq!(MetricsError::from(CallError::Busy), MetricsError::Busy);
        assert_eq!(
            MetricsError::from(CallError::Timeout),
            MetricsError::Timeout
        );
        assert_eq!(
            MetricsError::from(CallError::Send(SendError::QueueFull)),
            MetricsError::Send(SendError::QueueFull)
        );
    }

    /// An endpoint with a fixed id that sends nowhere (spans only queue).
    struct Ep(ServiceId);
    impl Endpoint for Ep {
        fn id(&self) -> ServiceId {
            self.0
        }
        fn send(&mut self, _: ServiceId, _: &[u8]) -> Result<(), SendError> {
            Ok(())
        }
        fn try_recv(&mut self) -> Option<Frame> {
            None
        }
        fn recv_timeout(&mut self, _: u64) -> Option<Frame> {
            None
        }
    }

    fn client(cfg: MetricsConfig) -> Metrics<Ep, ManualClock> {
        Metrics::new(
            Ep(ServiceId::new(42)),
            ServiceId::new(1),
            ManualClock::new(0),
            cfg,
        )
    }

    /// The trace and span ids of a root and two children.
    fn spans(cfg: MetricsConfig) -> (TraceId, Vec<SpanId>) {
        let m = client(cfg);
        let root = m.span("a");
        let (b, c) = (root.child("b"), root.child("c"));
        let ids = vec![root.id(), b.id(), c.id()];
        let trace = root.trace();
        drop((b, c, root));
        // START and END of each span wait in the queue.
        assert_eq!(m.tracer().sink().len(), 6);
        (trace, ids)
    }

    /// Two boots of the same node with the same endpoint id and the same
    /// spans: the old `sender << 32 | n` ids repeated; these do not.
    #[test]
    fn ids_differ_across_boots_of_one_node_and_endpoint() {
        let boot = |n| MetricsConfig {
            node_id: 7,
            boot: n,
            ..MetricsConfig::default()
        };
        let (t1, s1) = spans(boot(1));
        let (t2, s2) = spans(boot(2));
        assert_ne!(t1, t2);
        assert!(s1.iter().all(|s| !s2.contains(s)), "{s1:?} vs {s2:?}");
        // The same boot again mints the same ids (deterministic seed)...
        assert_eq!(spans(boot(1)), (t1, s1.clone()));
        // ...unless this boot has entropy; another node differs too.
        for cfg in [
            MetricsConfig {
                entropy: Some([9; 32]),
                ..boot(1)
            },
            MetricsConfig {
                node_id: 8,
                ..boot(1)
            },
        ] {
            let (t, s) = spans(cfg);
            assert_ne!(t, t1);
            assert!(s1.iter().all(|x| !s.contains(x)));
        }
    }

    #[test]
    fn a_full_span_queue_drops_and_counts() {
        let m = client(MetricsConfig {
            max_pending_spans: 3,
            ..MetricsConfig::default()
        });
        drop((m.span("a"), m.span("b")));
        assert_eq!(m.tracer().sink().len(), 3);
        assert_eq!(m.stats().spans_dropped, 1);
    }
}
