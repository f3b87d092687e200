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
use nexus_trace::{SpanRecord, SpanSink};
use spinning_top::Spinlock;

use crate::proto::SpansFrame;

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
    /// waits. Each span is encoded once, straight into the frame.
    pub fn take_frame(&self) -> Option<Vec<u8>> {
        let mut g = self.inner.lock();
        let mut frame = SpansFrame::new(0);
        while let Some(s) = g.waiting.front() {
            match frame.push(s) {
                Ok(true) => {
                    g.waiting.pop_front();
                    g.stats.sent += 1;
                }
                Ok(false) => break,
                Err(_) => {
                    g.waiting.pop_front();
                    g.stats.dropped_oversized += 1;
                }
            }
        }
        frame.finish()
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
