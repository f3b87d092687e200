//! Token buckets that refill from an injected clock.
//!
//! Tokens are kept in nano-units (`tokens * 1e9`) so that a refill over any
//! elapsed time is exact integer arithmetic: `elapsed_ns * rate_per_sec`
//! nano-tokens. All arithmetic saturates; a bucket never holds more than its
//! burst.

const NANO: u64 = 1_000_000_000;

/// Rate and burst of a bucket. Both are whole tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketConfig {
    /// Sustained refill, tokens per second.
    pub rate_per_sec: u32,
    /// Capacity; also the initial fill.
    pub burst: u32,
}

impl BucketConfig {
    fn cap_scaled(self) -> u64 {
        u64::from(self.burst).saturating_mul(NANO)
    }
}

/// A token bucket. It does not store its config, so a table of buckets that
/// share one config costs 16 bytes per entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    scaled: u64,
    last_ns: u64,
}

impl TokenBucket {
    /// A full bucket, as seen at `now_ns`.
    pub fn full(cfg: BucketConfig, now_ns: u64) -> Self {
        Self {
            scaled: cfg.cap_scaled(),
            last_ns: now_ns,
        }
    }

    /// A bucket holding `scaled` nano-tokens, last refilled at `last_ns`
    /// (for tables that store one timestamp for several buckets).
    pub(crate) fn from_parts(scaled: u64, last_ns: u64) -> Self {
        Self { scaled, last_ns }
    }

    /// Nano-tokens held and the last refill time.
    pub(crate) fn parts(self) -> (u64, u64) {
        (self.scaled, self.last_ns)
    }

    /// Adds the tokens earned since the last refill. Time going backwards
    /// earns nothing.
    pub fn refill(&mut self, cfg: BucketConfig, now_ns: u64) {
        if now_ns <= self.last_ns {
            return;
        }
        let earned = (now_ns - self.last_ns).saturating_mul(u64::from(cfg.rate_per_sec));
        self.scaled = self.scaled.saturating_add(earned).min(cfg.cap_scaled());
        self.last_ns = now_ns;
    }

    /// Whole tokens available right now (after a [`refill`](Self::refill)).
    pub fn available(&self) -> u64 {
        self.scaled / NANO
    }

    /// True if `n` tokens could be taken.
    pub fn has(&self, n: u64) -> bool {
        n.checked_mul(NANO).is_some_and(|need| need <= self.scaled)
    }

    /// Takes `n` tokens if they are there; returns whether it did.
    pub fn take(&mut self, n: u64) -> bool {
        match n.checked_mul(NANO) {
            Some(need) if need <= self.scaled => {
                self.scaled -= need;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: BucketConfig = BucketConfig {
        rate_per_sec: 10,
        burst: 5,
    };

    #[test]
    fn starts_full_and_drains() {
        let mut b = TokenBucket::full(CFG, 0);
        assert_eq!(b.available(), 5);
        for _ in 0..5 {
            assert!(b.take(1));
        }
        assert!(!b.take(1));
        assert!(!b.has(1));
    }

    #[test]
    fn refills_at_rate_and_caps_at_burst() {
        let mut b = TokenBucket::full(CFG, 0);
        assert!(b.take(5));
        b.refill(CFG, 100_000_000); // 0.1 s at 10/s = 1 token
        assert_eq!(b.available(), 1);
        b.refill(CFG, 150_000_000); // +0.5 token
        assert_eq!(b.available(), 1);
        b.refill(CFG, 200_000_000); // exactly 2
        assert_eq!(b.available(), 2);
        b.refill(CFG, 100 * NANO);
        assert_eq!(b.available(), 5);
    }

    #[test]
    fn time_going_backwards_earns_nothing() {
        let mut b = TokenBucket::full(CFG, 1_000);
        assert!(b.take(5));
        b.refill(CFG, 10);
        assert_eq!(b.available(), 0);
    }

    #[test]
    fn huge_requests_and_elapsed_times_saturate() {
        let mut b = TokenBucket::full(CFG, 0);
        assert!(!b.take(u64::MAX));
        b.refill(CFG, u64::MAX);
        assert_eq!(b.available(), 5);
        let big = BucketConfig {
            rate_per_sec: u32::MAX,
            burst: u32::MAX,
        };
        let mut b = TokenBucket::full(big, 0);
        assert_eq!(b.available(), u64::from(u32::MAX));
        b.refill(big, u64::MAX);
        assert!(b.take(u64::from(u32::MAX)));
    }
}
