//! Spans as guards: a [`Tracer`] mints ids, reads the injected clock and
//! hands START and END entries to a [`SpanSink`]; a [`SpanGuard`] ends
//! exactly once, on [`SpanGuard::end`] or on drop.
//!
//! ```
//! use nexus_bounds::ManualClock;
//! use nexus_trace::{tracer::NullSink, IdGenerator, IdSeed, SpanStatus, Tracer, TracerConfig};
//!
//! let ids = IdGenerator::new(&IdSeed::new(0x1234, 7, 1));
//! let tracer = Tracer::new(ManualClock::new(1_000), NullSink, ids, TracerConfig::default());
//! let root = tracer.span("handle_request"); // new trace; START at 1000 ns
//! let mut db = root.child("db_query");     // same trace, parent = root
//! db.attr("rows", 3);
//! db.set_status(SpanStatus::Ok);
//! assert_eq!(db.context().trace, root.trace());
//! drop(db);                                // END now, with the clock's time
//! assert_eq!(tracer.stats().spans_ended, 1);
//! ```

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use nexus_bounds::Clock;

use crate::gen::IdGenerator;
use crate::ids::{SpanContext, SpanId, SpanStatus, TraceFlags, TraceId};
use crate::propagation::TraceContext;
use crate::redact;
use crate::sampler::Sampler;
use crate::tracestate::TraceState;
use crate::wire::{SpanEnd, SpanStart};

/// Where spans go: a queue to metricsd, a ring buffer, a test recorder.
///
/// Called from the thread that starts or ends the span, so it should be
/// quick and must not block; a sink that cannot take an entry drops and
/// counts it itself.
///
/// Only sampled spans reach a sink.
pub trait SpanSink {
    /// A span began.
    fn start(&self, start: &SpanStart<'_>);
    /// A span ended.
    fn end(&self, end: &SpanEnd<'_>);
    /// A span ended: everything it recorded (called right after
    /// [`SpanSink::end`]). Default: nothing.
    fn finished(&self, _span: &FinishedSpan<'_>) {}
    /// True if [`SpanSink::finished`] reads the span's name; when false
    /// (the default) a guard does not copy its name. Sinks that override
    /// `finished` return true.
    fn wants_finished(&self) -> bool {
        false
    }
}

impl<S: SpanSink + ?Sized> SpanSink for &S {
    fn start(&self, start: &SpanStart<'_>) {
        (**self).start(start);
    }
    fn end(&self, end: &SpanEnd<'_>) {
        (**self).end(end);
    }
    fn finished(&self, span: &FinishedSpan<'_>) {
        (**self).finished(span);
    }
    fn wants_finished(&self) -> bool {
        (**self).wants_finished()
    }
}

impl<S: SpanSink + ?Sized> SpanSink for Arc<S> {
    fn start(&self, start: &SpanStart<'_>) {
        (**self).start(start);
    }
    fn end(&self, end: &SpanEnd<'_>) {
        (**self).end(end);
    }
    fn finished(&self, span: &FinishedSpan<'_>) {
        (**self).finished(span);
    }
    fn wants_finished(&self) -> bool {
        (**self).wants_finished()
    }
}

/// Two sinks: every call goes to `.0`, then to `.1` (e.g. the metricsd
/// queue and a [`crate::recent::RecentSpans`] ring).
#[derive(Debug, Clone, Default)]
pub struct Tee<A, B>(pub A, pub B);

impl<A: SpanSink, B: SpanSink> SpanSink for Tee<A, B> {
    fn start(&self, start: &SpanStart<'_>) {
        self.0.start(start);
        self.1.start(start);
    }
    fn end(&self, end: &SpanEnd<'_>) {
        self.0.end(end);
        self.1.end(end);
    }
    fn finished(&self, span: &FinishedSpan<'_>) {
        self.0.finished(span);
        self.1.finished(span);
    }
    fn wants_finished(&self) -> bool {
        self.0.wants_finished() || self.1.wants_finished()
    }
}

/// A timed, named point in a span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanEvent {
    /// What happened.
    pub name: String,
    /// The clock's reading.
    pub time_ns: u64,
    /// Attributes (bounded and redacted like the span's).
    pub attrs: Vec<(String, String)>,
}

/// Everything an ended span recorded, lent to [`SpanSink::finished`].
#[derive(Debug, Clone, Copy)]
pub struct FinishedSpan<'a> {
    /// Trace, span, flags.
    pub context: SpanContext,
    /// The parent span, `None` for a root.
    pub parent: Option<SpanId>,
    /// True if the parent came from another service or node.
    pub remote_parent: bool,
    /// The name (empty unless the sink [wants](SpanSink::wants_finished)
    /// finished spans).
    pub name: &'a str,
    /// Start, the clock's reading.
    pub start_ns: u64,
    /// End, the clock's reading.
    pub end_ns: u64,
    /// How it ended.
    pub status: SpanStatus,
    /// The error message, if [`SpanGuard::set_error`] was used.
    pub status_message: Option<&'a str>,
    /// Attributes, secret ones redacted.
    pub attrs: &'a [(String, String)],
    /// Events.
    pub events: &'a [SpanEvent],
    /// The vendor list it carries (a remote parent's).
    pub tracestate: Option<&'a TraceState>,
    /// Attributes dropped past the bound (span and its events).
    pub dropped_attrs: u32,
    /// Events dropped past the bound.
    pub dropped_events: u32,
}

/// A sink that discards every span.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NullSink;

impl SpanSink for NullSink {
    fn start(&self, _: &SpanStart<'_>) {}
    fn end(&self, _: &SpanEnd<'_>) {}
}

/// Default of [`TracerConfig::max_attrs`]: metricsd's `spans.max_attrs`.
pub const DEFAULT_MAX_ATTRS: usize = 16;
/// Default of [`TracerConfig::max_events`].
pub const DEFAULT_MAX_EVENTS: usize = 16;
/// The most attributes an END entry can carry (its count is one byte).
pub const WIRE_MAX_ATTRS: usize = 255;

/// Tracer bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TracerConfig {
    /// Attributes kept per span (default [`DEFAULT_MAX_ATTRS`]); further
    /// ones are dropped and counted ([`SpanGuard::dropped_attrs`],
    /// [`TracerStats::attrs_dropped`]). Values above [`WIRE_MAX_ATTRS`]
    /// act as [`WIRE_MAX_ATTRS`]. Also bounds each event's attributes.
    pub max_attrs: usize,
    /// Events kept per span (default [`DEFAULT_MAX_EVENTS`]); further ones
    /// are dropped and counted.
    pub max_events: usize,
    /// Deny words for attribute keys: a matching key's value is replaced
    /// by [`redact::REDACTED`] (the rule of [`redact`], metricsd's).
    /// Default [`redact::DEFAULT_SECRET_SEGMENTS`].
    pub secret_segments: &'static [&'static str],
}

impl Default for TracerConfig {
    fn default() -> Self {
        Self {
            max_attrs: DEFAULT_MAX_ATTRS,
            max_events: DEFAULT_MAX_EVENTS,
            secret_segments: &redact::DEFAULT_SECRET_SEGMENTS,
        }
    }
}

/// What a tracer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TracerStats {
    /// Spans started.
    pub spans_started: u64,
    /// Spans ended.
    pub spans_ended: u64,
    /// Attributes dropped past [`TracerConfig::max_attrs`].
    pub attrs_dropped: u64,
    /// Spans not sampled (never given to the sink; not in
    /// `spans_started`/`spans_ended`).
    pub spans_unsampled: u64,
    /// Events dropped past [`TracerConfig::max_events`].
    pub events_dropped: u64,
    /// Attribute values redacted.
    pub attrs_redacted: u64,
}

#[derive(Debug)]
struct Inner<C, S> {
    clock: C,
    sink: S,
    ids: IdGenerator,
    cfg: TracerConfig,
    sampler: Sampler,
    ended: AtomicU64,
    attrs_dropped: AtomicU64,
    unsampled: AtomicU64,
    events_dropped: AtomicU64,
    redacted: AtomicU64,
}

/// Starts spans: ids from an [`IdGenerator`], times from a [`Clock`],
/// entries to a [`SpanSink`]. Cheap to clone (shared); guards keep it
/// alive.
#[derive(Debug)]
pub struct Tracer<C, S> {
    inner: Arc<Inner<C, S>>,
}

impl<C, S> Clone for Tracer<C, S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C: Clock, S: SpanSink> Tracer<C, S> {
    /// A tracer that samples every root ([`Sampler::always`]): what
    /// nexus-metrics clients use. See [`Tracer::with_sampler`].
    pub fn new(clock: C, sink: S, ids: IdGenerator, cfg: TracerConfig) -> Self {
        Self::with_sampler(clock, sink, ids, cfg, Sampler::always())
    }

    /// A tracer deciding with `sampler` (parent-based ratio, force list).
    pub fn with_sampler(
        clock: C,
        sink: S,
        ids: IdGenerator,
        cfg: TracerConfig,
        sampler: Sampler,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                clock,
                sink,
                ids,
                cfg,
                sampler,
                ended: AtomicU64::new(0),
                attrs_dropped: AtomicU64::new(0),
                unsampled: AtomicU64::new(0),
                events_dropped: AtomicU64::new(0),
                redacted: AtomicU64::new(0),
            }),
        }
    }

    /// A root span of a new trace, sampled as the sampler decides for
    /// its trace id (and name).
    pub fn span(&self, name: &str) -> SpanGuard<C, S> {
        let trace = self.inner.ids.next_trace();
        let flags = self.inner.sampler.decide(name, trace, None);
        SpanGuard::start(self, name, trace, None, flags, Remote::No)
    }

    /// A span continuing `trace` (e.g. a context received from elsewhere),
    /// under `parent` (`None`: a root in that trace). Always sampled.
    pub fn span_in(&self, name: &str, trace: TraceId, parent: Option<SpanId>) -> SpanGuard<C, S> {
        SpanGuard::start(self, name, trace, parent, TraceFlags::SAMPLED, Remote::No)
    }

    /// A child of `parent` (e.g. a propagated context): its trace, its
    /// span as parent, its flags (sampled as the parent, or forced).
    pub fn span_from(&self, name: &str, parent: &SpanContext) -> SpanGuard<C, S> {
        let flags = self
            .inner
            .sampler
            .decide(name, parent.trace, Some(parent.flags));
        SpanGuard::start(
            self,
            name,
            parent.trace,
            Some(parent.span),
            flags,
            Remote::No,
        )
    }

    /// A child of a context extracted from another service or node: its
    /// trace, flags (the remote sampled flag is honoured) and tracestate
    /// are kept, and the span records that its parent is remote.
    pub fn span_remote(&self, name: &str, parent: &TraceContext) -> SpanGuard<C, S> {
        let p = &parent.span;
        let flags = self.inner.sampler.decide(name, p.trace, Some(p.flags));
        let state = if parent.tracestate.is_empty() {
            None
        } else {
            Some(Arc::new(parent.tracestate.clone()))
        };
        SpanGuard::start(self, name, p.trace, Some(p.span), flags, Remote::Yes(state))
    }

    /// A root span of a new trace, or a remote child when `parent` is
    /// `Some` (what an extraction gives).
    pub fn span_or_remote(&self, name: &str, parent: Option<&TraceContext>) -> SpanGuard<C, S> {
        match parent {
            Some(p) => self.span_remote(name, p),
            None => self.span(name),
        }
    }

    /// The sampler.
    pub fn sampler(&self) -> &Sampler {
        &self.inner.sampler
    }

    /// The boot tag of the tracer's id generator (the high half of every
    /// trace id it mints). The generator itself is not lent out: every id
    /// it mints is a span of this tracer, which is how spans started are
    /// counted without a counter of their own.
    pub fn boot_tag(&self) -> u64 {
        self.inner.ids.boot_tag()
    }

    /// The clock.
    pub fn clock(&self) -> &C {
        &self.inner.clock
    }

    /// The sink.
    pub fn sink(&self) -> &S {
        &self.inner.sink
    }

    /// The bounds.
    pub fn config(&self) -> TracerConfig {
        self.inner.cfg
    }

    /// Counters so far.
    pub fn stats(&self) -> TracerStats {
        TracerStats {
            // Every span minted one span id; the unsampled ones are counted.
            spans_started: self
                .inner
                .ids
                .spans_minted()
                .saturating_sub(self.inner.unsampled.load(Ordering::Relaxed)),
            spans_ended: self.inner.ended.load(Ordering::Relaxed),
            attrs_dropped: self.inner.attrs_dropped.load(Ordering::Relaxed),
            spans_unsampled: self.inner.unsampled.load(Ordering::Relaxed),
            events_dropped: self.inner.events_dropped.load(Ordering::Relaxed),
            attrs_redacted: self.inner.redacted.load(Ordering::Relaxed),
        }
    }
}

/// Whether a span's parent came from elsewhere, with its tracestate.
#[derive(Debug)]
enum Remote {
    No,
    Yes(Option<Arc<TraceState>>),
}

/// A span in progress. Ends when dropped (or at [`SpanGuard::end`]) with
/// the clock's time at that moment, the status, attributes and events set
/// so far — exactly once. An unsampled span is a context only: it has ids
/// and flags to propagate, records nothing, reaches no sink, reads no
/// clock and allocates nothing.
#[derive(Debug)]
pub struct SpanGuard<C: Clock, S: SpanSink> {
    tracer: Tracer<C, S>,
    ctx: SpanContext,
    parent: Option<SpanId>,
    remote_parent: bool,
    tracestate: Option<Arc<TraceState>>,
    name: String,
    start_ns: u64,
    status: SpanStatus,
    status_message: Option<String>,
    attrs: Vec<(String, String)>,
    events: Vec<SpanEvent>,
    dropped_attrs: u32,
    dropped_events: u32,
    ended: bool,
}

impl<C: Clock, S: SpanSink> SpanGuard<C, S> {
    fn start(
        tracer: &Tracer<C, S>,
        name: &str,
        trace: TraceId,
        parent: Option<SpanId>,
        flags: TraceFlags,
        remote: Remote,
    ) -> Self {
        let inner = &tracer.inner;
        let span = inner.ids.next_span();
        let (remote_parent, tracestate) = match remote {
            Remote::No => (false, None),
            Remote::Yes(t) => (true, t),
        };
        let sampled = flags.is_sampled();
        let mut start_ns = 0;
        if sampled {
            start_ns = inner.clock.now_ns();
            inner.sink.start(&SpanStart {
                span,
                trace,
                parent,
                start_ns,
                name,
            });
        } else {
            inner.unsampled.fetch_add(1, Ordering::Relaxed);
        }
        Self {
            tracer: tracer.clone(),
            ctx: SpanContext::new(trace, span, flags),
            parent,
            remote_parent,
            tracestate,
            // Copied only for a sink that reads it in `finished` (the
            // copy is the one allocation of a bare sampled span).
            name: if sampled && inner.sink.wants_finished() {
                String::from(name)
            } else {
                String::new()
            },
            start_ns,
            status: SpanStatus::Unset,
            status_message: None,
            attrs: Vec::new(),
            events: Vec::new(),
            dropped_attrs: 0,
            dropped_events: 0,
            ended: !sampled,
        }
    }

    /// This span's id.
    pub fn id(&self) -> SpanId {
        self.ctx.span
    }

    /// The trace it belongs to.
    pub fn trace(&self) -> TraceId {
        self.ctx.trace
    }

    /// Its parent, `None` for a root.
    pub fn parent(&self) -> Option<SpanId> {
        self.parent
    }

    /// True if the parent came from another service or node.
    pub fn has_remote_parent(&self) -> bool {
        self.remote_parent
    }

    /// True if it is recorded (sampled flag set).
    pub fn is_sampled(&self) -> bool {
        self.ctx.is_sampled()
    }

    /// Trace, span and flags, to hand to children elsewhere.
    pub fn context(&self) -> SpanContext {
        self.ctx
    }

    /// The tracestate it carries (a remote parent's), if any.
    pub fn tracestate(&self) -> Option<&TraceState> {
        self.tracestate.as_deref()
    }

    /// Context and tracestate, ready to inject.
    pub fn trace_context(&self) -> TraceContext {
        TraceContext {
            span: self.ctx,
            tracestate: self.tracestate.as_deref().cloned().unwrap_or_default(),
        }
    }

    /// A child span: same trace, flags and tracestate, this span as
    /// parent (sampled as this one, unless its name is forced).
    pub fn child(&self, name: &str) -> SpanGuard<C, S> {
        let flags = self
            .tracer
            .inner
            .sampler
            .decide(name, self.ctx.trace, Some(self.ctx.flags));
        let mut g = SpanGuard::start(
            &self.tracer,
            name,
            self.ctx.trace,
            Some(self.ctx.span),
            flags,
            Remote::No,
        );
        g.tracestate = self.tracestate.clone();
        g
    }

    /// Sets how it ended (the last call wins; clears an error message).
    pub fn set_status(&mut self, s: SpanStatus) {
        self.status = s;
        self.status_message = None;
    }

    /// Sets the status to error with a message.
    pub fn set_error(&mut self, message: &str) {
        self.status = SpanStatus::Error;
        if !self.ended {
            self.status_message = Some(String::from(message));
        }
    }

    /// The status so far.
    pub fn status(&self) -> SpanStatus {
        self.status
    }

    /// The error message so far.
    pub fn status_message(&self) -> Option<&str> {
        self.status_message.as_deref()
    }

    fn max_attrs(&self) -> usize {
        self.tracer.inner.cfg.max_attrs.min(WIRE_MAX_ATTRS)
    }

    fn attr_pair(&self, key: &str, value: &dyn fmt::Display) -> (String, String) {
        let inner = &self.tracer.inner;
        if redact::is_secret_key(key, inner.cfg.secret_segments) {
            inner.redacted.fetch_add(1, Ordering::Relaxed);
            return (String::from(key), String::from(redact::REDACTED));
        }
        use core::fmt::Write as _;
        let mut v = String::new();
        let _ = write!(v, "{value}");
        (String::from(key), v)
    }

    fn drop_attrs(&mut self, n: u32) {
        self.dropped_attrs = self.dropped_attrs.saturating_add(n);
        self.tracer
            .inner
            .attrs_dropped
            .fetch_add(u64::from(n), Ordering::Relaxed);
    }

    /// Adds an attribute, sent with the END entry. A secret-looking key
    /// (see [`redact`]) gets the value `[redacted]`. Past
    /// [`TracerConfig::max_attrs`] it is dropped and counted. Ignored on
    /// an unsampled or ended span.
    pub fn attr(&mut self, key: &str, value: impl fmt::Display) {
        if self.ended {
            return;
        }
        if self.attrs.len() >= self.max_attrs() {
            self.drop_attrs(1);
            return;
        }
        let pair = self.attr_pair(key, &value);
        self.attrs.push(pair);
    }

    /// Attributes so far.
    pub fn attrs(&self) -> &[(String, String)] {
        &self.attrs
    }

    /// Records an event now, without attributes.
    pub fn event(&mut self, name: &str) {
        self.event_with(name, &[]);
    }

    /// Records an event now with attributes (bounded by
    /// [`TracerConfig::max_attrs`], redacted like the span's). Past
    /// [`TracerConfig::max_events`] it is dropped and counted. Ignored on
    /// an unsampled or ended span.
    pub fn event_with(&mut self, name: &str, attrs: &[(&str, &dyn fmt::Display)]) {
        if self.ended {
            return;
        }
        let inner = &self.tracer.inner;
        if self.events.len() >= inner.cfg.max_events {
            self.dropped_events = self.dropped_events.saturating_add(1);
            inner.events_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let time_ns = inner.clock.now_ns();
        let max = self.max_attrs();
        let kept: Vec<(String, String)> = attrs
            .iter()
            .take(max)
            .map(|(k, v)| self.attr_pair(k, *v))
            .collect();
        let over = u32::try_from(attrs.len().saturating_sub(max)).unwrap_or(u32::MAX);
        if over > 0 {
            self.drop_attrs(over);
        }
        self.events.push(SpanEvent {
            name: String::from(name),
            time_ns,
            attrs: kept,
        });
    }

    /// Events so far.
    pub fn events(&self) -> &[SpanEvent] {
        &self.events
    }

    /// Attributes dropped from this span (and its events) so far.
    pub fn dropped_attrs(&self) -> u32 {
        self.dropped_attrs
    }

    /// Events dropped from this span so far.
    pub fn dropped_events(&self) -> u32 {
        self.dropped_events
    }

    /// Ends the span now.
    pub fn end(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        let inner = &self.tracer.inner;
        let end_ns = inner.clock.now_ns();
        inner.sink.end(&SpanEnd {
            span: self.ctx.span,
            end_ns,
            status: self.status.as_u8(),
            attrs: self
                .attrs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
        });
        inner.sink.finished(&FinishedSpan {
            context: self.ctx,
            parent: self.parent,
            remote_parent: self.remote_parent,
            name: &self.name,
            start_ns: self.start_ns,
            end_ns,
            status: self.status,
            status_message: self.status_message.as_deref(),
            attrs: &self.attrs,
            events: &self.events,
            tracestate: self.tracestate.as_deref(),
            dropped_attrs: self.dropped_attrs,
            dropped_events: self.dropped_events,
        });
        inner.ended.fetch_add(1, Ordering::Relaxed);
    }
}

impl<C: Clock, S: SpanSink> Drop for SpanGuard<C, S> {
    fn drop(&mut self) {
        self.finish();
    }
}
