//! The collector's bounds, mirrored by `recipes/observability/traced.toml`
//! (a test checks that the recipe equals these defaults).

use serde::Deserialize;

/// The recipe, as shipped.
pub const RECIPE: &str = include_str!("../../../../recipes/observability/traced.toml");

/// Bounds of the [`crate::Correlator`] and [`crate::Traced`]. Every one is
/// a hard cap: what does not fit is dropped or completed early,
/// deterministically, and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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
    /// The logd fallback (`[logd_fallback]`): span-end records read back
    /// from logd ([`crate::from_logd`]).
    pub logd_fallback: LogdFallback,
}

/// Bounds of the logd fallback ([`crate::from_logd::LogdFollower`]): one
/// QUERY in flight at a time, one page per poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogdFallback {
    /// Read span ends from logd at all (default `false`: spans arrive
    /// over IPC).
    pub enabled: bool,
    /// Time between two QUERYs (default 200 ms); a page that stopped at
    /// a bound is followed at once by the next one.
    pub poll_interval_ms: u64,
    /// A QUERY unanswered for this long is given up (counted) and the next
    /// one may be sent (default 1000 ms).
    pub reply_timeout_ms: u64,
    /// Records asked per page, so spans per reply at most (default 64;
    /// 0 is taken as 1; logd may lower it).
    pub page_records: u16,
    /// Record bytes asked per page (default 32768; logd may lower it).
    pub page_bytes: u32,
}

impl Default for LogdFallback {
    fn default() -> Self {
        Self {
            enabled: false,
            poll_interval_ms: 200,
            reply_timeout_ms: 1000,
            page_records: 64,
            page_bytes: 32 * 1024,
        }
    }
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
            logd_fallback: LogdFallback::default(),
        }
    }
}

impl Config {
    /// Parses a recipe (TOML; unknown keys refused).
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}
