//! A bounded ring of recently finished spans, for `doctor`-style views
//! and tests: a [`SpanSink`] that keeps the last `capacity` spans' full
//! records ([`SpanRecord`]); the oldest is overwritten (and counted) when
//! it is full. Combine it with another sink through [`crate::tracer::Tee`].

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use spinning_top::Spinlock;

use crate::ids::{SpanContext, SpanId, SpanStatus};
use crate::tracer::{FinishedSpan, SpanEvent, SpanSink};
use crate::tracestate::TraceState;
use crate::wire::{SpanEnd, SpanStart};

/// Default ring capacity.
pub const DEFAULT_CAPACITY: usize = 256;

/// Ring bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecentConfig {
    /// Spans kept (0 keeps none).
    pub capacity: usize,
}

impl Default for RecentConfig {
    fn default() -> Self {
        Self {
            capacity: DEFAULT_CAPACITY,
        }
    }
}

/// An owned copy of a [`FinishedSpan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanRecord {
    /// Trace, span, flags.
    pub context: SpanContext,
    /// The parent span, `None` for a root.
    pub parent: Option<SpanId>,
    /// True if the parent came from another service or node.
    pub remote_parent: bool,
    /// The name.
    pub name: String,
    /// Start, the clock's reading.
    pub start_ns: u64,
    /// End, the clock's reading.
    pub end_ns: u64,
    /// How it ended.
    pub status: SpanStatus,
    /// The error message.
    pub status_message: Option<String>,
    /// Attributes (secret ones redacted).
    pub attrs: Vec<(String, String)>,
    /// Events.
    pub events: Vec<SpanEvent>,
    /// The vendor list it carried.
    pub tracestate: Option<TraceState>,
    /// Attributes dropped past the bound.
    pub dropped_attrs: u32,
    /// Events dropped past the bound.
    pub dropped_events: u32,
}

impl SpanRecord {
    /// Copies a finished span.
    pub fn from_finished(s: &FinishedSpan<'_>) -> Self {
        Self {
            context: s.context,
            parent: s.parent,
            remote_parent: s.remote_parent,
            name: String::from(s.name),
            start_ns: s.start_ns,
            end_ns: s.end_ns,
            status: s.status,
            status_message: s.status_message.map(String::from),
            attrs: s.attrs.to_vec(),
            events: s.events.to_vec(),
            tracestate: s.tracestate.cloned(),
            dropped_attrs: s.dropped_attrs,
            dropped_events: s.dropped_events,
        }
    }

    /// The borrowed view of this record (what a sink is lent).
    pub fn as_finished(&self) -> FinishedSpan<'_> {
        FinishedSpan {
            context: self.context,
            parent: self.parent,
            remote_parent: self.remote_parent,
            name: &self.name,
            start_ns: self.start_ns,
            end_ns: self.end_ns,
            status: self.status,
            status_message: self.status_message.as_deref(),
            attrs: &self.attrs,
            events: &self.events,
            tracestate: self.tracestate.as_ref(),
            dropped_attrs: self.dropped_attrs,
            dropped_events: self.dropped_events,
        }
    }

    /// `end_ns - start_ns` (0 if the clock went back).
    pub fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }
}

/// The ring (shared by `&`; a spin lock guards it).
#[derive(Debug)]
pub struct RecentSpans {
    ring: Spinlock<VecDeque<SpanRecord>>,
    cfg: RecentConfig,
    overwritten: AtomicU64,
}

impl RecentSpans {
    /// An empty ring.
    pub fn new(cfg: RecentConfig) -> Self {
        Self {
            ring: Spinlock::new(VecDeque::new()),
            cfg,
            overwritten: AtomicU64::new(0),
        }
    }

    /// The bound.
    pub fn capacity(&self) -> usize {
        self.cfg.capacity
    }

    /// Adds a record, overwriting the oldest when full.
    pub fn push(&self, r: SpanRecord) {
        if self.cfg.capacity == 0 {
            self.overwritten.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut ring = self.ring.lock();
        while ring.len() >= self.cfg.capacity {
            ring.pop_front();
            self.overwritten.fetch_add(1, Ordering::Relaxed);
        }
        ring.push_back(r);
    }

    /// The `n` most recently finished spans, newest first.
    pub fn recent(&self, n: usize) -> Vec<SpanRecord> {
        self.ring.lock().iter().rev().take(n).cloned().collect()
    }

    /// Spans held now.
    pub fn len(&self) -> usize {
        self.ring.lock().len()
    }

    /// True if none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records pushed out (or not kept, at capacity 0).
    pub fn overwritten(&self) -> u64 {
        self.overwritten.load(Ordering::Relaxed)
    }
}

impl Default for RecentSpans {
    fn default() -> Self {
        Self::new(RecentConfig::default())
    }
}

impl SpanSink for RecentSpans {
    fn start(&self, _: &SpanStart<'_>) {}
    fn end(&self, _: &SpanEnd<'_>) {}
    fn finished(&self, span: &FinishedSpan<'_>) {
        self.push(SpanRecord::from_finished(span));
    }
    fn wants_finished(&self) -> bool {
        true
    }
}
