//! Where collected data goes: segments per data kind, rotated on a size
//! budget and on a time budget, and dropped by retention — all decided by
//! a pure [`Rotator`] from the bytes written and the injected time, so a
//! rerun with the same inputs makes the same segments. The storage itself
//! (files on the host, a state-store region on the OS) only follows the
//! decisions ([`Storage`]).

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use nexus_wire::byte_enum;

byte_enum! {
    /// The kinds of data the collector keeps, each with its own segments
    /// and retention.
    pub enum Kind {
        /// Log records (JSON lines).
        Logs = 1 => "logs",
        /// Metric samples at full resolution.
        Metrics = 2 => "metrics",
        /// Metric samples downsampled (one per series per minute).
        MetricsDownsampled = 3 => "metrics_1m",
        /// Traces (JSON lines, one per trace).
        Traces = 4 => "traces",
    }
}

/// Budgets of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// A segment is closed before it would pass this many bytes.
    pub segment_bytes: u64,
    /// A segment is closed once it is this old (seconds).
    pub segment_secs: u64,
    /// Segments older than this are dropped (seconds; 0: never by age).
    pub retention_secs: u64,
    /// At most this many bytes are kept across segments; the oldest
    /// segments go first.
    pub max_bytes: u64,
}

/// A closed or open segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Its number, increasing per kind from 1.
    pub index: u64,
    /// When its first line was written.
    pub start_ns: u64,
    /// When its last line was written.
    pub end_ns: u64,
    /// Bytes in it.
    pub bytes: u64,
}

/// What the storage must do before writing a line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Open a new segment with this index (the previous one is closed).
    pub open: Option<u64>,
    /// Delete these segments (oldest first).
    pub delete: Vec<u64>,
}

/// Rotation and retention of one kind.
#[derive(Debug, Clone)]
pub struct Rotator {
    budget: Budget,
    segments: VecDeque<Segment>,
    next_index: u64,
    /// Lines refused because one line is larger than a whole segment.
    pub oversized: u64,
    /// Segments deleted by retention or the byte budget.
    pub dropped_segments: u64,
}

impl Rotator {
    /// A rotator with no segments yet.
    pub fn new(budget: Budget) -> Self {
        Self {
            budget,
            segments: VecDeque::new(),
            next_index: 1,
            oversized: 0,
            dropped_segments: 0,
        }
    }

    /// Resumes after a restart with the segments found in storage.
    pub fn resume(budget: Budget, found: impl IntoIterator<Item = Segment>) -> Self {
        let mut segments: Vec<Segment> = found.into_iter().collect();
        segments.sort_by_key(|s| s.index);
        let next_index = segments.last().map_or(1, |s| s.index.saturating_add(1));
        Self {
            budget,
            segments: segments.into(),
            next_index,
            oversized: 0,
            dropped_segments: 0,
        }
    }

    /// The segments, oldest first (the last one is open).
    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments.iter()
    }

    /// Bytes kept.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Plans writing a line of `len` bytes at `now_ns`, and records it.
    /// `None`: the line is larger than a segment and is refused (counted).
    pub fn write(&mut self, now_ns: u64, len: u64) -> Option<Plan> {
        let b = self.budget;
        if len > b.segment_bytes {
            self.oversized += 1;
            return None;
        }
        let mut plan = Plan::default();
        let rotate = match self.segments.back() {
            None => true,
            Some(s) => {
                s.bytes.saturating_add(len) > b.segment_bytes
                    || now_ns.saturating_sub(s.start_ns)
                        >= b.segment_secs.saturating_mul(1_000_000_000)
            }
        };
        if rotate {
            let index = self.next_index;
            self.next_index += 1;
            self.segments.push_back(Segment {
                index,
                start_ns: now_ns,
                end_ns: now_ns,
                bytes: 0,
            });
            plan.open = Some(index);
        }
        if let Some(s) = self.segments.back_mut() {
            s.bytes = s.bytes.saturating_add(len);
            s.end_ns = now_ns;
        }
        plan.delete = self.expire(now_ns);
        Some(plan)
    }

    /// Drops closed segments past retention or past the byte budget.
    pub fn expire(&mut self, now_ns: u64) -> Vec<u64> {
        let b = self.budget;
        let mut gone = Vec::new();
        while self.segments.len() > 1 {
            let Some(oldest) = self.segments.front() else {
                break;
            };
            let too_old = b.retention_secs > 0
                && now_ns.saturating_sub(oldest.end_ns)
                    >= b.retention_secs.saturating_mul(1_000_000_000);
            let too_big = self.bytes() > b.max_bytes;
            if !(too_old || too_big) {
                break;
            }
            gone.push(oldest.index);
            self.segments.pop_front();
            self.dropped_segments += 1;
        }
        gone
    }
}

/// Storage that follows a [`Rotator`]'s plans.
pub trait Storage {
    /// Opens segment `index` of `kind` (closing the current one).
    fn open(&mut self, kind: Kind, index: u64) -> bool;
    /// Appends a line to the open segment of `kind`.
    fn append(&mut self, kind: Kind, line: &[u8]) -> bool;
    /// Deletes segment `index` of `kind`.
    fn delete(&mut self, kind: Kind, index: u64) -> bool;
    /// Makes what was written durable (where the storage buffers).
    fn flush(&mut self) -> bool {
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn budget() -> Budget {
        Budget {
            segment_bytes: 100,
            segment_secs: 60,
            retention_secs: 300,
            max_bytes: 250,
        }
    }

    #[test]
    fn rotates_on_size_and_on_time_deterministically() {
        let mut r = Rotator::new(budget());
        assert_eq!(r.write(0, 60).unwrap().open, Some(1));
        assert_eq!(r.write(S, 40).unwrap().open, None, "exactly full");
        assert_eq!(r.write(2 * S, 1).unwrap().open, Some(2), "size");
        assert_eq!(
            r.write(61 * S, 1).unwrap().open,
            None,
            "59 s into segment 2"
        );
        assert_eq!(r.write(62 * S, 1).unwrap().open, Some(3), "60 s: time");
        assert_eq!(r.write(62 * S, 101), None, "larger than a segment");
        assert_eq!(r.oversized, 1);
        let again: Vec<_> = {
            let mut r2 = Rotator::new(budget());
            [(0, 60), (S, 40), (2 * S, 1), (61 * S, 1), (62 * S, 1)]
                .iter()
                .map(|(t, l)| r2.write(*t, *l).unwrap())
                .collect()
        };
        assert_eq!(
            again.last().unwrap().open,
            Some(3),
            "same inputs, same segments"
        );
    }

    #[test]
    fn retention_and_the_byte_budget_drop_the_oldest_closed_segments() {
        let mut r = Rotator::new(budget());
        for i in 0..5u64 {
            r.write(i * 61 * S, 90).unwrap();
        }
        // 5 × 90 bytes: over 250 → the oldest go until 250 or less remain.
        let idx: Vec<u64> = r.segments().map(|s| s.index).collect();
        assert_eq!(idx, [4, 5]);
        assert_eq!(r.dropped_segments, 3);
        // Retention: 300 s after segment 4's last write it goes; the open
        // one (5) stays whatever its age.
        let gone = r.expire(5 * 61 * S + 400 * S);
        assert_eq!(gone, [4]);
        assert_eq!(r.segments().count(), 1);
    }

    #[test]
    fn resume_continues_numbering() {
        let r = Rotator::resume(
            budget(),
            [
                Segment {
                    index: 7,
                    start_ns: 0,
                    end_ns: 1,
                    bytes: 10,
                },
                Segment {
                    index: 3,
                    start_ns: 0,
                    end_ns: 1,
                    bytes: 10,
                },
            ],
        );
        let mut r = r;
        let _ = r.write(1_000 * S, 1);
        assert_eq!(r.segments().last().unwrap().index, 8);
    }
}
