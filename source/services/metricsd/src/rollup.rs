//! Time-based rollups: raw samples → 10 s windows → 60 s windows.
//!
//! Pure logic: no I/O and no clock reads, time is passed in as `u64`
//! nanoseconds. Windows are aligned to the clock: the window of width `w`
//! holding `ts` starts at `ts - ts % w`, so a sample at exactly 10 s belongs
//! to `[10 s, 20 s)`. A window's end is `start + w`, saturating at
//! `u64::MAX` (such a window only closes at `now = u64::MAX`).
//!
//! Life of a sample: [`Rollup::ingest`] folds it into the open 10 s window of
//! its series. [`Rollup::advance`] closes every window whose end is at or
//! before `now`: each closed 10 s window yields a [`Tier::S10`] segment and
//! is merged into its series' 60 s window; each closed 60 s window then
//! yields a [`Tier::S60`] segment. A 60 s window is therefore exactly the
//! merge of its 10 s windows, in start order.
//!
//! Invariants:
//! * `closed_until` is the largest `now` ever passed to `advance`; every
//!   window (of any series) ending at or before it is closed, and no open
//!   window ends at or before it. A sample whose 10 s window ends at or
//!   before `closed_until` is late: it is refused and counted, never
//!   reopening a closed window (its 60 s window ends no earlier, so a sample
//!   that is not late never touches a closed 60 s window either).
//! * Every open 10 s window has its 60 s window open (reserved on ingest),
//!   so `advance` never needs a new accumulator and cannot exceed the bound.
//! * `open10.len() + open60.len() <= max_open`: a sample that would need an
//!   accumulator beyond the bound is refused and counted; open windows are
//!   never evicted.
//!
//! Determinism: samples of one series are folded in arrival order and 10 s
//! windows are merged into 60 s windows in start order, whatever the calls to
//! `advance` in between. Feeding the same samples (ascending time per series,
//! any interleaving of series) with `advance` called at any times that do not
//! make a later sample late therefore yields the same segments as one final
//! `advance`, and the same bytes on replay.
//!
//! Aggregates use saturating arithmetic: `count` and `sum` stop at their
//! bounds instead of wrapping (a saturated `sum` is a bound, not the exact
//! total), and `avg` is `sum / count` rounded toward zero.
//!
//! Segment wire layout ([`Segment::encode`], [`SEGMENT_LEN`] = 46 bytes,
//! little-endian):
//!
//! | offset | size | field                                     |
//! |-------:|-----:|-------------------------------------------|
//! |      0 |    1 | tag, [`SEGMENT_TAG`] (`b'S'`)             |
//! |      1 |    1 | tier ([`Tier::as_u8`]: 1 = 10 s, 2 = 60 s)  |
//! |      2 |    4 | series (`u32`)                            |
//! |      6 |    8 | start_ns (`u64`)                          |
//! |     14 |    8 | count (`u64`)                             |
//! |     22 |    8 | sum (`i64`)                               |
//! |     30 |    8 | min (`i64`)                               |
//! |     38 |    8 | max (`i64`)                               |

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use nexus_wire::{Reader, Writer};

/// Width of a 10 s window in nanoseconds.
pub const TIER_10S_NS: u64 = 10_000_000_000;
/// Width of a 60 s window in nanoseconds.
pub const TIER_60S_NS: u64 = 60_000_000_000;
/// First byte of an encoded [`Segment`], so a store can mix entry kinds.
pub const SEGMENT_TAG: u8 = b'S';
/// Length of an encoded [`Segment`].
pub const SEGMENT_LEN: usize = 46;

nexus_wire::byte_enum! {
    /// A rollup resolution. Ordered finest first. On the wire (SEGMENTS
    /// requests, persisted segments) 1 is 10 s and 2 is 60 s.
    pub enum Tier {
        /// 10 s windows.
        S10 = 1 => "10s",
        /// 60 s windows.
        S60 = 2 => "60s",
    }
}

impl Tier {
    /// Window width in nanoseconds.
    pub fn width_ns(self) -> u64 {
        match self {
            Tier::S10 => TIER_10S_NS,
            Tier::S60 => TIER_60S_NS,
        }
    }

    /// Start of the window of this tier holding `ts_ns`.
    pub fn window_start(self, ts_ns: u64) -> u64 {
        let w = self.width_ns();
        ts_ns.saturating_sub(ts_ns.checked_rem(w).unwrap_or(0))
    }

    /// End (exclusive) of the window starting at `start_ns`, saturating.
    pub fn window_end(self, start_ns: u64) -> u64 {
        start_ns.saturating_add(self.width_ns())
    }
}

/// Aggregate of samples.
///
/// A value built by [`from_sample`](Self::from_sample) and
/// [`merge`](Self::merge) always has `count >= 1` and `min <= max`.
/// `count` and `sum` saturate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agg {
    /// Samples folded in (saturating).
    pub count: u64,
    /// Sum of the samples (saturating).
    pub sum: i64,
    /// Smallest sample.
    pub min: i64,
    /// Largest sample.
    pub max: i64,
}

impl Agg {
    /// The aggregate of one sample.
    pub fn from_sample(v: i64) -> Self {
        Self {
            count: 1,
            sum: v,
            min: v,
            max: v,
        }
    }

    /// Folds `other` into `self`. An aggregate with `count == 0` is empty:
    /// merging it changes nothing, and merging into it copies `other`.
    pub fn merge(&mut self, other: Agg) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = other;
            return;
        }
        self.count = self.count.saturating_add(other.count);
        self.sum = self.sum.saturating_add(other.sum);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// `sum / count` rounded toward zero; `None` when `count == 0`.
    pub fn avg(&self) -> Option<i64> {
        let q = i128::from(self.sum).checked_div(i128::from(self.count))?;
        i64::try_from(q).ok()
    }
}

/// A closed window of one series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// The series the samples belong to.
    pub series: u32,
    /// The window width.
    pub tier: Tier,
    /// Window start, a multiple of the tier width.
    pub start_ns: u64,
    /// Aggregate of the window's samples.
    pub agg: Agg,
}

impl Segment {
    /// Window end (exclusive), saturating at `u64::MAX`.
    pub fn end_ns(&self) -> u64 {
        self.tier.window_end(self.start_ns)
    }

    /// The deterministic order of segments: tier, then start, then series.
    pub fn key(&self) -> (Tier, u64, u32) {
        (self.tier, self.start_ns, self.series)
    }

    /// Appends the [`SEGMENT_LEN`]-byte wire form (see the module doc).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(SEGMENT_LEN);
        let mut w = Writer::new(out);
        self.write(&mut w);
        // Unbounded writer, fixed-size fields: cannot fail.
        let _ = w.finish();
    }

    /// Writes the wire form with `w`.
    pub fn write(&self, w: &mut Writer<'_>) {
        w.u8(SEGMENT_TAG)
            .u8(self.tier.as_u8())
            .u32(self.series)
            .u64(self.start_ns)
            .u64(self.agg.count)
            .i64(self.agg.sum)
            .i64(self.agg.min)
            .i64(self.agg.max);
    }

    /// Decodes exactly [`SEGMENT_LEN`] bytes. `None` if the length or tag is
    /// wrong, the tier is unknown, the start is not aligned to the tier,
    /// `count` is 0, or `min > max`. Never panics.
    pub fn decode(bytes: &[u8]) -> Option<Segment> {
        let mut r = Reader::new(bytes);
        if r.u8().ok()? != SEGMENT_TAG {
            return None;
        }
        let tier = r.enum_u8(Tier::from_u8).ok()?;
        let series = r.u32().ok()?;
        let start_ns = r.u64().ok()?;
        let agg = Agg {
            count: r.u64().ok()?,
            sum: r.i64().ok()?,
            min: r.i64().ok()?,
            max: r.i64().ok()?,
        };
        r.finish().ok()?;
        if tier.window_start(start_ns) != start_ns || agg.count == 0 || agg.min > agg.max {
            return None;
        }
        Some(Segment {
            series,
            tier,
            start_ns,
            agg,
        })
    }
}

/// Why a sample was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollupError {
    /// Its 10 s window is already closed.
    Late,
    /// It needs an accumulator beyond `max_open`.
    Full,
}

/// Counters of a [`Rollup`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RollupStats {
    /// Open accumulators, 10 s and 60 s.
    pub open: usize,
    /// Samples accepted.
    pub accepted: u64,
    /// Samples refused as [`RollupError::Late`].
    pub late: u64,
    /// Samples refused as [`RollupError::Full`].
    pub refused_full: u64,
    /// Segments returned by `advance`, both tiers.
    pub segments_emitted: u64,
}

/// The rollup state: open windows of every series.
#[derive(Debug, Clone)]
pub struct Rollup {
    max_open: usize,
    closed_until: u64,
    /// Open 10 s windows by (start, series).
    open10: BTreeMap<(u64, u32), Agg>,
    /// Open 60 s windows by (start, series); `None` until a 10 s window
    /// closes into it.
    open60: BTreeMap<(u64, u32), Option<Agg>>,
    accepted: u64,
    late: u64,
    refused_full: u64,
    segments_emitted: u64,
}

impl Rollup {
    /// An empty rollup. `max_open` bounds the number of open (series, window)
    /// accumulators, 10 s and 60 s together; beyond it a sample is refused
    /// and counted, open windows are never evicted. Values below 2 are
    /// treated as 2 (a series' first sample needs one of each).
    pub fn new(max_open: usize) -> Self {
        Self {
            max_open: max_open.max(2),
            closed_until: 0,
            open10: BTreeMap::new(),
            open60: BTreeMap::new(),
            accepted: 0,
            late: 0,
            refused_full: 0,
            segments_emitted: 0,
        }
    }

    /// The bound given at construction (at least 2).
    pub fn max_open(&self) -> usize {
        self.max_open
    }

    /// The largest `now` passed to [`advance`](Self::advance) so far: every
    /// window ending at or before it is closed.
    pub fn closed_until(&self) -> u64 {
        self.closed_until
    }

    fn open_count(&self) -> usize {
        self.open10.len().saturating_add(self.open60.len())
    }

    /// Adds one raw sample of `series` at `ts_ns`.
    ///
    /// Refused with [`RollupError::Late`] if its 10 s window ends at or
    /// before [`closed_until`](Self::closed_until), and with
    /// [`RollupError::Full`] if it needs a new 10 s or 60 s accumulator and
    /// that would exceed `max_open`. A refused sample changes nothing but
    /// its counter.
    pub fn ingest(&mut self, series: u32, ts_ns: u64, value: i64) -> Result<(), RollupError> {
        let start10 = Tier::S10.window_start(ts_ns);
        if Tier::S10.window_end(start10) <= self.closed_until {
            self.late = self.late.saturating_add(1);
            return Err(RollupError::Late);
        }
        let k10 = (start10, series);
        let k60 = (Tier::S60.window_start(ts_ns), series);
        let need = usize::from(!self.open10.contains_key(&k10))
            .saturating_add(usize::from(!self.open60.contains_key(&k60)));
        if self.open_count().saturating_add(need) > self.max_open {
            self.refused_full = self.refused_full.saturating_add(1);
            return Err(RollupError::Full);
        }
        self.open60.entry(k60).or_insert(None);
        self.open10
            .entry(k10)
            .and_modify(|a| a.merge(Agg::from_sample(value)))
            .or_insert_with(|| Agg::from_sample(value));
        self.accepted = self.accepted.saturating_add(1);
        Ok(())
    }

    /// Closes every window whose end is at or before `now_ns` and returns
    /// the closed segments ordered by tier, then start, then series. Each
    /// closed 10 s window yields a [`Tier::S10`] segment and is merged into
    /// its 60 s window; each closed 60 s window yields a [`Tier::S60`]
    /// segment. Time never goes back: a `now_ns` below
    /// [`closed_until`](Self::closed_until) closes nothing.
    pub fn advance(&mut self, now_ns: u64) -> Vec<Segment> {
        self.closed_until = self.closed_until.max(now_ns);
        let now = self.closed_until;
        let mut out = Vec::new();
        while let Some(entry) = self.open10.first_entry() {
            let (start, series) = *entry.key();
            if Tier::S10.window_end(start) > now {
                break;
            }
            let agg = entry.remove();
            out.push(Segment {
                series,
                tier: Tier::S10,
                start_ns: start,
                agg,
            });
            // The 60 s window was reserved on ingest; inserting here only
            // happens if that invariant were broken, and keeps the data.
            let slot = self
                .open60
                .entry((Tier::S60.window_start(start), series))
                .or_insert(None);
            match slot {
                Some(acc) => acc.merge(agg),
                None => *slot = Some(agg),
            }
        }
        while let Some(entry) = self.open60.first_entry() {
            let (start, series) = *entry.key();
            if Tier::S60.window_end(start) > now {
                break;
            }
            if let Some(agg) = entry.remove() {
                out.push(Segment {
                    series,
                    tier: Tier::S60,
                    start_ns: start,
                    agg,
                });
            }
        }
        let emitted = u64::try_from(out.len()).unwrap_or(u64::MAX);
        self.segments_emitted = self.segments_emitted.saturating_add(emitted);
        out
    }

    /// Restores the state after a restart from the segments already
    /// stored: windows up to the end of the latest 10 s segment count as
    /// closed (their samples are late on replay, so a stored segment is
    /// never recomputed from a partial set of samples), and a stored 10 s
    /// segment whose 60 s window has no stored segment yet is merged back
    /// into that open 60 s window, so the 60 s segment comes out whole.
    pub fn resume(&mut self, stored: &[Segment]) {
        let closed60: BTreeMap<(u64, u32), ()> = stored
            .iter()
            .filter(|s| s.tier == Tier::S60)
            .map(|s| ((s.start_ns, s.series), ()))
            .collect();
        for s in stored.iter().filter(|s| s.tier == Tier::S10) {
            self.closed_until = self.closed_until.max(s.end_ns());
            let key = (Tier::S60.window_start(s.start_ns), s.series);
            if closed60.contains_key(&key) {
                continue;
            }
            let slot = self.open60.entry(key).or_insert(None);
            match slot {
                Some(acc) => acc.merge(s.agg),
                None => *slot = Some(s.agg),
            }
        }
    }

    /// Counters.
    pub fn stats(&self) -> RollupStats {
        RollupStats {
            open: self.open_count(),
            accepted: self.accepted,
            late: self.late,
            refused_full: self.refused_full,
            segments_emitted: self.segments_emitted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;

    const S: u64 = 1_000_000_000;

    fn seg(
        series: u32,
        tier: Tier,
        start_ns: u64,
        count: u64,
        sum: i64,
        min: i64,
        max: i64,
    ) -> Segment {
        Segment {
            series,
            tier,
            start_ns,
            agg: Agg {
                count,
                sum,
                min,
                max,
            },
        }
    }

    fn encode_all(segs: &[Segment]) -> Vec<u8> {
        let mut out = Vec::new();
        for s in segs {
            s.encode(&mut out);
        }
        out
    }

    #[test]
    fn tier_bytes_round_trip() {
        for &t in Tier::ALL {
            assert_eq!(Tier::from_u8(t.as_u8()), Some(t));
        }
        assert_eq!(Tier::S10.as_u8(), 1);
        assert_eq!(Tier::S60.as_u8(), 2);
        assert_eq!(Tier::from_u8(0), None);
        assert_eq!(Tier::from_u8(3), None);
        assert!(Tier::S10 < Tier::S60);
    }

    #[test]
    fn agg_fixed_vector() {
        let mut a = Agg::from_sample(7);
        for v in [-3, 12, 0, 5] {
            a.merge(Agg::from_sample(v));
        }
        assert_eq!(
            a,
            Agg {
                count: 5,
                sum: 21,
                min: -3,
                max: 12
            }
        );
        assert_eq!(a.avg(), Some(4)); // 21 / 5 rounds toward zero
        let neg = Agg {
            count: 2,
            sum: -7,
            min: -4,
            max: -3,
        };
        assert_eq!(neg.avg(), Some(-3));
        let empty = Agg {
            count: 0,
            sum: 0,
            min: 0,
            max: 0,
        };
        assert_eq!(empty.avg(), None);
        let mut e = empty;
        e.merge(a);
        assert_eq!(e, a);
        let mut b = a;
        b.merge(empty);
        assert_eq!(b, a);
    }

    #[test]
    fn agg_saturates() {
        let mut a = Agg::from_sample(i64::MAX);
        a.merge(Agg::from_sample(1));
        assert_eq!(a.sum, i64::MAX);
        let mut c = Agg {
            count: u64::MAX,
            sum: i64::MIN,
            min: i64::MIN,
            max: 0,
        };
        c.merge(Agg::from_sample(-1));
        assert_eq!(c.count, u64::MAX);
        assert_eq!(c.sum, i64::MIN);
        assert_eq!(c.avg(), Some(0)); // |i64::MIN| < u64::MAX
    }

    #[test]
    fn window_boundaries_are_exact() {
        assert_eq!(Tier::S10.window_start(10 * S), 10 * S);
        assert_eq!(Tier::S10.window_start(10 * S - 1), 0);
        assert_eq!(Tier::S60.window_start(60 * S), 60 * S);
        assert_eq!(Tier::S60.window_start(119 * S), 60 * S);
        assert_eq!(Tier::S60.window_end(u64::MAX - 5), u64::MAX);

        let mut r = Rollup::new(16);
        r.ingest(1, 10 * S - 1, 1).unwrap();
        r.ingest(1, 10 * S, 2).unwrap();
        r.ingest(1, 20 * S - 1, 3).unwrap();
        // Nothing ends before 10 s.
        assert!(r.advance(10 * S - 1).is_empty());
        // [0, 10 s) ends exactly at 10 s.
        assert_eq!(r.advance(10 * S), vec![seg(1, Tier::S10, 0, 1, 1, 1, 1)]);
        assert_eq!(
            r.advance(20 * S),
            vec![seg(1, Tier::S10, 10 * S, 2, 5, 2, 3)]
        );
        assert!(r.advance(60 * S - 1).is_empty());
        assert_eq!(r.advance(60 * S), vec![seg(1, Tier::S60, 0, 3, 6, 1, 3)]);
        assert_eq!(r.stats().open, 0);
    }

    #[test]
    fn fixed_vector_two_series() {
        let mut r = Rollup::new(16);
        // series 7: two 10 s windows inside [0, 60 s); series 3: one window.
        let samples = [
            (7, S, 10),
            (3, 2 * S, -5),
            (7, 9 * S, 30),
            (7, 15 * S, -20),
            (3, 4 * S, 1),
            (7, 59 * S, 4),
            (3, 61 * S, 100),
        ];
        for (s, t, v) in samples {
            r.ingest(s, t, v).unwrap();
        }
        let out = r.advance(60 * S);
        assert_eq!(
            out,
            vec![
                seg(3, Tier::S10, 0, 2, -4, -5, 1),
                seg(7, Tier::S10, 0, 2, 40, 10, 30),
                seg(7, Tier::S10, 10 * S, 1, -20, -20, -20),
                seg(7, Tier::S10, 50 * S, 1, 4, 4, 4),
                seg(3, Tier::S60, 0, 2, -4, -5, 1),
                seg(7, Tier::S60, 0, 4, 24, -20, 30),
            ]
        );
        assert_eq!(out.get(5).and_then(|s| s.agg.avg()), Some(6));
        assert_eq!(out.first().and_then(|s| s.agg.avg()), Some(-2));
        let rest = r.advance(u64::MAX);
        assert_eq!(
            rest,
            vec![
                seg(3, Tier::S10, 60 * S, 1, 100, 100, 100),
                seg(3, Tier::S60, 60 * S, 1, 100, 100, 100),
            ]
        );
        let st = r.stats();
        assert_eq!(
            st,
            RollupStats {
                open: 0,
                accepted: 7,
                late: 0,
                refused_full: 0,
                segments_emitted: 8,
            }
        );
    }

    #[test]
    fn late_samples_are_refused_and_never_reopen() {
        let mut r = Rollup::new(16);
        r.ingest(1, 5 * S, 1).unwrap();
        assert_eq!(r.advance(12 * S).len(), 1);
        // [0, 10 s) is closed, for every series.
        assert_eq!(r.ingest(1, 9 * S, 2), Err(RollupError::Late));
        assert_eq!(r.ingest(2, 0, 2), Err(RollupError::Late));
        // [10 s, 20 s) is still open.
        r.ingest(1, 10 * S, 3).unwrap();
        // Time does not go back.
        assert!(r.advance(1).is_empty());
        assert_eq!(r.closed_until(), 12 * S);
        assert_eq!(r.ingest(1, 9 * S, 2), Err(RollupError::Late));
        let out = r.advance(60 * S);
        assert_eq!(
            out,
            vec![
                seg(1, Tier::S10, 10 * S, 1, 3, 3, 3),
                seg(1, Tier::S60, 0, 2, 4, 1, 3),
            ]
        );
        assert_eq!(r.stats().late, 3);
        assert_eq!(r.stats().accepted, 2);
    }

    #[test]
    fn full_refuses_without_evicting() {
        let mut r = Rollup::new(3);
        r.ingest(1, 0, 1).unwrap(); // opens 10 s + 60 s
        assert_eq!(r.stats().open, 2);
        // Series 2 needs two more.
        assert_eq!(r.ingest(2, 0, 1), Err(RollupError::Full));
        // Same 60 s window, new 10 s window: one more fits.
        r.ingest(1, 10 * S, 1).unwrap();
        assert_eq!(r.ingest(1, 20 * S, 1), Err(RollupError::Full));
        // Existing windows keep accepting.
        r.ingest(1, 11 * S, 1).unwrap();
        let st = r.stats();
        assert_eq!((st.open, st.accepted, st.refused_full), (3, 3, 2));
        // Closing frees room.
        assert_eq!(r.advance(20 * S).len(), 2);
        r.ingest(1, 20 * S, 1).unwrap();
        assert_eq!(Rollup::new(0).max_open(), 2);
    }

    #[test]
    fn saturated_end_closes_only_at_the_end_of_time() {
        let mut r = Rollup::new(4);
        r.ingest(1, u64::MAX, 1).unwrap();
        assert!(r.advance(u64::MAX - 1).is_empty());
        let out = r.advance(u64::MAX);
        assert_eq!(out.len(), 2);
        assert_eq!(r.ingest(1, u64::MAX, 1), Err(RollupError::Late));
    }

    #[test]
    fn segment_layout_is_byte_exact() {
        let s = seg(0x0403_0201, Tier::S60, 60 * S, 3, -1, -2, 1);
        let mut out = vec![0xAA];
        s.encode(&mut out);
        assert_eq!(out.len(), 1 + SEGMENT_LEN);
        let b = out.get(1..).unwrap();
        assert_eq!(b.get(0..6).unwrap(), &[b'S', 2, 1, 2, 3, 4]);
        assert_eq!(b.get(6..14).unwrap(), &(60 * S).to_le_bytes());
        assert_eq!(b.get(14..22).unwrap(), &3u64.to_le_bytes());
        assert_eq!(b.get(22..30).unwrap(), &[0xFF; 8]);
        assert_eq!(b.get(30..38).unwrap(), &(-2i64).to_le_bytes());
        assert_eq!(b.get(38..46).unwrap(), &1i64.to_le_bytes());
        assert_eq!(Segment::decode(b), Some(s));
    }

    #[test]
    fn decode_rejects_malformed() {
        let good = seg(9, Tier::S10, 20 * S, 1, 5, 5, 5);
        let mut b = Vec::new();
        good.encode(&mut b);
        assert_eq!(Segment::decode(&b), Some(good));
        assert_eq!(Segment::decode(b.get(..SEGMENT_LEN - 1).unwrap()), None);
        let mut long = b.clone();
        long.push(0);
        assert_eq!(Segment::decode(&long), None);
        let patch = |at: usize, bytes: &[u8]| {
            let mut c = b.clone();
            c.get_mut(at..at + bytes.len())
                .unwrap()
                .copy_from_slice(bytes);
            Segment::decode(&c)
        };
        assert_eq!(patch(0, b"T"), None); // tag
        assert_eq!(patch(1, &[0]), None); // tier
        assert_eq!(patch(1, &[3]), None);
        assert_eq!(patch(6, &(20 * S + 1).to_le_bytes()), None); // unaligned
        assert_eq!(patch(1, &[2]), None); // 20 s is not a 60 s start
        assert_eq!(patch(14, &0u64.to_le_bytes()), None); // count 0
        assert_eq!(patch(30, &6i64.to_le_bytes()), None); // min > max
    }

    /// Per-series ascending samples, interleaved in the given order.
    fn interleave(per_series: &[Vec<(u64, i64)>], picks: &[usize]) -> Vec<(u32, u64, i64)> {
        let mut next = vec![0usize; per_series.len()];
        let mut out = Vec::new();
        let total: usize = per_series.iter().map(Vec::len).sum();
        let mut p = picks.iter().cycle();
        while out.len() < total {
            let start = p.next().copied().unwrap_or(0) % per_series.len();
            // The first series at or after `start` with samples left.
            for k in 0..per_series.len() {
                let s = (start + k) % per_series.len();
                let (list, i) = (&per_series[s], next[s]);
                if let Some(&(t, v)) = list.get(i) {
                    out.push((s as u32, t, v));
                    next[s] += 1;
                    break;
                }
            }
        }
        out
    }

    fn series_strategy() -> impl Strategy<Value = Vec<Vec<(u64, i64)>>> {
        let value = prop_oneof![4 => -1000i64..1000, 1 => any::<i64>()];
        let step = prop_oneof![4 => 0u64..15 * S, 1 => 0u64..200 * S];
        let one = proptest::collection::vec((step, value), 0..40).prop_map(|v| {
            let mut t = 0u64;
            v.into_iter()
                .map(|(d, x)| {
                    t = t.saturating_add(d);
                    (t, x)
                })
                .collect::<Vec<_>>()
        });
        proptest::collection::vec(one, 1..5)
    }

    fn batch(samples: &[(u32, u64, i64)]) -> Vec<Segment> {
        let mut r = Rollup::new(usize::MAX);
        for &(s, t, v) in samples {
            r.ingest(s, t, v).unwrap();
        }
        r.advance(u64::MAX)
    }

    proptest! {
        #[test]
        fn advance_schedule_does_not_change_segments(
            per_series in series_strategy(),
            picks in proptest::collection::vec(any::<usize>(), 1..64),
            advances in proptest::collection::vec(proptest::option::of(0u64..30 * S), 1..64),
        ) {
            let samples = interleave(&per_series, &picks);
            let expected = batch(&samples);
            prop_assert!(expected.windows(2).all(|w| w[0].key() < w[1].key()));

            let mut r = Rollup::new(usize::MAX);
            let mut got = Vec::new();
            let mut adv = advances.iter().cycle();
            for (i, &(s, t, v)) in samples.iter().enumerate() {
                // Any time that does not make a remaining sample late.
                if let Some(Some(back)) = adv.next() {
                    let min_left = samples[i..].iter().map(|x| x.1).min().unwrap_or(u64::MAX);
                    let step = r.advance(min_left.saturating_sub(*back));
                    prop_assert!(step.windows(2).all(|w| w[0].key() < w[1].key()));
                    got.extend(step);
                }
                prop_assert_eq!(r.ingest(s, t, v), Ok(()));
            }
            got.extend(r.advance(u64::MAX));
            let st = r.stats();
            prop_assert_eq!(st.open, 0);
            prop_assert_eq!(st.accepted, samples.len() as u64);
            prop_assert_eq!(st.segments_emitted, got.len() as u64);
            got.sort_by_key(Segment::key);
            prop_assert_eq!(&got, &expected);

            // Replay into a fresh rollup: byte-identical.
            prop_assert_eq!(encode_all(&batch(&samples)), encode_all(&expected));
        }

        #[test]
        fn s60_is_the_merge_of_its_s10(per_series in series_strategy(), picks in proptest::collection::vec(any::<usize>(), 1..8)) {
            let samples = interleave(&per_series, &picks);
            let segs = batch(&samples);
            let s60: Vec<_> = segs.iter().filter(|s| s.tier == Tier::S60).collect();
            for big in &s60 {
                let mut acc: Option<Agg> = None;
                let mut n = 0;
                for small in segs.iter().filter(|s| {
                    s.tier == Tier::S10
                        && s.series == big.series
                        && Tier::S60.window_start(s.start_ns) == big.start_ns
                }) {
                    n += 1;
                    match acc.as_mut() {
                        Some(a) => a.merge(small.agg),
                        None => acc = Some(small.agg),
                    }
                }
                prop_assert!((1..=6).contains(&n));
                prop_assert_eq!(acc, Some(big.agg));
            }
            // Every S10 window lies in an emitted S60 window.
            for small in segs.iter().filter(|s| s.tier == Tier::S10) {
                let k = (Tier::S60, Tier::S60.window_start(small.start_ns), small.series);
                prop_assert!(s60.iter().any(|b| b.key() == k));
            }
            // Counts add up (no saturation with fewer than 2^64 samples).
            let total: u64 = segs.iter().filter(|s| s.tier == Tier::S10).map(|s| s.agg.count).sum();
            prop_assert_eq!(total, samples.len() as u64);
        }

        #[test]
        fn open_accumulators_stay_bounded(
            ops in proptest::collection::vec((0u32..6, 0u64..20 * S, any::<i64>(), any::<bool>()), 0..200),
            max_open in 0usize..12,
        ) {
            let mut r = Rollup::new(max_open);
            let mut now = 0u64;
            for (s, d, v, adv) in ops {
                now = now.saturating_add(d);
                if adv {
                    let _ = r.advance(now);
                }
                let before = r.stats();
                let res = r.ingest(s, now.saturating_add(d), v);
                let after = r.stats();
                prop_assert!(after.open <= r.max_open());
                match res {
                    Ok(()) => prop_assert_eq!(after.accepted, before.accepted + 1),
                    Err(RollupError::Full) => {
                        prop_assert_eq!(after.refused_full, before.refused_full + 1);
                        prop_assert_eq!(after.open, before.open);
                    }
                    Err(RollupError::Late) => prop_assert_eq!(after.late, before.late + 1),
                }
            }
        }

        #[test]
        fn segment_round_trips(
            series in any::<u32>(),
            s60 in any::<bool>(),
            start in any::<u64>(),
            count in 1u64..,
            sum in any::<i64>(),
            a in any::<i64>(),
            b in any::<i64>(),
        ) {
            let tier = if s60 { Tier::S60 } else { Tier::S10 };
            let s = Segment {
                series,
                tier,
                start_ns: tier.window_start(start),
                agg: Agg { count, sum, min: a.min(b), max: a.max(b) },
            };
            let mut out = Vec::new();
            s.encode(&mut out);
            prop_assert_eq!(out.len(), SEGMENT_LEN);
            prop_assert_eq!(Segment::decode(&out), Some(s));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            if let Some(s) = Segment::decode(&bytes) {
                let mut out = Vec::new();
                s.encode(&mut out);
                prop_assert_eq!(out, bytes);
            }
        }

        #[test]
        fn decode_never_panics_behind_a_valid_tag(tier in 0u8..4, rest in proptest::collection::vec(any::<u8>(), 44..=44)) {
            let mut bytes = vec![SEGMENT_TAG, tier];
            bytes.extend_from_slice(&rest);
            if let Some(s) = Segment::decode(&bytes) {
                let mut out = Vec::new();
                s.encode(&mut out);
                prop_assert_eq!(out, bytes);
            }
        }
    }
}

#[cfg(test)]
mod resume_tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn resume_keeps_stored_windows_closed_and_60s_whole() {
        // Uninterrupted run: samples at 5 s, 15 s, 25 s of one minute.
        let mut full = Rollup::new(64);
        for (t, v) in [(5, 1), (15, 2), (25, 3)] {
            full.ingest(1, t * S, v).unwrap();
        }
        let all = full.advance(100 * S);
        // Crash after 20 s: [0,10) and [10,20) stored, 25 s sample in the WAL.
        let mut before = Rollup::new(64);
        for (t, v) in [(5, 1), (15, 2)] {
            before.ingest(1, t * S, v).unwrap();
        }
        let stored = before.advance(20 * S);
        let mut after = Rollup::new(64);
        after.resume(&stored);
        // Replaying the whole WAL: the stored windows' samples are late.
        assert_eq!(after.ingest(1, 5 * S, 1), Err(RollupError::Late));
        assert_eq!(after.ingest(1, 15 * S, 2), Err(RollupError::Late));
        after.ingest(1, 25 * S, 3).unwrap();
        let rest = after.advance(100 * S);
        let mut joined = stored.clone();
        joined.extend(rest);
        joined.sort_by_key(Segment::key);
        let mut expected = all;
        expected.sort_by_key(Segment::key);
        assert_eq!(joined, expected, "same segments as an uninterrupted run");
    }
}
