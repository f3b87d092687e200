//! Shared by traced's tests: a finished span record with given ids and
//! times, status ok, nothing else.

use nexus_trace::{SpanContext, SpanId, SpanRecord, SpanStatus, TraceFlags, TraceId};

/// A sampled span `span` of `trace` under `parent` (a root for `None`),
/// named `op<span>`, from `start` to `end`.
pub fn record(trace: u128, span: u64, parent: Option<u64>, start: u64, end: u64) -> SpanRecord {
    SpanRecord {
        context: SpanContext::new(
            TraceId::new(trace).unwrap(),
            SpanId::new(span).unwrap(),
            TraceFlags::SAMPLED,
        ),
        parent: parent.and_then(SpanId::new),
        remote_parent: false,
        name: format!("op{span}"),
        start_ns: start,
        end_ns: end,
        status: SpanStatus::Ok,
        status_message: None,
        attrs: Vec::new(),
        events: Vec::new(),
        tracestate: None,
        dropped_attrs: 0,
        dropped_events: 0,
    }
}
