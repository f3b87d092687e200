//! Finished spans grouped by trace id.
//!
//! Invariants (each tested):
//! * at most `max_active_traces` traces are held; one more evicts the
//!   least recently touched, which is completed early;
//! * at most `max_spans_per_trace` spans are held per trace; the rest are
//!   dropped and counted;
//! * a trace untouched for `idle_timeout_ns` is completed by
//!   [`Correlator::tick`], oldest first, at most `max_completed_per_tick`
//!   a tick;
//! * a span of a trace completed recently (among the last
//!   `remembered_completed`) opens a *continuation*: a new entry marked so,
//!   completed like any other, and counted;
//! * a span id seen twice in one trace is dropped and counted.
//!
//! Cost: ingest is O(log active + spans of that trace); a tick is
//! O(completed · log active), whatever the table holds.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec::Vec;

use nexus_trace::{SpanRecord, TraceId};

use crate::config::Config;
use crate::offset::Estimate;

/// Where a span came from, taken from the transport (the IPC sender or
/// the bus session's peer device), never from the span's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    /// The node's device id (this node's own for local spans).
    pub node: u64,
    /// The sending service's id on that node.
    pub service: u32,
}

/// A span as the collector holds it: its record, where it came from, and
/// its times on the collector's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracedSpan {
    /// The span as recorded by its tracer (times on its node's clock).
    pub record: SpanRecord,
    /// Node and service, from the transport.
    pub origin: Origin,
    /// The clock offset applied to a remote span (`None`: a local span,
    /// times taken as they are).
    pub offset: Option<Estimate>,
}

impl TracedSpan {
    /// A span from this node: its times are already on our clock.
    pub fn local(record: SpanRecord, origin: Origin) -> Self {
        Self {
            record,
            origin,
            offset: None,
        }
    }

    /// A span from a peer whose clock is `offset` from ours.
    pub fn remote(record: SpanRecord, origin: Origin, offset: Estimate) -> Self {
        Self {
            record,
            origin,
            offset: Some(offset),
        }
    }

    /// Start on the collector's clock.
    pub fn aligned_start_ns(&self) -> u64 {
        match &self.offset {
            Some(o) => o.to_local(self.record.start_ns),
            None => self.record.start_ns,
        }
    }

    /// End on the collector's clock.
    pub fn aligned_end_ns(&self) -> u64 {
        match &self.offset {
            Some(o) => o.to_local(self.record.end_ns),
            None => self.record.end_ns,
        }
    }

    /// The trace it belongs to.
    pub fn trace(&self) -> TraceId {
        self.record.context.trace
    }
}

/// What [`Correlator::ingest`] did with a span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingest {
    /// Added to a trace being assembled.
    Added,
    /// Started a new trace.
    NewTrace,
    /// Started a continuation of a trace already completed.
    Continuation,
    /// Dropped: its trace holds `max_spans_per_trace` spans already.
    DroppedTraceFull,
    /// Dropped: its span id is in its trace already.
    DroppedDuplicate,
}

/// Why a trace was completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// No new span for `idle_timeout_ns`.
    Idle,
    /// Evicted to make room for a newer trace.
    Evicted,
}

impl Completion {
    /// Its name in the JSONL form.
    pub const fn as_str(self) -> &'static str {
        match self {
            Completion::Idle => "idle",
            Completion::Evicted => "evicted",
        }
    }
}

/// A completed trace: its spans ordered by aligned start (then span id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    /// The trace id.
    pub trace: TraceId,
    /// Spans, ordered by aligned start.
    pub spans: Vec<TracedSpan>,
    /// True if an earlier part of this trace was completed before.
    pub continuation: bool,
    /// Spans dropped because the trace was full.
    pub dropped_spans: u32,
    /// Why it was completed.
    pub completion: Completion,
}

/// Counters, for STATS and self-metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Spans accepted into a trace.
    pub spans_added: u64,
    /// Spans dropped because their trace was full.
    pub spans_dropped_full: u64,
    /// Spans dropped as duplicates.
    pub spans_dropped_duplicate: u64,
    /// Traces started (continuations included).
    pub traces_started: u64,
    /// Continuations started.
    pub continuations: u64,
    /// Traces completed after their idle timeout.
    pub completed_idle: u64,
    /// Traces completed early by eviction.
    pub completed_evicted: u64,
}

#[derive(Debug)]
struct Active {
    spans: Vec<TracedSpan>,
    last_ns: u64,
    /// Its key in `Correlator::by_touch`.
    touch: u64,
    continuation: bool,
    dropped_spans: u32,
}

/// Groups finished spans by trace id, within [`Config`]'s bounds.
#[derive(Debug)]
pub struct Correlator {
    cfg: Config,
    active: BTreeMap<TraceId, Active>,
    /// Touch sequence → trace: the first entry is the least recently
    /// touched trace (the eviction victim and the first to go idle).
    by_touch: BTreeMap<u64, TraceId>,
    next_touch: u64,
    /// Recently completed ids (set and order), for continuations.
    completed_ids: BTreeSet<TraceId>,
    completed_order: VecDeque<TraceId>,
    stats: Stats,
}

impl Correlator {
    /// An empty correlator with `cfg`'s bounds.
    pub fn new(cfg: Config) -> Self {
        Self {
            cfg,
            active: BTreeMap::new(),
            by_touch: BTreeMap::new(),
            next_touch: 0,
            completed_ids: BTreeSet::new(),
            completed_order: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// True if `trace` was completed recently (remembered) and is not
    /// being assembled again: a replayed span of it would only open a
    /// continuation.
    pub fn completed_recently(&self, trace: TraceId) -> bool {
        self.completed_ids.contains(&trace) && !self.active.contains_key(&trace)
    }

    /// The bounds.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Traces being assembled.
    pub fn active(&self) -> usize {
        self.active.len()
    }

    /// Adds a finished span at collector time `now_ns`. When the table is
    /// full, a new trace evicts the least recently touched one, returned
    /// completed ([`Completion::Evicted`]).
    pub fn ingest(&mut self, now_ns: u64, span: TracedSpan) -> (Ingest, Option<Completed>) {
        let trace = span.trace();
        let touch = self.next_touch;
        self.next_touch += 1;
        if let Some(a) = self.active.get_mut(&trace) {
            self.by_touch.remove(&a.touch);
            self.by_touch.insert(touch, trace);
            a.touch = touch;
            a.last_ns = now_ns;
            let id = span.record.context.span;
            let outcome = if a.spans.iter().any(|s| s.record.context.span == id) {
                self.stats.spans_dropped_duplicate += 1;
                Ingest::DroppedDuplicate
            } else if a.spans.len() >= self.cfg.max_spans_per_trace {
                a.dropped_spans = a.dropped_spans.saturating_add(1);
                self.stats.spans_dropped_full += 1;
                Ingest::DroppedTraceFull
            } else {
                a.spans.push(span);
                self.stats.spans_added += 1;
                Ingest::Added
            };
            return (outcome, None);
        }
        if self.cfg.max_active_traces == 0 || self.cfg.max_spans_per_trace == 0 {
            self.stats.spans_dropped_full += 1;
            return (Ingest::DroppedTraceFull, None);
        }
        let evicted = if self.active.len() >= self.cfg.max_active_traces {
            self.pop_oldest(Completion::Evicted)
        } else {
            None
        };
        let continuation = self.completed_ids.contains(&trace);
        self.active.insert(
            trace,
            Active {
                spans: alloc::vec![span],
                last_ns: now_ns,
                touch,
                continuation,
                dropped_spans: 0,
            },
        );
        self.by_touch.insert(touch, trace);
        self.stats.spans_added += 1;
        self.stats.traces_started += 1;
        let outcome = if continuation {
            self.stats.continuations += 1;
            Ingest::Continuation
        } else {
            Ingest::NewTrace
        };
        (outcome, evicted)
    }

    /// Completes the traces idle for `idle_timeout_ns` at `now_ns`, least
    /// recently touched first, at most `max_completed_per_tick`, into
    /// `out`. Returns how many.
    pub fn tick(&mut self, now_ns: u64, out: &mut Vec<Completed>) -> usize {
        let mut n = 0;
        while n < self.cfg.max_completed_per_tick {
            let idle = match self.by_touch.first_key_value() {
                Some((_, t)) => self
                    .active
                    .get(t)
                    .is_some_and(|a| now_ns.saturating_sub(a.last_ns) >= self.cfg.idle_timeout_ns),
                None => false,
            };
            if !idle {
                break;
            }
            match self.pop_oldest(Completion::Idle) {
                Some(c) => out.push(c),
                None => break,
            }
            n += 1;
        }
        n
    }

    /// Completes every trace now (e.g. at shutdown), oldest first.
    pub fn flush(&mut self, out: &mut Vec<Completed>) {
        while let Some(c) = self.pop_oldest(Completion::Idle) {
            out.push(c);
        }
    }

    fn pop_oldest(&mut self, why: Completion) -> Option<Completed> {
        let (_, trace) = self.by_touch.pop_first()?;
        let a = self.active.remove(&trace)?;
        match why {
            Completion::Idle => self.stats.completed_idle += 1,
            Completion::Evicted => self.stats.completed_evicted += 1,
        }
        self.remember(trace);
        let mut spans = a.spans;
        spans.sort_by_key(|s| (s.aligned_start_ns(), s.record.context.span));
        Some(Completed {
            trace,
            spans,
            continuation: a.continuation,
            dropped_spans: a.dropped_spans,
            completion: why,
        })
    }

    fn remember(&mut self, trace: TraceId) {
        if self.cfg.remembered_completed == 0 {
            return;
        }
        if self.completed_ids.insert(trace) {
            self.completed_order.push_back(trace);
        }
        while self.completed_order.len() > self.cfg.remembered_completed {
            if let Some(old) = self.completed_order.pop_front() {
                self.completed_ids.remove(&old);
            }
        }
    }
}
