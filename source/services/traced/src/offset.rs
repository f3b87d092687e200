//! A peer's clock offset, from four-timestamp exchanges (the NTP method).
//!
//! One exchange: the collector sends at `t1` (its clock), the peer
//! receives at `t2` and answers at `t3` (the peer's clock), the answer
//! arrives at `t4` (the collector's clock). Then
//!
//! * `rtt = (t4 - t1) - (t3 - t2)`, the time on the wire both ways;
//! * `offset = ((t2 - t1) + (t3 - t4)) / 2`, peer clock minus ours,
//!   exact when both directions take equally long;
//! * whatever the asymmetry, the true offset lies within
//!   `offset ± rtt / 2` (the error bound).
//!
//! [`OffsetEstimator`] keeps the last `N` exchanges and answers with the
//! one of least round trip: its error bound is the smallest.

/// The four timestamps of one exchange, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    /// Request sent (our clock).
    pub t1: u64,
    /// Request received (the peer's clock).
    pub t2: u64,
    /// Answer sent (the peer's clock).
    pub t3: u64,
    /// Answer received (our clock).
    pub t4: u64,
}

/// An estimate of a peer's clock offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    /// Peer clock minus ours, in nanoseconds.
    pub offset_ns: i64,
    /// The true offset lies within `offset_ns ± error_ns` (half the round
    /// trip rounded up, plus 1 ns for the halving of the offset).
    pub error_ns: u64,
    /// The exchange's round trip.
    pub rtt_ns: u64,
}

/// Why an exchange was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetError {
    /// `t4 < t1` or `t3 < t2`: a clock went back.
    Backwards,
    /// The peer's processing time exceeds the whole round trip.
    NegativeRtt,
    /// The offset does not fit in `i64` nanoseconds.
    Overflow,
}

impl Exchange {
    /// The estimate this exchange alone gives.
    pub fn estimate(&self) -> Result<Estimate, OffsetError> {
        let total = self.t4.checked_sub(self.t1).ok_or(OffsetError::Backwards)?;
        let held = self.t3.checked_sub(self.t2).ok_or(OffsetError::Backwards)?;
        let rtt = total.checked_sub(held).ok_or(OffsetError::NegativeRtt)?;
        let sum = (i128::from(self.t2) - i128::from(self.t1))
            + (i128::from(self.t3) - i128::from(self.t4));
        // Halved toward negative infinity; the error bound is rounded up,
        // so the bound still holds.
        let offset = i64::try_from(sum.div_euclid(2)).map_err(|_| OffsetError::Overflow)?;
        Ok(Estimate {
            offset_ns: offset,
            error_ns: rtt.div_ceil(2).saturating_add(1),
            rtt_ns: rtt,
        })
    }
}

impl Estimate {
    /// A peer clock reading on our clock (saturating at the ends of `u64`).
    pub fn to_local(&self, peer_ns: u64) -> u64 {
        let v = i128::from(peer_ns) - i128::from(self.offset_ns);
        u64::try_from(v.max(0)).unwrap_or(u64::MAX)
    }
}

/// The last `N` accepted exchanges of one peer; the best estimate is the
/// one of least round trip among them. `N` is the capacity (at least 1 to
/// be useful; with 0 nothing is kept).
#[derive(Debug, Clone)]
pub struct OffsetEstimator<const N: usize> {
    window: [Option<Estimate>; N],
    next: usize,
    refused: u64,
}

impl<const N: usize> Default for OffsetEstimator<N> {
    fn default() -> Self {
        Self {
            window: [None; N],
            next: 0,
            refused: 0,
        }
    }
}

impl<const N: usize> OffsetEstimator<N> {
    /// An empty estimator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an exchange (replacing the oldest when full); a malformed one
    /// is refused and counted.
    pub fn add(&mut self, ex: &Exchange) -> Result<Estimate, OffsetError> {
        match ex.estimate() {
            Ok(e) => {
                if let Some(slot) = self.window.get_mut(self.next) {
                    *slot = Some(e);
                }
                self.next = if self.next + 1 >= N { 0 } else { self.next + 1 };
                Ok(e)
            }
            Err(err) => {
                self.refused += 1;
                Err(err)
            }
        }
    }

    /// The kept estimate of least round trip (the earliest kept on a tie).
    pub fn best(&self) -> Option<Estimate> {
        self.window
            .iter()
            .flatten()
            .copied()
            .min_by_key(|e| e.rtt_ns)
    }

    /// Exchanges refused so far.
    pub fn refused(&self) -> u64 {
        self.refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_exchange_gives_the_exact_offset() {
        // Peer 5 ms ahead, 1 ms each way, 0.2 ms processing.
        let ex = Exchange {
            t1: 10_000_000,
            t2: 16_000_000,
            t3: 16_200_000,
            t4: 12_200_000,
        };
        let e = ex.estimate().unwrap();
        assert_eq!(e.offset_ns, 5_000_000);
        assert_eq!(e.rtt_ns, 2_000_000);
        assert_eq!(e.error_ns, 1_000_001);
        assert_eq!(e.to_local(16_000_000), 11_000_000);
    }

    #[test]
    fn malformed_exchanges_are_refused_and_counted() {
        let mut est = OffsetEstimator::<4>::new();
        let back = Exchange {
            t1: 10,
            t2: 0,
            t3: 0,
            t4: 5,
        };
        assert_eq!(est.add(&back), Err(OffsetError::Backwards));
        let held_back = Exchange {
            t1: 0,
            t2: 10,
            t3: 5,
            t4: 20,
        };
        assert_eq!(est.add(&held_back), Err(OffsetError::Backwards));
        let neg = Exchange {
            t1: 0,
            t2: 0,
            t3: 100,
            t4: 10,
        };
        assert_eq!(est.add(&neg), Err(OffsetError::NegativeRtt));
        assert_eq!(est.refused(), 3);
        assert_eq!(est.best(), None);
    }

    #[test]
    fn the_least_round_trip_wins_and_old_ones_roll_out() {
        let mut est = OffsetEstimator::<2>::new();
        let ex = |t1: u64, rtt: u64| Exchange {
            t1,
            t2: t1 + 1000 + rtt / 2,
            t3: t1 + 1000 + rtt / 2,
            t4: t1 + rtt,
        };
        est.add(&ex(0, 500)).unwrap();
        est.add(&ex(10_000, 100)).unwrap();
        assert_eq!(est.best().unwrap().rtt_ns, 100);
        est.add(&ex(20_000, 300)).unwrap();
        assert_eq!(est.best().unwrap().rtt_ns, 100);
        est.add(&ex(30_000, 400)).unwrap();
        // The 100 ns exchange rolled out of the window of 2.
        assert_eq!(est.best().unwrap().rtt_ns, 300);
        assert_eq!(est.best().unwrap().offset_ns, 1000);
    }
}
