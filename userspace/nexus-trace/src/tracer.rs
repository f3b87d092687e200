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
use crate::wire::{SpanEnd, SpanStart};

/// Where spans go: a queue to metricsd, a ring buffer, a test recorder.
///
/// Called from the thread that starts or ends the span, so it should be
/// quick and must not block; a sink that cannot take an entry drops and
/// counts it itself.
pub trait SpanSink {
    /// A span began.
    fn start(&self, start: &SpanStart<'_>);
    /// A span ended.
    fn end(&self, end: &SpanEnd<'_>);
}

impl<S: SpanSink + ?Sized> SpanSink for &S {
    fn start(&self, start: &SpanStart<'_>) {
        (**self).start(start);
    }
    fn end(&self, end: &SpanEnd<'_>) {
        (**self).end(end);
    }
}

impl<S: SpanSink + ?Sized> SpanSink for Arc<S> {
    fn start(&self, start: &SpanStart<'_>) {
        (**self).start(start);
    }
    fn end(&self, end: &SpanEnd<'_>) {
        (**self).end(end);
    }
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
/// The most attributes an END entry can carry (its count is one byte).
pub const WIRE_MAX_ATTRS: usize = 255;

/// Tracer bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TracerConfig {
    /// Attributes kept per span (default [`DEFAULT_MAX_ATTRS`]); further
    /// ones are dropped and counted ([`SpanGuard::dropped_attrs`],
    /// [`TracerStats::attrs_dropped`]). Values above [`WIRE_MAX_ATTRS`]
    /// act as [`WIRE_MAX_ATTRS`].
    pub max_attrs: usize,
}

impl Default for TracerConfig {
    fn default() -> Self {
        Self {
            max_attrs: DEFAULT_MAX_ATTRS,
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
}

#[derive(Debug)]
struct Inner<C, S> {
    clock: C,
    sink: S,
    ids: IdGenerator,
    cfg: TracerConfig,
    started: AtomicU64,
    ended: AtomicU64,
    attrs_dropped: AtomicU64,
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
    /// A tracer.
    pub fn new(clock: C, sink: S, ids: IdGenerator, cfg: TracerConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                clock,
                sink,
                ids,
                cfg,
                started: AtomicU64::new(0),
                ended: AtomicU64::new(0),
                attrs_dropped: AtomicU64::new(0),
            }),
        }
    }

    /// A root span of a new trace (sampled).
    pub fn span(&self, name: &str) -> SpanGuard<C, S> {
        let trace = self.inner.ids.next_trace();
        SpanGuard::start(self, name, trace, None, TraceFlags::SAMPLED)
    }

    /// A span continuing `trace` (e.g. a context received from elsewhere),
    /// under `parent` (`None`: a root in that trace). Sampled.
    pub fn span_in(&self, name: &str, trace: TraceId, parent: Option<SpanId>) -> SpanGuard<C, S> {
        SpanGuard::start(self, name, trace, parent, TraceFlags::SAMPLED)
    }

    /// A child of `parent` (e.g. a propagated context): its trace, its
    /// span as parent, its flags.
    pub fn span_from(&self, name: &str, parent: &SpanContext) -> SpanGuard<C, S> {
        SpanGuard::start(self, name, parent.trace, Some(parent.span), parent.flags)
    }

    /// The id generator (to mint ids outside spans).
    pub fn ids(&self) -> &IdGenerator {
        &self.inner.ids
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
            spans_started: self.inner.started.load(Ordering::Relaxed),
            spans_ended: self.inner.ended.load(Ordering::Relaxed),
            attrs_dropped: self.inner.attrs_dropped.load(Ordering::Relaxed),
        }
    }
}

/// A span in progress. Ends when dropped (or at [`SpanGuard::end`]) with
/// the clock's time at that moment, the status and the attributes set so
/// far — exactly once.
#[derive(Debug)]
pub struct SpanGuard<C: Clock, S: SpanSink> {
    tracer: Tracer<C, S>,
    ctx: SpanContext,
    parent: Option<SpanId>,
    status: SpanStatus,
    attrs: Vec<(String, String)>,
    dropped_attrs: u32,
    ended: bool,
}

impl<C: Clock, S: SpanSink> SpanGuard<C, S> {
    fn start(
        tracer: &Tracer<C, S>,
        name: &str,
        trace: TraceId,
        parent: Option<SpanId>,
        flags: TraceFlags,
    ) -> Self {
        let inner = &tracer.inner;
        let span = inner.ids.next_span();
        inner.sink.start(&SpanStart {
            span,
            trace,
            parent,
            start_ns: inner.clock.now_ns(),
            name,
        });
        inner.started.fetch_add(1, Ordering::Relaxed);
        Self {
            tracer: tracer.clone(),
            ctx: SpanContext::new(trace, span, flags),
            parent,
            status: SpanStatus::Unset,
            attrs: Vec::new(),
            dropped_attrs: 0,
            ended: false,
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

    /// Trace, span and flags, to hand to children elsewhere.
    pub fn context(&self) -> SpanContext {
        self.ctx
    }

    /// A child span: same trace and flags, this span as parent.
    pub fn child(&self, name: &str) -> SpanGuard<C, S> {
        SpanGuard::start(
            &self.tracer,
            name,
            self.ctx.trace,
            Some(self.ctx.span),
            self.ctx.flags,
        )
    }

    /// Sets how it ended (the last call wins).
    pub fn set_status(&mut self, s: SpanStatus) {
        self.status = s;
    }

    /// The status so far.
    pub fn status(&self) -> SpanStatus {
        self.status
    }

    /// Adds an attribute, sent with the END entry (the server validates
    /// and redacts). Past [`TracerConfig::max_attrs`] it is dropped and
    /// counted.
    pub fn attr(&mut self, key: &str, value: impl fmt::Display) {
        let max = self.tracer.inner.cfg.max_attrs.min(WIRE_MAX_ATTRS);
        if self.attrs.len() >= max {
            self.dropped_attrs = self.dropped_attrs.saturating_add(1);
            self.tracer
                .inner
                .attrs_dropped
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        use core::fmt::Write as _;
        let mut v = String::new();
        let _ = write!(v, "{value}");
        self.attrs.push((String::from(key), v));
    }

    /// Attributes dropped from this span so far.
    pub fn dropped_attrs(&self) -> u32 {
        self.dropped_attrs
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
        let attrs = core::mem::take(&mut self.attrs);
        inner.sink.end(&SpanEnd {
            span: self.ctx.span,
            end_ns: inner.clock.now_ns(),
            status: self.status.as_u8(),
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
        });
        inner.ended.fetch_add(1, Ordering::Relaxed);
    }
}

impl<C: Clock, S: SpanSink> Drop for SpanGuard<C, S> {
    fn drop(&mut self) {
        self.finish();
    }
}
