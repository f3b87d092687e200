//! Which spans are recorded: parent-based, with a trace-id ratio for
//! roots and a force-sample list by span name.
//!
//! The decision for a span, in order:
//!
//! 1. its name is on the force list → sampled (also under an unsampled
//!    parent: that subtree is recorded, and its children inherit the
//!    sampled flag);
//! 2. it has a parent (local, or remote from an extracted context) → the
//!    parent's sampled flag, unchanged;
//! 3. a root → [`Sampler::sample_trace`]: sampled when the low 56 bits of
//!    the trace id (the part W3C Level 2 calls random), read as an
//!    integer, are below `ratio × 2^56` (rounded down; ratio clamped to
//!    `0..=1`). This is a pure function of the trace id and the ratio, so
//!    every node configured with the same ratio takes the same decision
//!    for the same trace, and a lower ratio samples a subset of what a
//!    higher one does.

use alloc::string::String;
use alloc::vec::Vec;

use crate::ids::{TraceFlags, TraceId};

/// Default root ratio: 10 %.
pub const DEFAULT_RATIO: f64 = 0.1;

/// 2^56: the number of values of the random part.
const RANDOM_SPAN: u64 = 1 << 56;

/// Sampler configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerConfig {
    /// Fraction of root traces sampled, `0.0..=1.0` (default
    /// [`DEFAULT_RATIO`]).
    pub ratio: f64,
    /// Span names that are always sampled.
    pub force: Vec<String>,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            ratio: DEFAULT_RATIO,
            force: Vec::new(),
        }
    }
}

/// A parent-based ratio sampler (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sampler {
    threshold: u64,
    force: Vec<String>,
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new(&SamplerConfig::default())
    }
}

impl Sampler {
    /// From a config.
    pub fn new(cfg: &SamplerConfig) -> Self {
        Self {
            threshold: threshold(cfg.ratio),
            force: cfg.force.clone(),
        }
    }

    /// Samples every root (ratio 1), no force list.
    pub const fn always() -> Self {
        Self {
            threshold: RANDOM_SPAN,
            force: Vec::new(),
        }
    }

    /// Samples no root (ratio 0), no force list.
    pub const fn never() -> Self {
        Self {
            threshold: 0,
            force: Vec::new(),
        }
    }

    /// `ratio × 2^56`: roots whose random part is below it are sampled.
    pub fn threshold(&self) -> u64 {
        self.threshold
    }

    /// The root decision for `trace` (pure).
    pub fn sample_trace(&self, trace: TraceId) -> bool {
        random_part(trace) < self.threshold
    }

    /// True if `name` is on the force list.
    pub fn is_forced(&self, name: &str) -> bool {
        self.force.iter().any(|f| f == name)
    }

    /// The flags of a new span called `name`: `parent` is the parent's
    /// flags (`None` for a root of `trace`). Only the sampled bit is
    /// decided; a parent's other bits are kept.
    pub fn decide(&self, name: &str, trace: TraceId, parent: Option<TraceFlags>) -> TraceFlags {
        let forced = self.is_forced(name);
        match parent {
            Some(p) => p.with_sampled(forced || p.is_sampled()),
            None => TraceFlags::NONE.with_sampled(forced || self.sample_trace(trace)),
        }
    }
}

/// The low 56 bits of a trace id (its last 7 bytes in W3C order).
pub fn random_part(trace: TraceId) -> u64 {
    // Truncation to the low 64 bits is the point; then mask to 56.
    (trace.get() as u64) & (RANDOM_SPAN - 1)
}

/// `ratio × 2^56`, ratio clamped to `0..=1` (NaN → 0).
pub fn threshold(ratio: f64) -> u64 {
    if ratio.is_nan() || ratio <= 0.0 {
        0
    } else if ratio >= 1.0 {
        RANDOM_SPAN
    } else {
        // Exact: 2^56 is a power of two; `as` rounds toward zero.
        (ratio * RANDOM_SPAN as f64) as u64
    }
}
