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
    /// Export of completed traces to an OTLP/HTTP collector (the `[otlp]`
    /// table; used by `traced::otlp`, feature `otlp`, host only).
    pub otlp: OtlpConfig,
    /// The logd fallback (`[logd_fallback]`): span-end records read back
    /// from logd ([`crate::from_logd`]).
    pub logd_fallback: LogdFallback,
}

/// The OTLP/HTTP (JSON) exporter's switch and bounds. Plain data, so the
/// recipe parses the same on the OS (no_std) and on the host.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// Export at all (default `false`: an exporter built from a disabled
    /// config drops nothing and sends nothing; it ignores what it is
    /// given).
    pub enabled: bool,
    /// Where requests are POSTed, `http://host:port/path` (default
    /// `http://127.0.0.1:4318/v1/traces`, the OTLP/HTTP default). Plain
    /// HTTP only: the exporter is built without TLS.
    pub endpoint: String,
    /// Completed traces waiting to be exported (default 256). One more
    /// drops the oldest, counted in spans.
    pub queue_traces: usize,
    /// Spans in one request at most (default 512); a larger trace is split
    /// over several requests.
    pub max_batch_spans: usize,
    /// The first wait before a retry (default 100 ms); doubled after each
    /// retry up to `max_backoff_ms`.
    pub initial_backoff_ms: u64,
    /// The longest wait before a retry (default 5000 ms), also the bound
    /// on a server's `Retry-After`.
    pub max_backoff_ms: u64,
    /// Attempts per request, the first included (default 5); a request
    /// still refused after them is dropped, counted.
    pub max_attempts: u32,
    /// Bound on one attempt: connect, send and read the reply (default
    /// 10000 ms). A timeout is retried like a connection error.
    pub timeout_ms: u64,
    /// Added to every time sent: the collector's clock counts nanoseconds
    /// since boot, OTLP wants nanoseconds since the Unix epoch (default 0:
    /// times go out as time since boot, i.e. dates in January 1970). The
    /// host shell sets it from the wall clock it trusts.
    pub unix_offset_ns: u64,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            endpoint: String::from("http://127.0.0.1:4318/v1/traces"),
            queue_traces: 256,
            max_batch_spans: 512,
            initial_backoff_ms: 100,
            max_backoff_ms: 5000,
            max_attempts: 5,
            timeout_ms: 10_000,
            unix_offset_ns: 0,
        }
    }
}

/// Bounds of the logd fallback ([`crate::from_logd::LogdFollower`]): one
/// QUERY in flight at a time, one page per poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogdFallback {
    /// Read span ends from logd at all (default `true`; it acts only
    /// where traced is linked to logd and is one of logd's readers).
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
            enabled: true,
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
            collector: String::from("node-a"),
            forward_queue: 1024,
            store_queue: 64,
            otlp: OtlpConfig::default(),
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
