//! Per-sender rate limiting: two token buckets (events and bytes) per key,
//! in a table bounded by [`LruMap`] so that a new sender is always served:
//! the least recently seen sender is evicted (and counted), and starts
//! again with full buckets if it comes back.

use crate::{BucketConfig, LruMap, TokenBucket};

/// Rates and the table bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimiterConfig {
    /// Events per second / burst.
    pub events: BucketConfig,
    /// Bytes per second / burst.
    pub bytes: BucketConfig,
    /// Keys tracked at once.
    pub max_keys: usize,
}

/// A key's two buckets (24 bytes): they are always refilled together, so
/// they share one timestamp.
#[derive(Debug, Clone, Copy)]
struct Buckets {
    events: u64,
    bytes: u64,
    last_ns: u64,
}

/// The table of per-key buckets.
#[derive(Debug, Clone)]
pub struct RateLimiter<K: Ord + Clone> {
    cfg: LimiterConfig,
    table: LruMap<K, Buckets>,
    evictions: u64,
}

impl<K: Ord + Clone> RateLimiter<K> {
    /// An empty table.
    pub fn new(cfg: LimiterConfig) -> Self {
        Self {
            cfg,
            table: LruMap::new(cfg.max_keys),
            evictions: 0,
        }
    }

    /// Takes one event and `bytes` bytes from `key`'s buckets at `now_ns`,
    /// or nothing if either is short. Returns whether it was admitted.
    pub fn admit(&mut self, now_ns: u64, key: K, bytes: u64) -> bool {
        self.admit_n(now_ns, key, 1, bytes)
    }

    /// Like [`admit`](Self::admit) for a request that counts as `events`
    /// events (e.g. a batch of entries).
    pub fn admit_n(&mut self, now_ns: u64, key: K, events: u64, bytes: u64) -> bool {
        let cfg = self.cfg;
        let (b, evicted) = self.table.get_or_insert_with(key, || {
            let (events, last_ns) = TokenBucket::full(cfg.events, now_ns).parts();
            let (bytes, _) = TokenBucket::full(cfg.bytes, now_ns).parts();
            Buckets {
                events,
                bytes,
                last_ns,
            }
        });
        let mut ev = TokenBucket::from_parts(b.events, b.last_ns);
        let mut by = TokenBucket::from_parts(b.bytes, b.last_ns);
        ev.refill(cfg.events, now_ns);
        by.refill(cfg.bytes, now_ns);
        let ok = ev.has(events) && by.has(bytes);
        if ok {
            ev.take(events);
            by.take(bytes);
        }
        // Both were refilled to the same time.
        (b.events, b.last_ns) = ev.parts();
        (b.bytes, _) = by.parts();
        if evicted.is_some() {
            self.evictions += 1;
        }
        ok
    }

    /// Keys in the table.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True if no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Keys evicted to make room since creation.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: LimiterConfig = LimiterConfig {
        events: BucketConfig {
            rate_per_sec: 1,
            burst: 2,
        },
        bytes: BucketConfig {
            rate_per_sec: 100,
            burst: 100,
        },
        max_keys: 2,
    };

    #[test]
    fn both_buckets_must_admit_and_nothing_is_taken_on_refusal() {
        let mut l = RateLimiter::new(CFG);
        assert!(l.admit(0, 1, 60));
        assert!(!l.admit(0, 1, 60), "bytes short");
        assert!(l.admit(0, 1, 40), "the refused request took nothing");
        assert!(!l.admit(0, 1, 0), "events short");
        assert!(l.admit(1_000_000_000, 1, 0));
    }

    #[test]
    fn new_keys_evict_the_least_recent_and_are_counted() {
        let mut l = RateLimiter::new(CFG);
        for k in 0..10u32 {
            assert!(l.admit(0, k, 1));
        }
        assert_eq!(l.len(), 2);
        assert_eq!(l.evictions(), 8);
    }
}
