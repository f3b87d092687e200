//! Id generation that does not repeat across nodes, boots or services.
//!
//! # Inputs
//!
//! An [`IdSeed`] names one generator: the node (a 64-bit device id, or
//! [`IdSeed::node_from_key`] of its public key), the instance on that node
//! (the service's transport id: every service mints its own ids), the
//! boot counter from the state store, and optionally 32 bytes of entropy
//! (virtio-rng) read at boot.
//!
//! # Scheme
//!
//! At construction, SipHash-2-4 under a fixed domain key hashes the seed
//! (fixed-length, little-endian encoding, one label byte per output) into
//! seven 64-bit values: a *boot tag* `T` (never zero) and two keys of a
//! permutation `P` of `u64`, one for spans and one for traces. Then, for
//! the `n`-th id of each kind (`n` = 0, 1, 2, … from an atomic counter):
//!
//! ```text
//! P_k(n)   = mix(mix(n * m + k0) ^ k1)      m odd; mix = splitmix64 finalizer
//! span_id  = P_span(n)                      (a counter value that maps to 0 is skipped)
//! trace_id = T << 64 | P_trace(n)
//! ```
//!
//! Every step of `P` (multiplication by an odd number, addition, xor with a
//! constant, the xor-shifts and odd multiplications of `mix`) is invertible
//! modulo 2^64, so `P_k` is a bijection of `u64`.
//!
//! # Uniqueness
//!
//! * Within one generator, by construction: distinct counter values give
//!   distinct outputs of the bijection. Exactly one counter value maps a
//!   span id to zero and is skipped, so a generator mints 2^64 − 1 span ids
//!   and 2^64 trace ids before its counters wrap (584 years at 10^9 ids a
//!   second); past that the sequences would repeat — not reachable in
//!   practice and not checked.
//! * Trace ids of two generators can only be equal if their boot tags are:
//!   the tag is the high half. Tags are 64-bit hashes of distinct seeds, so
//!   among `G` generators (all services × boots × nodes, ever) the chance
//!   of any shared tag is about `G² / 2^65` (2^-17 for `G` = 2^24).
//! * Span ids of two generators are outputs of independently keyed
//!   permutations: for `a` and `b` spans the chance of any equal pair is
//!   about `a·b / 2^64`. Span ids are looked up per trace and per owner, so
//!   what matters is a collision inside one trace, which is smaller still.
//!
//! The seed must differ between generators: the same seed mints the same
//! ids (that is what makes host tests deterministic). Without entropy the
//! boot counter carries the per-boot difference, so a counter that goes
//! backwards (a wiped state store) repeats an earlier boot's ids; with
//! entropy that needs the entropy to repeat as well.

use core::fmt;
use core::hash::Hasher;
use core::num::{NonZeroU128, NonZeroU64};
use core::sync::atomic::{AtomicU64, Ordering};

use siphasher::sip::SipHasher24;

use crate::ids::{SpanId, TraceId};

/// SipHash key for deriving a generator's keys ("nexus-tr", "ace/ids1").
/// Fixed forever: changing it changes every id sequence.
const SEED_KEY: (u64, u64) = (0x6e65_7875_732d_7472, 0x6163_652f_6964_7331);
/// SipHash key for [`IdSeed::node_from_key`] ("nexus-tr", "ace/node").
const NODE_KEY: (u64, u64) = (0x6e65_7875_732d_7472, 0x6163_652f_6e6f_6465);

/// Output labels of [`IdSeed::derive`].
mod label {
    pub const TAG: u8 = 1;
    pub const SPAN: u8 = 2;
    pub const TRACE: u8 = 5;
}

/// What makes one generator's ids its own.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IdSeed {
    /// The node: a 64-bit device id, or [`IdSeed::node_from_key`] of the
    /// node's public key.
    pub node: u64,
    /// The minting party on the node (e.g. the service's transport id).
    pub instance: u64,
    /// The boot counter from the state store.
    pub boot: u64,
    /// 32 bytes from the entropy source of this boot, when there is one.
    pub entropy: Option<[u8; 32]>,
}

impl fmt::Debug for IdSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdSeed")
            .field("node", &self.node)
            .field("instance", &self.instance)
            .field("boot", &self.boot)
            .field("entropy", &self.entropy.map(|_| "<32 bytes>"))
            .finish()
    }
}

impl IdSeed {
    /// A seed without entropy.
    pub const fn new(node: u64, instance: u64, boot: u64) -> Self {
        Self {
            node,
            instance,
            boot,
            entropy: None,
        }
    }

    /// The same seed with `entropy` mixed in.
    pub const fn with_entropy(self, entropy: [u8; 32]) -> Self {
        Self {
            entropy: Some(entropy),
            ..self
        }
    }

    /// A 64-bit node id from longer identity bytes (e.g. a public key).
    pub fn node_from_key(key: &[u8]) -> u64 {
        let mut h = SipHasher24::new_with_keys(NODE_KEY.0, NODE_KEY.1);
        h.write(key);
        h.finish()
    }

    /// The 64-bit output `label` of this seed.
    fn derive(&self, label: u8) -> u64 {
        // label | node | instance | boot | has entropy | entropy (zeros if none)
        let mut msg = [0u8; 58];
        let (flag, entropy) = match self.entropy {
            Some(e) => (1, e),
            None => (0, [0; 32]),
        };
        let parts: [&[u8]; 6] = [
            &[label],
            &self.node.to_le_bytes(),
            &self.instance.to_le_bytes(),
            &self.boot.to_le_bytes(),
            &[flag],
            &entropy,
        ];
        let mut at = 0;
        for p in parts {
            if let Some(slot) = msg.get_mut(at..at + p.len()) {
                slot.copy_from_slice(p);
            }
            at += p.len();
        }
        let mut h = SipHasher24::new_with_keys(SEED_KEY.0, SEED_KEY.1);
        h.write(&msg);
        h.finish()
    }

    fn perm(&self, first_label: u8) -> Perm {
        Perm {
            k0: self.derive(first_label),
            k1: self.derive(first_label.wrapping_add(1)),
            mul: self.derive(first_label.wrapping_add(2)) | 1,
        }
    }
}

/// The splitmix64 finalizer: a bijection of `u64` that spreads every input
/// bit over the output.
const fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A keyed permutation of `u64`.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Perm {
    k0: u64,
    k1: u64,
    /// Odd.
    mul: u64,
}

impl Perm {
    const fn apply(&self, n: u64) -> u64 {
        mix(mix(n.wrapping_mul(self.mul).wrapping_add(self.k0)) ^ self.k1)
    }
}

/// Mints span and trace ids for one seed; see the [module docs](self) for
/// the scheme and its bounds.
///
/// Minting takes `&self` and is lock-free, so one generator can be shared
/// by every thread of a service. It is deliberately not `Clone`: a copy
/// would mint the same ids again.
pub struct IdGenerator {
    tag: NonZeroU64,
    span: Perm,
    trace: Perm,
    span_seq: AtomicU64,
    trace_seq: AtomicU64,
}

impl fmt::Debug for IdGenerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdGenerator")
            .field("boot_tag", &format_args!("{:016x}", self.tag))
            .field("spans_minted", &self.spans_minted())
            .field("traces_minted", &self.traces_minted())
            .finish()
    }
}

impl IdGenerator {
    /// The generator of `seed`, at the start of its sequences.
    pub fn new(seed: &IdSeed) -> Self {
        Self {
            tag: NonZeroU64::new(seed.derive(label::TAG)).unwrap_or(NonZeroU64::MIN),
            span: seed.perm(label::SPAN),
            trace: seed.perm(label::TRACE),
            span_seq: AtomicU64::new(0),
            trace_seq: AtomicU64::new(0),
        }
    }

    /// A new span id, never zero, never one this generator minted before.
    pub fn next_span(&self) -> SpanId {
        loop {
            let n = self.span_seq.fetch_add(1, Ordering::Relaxed);
            // One counter value in 2^64 maps to zero: skipped, so this
            // loops at most twice.
            if let Some(v) = NonZeroU64::new(self.span.apply(n)) {
                return SpanId::from_nonzero(v);
            }
        }
    }

    /// A new trace id, never zero (its high half is the non-zero boot
    /// tag), never one this generator minted before.
    pub fn next_trace(&self) -> TraceId {
        let n = self.trace_seq.fetch_add(1, Ordering::Relaxed);
        let raw = (u128::from(self.tag.get()) << 64) | u128::from(self.trace.apply(n));
        TraceId::from_nonzero(NonZeroU128::new(raw).unwrap_or(NonZeroU128::MIN))
    }

    /// The high 64 bits of every trace id this generator mints: tells
    /// which generator (service, boot, node) started a trace.
    pub fn boot_tag(&self) -> u64 {
        self.tag.get()
    }

    /// Span counter values used so far.
    pub fn spans_minted(&self) -> u64 {
        self.span_seq.load(Ordering::Relaxed)
    }

    /// Trace ids minted so far.
    pub fn traces_minted(&self) -> u64 {
        self.trace_seq.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Inverse of `z ^= z >> s`.
    fn unshift(y: u64, s: u32) -> u64 {
        let mut x = y;
        for _ in 0..(64 / s + 1) {
            x = y ^ (x >> s);
        }
        x
    }

    /// Multiplicative inverse of an odd `m` modulo 2^64 (Newton).
    fn inverse(m: u64) -> u64 {
        let mut x = m;
        for _ in 0..6 {
            x = x.wrapping_mul(2u64.wrapping_sub(m.wrapping_mul(x)));
        }
        x
    }

    fn unmix(z: u64) -> u64 {
        let z = unshift(z, 31);
        let z = unshift(z.wrapping_mul(inverse(0x94d0_49bb_1331_11eb)), 27);
        unshift(z.wrapping_mul(inverse(0xbf58_476d_1ce4_e5b9)), 30)
    }

    fn unapply(p: &Perm, out: u64) -> u64 {
        (unmix(unmix(out) ^ p.k1))
            .wrapping_sub(p.k0)
            .wrapping_mul(inverse(p.mul))
    }

    proptest! {
        /// `P` has an inverse, so it is a bijection: no counter value
        /// shares its output with another.
        #[test]
        fn permutation_is_invertible(k0: u64, k1: u64, mul: u64, n: u64) {
            let p = Perm { k0, k1, mul: mul | 1 };
            prop_assert_eq!(unapply(&p, p.apply(n)), n);
            prop_assert_eq!(mix(unmix(n)), n);
        }
    }

    #[test]
    fn the_counter_value_that_maps_to_zero_is_skipped() {
        let g = IdGenerator::new(&IdSeed::new(1, 2, 3));
        let zero_at = unapply(&g.span, 0);
        assert_eq!(g.span.apply(zero_at), 0);
        g.span_seq.store(zero_at, Ordering::Relaxed);
        let id = g.next_span();
        assert_eq!(id.get(), g.span.apply(zero_at.wrapping_add(1)));
        assert_eq!(g.spans_minted(), zero_at.wrapping_add(2));
    }

    #[test]
    fn seed_encoding_separates_fields() {
        // Moving a value between fields changes the outputs.
        let a = IdSeed::new(1, 0, 0);
        let b = IdSeed::new(0, 1, 0);
        let c = IdSeed::new(0, 0, 1);
        let d = IdSeed::new(0, 0, 0).with_entropy([0; 32]);
        let e = IdSeed::new(0, 0, 0);
        let tags = [a, b, c, d, e].map(|s| s.derive(label::TAG));
        for (i, x) in tags.iter().enumerate() {
            for y in &tags[i + 1..] {
                assert_ne!(x, y);
            }
        }
    }
}
