//! [`NexusLayer`]: `tracing` events to logd, `tracing` spans to traced.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nexus_bounds::Clock;
use nexus_ipc::{Endpoint, SendError, ServiceId};
use nexus_log::limits::{RecordBudget, GUARANTEED};
use nexus_log::Level;
use nexus_trace::tracer::FinishedSpan;
use nexus_trace::wire::{SpanEnd, SpanStart};
use nexus_trace::{
    IdGenerator, IdSeed, SpanContext, SpanGuard, SpanSink, SpanStatus, Tracer, TracerConfig,
    TracerStats,
};
use traced::client::{BatcherStats, SpanBatcher};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::clock::SystemClock;
use crate::events::{lock, EventStats, LogdOut};
use crate::record::{prefix, Bounded, Collected, Draft, FieldValue};

/// The layer's bounds. Every one is a hard cap; what passes it is cut or
/// dropped and counted in [`LayerStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Per-record limits for logd (default
    /// [`nexus_log::limits::GUARANTEED`], which every valid logd accepts;
    /// give logd's own `[record]` limits to use more of them).
    pub record: RecordBudget,
    /// Fields kept per span (default 32); more are dropped and counted
    /// (`span_fields_dropped`).
    pub span_fields: usize,
    /// Longest span attribute value and error message in bytes (default
    /// 256); longer ones are cut and counted (`attr_values_truncated`).
    pub attr_value_len: usize,
    /// Finished spans waiting for traced (default 1024); one more drops
    /// the oldest (`batcher.dropped_full`).
    pub span_queue: usize,
    /// Waiting spans that trigger a SPANS send (default 32, the most a
    /// frame holds). A closing root span also sends, and so does
    /// [`NexusHandle::flush`] and dropping the layer.
    pub batch_spans: usize,
    /// The tracer's bounds: attributes per span (default here 32) and
    /// the secret key words whose values are redacted (nexus-trace's
    /// default list; the same list redacts logd field values).
    pub tracer: TracerConfig,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            record: GUARANTEED,
            span_fields: 32,
            attr_value_len: 256,
            span_queue: 1024,
            batch_spans: usize::from(traced::proto::MAX_BATCH_SPANS),
            tracer: TracerConfig {
                max_attrs: 32,
                ..TracerConfig::default()
            },
        }
    }
}

/// The layer's counters (see `docs/observability/tracing-layer.md`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Events to logd.
    pub events: EventStats,
    /// Spans below the minimum level (not recorded; their children
    /// attach to the nearest recorded ancestor).
    pub spans_filtered: u64,
    /// Span fields dropped past [`Bounds::span_fields`].
    pub span_fields_dropped: u64,
    /// Span attribute values and error messages cut to
    /// [`Bounds::attr_value_len`].
    pub attr_values_truncated: u64,
    /// The tracer's counters (spans started and ended, attributes dropped
    /// past the bound, attribute values redacted).
    pub tracer: TracerStats,
    /// The span queue's counters (queued, dropped when full or oversized,
    /// packed into frames). All zero without traced.
    pub batcher: BatcherStats,
    /// SPANS frames handed to the transport.
    pub span_frames_sent: u64,
    /// Spans in frames refused because traced's queue was full.
    pub spans_dropped_queue_full: u64,
    /// Spans in frames refused for another transport error.
    pub spans_dropped_transport: u64,
}

/// The tracer's sink: the traced queue, or nothing (ids only).
#[derive(Debug, Clone)]
pub(crate) struct SpanOut(Option<Arc<SpanBatcher>>);

impl SpanSink for SpanOut {
    fn start(&self, _: &SpanStart<'_>) {}
    fn end(&self, _: &SpanEnd<'_>) {}
    fn finished(&self, span: &FinishedSpan<'_>) {
        if let Some(b) = &self.0 {
            b.finished(span);
        }
    }
    fn wants_finished(&self) -> bool {
        self.0.is_some()
    }
}

#[derive(Debug)]
struct TracedOut<E> {
    ep: Mutex<E>,
    to: ServiceId,
    batcher: Arc<SpanBatcher>,
}

#[derive(Debug, Default)]
struct SpanCounters {
    filtered: AtomicU64,
    fields_dropped: AtomicU64,
    values_truncated: AtomicU64,
    frames_sent: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_transport: AtomicU64,
}

#[derive(Debug)]
struct Shared<E, C: Clock> {
    logd: LogdOut<E>,
    traced: Option<TracedOut<E>>,
    tracer: Tracer<C, SpanOut>,
    bounds: Bounds,
    min_span_level: Level,
    c: SpanCounters,
}

impl<E: Endpoint, C: Clock> Shared<E, C> {
    fn flush(&self) {
        let Some(t) = &self.traced else {
            return;
        };
        let mut ep = lock(&t.ep);
        // Each frame takes at least one span off the bounded queue, so
        // this ends; a refused frame stops the flush (the rest waits).
        while let Some(frame) = t.batcher.take_frame() {
            let n = u64::from(frame.get(nexus_wire::HEADER_LEN).copied().unwrap_or(0));
            let counter = match ep.send(t.to, &frame) {
                Ok(()) => {
                    self.c.frames_sent.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Err(SendError::QueueFull) => &self.c.dropped_queue_full,
                Err(_) => &self.c.dropped_transport,
            };
            counter.fetch_add(n, Ordering::Relaxed);
            break;
        }
    }

    fn stats(&self) -> LayerStats {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LayerStats {
            events: self.logd.stats(),
            spans_filtered: r(&self.c.filtered),
            span_fields_dropped: r(&self.c.fields_dropped),
            attr_values_truncated: r(&self.c.values_truncated),
            tracer: self.tracer.stats(),
            batcher: self
                .traced
                .as_ref()
                .map(|t| t.batcher.stats())
                .unwrap_or_default(),
            span_frames_sent: r(&self.c.frames_sent),
            spans_dropped_queue_full: r(&self.c.dropped_queue_full),
            spans_dropped_transport: r(&self.c.dropped_transport),
        }
    }
}

/// A `tracing_subscriber` layer sending events to logd and spans to
/// traced. See the crate docs for the mapping.
pub struct NexusLayer<E: Endpoint, C: Clock = SystemClock> {
    shared: Arc<Shared<E, C>>,
}

impl<E: Endpoint + fmt::Debug, C: Clock + fmt::Debug> fmt::Debug for NexusLayer<E, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NexusLayer")
            .field("stats", &self.shared.stats())
            .finish_non_exhaustive()
    }
}

/// Reads the counters of a layer (and flushes its spans) after the layer
/// was given to a subscriber.
pub struct NexusHandle<E: Endpoint, C: Clock = SystemClock> {
    shared: Arc<Shared<E, C>>,
}

impl<E: Endpoint, C: Clock> Clone for NexusHandle<E, C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<E: Endpoint + fmt::Debug, C: Clock + fmt::Debug> fmt::Debug for NexusHandle<E, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NexusHandle")
            .field("stats", &self.shared.stats())
            .finish_non_exhaustive()
    }
}

impl<E: Endpoint, C: Clock> NexusHandle<E, C> {
    /// Counters so far.
    pub fn stats(&self) -> LayerStats {
        self.shared.stats()
    }

    /// Sends every waiting span to traced now (one-way SPANS frames).
    pub fn flush(&self) {
        self.shared.flush();
    }

    /// The id logd and traced see as the sender of the layer's records.
    pub fn logd_sender(&self) -> ServiceId {
        self.shared.logd.sender()
    }
}

impl<E: Endpoint, C: Clock> Drop for NexusLayer<E, C> {
    fn drop(&mut self) {
        self.shared.flush();
    }
}

/// Builds a [`NexusLayer`]: `NexusLayer::builder(ep, logd_id)`.
pub struct Builder<E: Endpoint, C: Clock = SystemClock> {
    logd_ep: E,
    logd: ServiceId,
    traced: Option<(E, ServiceId)>,
    min_level: Level,
    min_span_level: Level,
    clock: C,
    seed: Option<IdSeed>,
    bounds: Bounds,
}

impl<E: Endpoint + fmt::Debug, C: Clock + fmt::Debug> fmt::Debug for Builder<E, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("logd", &self.logd)
            .field("traced", &self.traced.as_ref().map(|t| t.1))
            .field("min_level", &self.min_level)
            .field("min_span_level", &self.min_span_level)
            .field("seed", &self.seed)
            .field("bounds", &self.bounds)
            .finish_non_exhaustive()
    }
}

impl<E: Endpoint> NexusLayer<E, SystemClock> {
    /// A builder sending events from `logd_ep` to the logd endpoint
    /// `logd`. Defaults: minimum level `Info` for events, `Trace` for
    /// spans, no traced (spans then only give events their ids), the
    /// [`SystemClock`], a seed from the process, [`Bounds::default`].
    pub fn builder(logd_ep: E, logd: ServiceId) -> Builder<E, SystemClock> {
        Builder {
            logd_ep,
            logd,
            traced: None,
            min_level: Level::Info,
            min_span_level: Level::Trace,
            clock: SystemClock::default(),
            seed: None,
            bounds: Bounds::default(),
        }
    }
}

impl<E: Endpoint, C: Clock> Builder<E, C> {
    /// Also send finished spans from `ep` to the traced endpoint `traced`.
    pub fn traced(mut self, ep: E, traced: ServiceId) -> Self {
        self.traced = Some((ep, traced));
        self
    }

    /// Events below `level` are not sent (counted as `filtered`).
    pub fn min_level(mut self, level: Level) -> Self {
        self.min_level = level;
        self
    }

    /// Spans below `level` are not recorded (counted as
    /// `spans_filtered`).
    pub fn min_span_level(mut self, level: Level) -> Self {
        self.min_span_level = level;
        self
    }

    /// The clock that times spans (tests: a `ManualClock`).
    pub fn clock<C2: Clock>(self, clock: C2) -> Builder<E, C2> {
        Builder {
            logd_ep: self.logd_ep,
            logd: self.logd,
            traced: self.traced,
            min_level: self.min_level,
            min_span_level: self.min_span_level,
            clock,
            seed: self.seed,
            bounds: self.bounds,
        }
    }

    /// The id generator's seed (tests: a fixed one, for known ids).
    pub fn seed(mut self, seed: IdSeed) -> Self {
        self.seed = Some(seed);
        self
    }

    /// All bounds at once.
    pub fn bounds(mut self, bounds: Bounds) -> Self {
        self.bounds = bounds;
        self
    }

    /// The per-record limits for logd (see [`Bounds::record`]).
    pub fn record_budget(mut self, budget: RecordBudget) -> Self {
        self.bounds.record = budget;
        self
    }

    /// The layer.
    pub fn build(self) -> NexusLayer<E, C> {
        let seed = self.seed.unwrap_or_else(|| default_seed(self.logd_ep.id()));
        let b = self.bounds;
        let traced = self.traced.map(|(ep, to)| TracedOut {
            ep: Mutex::new(ep),
            to,
            batcher: Arc::new(SpanBatcher::new(b.span_queue)),
        });
        let sink = SpanOut(traced.as_ref().map(|t| Arc::clone(&t.batcher)));
        let tracer = Tracer::new(self.clock, sink, IdGenerator::new(&seed), b.tracer);
        NexusLayer {
            shared: Arc::new(Shared {
                logd: LogdOut::new(
                    self.logd_ep,
                    self.logd,
                    self.min_level,
                    b.record,
                    b.tracer.secret_segments,
                ),
                traced,
                tracer,
                bounds: b,
                min_span_level: self.min_span_level,
                c: SpanCounters::default(),
            }),
        }
    }
}

/// A seed that differs per process and per start: the endpoint id, the
/// process id, the start time, and 32 bytes from std's randomly keyed
/// hasher.
fn default_seed(id: ServiceId) -> IdSeed {
    use std::hash::{BuildHasher, Hasher};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let mut entropy = [0u8; 32];
    let state = std::collections::hash_map::RandomState::new();
    for (i, chunk) in entropy.chunks_mut(8).enumerate() {
        let mut h = state.build_hasher();
        h.write_u64(now);
        h.write_usize(i);
        h.write_u32(std::process::id());
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    IdSeed::new(u64::from(std::process::id()), u64::from(id.get()), now).with_entropy(entropy)
}

impl<E: Endpoint, C: Clock> NexusLayer<E, C> {
    /// A handle for counters and flushing, to keep before giving the
    /// layer to a subscriber.
    pub fn handle(&self) -> NexusHandle<E, C> {
        NexusHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> LayerStats {
        self.shared.stats()
    }
}

/// `tracing`'s level as logd's (the five levels map one to one).
pub fn level_of(l: &tracing::Level) -> Level {
    match *l {
        tracing::Level::TRACE => Level::Trace,
        tracing::Level::DEBUG => Level::Debug,
        tracing::Level::INFO => Level::Info,
        tracing::Level::WARN => Level::Warn,
        tracing::Level::ERROR => Level::Error,
    }
}

/// Collects `tracing` field values, strings bounded to `cap` bytes while
/// formatting (the exact cut, and its count, happen when the record or
/// attribute is built). The `message` field goes to `message` when asked.
struct Visitor<'a> {
    fields: &'a mut Collected,
    message: Option<&'a mut String>,
    cap: usize,
}

impl Visitor<'_> {
    fn put(&mut self, field: &Field, v: FieldValue) {
        self.fields.put(Cow::Borrowed(field.name()), v);
    }
}

impl Visit for Visitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, FieldValue::F64(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, FieldValue::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, FieldValue::U64(value));
    }
    fn record_i128(&mut self, field: &Field, value: i128) {
        self.put(field, FieldValue::from_i128(value));
    }
    fn record_u128(&mut self, field: &Field, value: u128) {
        self.put(field, FieldValue::from_u128(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, FieldValue::Bool(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            if let Some(m) = self.message.as_deref_mut() {
                *m = prefix(value, self.cap).to_string();
                return;
            }
        }
        self.put(field, FieldValue::Str(prefix(value, self.cap).to_string()));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let (s, _) = Bounded::display(self.cap, &value);
        self.put(field, FieldValue::Str(s));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `format_args!` (the message) and `%x` fields format through
        // `Debug` as their `Display` text.
        let (s, _) = Bounded::debug(self.cap, value);
        if field.name() == "message" {
            if let Some(m) = self.message.as_deref_mut() {
                *m = s;
                return;
            }
        }
        self.put(field, FieldValue::Str(s));
    }
}

/// A collection cap above `len`, so the builder still sees (and counts)
/// the overflow, while formatting stays bounded.
fn collect_cap(len: usize) -> usize {
    len.saturating_mul(2).saturating_add(8)
}

/// What the layer keeps in a recorded span's extensions.
struct SpanData<C: Clock> {
    guard: SpanGuard<C, SpanOut>,
    ctx: SpanContext,
    fields: Collected,
}

impl<S, E, C> Layer<S> for NexusLayer<E, C>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    E: Endpoint + Send + 'static,
    C: Clock + Send + Sync + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let sh = &*self.shared;
        let Some(span) = ctx.span(id) else {
            return;
        };
        let meta = attrs.metadata();
        if level_of(meta.level()) < sh.min_span_level {
            sh.c.filtered.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let parent = span
            .scope()
            .skip(1)
            .find_map(|s| s.extensions().get::<SpanData<C>>().map(|d| d.ctx));
        let mut fields = Collected::new(sh.bounds.span_fields);
        let cap = collect_cap(sh.bounds.attr_value_len.max(sh.bounds.record.value_len));
        attrs.record(&mut Visitor {
            fields: &mut fields,
            message: None,
            cap,
        });
        let guard = match parent {
            Some(p) => sh.tracer.span_from(meta.name(), &p),
            None => sh.tracer.span(meta.name()),
        };
        let ctx = guard.context();
        span.extensions_mut()
            .insert(SpanData { guard, ctx, fields });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let sh = &*self.shared;
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut ext = span.extensions_mut();
        if let Some(d) = ext.get_mut::<SpanData<C>>() {
            let cap = collect_cap(sh.bounds.attr_value_len.max(sh.bounds.record.value_len));
            values.record(&mut Visitor {
                fields: &mut d.fields,
                message: None,
                cap,
            });
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let sh = &*self.shared;
        let meta = event.metadata();
        let level = level_of(meta.level());
        if !sh.logd.admit(level) {
            return;
        }
        let budget = *sh.logd.budget();
        let mut own = Collected::new(budget.fields);
        let mut message = String::new();
        event.record(&mut Visitor {
            fields: &mut own,
            message: Some(&mut message),
            cap: collect_cap(budget.value_len.max(budget.message_len)),
        });
        // The event's spans, innermost first; their extensions stay
        // read-locked while the record is built.
        let spans: Vec<_> = ctx
            .event_scope(event)
            .map(|scope| scope.collect())
            .unwrap_or_default();
        let exts: Vec<_> = spans.iter().map(|s| s.extensions()).collect();
        let data: Vec<&SpanData<C>> = exts.iter().filter_map(|e| e.get::<SpanData<C>>()).collect();
        let ids = data
            .first()
            .map(|d| (d.ctx.trace.to_string(), d.ctx.span.to_string()));
        let mut groups = vec![&own];
        groups.extend(data.iter().map(|d| &d.fields));
        sh.logd.send(&Draft {
            level,
            target: meta.target(),
            key: meta.name(),
            message: &message,
            ids,
            groups,
            pre_dropped: u64::from(own.dropped),
        });
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let sh = &*self.shared;
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let Some(data) = span.extensions_mut().remove::<SpanData<C>>() else {
            return;
        };
        let SpanData {
            mut guard, fields, ..
        } = data;
        let max = sh.bounds.attr_value_len;
        let mut cut = 0u64;
        let mut bounded = |v: &FieldValue| {
            let t = v.text();
            if t.len() > max {
                cut += 1;
                prefix(&t, max).to_string()
            } else {
                t
            }
        };
        for (name, v) in &fields.fields {
            let t = bounded(v);
            guard.attr(name, t);
        }
        // Status: an `error` field marks the span failed — `error = true`
        // without a message, any other value (but `false`) as the message.
        match fields.get("error") {
            None | Some(FieldValue::Bool(false)) => {}
            Some(FieldValue::Bool(true)) => guard.set_status(SpanStatus::Error),
            Some(v) => {
                let m = bounded(v);
                guard.set_error(&m);
            }
        }
        sh.c.values_truncated.fetch_add(cut, Ordering::Relaxed);
        sh.c.fields_dropped
            .fetch_add(u64::from(fields.dropped), Ordering::Relaxed);
        let root = guard.parent().is_none();
        drop(guard);
        let waiting = sh.traced.as_ref().map_or(0, |t| t.batcher.waiting());
        if waiting > 0 && (root || waiting >= sh.bounds.batch_spans) {
            sh.flush();
        }
    }
}
