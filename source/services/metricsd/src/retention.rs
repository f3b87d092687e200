//! Bounded store of rollup segments with per-tier TTL garbage collection.
//!
//! Invariants:
//! * At most one segment per key `(tier, start, series)`
//!   ([`Segment::key`]), and `len() <= max_segments` after every insert —
//!   the bound is live, there is no allowance.
//! * Iteration order is the key order: tier (10 s first), then start, then
//!   series. The first segment in that order is also the next to be
//!   evicted, so eviction drops the oldest 10 s segment while any is held,
//!   then the oldest 60 s segment (ties: the lower series).
//!
//! Because the store always keeps the `max_segments` greatest keys among
//! those inserted (and not expired), its contents do not depend on the
//! insertion order, and replaying the same segments again changes nothing:
//! an identical segment is kept once. A different segment with an already
//! held key replaces it (counted as `replaced`).
//!
//! Expiry: [`Retention::gc`] drops a segment when its end
//! ([`Segment::end_ns`]) is strictly older than `now - ttl` of its tier,
//! i.e. it is kept while `end + ttl >= now`.

use alloc::collections::BTreeMap;

use crate::rollup::{Segment, Tier};

/// Bounds of a [`Retention`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionConfig {
    /// How long a 10 s segment is kept after its window ends.
    pub ttl_10s_ns: u64,
    /// How long a 60 s segment is kept after its window ends.
    pub ttl_60s_ns: u64,
    /// Segments held at most, both tiers together (0 is treated as 1).
    pub max_segments: usize,
}

impl RetentionConfig {
    /// The TTL of `tier`.
    pub fn ttl_ns(&self, tier: Tier) -> u64 {
        match tier {
            Tier::S10 => self.ttl_10s_ns,
            Tier::S60 => self.ttl_60s_ns,
        }
    }
}

/// Counters of a [`Retention`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionStats {
    /// Segments held now.
    pub held: usize,
    /// Segments dropped to stay within `max_segments`.
    pub evicted: u64,
    /// Segments dropped by [`Retention::gc`].
    pub expired: u64,
    /// Held segments replaced by a different segment with the same key.
    pub replaced: u64,
}

/// The bounded segment store.
#[derive(Debug, Clone)]
pub struct Retention {
    cfg: RetentionConfig,
    segs: BTreeMap<(Tier, u64, u32), Segment>,
    evicted: u64,
    expired: u64,
    replaced: u64,
}

impl Retention {
    /// An empty store.
    pub fn new(cfg: RetentionConfig) -> Self {
        Self {
            cfg: RetentionConfig {
                max_segments: cfg.max_segments.max(1),
                ..cfg
            },
            segs: BTreeMap::new(),
            evicted: 0,
            expired: 0,
            replaced: 0,
        }
    }

    /// The configuration in force (`max_segments` at least 1).
    pub fn config(&self) -> RetentionConfig {
        self.cfg
    }

    /// Keeps `seg`. If that makes the store exceed `max_segments`, drops the
    /// oldest 10 s segment, or the oldest 60 s segment when no 10 s segment
    /// is held (counted as evicted) — which is `seg` itself when it is the
    /// oldest. Inserting an identical segment again changes nothing.
    pub fn insert(&mut self, seg: Segment) {
        match self.segs.insert(seg.key(), seg) {
            Some(old) if old != seg => self.replaced = self.replaced.saturating_add(1),
            Some(_) => {}
            None => {
                while self.segs.len() > self.cfg.max_segments {
                    if self.segs.pop_first().is_none() {
                        break;
                    }
                    self.evicted = self.evicted.saturating_add(1);
                }
            }
        }
    }

    /// Drops every segment whose end is older than `now_ns - ttl` of its
    /// tier (saturating at 0) and returns how many were dropped.
    pub fn gc(&mut self, now_ns: u64) -> usize {
        let mut dropped = 0usize;
        for &tier in Tier::ALL {
            let cutoff = now_ns.saturating_sub(self.cfg.ttl_ns(tier));
            // Within a tier, ends grow with starts: the expired segments
            // are a prefix of the tier's range.
            while let Some((&key, seg)) = self.segs.range((tier, 0, 0)..).next() {
                if key.0 != tier || seg.end_ns() >= cutoff {
                    break;
                }
                self.segs.remove(&key);
                dropped = dropped.saturating_add(1);
            }
        }
        let n = u64::try_from(dropped).unwrap_or(u64::MAX);
        self.expired = self.expired.saturating_add(n);
        dropped
    }

    /// Every segment, ordered by tier, then start, then series.
    pub fn iter(&self) -> impl Iterator<Item = &Segment> {
        self.segs.values()
    }

    /// The segments of `series` in `tier`, by start.
    pub fn query(&self, series: u32, tier: Tier) -> impl Iterator<Item = &Segment> {
        self.segs
            .range((tier, 0, 0)..=(tier, u64::MAX, u32::MAX))
            .map(|(_, s)| s)
            .filter(move |s| s.series == series)
    }

    /// Segments held.
    pub fn len(&self) -> usize {
        self.segs.len()
    }

    /// True if no segment is held.
    pub fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    /// Counters.
    pub fn stats(&self) -> RetentionStats {
        RetentionStats {
            held: self.segs.len(),
            evicted: self.evicted,
            expired: self.expired,
            replaced: self.replaced,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollup::{Agg, TIER_10S_NS, TIER_60S_NS};
    use alloc::vec::Vec;
    use proptest::prelude::*;

    const S: u64 = 1_000_000_000;

    fn seg(series: u32, tier: Tier, start_ns: u64, v: i64) -> Segment {
        Segment {
            series,
            tier,
            start_ns,
            agg: Agg::from_sample(v),
        }
    }

    fn cfg(ttl_10s_ns: u64, ttl_60s_ns: u64, max_segments: usize) -> RetentionConfig {
        RetentionConfig {
            ttl_10s_ns,
            ttl_60s_ns,
            max_segments,
        }
    }

    fn keys(r: &Retention) -> Vec<(Tier, u64, u32)> {
        r.iter().map(Segment::key).collect()
    }

    #[test]
    fn ttl_boundaries_are_exact() {
        let mut r = Retention::new(cfg(30 * S, 120 * S, 100));
        r.insert(seg(1, Tier::S10, 0, 1)); // ends at 10 s
        r.insert(seg(1, Tier::S10, 10 * S, 1)); // ends at 20 s
        r.insert(seg(1, Tier::S60, 0, 1)); // ends at 60 s
                                           // Kept while end + ttl >= now.
        assert_eq!(r.gc(40 * S), 0);
        assert_eq!(r.gc(40 * S + 1), 1);
        assert_eq!(keys(&r), [(Tier::S10, 10 * S, 1), (Tier::S60, 0, 1)]);
        assert_eq!(r.gc(50 * S), 0);
        assert_eq!(r.gc(50 * S + 1), 1);
        assert_eq!(r.gc(180 * S), 0);
        assert_eq!(r.gc(180 * S + 1), 1);
        assert!(r.is_empty());
        assert_eq!(r.stats().expired, 3);
        // Early clock: nothing is older than a cutoff of 0.
        r.insert(seg(1, Tier::S10, 0, 1));
        assert_eq!(r.gc(5 * S), 0);
    }

    #[test]
    fn zero_ttl_and_saturated_end() {
        let mut r = Retention::new(cfg(0, 0, 10));
        r.insert(seg(1, Tier::S10, 0, 1));
        let last = Tier::S60.window_start(u64::MAX);
        r.insert(seg(1, Tier::S60, last, 1)); // end saturates at u64::MAX
        assert_eq!(r.gc(TIER_10S_NS), 0);
        assert_eq!(r.gc(TIER_10S_NS + 1), 1);
        assert_eq!(r.gc(u64::MAX), 0);
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn cap_evicts_oldest_s10_then_oldest_s60() {
        let mut r = Retention::new(cfg(u64::MAX, u64::MAX, 3));
        r.insert(seg(1, Tier::S60, 0, 1));
        r.insert(seg(2, Tier::S10, 20 * S, 1));
        r.insert(seg(1, Tier::S10, 20 * S, 1));
        r.insert(seg(1, Tier::S60, TIER_60S_NS, 1));
        // Oldest S10 (ties: lower series) goes first, though an S60 is older.
        assert_eq!(
            keys(&r),
            [
                (Tier::S10, 20 * S, 2),
                (Tier::S60, 0, 1),
                (Tier::S60, TIER_60S_NS, 1)
            ]
        );
        // A new S10 older than the held one is itself the one dropped.
        r.insert(seg(3, Tier::S10, 0, 1));
        assert_eq!(r.stats().evicted, 2);
        assert_eq!(r.query(2, Tier::S10).count(), 1);
        r.insert(seg(9, Tier::S60, 2 * TIER_60S_NS, 1));
        // No S10 left: the oldest S60 goes.
        assert_eq!(
            keys(&r),
            [
                (Tier::S60, 0, 1),
                (Tier::S60, TIER_60S_NS, 1),
                (Tier::S60, 2 * TIER_60S_NS, 9)
            ]
        );
        r.insert(seg(9, Tier::S60, 3 * TIER_60S_NS, 1));
        assert_eq!(
            r.iter().next().map(Segment::key),
            Some((Tier::S60, TIER_60S_NS, 1))
        );
        let st = r.stats();
        assert_eq!((st.held, st.evicted, st.expired), (3, 4, 0));
        assert_eq!(Retention::new(cfg(0, 0, 0)).config().max_segments, 1);
    }

    #[test]
    fn replay_is_idempotent_and_replace_is_counted() {
        let segs = [
            seg(1, Tier::S10, 0, 1),
            seg(2, Tier::S10, 0, 2),
            seg(1, Tier::S10, 10 * S, 3),
            seg(1, Tier::S60, 0, 4),
        ];
        let mut r = Retention::new(cfg(u64::MAX, u64::MAX, 3));
        for s in segs {
            r.insert(s);
        }
        let first: Vec<Segment> = r.iter().copied().collect();
        let stats = r.stats();
        for s in segs {
            r.insert(s);
        }
        assert_eq!(r.iter().copied().collect::<Vec<_>>(), first);
        // The replayed copy of the evicted segment is dropped again, and
        // counted: every drop is.
        assert_eq!(stats.evicted, 1);
        assert_eq!(
            r.stats(),
            RetentionStats {
                evicted: 2,
                ..stats
            }
        );

        let mut other = seg(1, Tier::S60, 0, 4);
        other.agg.merge(Agg::from_sample(5));
        r.insert(other);
        assert_eq!(r.len(), 3);
        assert_eq!(r.stats().replaced, 1);
        assert_eq!(r.query(1, Tier::S60).copied().collect::<Vec<_>>(), [other]);
    }

    #[test]
    fn query_filters_series_and_tier_in_start_order() {
        let mut r = Retention::new(cfg(u64::MAX, u64::MAX, 100));
        for start in [30 * S, 0, 10 * S] {
            r.insert(seg(1, Tier::S10, start, 1));
            r.insert(seg(2, Tier::S10, start, 1));
        }
        r.insert(seg(1, Tier::S60, 0, 1));
        let starts: Vec<u64> = r.query(1, Tier::S10).map(|s| s.start_ns).collect();
        assert_eq!(starts, [0, 10 * S, 30 * S]);
        assert_eq!(r.query(1, Tier::S60).count(), 1);
        assert_eq!(r.query(2, Tier::S60).count(), 0);
        assert_eq!(r.query(3, Tier::S10).count(), 0);
    }

    fn seg_strategy() -> impl Strategy<Value = Segment> {
        (0u32..4, any::<bool>(), 0u64..40, -3i64..3).prop_map(|(series, s60, n, v)| {
            let tier = if s60 { Tier::S60 } else { Tier::S10 };
            seg(series, tier, n * tier.width_ns(), v)
        })
    }

    proptest! {
        #[test]
        fn never_exceeds_max_segments(
            ops in proptest::collection::vec((seg_strategy(), proptest::option::of(0u64..600)), 0..300),
            max in 0usize..20,
            ttl10 in 0u64..300,
            ttl60 in 0u64..900,
        ) {
            let mut r = Retention::new(cfg(ttl10 * S, ttl60 * S, max));
            let mut dropped = 0u64;
            for (s, gc_at) in ops {
                let before = r.stats();
                r.insert(s);
                prop_assert!(r.len() <= r.config().max_segments);
                prop_assert!(r.len() >= before.held.min(r.config().max_segments));
                if let Some(t) = gc_at {
                    let now = t * S;
                    let n = r.gc(now);
                    dropped += n as u64;
                    for held in r.iter() {
                        prop_assert!(held.end_ns() >= now.saturating_sub(r.config().ttl_ns(held.tier)));
                    }
                }
                let k = keys(&r);
                prop_assert!(k.windows(2).all(|w| w[0] < w[1]));
                prop_assert_eq!(r.stats().held, r.len());
            }
            prop_assert_eq!(r.stats().expired, dropped);
        }

        #[test]
        fn contents_do_not_depend_on_order_or_replay(
            segs in proptest::collection::vec(seg_strategy(), 0..100),
            max in 1usize..30,
            rot in any::<usize>(),
        ) {
            // Only distinct keys: with conflicting versions the last wins.
            let mut distinct: Vec<Segment> = Vec::new();
            for s in segs {
                if !distinct.iter().any(|d| d.key() == s.key()) {
                    distinct.push(s);
                }
            }
            let mut a = Retention::new(cfg(u64::MAX, u64::MAX, max));
            for s in &distinct {
                a.insert(*s);
            }
            let mut b = Retention::new(cfg(u64::MAX, u64::MAX, max));
            let mut shuffled = distinct.clone();
            shuffled.reverse();
            if !shuffled.is_empty() {
                let n = rot % shuffled.len();
                shuffled.rotate_left(n);
            }
            for s in shuffled.iter().chain(distinct.iter()) {
                b.insert(*s);
            }
            let in_a: Vec<Segment> = a.iter().copied().collect();
            let in_b: Vec<Segment> = b.iter().copied().collect();
            prop_assert_eq!(&in_a, &in_b);
            // The store holds the greatest keys.
            let mut all: Vec<_> = distinct.iter().map(Segment::key).collect();
            all.sort();
            let skip = all.len().saturating_sub(max);
            prop_assert_eq!(keys(&a), all.get(skip..).unwrap_or(&[]).to_vec());
            prop_assert_eq!(a.stats().evicted, skip as u64);
        }
    }
}
