//! The collector's bounds, mirrored by `recipes/observability/traced.toml`
//! (a test checks that the recipe equals these defaults).

use alloc::string::String;

use serde::Deserialize;

/// The recipe, as shipped.
pub const RECIPE: &str = include_str!("../../../../recipes/observability/traced.toml");

/// Bounds of the [`crate::Correlator`] and [`crate::Traced`]. Every one is
/// a hard cap: what does not fit is dropped or completed early,
/// deterministically, and counted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Traces being assembled at once (default 256). One more evicts the
    /// least recently touched, which is completed early
    /// ([`crate::Completion::Evicted`]).
    pub max_active_traces: usize,
    /// Spans kept per trace (default 128); further spans of that trace are
    /// dropped and counted, in the trace and in the stats.
    pub max_spans_per_trace: usize,
    /// A trace with no new span for this long is complete (default
    /// 500 ms).
    pub idle_timeout_ns: u64,
    /// Completed trace ids remembered, so a late span is recognised as a
    /// continuation (default 1024; oldest forgotten first).
    pub remembered_completed: usize,
    /// Traces completed by one [`crate::Correlator::tick`] at most
    /// (default 64); the rest wait for the next tick.
    pub max_completed_per_tick: usize,
    /// Completed traces kept for TRACE and RECENT queries (default 32;
    /// oldest dropped first, counted).
    pub recent_traces: usize,
    /// The busd peer name (in busd's recipe) of the node that assembles
    /// cross-node traces (default `node-a`). That node's traced collects
    /// on `obs.traces`; every other node whose traced is linked to busd
    /// forwards its spans there. Empty: no node forwards.
    pub collector: String,
    /// Local spans waiting for the collector (default 1024; oldest
    /// dropped first, counted).
    pub forward_queue: usize,
    /// Completed traces waiting for the store (default 64; oldest dropped
    /// first, counted).
    pub store_queue: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_active_traces: 256,
            max_spans_per_trace: 128,
            idle_timeout_ns: 500_000_000,
            remembered_completed: 1024,
            max_completed_per_tick: 64,
            recent_traces: 32,
            collector: String::from("node-a"),
            forward_queue: 1024,
            store_queue: 64,
        }
    }
}

impl Config {
    /// Parses a recipe (TOML; unknown keys refused).
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}
