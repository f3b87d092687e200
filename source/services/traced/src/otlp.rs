//! Completed traces exported to an OpenTelemetry collector over OTLP/HTTP
//! with the JSON encoding (feature `otlp`, host only).
//!
//! Two parts:
//!
//! * [`export_request`] / [`request_body`]: the mapping, a pure function
//!   from completed traces to an `ExportTraceServiceRequest` in the
//!   OTLP/HTTP JSON encoding (lowerCamelCase fields, hex ids, 64-bit
//!   integers as decimal strings, enums as integers). Spans are grouped
//!   into one `resourceSpans` per [`Origin`] (node + service), ordered by
//!   node then service, each with one `scopeSpans` named
//!   [`SCOPE_NAME`]; inside it spans keep the order they were given in.
//! * [`OtlpExporter`]: a bounded queue of completed traces, drained by
//!   [`OtlpExporter::flush`] into requests of at most `max_batch_spans`
//!   spans, each POSTed (blocking) to the endpoint with retries and
//!   exponential backoff. The waits go through an injected [`Sleep`], so
//!   tests never sleep.
//!
//! Times: the collector's clock counts nanoseconds since boot; every time
//! sent is `aligned time + unix_offset_ns` (saturating), where the
//! offset comes from [`OtlpConfig::unix_offset_ns`]. A span from another
//! node goes out with its aligned times (moved by the clock offset
//! estimated for that node), like in the JSONL form.
//!
//! Retries: only HTTP 429, 502, 503 and 504, and connection-level
//! failures (DNS, connect refused or reset, I/O errors and timeouts: the
//! collector may be restarting). On 429 and 503 a `Retry-After` given in
//! seconds replaces the backoff for that wait, capped at
//! `max_backoff_ms`. Any other answer (a non-2xx status such as 400, 401,
//! 404 or 500, or a reply that is not HTTP) drops the request's spans at
//! once (`dropped_rejected`). After `max_attempts` attempts the spans are
//! dropped (`dropped_exhausted`) and the flush stops, leaving the rest of
//! the queue for the next one.

use std::collections::{BTreeMap, VecDeque};
use std::format;
use std::io::Read;
use std::string::{String, ToString};
use std::time::Duration;
use std::vec::Vec;

use nexus_trace::SpanStatus;
use serde::Serialize;

use crate::config::OtlpConfig;
use crate::correlate::{Completed, Origin, TracedSpan};

/// The instrumentation scope every span is reported under.
pub const SCOPE_NAME: &str = "nexus-trace";

/// `Span.flags` bit: bit 9 below is meaningful (the span has a parent).
pub const FLAG_HAS_IS_REMOTE: u32 = 0x100;
/// `Span.flags` bit: the parent is in another service or node.
pub const FLAG_IS_REMOTE: u32 = 0x200;

/// Attribute added to a span from another node: the clock offset (peer
/// minus collector, ns) its times were moved by.
pub const ATTR_CLOCK_OFFSET: &str = "nexus.clock_offset_ns";
/// Attribute added to a span from another node: the offset's error bound
/// (ns).
pub const ATTR_CLOCK_ERROR: &str = "nexus.clock_error_ns";

/// Bytes of a server's reply read (and discarded) at most.
const MAX_REPLY_BYTES: u64 = 64 * 1024;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExportRequest {
    resource_spans: Vec<ResourceSpans>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResourceSpans {
    resource: Resource,
    scope_spans: [ScopeSpans; 1],
}

#[derive(Serialize)]
struct Resource {
    attributes: Vec<KeyValue>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ScopeSpans {
    scope: Scope,
    spans: Vec<Span>,
}

#[derive(Serialize)]
struct Scope {
    name: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Span {
    trace_id: String,
    span_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_span_id: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    trace_state: String,
    flags: u32,
    name: String,
    start_time_unix_nano: String,
    end_time_unix_nano: String,
    attributes: Vec<KeyValue>,
    #[serde(skip_serializing_if = "is_zero")]
    dropped_attributes_count: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    events: Vec<Event>,
    #[serde(skip_serializing_if = "is_zero")]
    dropped_events_count: u32,
    status: Status,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    time_unix_nano: String,
    name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    attributes: Vec<KeyValue>,
}

#[derive(Serialize)]
struct Status {
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    code: u8,
}

#[derive(Serialize)]
struct KeyValue {
    key: String,
    value: AnyValue,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum AnyValue {
    StringValue(String),
    /// int64, as a decimal string.
    IntValue(String),
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn string_attr(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: AnyValue::StringValue(value.to_string()),
    }
}

fn int_attr(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: AnyValue::IntValue(value.to_string()),
    }
}

/// String attributes, one per key (the last value of a repeated key
/// wins, as in the JSONL form), ordered by key.
fn attributes(attrs: &[(String, String)]) -> Vec<KeyValue> {
    let map: BTreeMap<&str, &str> = attrs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    map.into_iter().map(|(k, v)| string_attr(k, v)).collect()
}

fn unix_nanos(collector_ns: u64, unix_offset_ns: u64) -> String {
    collector_ns.saturating_add(unix_offset_ns).to_string()
}

fn span(s: &TracedSpan, unix_offset_ns: u64) -> Span {
    let r = &s.record;
    let mut flags = u32::from(r.context.flags.bits());
    if r.parent.is_some() {
        flags |= FLAG_HAS_IS_REMOTE;
        if r.remote_parent {
            flags |= FLAG_IS_REMOTE;
        }
    }
    let mut attrs = attributes(&r.attrs);
    if let Some(o) = &s.offset {
        attrs.retain(|kv| kv.key != ATTR_CLOCK_OFFSET && kv.key != ATTR_CLOCK_ERROR);
        attrs.push(int_attr(ATTR_CLOCK_OFFSET, o.offset_ns));
        attrs.push(int_attr(
            ATTR_CLOCK_ERROR,
            i64::try_from(o.error_ns).unwrap_or(i64::MAX),
        ));
    }
    let aligned = |t: u64| match &s.offset {
        Some(o) => o.to_local(t),
        None => t,
    };
    Span {
        trace_id: format!("{}", r.context.trace),
        span_id: format!("{}", r.context.span),
        parent_span_id: r.parent.map(|p| format!("{p}")),
        trace_state: r
            .tracestate
            .as_ref()
            .map(|t| format!("{t}"))
            .unwrap_or_default(),
        flags,
        name: r.name.clone(),
        start_time_unix_nano: unix_nanos(s.aligned_start_ns(), unix_offset_ns),
        end_time_unix_nano: unix_nanos(s.aligned_end_ns(), unix_offset_ns),
        attributes: attrs,
        dropped_attributes_count: r.dropped_attrs,
        events: r
            .events
            .iter()
            .map(|e| Event {
                time_unix_nano: unix_nanos(aligned(e.time_ns), unix_offset_ns),
                name: e.name.clone(),
                attributes: attributes(&e.attrs),
            })
            .collect(),
        dropped_events_count: r.dropped_events,
        status: Status {
            message: r.status_message.clone(),
            code: status_code(r.status),
        },
    }
}

/// OTLP `Status.code`: UNSET 0, OK 1, ERROR 2.
fn status_code(s: SpanStatus) -> u8 {
    match s {
        SpanStatus::Unset => 0,
        SpanStatus::Ok => 1,
        SpanStatus::Error => 2,
    }
}

fn resource(origin: Origin) -> Resource {
    Resource {
        attributes: Vec::from([
            string_attr("service.name", &format!("svc-{}", origin.service)),
            string_attr("host.id", &format!("{:016x}", origin.node)),
        ]),
    }
}

fn build<'a>(spans: impl Iterator<Item = &'a TracedSpan>, unix_offset_ns: u64) -> ExportRequest {
    let mut by_origin: BTreeMap<Origin, Vec<Span>> = BTreeMap::new();
    for s in spans {
        by_origin
            .entry(s.origin)
            .or_default()
            .push(span(s, unix_offset_ns));
    }
    ExportRequest {
        resource_spans: by_origin
            .into_iter()
            .map(|(origin, spans)| ResourceSpans {
                resource: resource(origin),
                scope_spans: [ScopeSpans {
                    scope: Scope { name: SCOPE_NAME },
                    spans,
                }],
            })
            .collect(),
    }
}

/// The `ExportTraceServiceRequest` (OTLP/HTTP JSON) for every span of
/// `traces`, times shifted by `unix_offset_ns`. See the module doc and
/// "OTLP export" in `docs/observability/tracing.md` for the mapping.
pub fn export_request(
    traces: &[Completed],
    unix_offset_ns: u64,
) -> Result<serde_json::Value, serde_json::Error> {
    serde_json::to_value(build(
        traces.iter().flat_map(|t| t.spans.iter()),
        unix_offset_ns,
    ))
}

/// The same request for a batch of spans, as the bytes POSTed.
pub fn request_body(
    spans: &[TracedSpan],
    unix_offset_ns: u64,
) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&build(spans.iter(), unix_offset_ns))
}

/// How the exporter waits between attempts (injected so tests record the
/// waits instead of sleeping).
pub trait Sleep {
    /// Waits for `d`.
    fn sleep(&mut self, d: Duration);
}

/// [`Sleep`] on the calling thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadSleep;

impl Sleep for ThreadSleep {
    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// The exporter's counters. Drops are counted in spans.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OtlpStats {
    /// Spans in requests the endpoint accepted (a 2xx status).
    pub exported_spans: u64,
    /// Requests the endpoint accepted.
    pub exported_requests: u64,
    /// Attempts after the first (each after a wait).
    pub retries: u64,
    /// Spans of queued traces dropped to make room for newer ones.
    pub dropped_queue_full: u64,
    /// Spans of requests answered with a status that is not retried (or
    /// with a reply that is not HTTP).
    pub dropped_rejected: u64,
    /// Spans of requests still failing after `max_attempts` attempts.
    pub dropped_exhausted: u64,
}

/// Why an [`OtlpConfig`] cannot make an enabled exporter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OtlpConfigError {
    /// `max_batch_spans` is 0.
    ZeroBatch,
    /// `max_attempts` is 0.
    ZeroAttempts,
    /// `timeout_ms` is 0.
    ZeroTimeout,
    /// The endpoint is not an `http://` URL (TLS is not built in).
    Endpoint(String),
}

impl core::fmt::Display for OtlpConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::ZeroBatch => f.write_str("otlp.max_batch_spans must be at least 1"),
            Self::ZeroAttempts => f.write_str("otlp.max_attempts must be at least 1"),
            Self::ZeroTimeout => f.write_str("otlp.timeout_ms must be at least 1"),
            Self::Endpoint(e) => write!(f, "otlp.endpoint: {e}"),
        }
    }
}

impl std::error::Error for OtlpConfigError {}

/// How a [`OtlpExporter::flush`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// The queue is empty (every batch exported or dropped).
    Drained,
    /// A batch used up its attempts (dropped, counted); the rest of the
    /// queue waits for the next flush.
    GaveUp,
}

/// What one attempt's answer means.
enum Verdict {
    Accepted,
    /// Retry, after the server's `Retry-After` if it gave one (ms).
    Retry(Option<u64>),
    Rejected,
}

/// The exporter (see the module doc).
pub struct OtlpExporter<S: Sleep = ThreadSleep> {
    cfg: OtlpConfig,
    agent: ureq::Agent,
    queue: VecDeque<Completed>,
    stats: OtlpStats,
    last_status: Option<u16>,
    sleep: S,
}

impl<S: Sleep> core::fmt::Debug for OtlpExporter<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OtlpExporter")
            .field("cfg", &self.cfg)
            .field("queued_traces", &self.queue.len())
            .field("stats", &self.stats)
            .field("last_status", &self.last_status)
            .finish_non_exhaustive()
    }
}

impl OtlpExporter<ThreadSleep> {
    /// An exporter that waits on the calling thread.
    pub fn new(cfg: &OtlpConfig) -> Result<Self, OtlpConfigError> {
        Self::with_sleep(cfg, ThreadSleep)
    }
}

impl<S: Sleep> OtlpExporter<S> {
    /// An exporter waiting through `sleep`. A disabled config is not
    /// checked: the exporter ignores every trace.
    pub fn with_sleep(cfg: &OtlpConfig, sleep: S) -> Result<Self, OtlpConfigError> {
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let agent = ureq::AgentBuilder::new()
            .timeout(timeout)
            .redirects(0)
            .build();
        if cfg.enabled {
            if cfg.max_batch_spans == 0 {
                return Err(OtlpConfigError::ZeroBatch);
            }
            if cfg.max_attempts == 0 {
                return Err(OtlpConfigError::ZeroAttempts);
            }
            if cfg.timeout_ms == 0 {
                return Err(OtlpConfigError::ZeroTimeout);
            }
            if !cfg.endpoint.starts_with("http://") {
                return Err(OtlpConfigError::Endpoint(String::from(
                    "must start with http:// (no TLS)",
                )));
            }
            agent
                .post(&cfg.endpoint)
                .request_url()
                .map_err(|e| OtlpConfigError::Endpoint(e.to_string()))?;
        }
        Ok(Self {
            cfg: cfg.clone(),
            agent,
            queue: VecDeque::new(),
            stats: OtlpStats::default(),
            last_status: None,
            sleep,
        })
    }

    /// The counters.
    pub fn stats(&self) -> OtlpStats {
        self.stats
    }

    /// Traces waiting (a trace partly sent counts as one).
    pub fn queued_traces(&self) -> usize {
        self.queue.len()
    }

    /// The HTTP status of the last answer received, if any.
    pub fn last_status(&self) -> Option<u16> {
        self.last_status
    }

    /// The injected sleeper (tests read the waits it recorded).
    pub fn sleeper(&self) -> &S {
        &self.sleep
    }

    /// Queues a completed trace; with `queue_traces` queued already, the
    /// oldest is dropped first (its spans counted `dropped_queue_full`).
    /// Ignored when the exporter is disabled.
    pub fn push(&mut self, trace: Completed) {
        if !self.cfg.enabled {
            return;
        }
        if self.cfg.queue_traces == 0 {
            self.stats.dropped_queue_full += trace.spans.len() as u64;
            return;
        }
        while self.queue.len() >= self.cfg.queue_traces {
            match self.queue.pop_front() {
                Some(old) => self.stats.dropped_queue_full += old.spans.len() as u64,
                None => break,
            }
        }
        self.queue.push_back(trace);
    }

    /// Sends the queue, oldest trace first, in requests of at most
    /// `max_batch_spans` spans (a trace larger than that is split; a
    /// request may hold several traces). Blocks for the requests and the
    /// waits between attempts.
    pub fn flush(&mut self) -> Flush {
        loop {
            let batch = self.next_batch();
            if batch.is_empty() {
                return Flush::Drained;
            }
            if !self.send(&batch) {
                return Flush::GaveUp;
            }
        }
    }

    /// Takes up to `max_batch_spans` spans off the front of the queue.
    fn next_batch(&mut self) -> Vec<TracedSpan> {
        let max = self.cfg.max_batch_spans.max(1);
        let mut batch = Vec::new();
        while batch.len() < max {
            let Some(front) = self.queue.front_mut() else {
                break;
            };
            let take = (max - batch.len()).min(front.spans.len());
            batch.extend(front.spans.drain(..take));
            if front.spans.is_empty() {
                self.queue.pop_front();
            }
        }
        batch
    }

    /// Sends one batch with retries; false if its attempts ran out.
    fn send(&mut self, batch: &[TracedSpan]) -> bool {
        let n = batch.len() as u64;
        let body = match request_body(batch, self.cfg.unix_offset_ns) {
            Ok(b) => b,
            Err(_) => {
                self.stats.dropped_rejected += n;
                return true;
            }
        };
        self.send_body(&body, n)
    }

    /// POSTs an already encoded OTLP/HTTP JSON body holding `n` items
    /// (spans, or log records for a logs endpoint) to the endpoint, with
    /// the same retry rule and counters (items counted as spans); false if
    /// its attempts ran out. Nothing is sent when the exporter is disabled.
    pub fn send_body(&mut self, body: &[u8], n: u64) -> bool {
        if !self.cfg.enabled {
            return true;
        }
        let max_backoff = self.cfg.max_backoff_ms;
        let mut backoff = self.cfg.initial_backoff_ms.min(max_backoff);
        let mut attempt: u32 = 1;
        loop {
            match self.post(body) {
                Verdict::Accepted => {
                    self.stats.exported_spans += n;
                    self.stats.exported_requests += 1;
                    return true;
                }
                Verdict::Rejected => {
                    self.stats.dropped_rejected += n;
                    return true;
                }
                Verdict::Retry(after_ms) => {
                    if attempt >= self.cfg.max_attempts {
                        self.stats.dropped_exhausted += n;
                        return false;
                    }
                    let wait = after_ms.unwrap_or(backoff).min(max_backoff);
                    self.sleep.sleep(Duration::from_millis(wait));
                    self.stats.retries += 1;
                    attempt += 1;
                    backoff = backoff.saturating_mul(2).min(max_backoff);
                }
            }
        }
    }

    /// One attempt.
    fn post(&mut self, body: &[u8]) -> Verdict {
        let answer = self
            .agent
            .post(&self.cfg.endpoint)
            .set("Content-Type", "application/json")
            .send_bytes(body);
        match answer {
            Ok(reply) => {
                let status = reply.status();
                self.last_status = Some(status);
                discard(reply);
                if (200..300).contains(&status) {
                    Verdict::Accepted
                } else {
                    // 1xx/3xx (redirects are not followed).
                    Verdict::Rejected
                }
            }
            Err(ureq::Error::Status(status, reply)) => {
                self.last_status = Some(status);
                let retry_after = match status {
                    429 | 503 => reply
                        .header("Retry-After")
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|s| s.saturating_mul(1000)),
                    _ => None,
                };
                discard(reply);
                match status {
                    429 | 502 | 503 | 504 => Verdict::Retry(retry_after),
                    _ => Verdict::Rejected,
                }
            }
            Err(ureq::Error::Transport(t)) => match t.kind() {
                ureq::ErrorKind::Dns | ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Io => {
                    Verdict::Retry(None)
                }
                _ => Verdict::Rejected,
            },
        }
    }
}

/// Reads (a bounded part of) a reply so the connection can be reused.
fn discard(reply: ureq::Response) {
    let mut sink = Vec::new();
    // A broken reply body changes nothing: the status decided.
    let _ = reply
        .into_reader()
        .take(MAX_REPLY_BYTES)
        .read_to_end(&mut sink);
}
