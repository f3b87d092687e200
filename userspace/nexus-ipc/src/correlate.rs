//! Request/reply correlation.
//!
//! A requester picks a fresh nonce per request ([`NonceGen`]), registers it
//! as in flight ([`Pending`]), and accepts a reply only if it comes from the
//! peer the request went to and carries a nonce still in flight. Anything
//! else (a late reply after a timeout, a reply from a third party, a
//! duplicate) is dropped and counted, deterministically.

use alloc::collections::BTreeSet;

use crate::ServiceId;

/// Hands out nonces 1, 2, 3, … (0 is never used, so it can mean "none").
#[derive(Debug, Clone, Default)]
pub struct NonceGen {
    last: u64,
}

impl NonceGen {
    /// Starts after `last` (use a per-boot value to avoid reuse across
    /// restarts; tests start at 0).
    pub const fn starting_after(last: u64) -> Self {
        Self { last }
    }

    /// The next nonce; skips 0 on wrap.
    pub fn next_nonce(&mut self) -> u64 {
        self.last = self.last.wrapping_add(1);
        if self.last == 0 {
            self.last = 1;
        }
        self.last
    }
}

/// Why a request could not be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingError {
    /// `max_in_flight` requests already wait for replies.
    TooManyInFlight,
    /// The nonce is already in flight.
    Duplicate,
}

/// The set of requests waiting for a reply, bounded by `max_in_flight`.
#[derive(Debug, Clone)]
pub struct Pending {
    max_in_flight: usize,
    waiting: BTreeSet<(ServiceId, u64)>,
    unmatched: u64,
}

impl Pending {
    /// An empty set holding at most `max_in_flight` requests.
    pub fn new(max_in_flight: usize) -> Self {
        Self {
            max_in_flight,
            waiting: BTreeSet::new(),
            unmatched: 0,
        }
    }

    /// Records that a request with `nonce` went to `peer`.
    pub fn start(&mut self, peer: ServiceId, nonce: u64) -> Result<(), PendingError> {
        if self.waiting.len() >= self.max_in_flight {
            return Err(PendingError::TooManyInFlight);
        }
        if !self.waiting.insert((peer, nonce)) {
            return Err(PendingError::Duplicate);
        }
        Ok(())
    }

    /// Stops waiting (timeout or cancel); a reply arriving later is unmatched.
    pub fn cancel(&mut self, peer: ServiceId, nonce: u64) {
        self.waiting.remove(&(peer, nonce));
    }

    /// Accepts a reply from `peer` with `nonce` if it is awaited; otherwise
    /// counts it as unmatched and returns false.
    pub fn complete(&mut self, peer: ServiceId, nonce: u64) -> bool {
        if self.waiting.remove(&(peer, nonce)) {
            true
        } else {
            self.unmatched += 1;
            false
        }
    }

    /// Replies dropped because nobody waited for them.
    pub fn unmatched(&self) -> u64 {
        self.unmatched
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_skip_zero() {
        let mut g = NonceGen::starting_after(u64::MAX - 1);
        assert_eq!(g.next_nonce(), u64::MAX);
        assert_eq!(g.next_nonce(), 1);
    }

    #[test]
    fn only_awaited_replies_from_the_right_peer_match() {
        let a = ServiceId::new(1);
        let b = ServiceId::new(2);
        let mut p = Pending::new(2);
        p.start(a, 7).unwrap();
        assert_eq!(p.start(a, 7), Err(PendingError::Duplicate));
        assert!(!p.complete(b, 7), "right nonce, wrong peer");
        assert!(p.complete(a, 7));
        assert!(!p.complete(a, 7), "duplicate reply");
        p.start(a, 8).unwrap();
        p.cancel(a, 8);
        assert!(!p.complete(a, 8), "late reply after cancel");
        assert_eq!(p.unmatched(), 3);
        p.start(a, 1).unwrap();
        p.start(a, 2).unwrap();
        assert_eq!(p.start(a, 3), Err(PendingError::TooManyInFlight));
    }
}
