//! The JSONL form of a completed trace: one JSON object per line.
//!
//! ```text
//! {"trace_id":"<32 hex>","continuation":false,"completion":"idle",
//!  "dropped_spans":0,"spans":[
//!   {"span_id":"<16 hex>","parent_span_id":"<16 hex>"|null,
//!    "remote_parent":bool,"name":"…","node":"<16 hex>","service":<u32>,
//!    "start_ns":<u64>,"end_ns":<u64>,            // on the collector's clock
//!    "clock_offset_ns":<i64>|null,"clock_error_ns":<u64>|null,
//!    "status":"unset"|"ok"|"error","status_message":"…"|null,
//!    "attributes":{"k":"v",…},"dropped_attributes":<u32>}, …]}
//! ```
//!
//! Spans come in the order of [`Completed::spans`] (aligned start, then
//! span id). Attributes keep the tracer's redaction (secret keys'
//! values are already replaced); on a repeated key the last value wins.
//! `clock_offset_ns` / `clock_error_ns` are set for a span from another
//! node: its times were moved by the offset and are exact within the
//! error.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use serde::Serialize;

use crate::correlate::{Completed, TracedSpan};

#[derive(Serialize)]
struct TraceLine<'a> {
    trace_id: String,
    continuation: bool,
    completion: &'static str,
    dropped_spans: u32,
    spans: Vec<SpanLine<'a>>,
}

#[derive(Serialize)]
struct SpanLine<'a> {
    span_id: String,
    parent_span_id: Option<String>,
    remote_parent: bool,
    name: &'a str,
    node: String,
    service: u32,
    start_ns: u64,
    end_ns: u64,
    clock_offset_ns: Option<i64>,
    clock_error_ns: Option<u64>,
    status: &'static str,
    status_message: Option<&'a str>,
    attributes: BTreeMap<&'a str, &'a str>,
    dropped_attributes: u32,
}

fn span_line(s: &TracedSpan) -> SpanLine<'_> {
    let r = &s.record;
    SpanLine {
        span_id: format!("{}", r.context.span),
        parent_span_id: r.parent.map(|p| format!("{p}")),
        remote_parent: r.remote_parent,
        name: &r.name,
        node: format!("{:016x}", s.origin.node),
        service: s.origin.service,
        start_ns: s.aligned_start_ns(),
        end_ns: s.aligned_end_ns(),
        clock_offset_ns: s.offset.map(|o| o.offset_ns),
        clock_error_ns: s.offset.map(|o| o.error_ns),
        status: r.status.as_str(),
        status_message: r.status_message.as_deref(),
        attributes: r
            .attrs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect(),
        dropped_attributes: r.dropped_attrs,
    }
}

/// Appends `trace` as one JSON line (with its `\n`) to `out`.
pub fn write_line(trace: &Completed, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let line = TraceLine {
        trace_id: format!("{}", trace.trace),
        continuation: trace.continuation,
        completion: trace.completion.as_str(),
        dropped_spans: trace.dropped_spans,
        spans: trace.spans.iter().map(span_line).collect(),
    };
    out.extend_from_slice(&serde_json::to_vec(&line)?);
    out.push(b'\n');
    Ok(())
}
