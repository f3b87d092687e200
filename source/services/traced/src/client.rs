//! The sending side: a [`SpanSink`] that keeps a tracer's finished spans
//! for traced, and packs them into SPANS frames.
//!
//! Bounded: at most `capacity` spans wait; one more drops the oldest
//! (counted). A span too large for any frame is dropped (counted). Frames
//! hold at most [`proto::MAX_BATCH_SPANS`] spans and [`proto::MAX_FRAME`]
//! bytes; spans go out in the order they finished.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use nexus_trace::tracer::FinishedSpan;
use nexus_trace::wire::{SpanEnd, SpanStart};
use nexus_trace::{finished, SpanRecord, SpanSink};
use nexus_wire::{Writer, HEADER_LEN};
use spinning_top::Spinlock;

use crate::proto::{self, Request};

/// Counters of a [`SpanBatcher`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatcherStats {
    /// Spans taken from the tracer.
    pub queued: u64,
    /// Spans dropped because `capacity` spans were waiting (oldest first).
    pub dropped_full: u64,
    /// Spans dropped because they do not fit a frame.
    pub dropped_oversized: u64,
    /// Spans packed into frames.
    pub sent: u64,
}

#[derive(Debug)]
struct Inner {
    waiting: VecDeque<SpanRecord>,
    stats: BatcherStats,
}

/// Finished spans waiting for traced (see the module doc).
#[derive(Debug)]
pub struct SpanBatcher {
    capacity: usize,
    inner: Spinlock<Inner>,
}

/// Bytes of a SPANS frame before its spans: header and count.
const FRAME_OVERHEAD: usize = HEADER_LEN + 1;

fn body_len(s: &SpanRecord) -> Option<usize> {
    let mut out = Vec::new();
    let mut w = Writer::new(&mut out);
    finished::emit(&s.as_finished(), &mut w);
    w.finish().ok()
}

impl SpanBatcher {
    /// A batcher holding at most `capacity` waiting spans.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Spinlock::new(Inner {
                waiting: VecDeque::new(),
                stats: BatcherStats::default(),
            }),
        }
    }

    /// Spans waiting.
    pub fn waiting(&self) -> usize {
        self.inner.lock().waiting.len()
    }

    /// Counters.
    pub fn stats(&self) -> BatcherStats {
        self.inner.lock().stats
    }

    /// The next SPANS frame (nonce 0: one-way), or `None` when no span
    /// waits.
    pub fn take_frame(&self) -> Option<Vec<u8>> {
        let mut g = self.inner.lock();
        let mut batch = Vec::new();
        let mut len = FRAME_OVERHEAD;
        while batch.len() < usize::from(proto::MAX_BATCH_SPANS) {
            let Some(s) = g.waiting.front() else { break };
            let Some(n) = body_len(s).filter(|n| FRAME_OVERHEAD + n <= proto::MAX_FRAME) else {
                g.waiting.pop_front();
                g.stats.dropped_oversized += 1;
                continue;
            };
            if len + n > proto::MAX_FRAME {
                break;
            }
            len += n;
            if let Some(s) = g.waiting.pop_front() {
                batch.push(s);
            }
        }
        if batch.is_empty() {
            return None;
        }
        let n = batch.len() as u64;
        match proto::encode_request(0, &Request::Spans(batch)) {
            Ok(f) => {
                g.stats.sent += n;
                Some(f)
            }
            // Sizes were measured above; counted if it ever happens.
            Err(_) => {
                g.stats.dropped_oversized += n;
                None
            }
        }
    }
}

impl SpanSink for SpanBatcher {
    fn start(&self, _: &SpanStart<'_>) {}
    fn end(&self, _: &SpanEnd<'_>) {}
    fn finished(&self, span: &FinishedSpan<'_>) {
        let mut g = self.inner.lock();
        g.stats.queued += 1;
        if self.capacity == 0 {
            g.stats.dropped_full += 1;
            return;
        }
        while g.waiting.len() >= self.capacity {
            g.waiting.pop_front();
            g.stats.dropped_full += 1;
        }
        g.waiting.push_back(SpanRecord::from_finished(span));
    }
    fn wants_finished(&self) -> bool {
        true
    }
}
