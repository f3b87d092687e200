//! Fresh handshake seeds from one boot seed: BLAKE2s-256 of a domain tag,
//! the boot seed and a counter. The boot seed comes from virtio-rng on the
//! OS and from the host's RNG on the host (fixed only in tests), so no two
//! handshakes of a boot, or of two boots, share a seed.

use blake2::{Blake2s256, Digest};

const DOMAIN: &[u8] = b"nexus-obs busd handshake seed v1";

/// The seed chain.
pub struct SeedChain {
    key: [u8; 32],
    counter: u64,
}

impl core::fmt::Debug for SeedChain {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The key never reaches a log.
        f.debug_struct("SeedChain")
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

impl SeedChain {
    /// A chain keyed by `key`.
    pub fn new(key: [u8; 32]) -> Self {
        Self { key, counter: 0 }
    }

    /// The next seed.
    pub fn next_seed(&mut self) -> [u8; 32] {
        self.counter = self.counter.wrapping_add(1);
        let mut h = Blake2s256::new();
        h.update(DOMAIN);
        h.update(self.key);
        h.update(self.counter.to_le_bytes());
        h.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_differ_by_counter_and_key() {
        let mut a = SeedChain::new([1; 32]);
        let mut b = SeedChain::new([2; 32]);
        let (a1, a2, b1) = (a.next_seed(), a.next_seed(), b.next_seed());
        assert_ne!(a1, a2);
        assert_ne!(a1, b1);
        assert_eq!(
            SeedChain::new([1; 32]).next_seed(),
            a1,
            "deterministic per key"
        );
    }
}
