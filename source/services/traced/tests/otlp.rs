//! The OTLP/HTTP JSON exporter: the mapping checked value by value and
//! decoded with the official OTLP protobuf types (`opentelemetry-proto`,
//! serde form of the OTLP JSON encoding); the exporter against a local
//! HTTP server answering scripted statuses. Waits are recorded, never
//! slept.
#![cfg(feature = "otlp")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use nexus_trace::{SpanEvent, SpanStatus, TraceState};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use serde_json::json;
use traced::config::OtlpConfig;
use traced::otlp::{self, Flush, OtlpConfigError, OtlpExporter, OtlpStats, Sleep};
use traced::{Completed, Completion, Estimate, Origin, TracedSpan};

use common::record;

const T1: u128 = 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736;
const T2: u128 = 0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c;
const A: u64 = 0xa1;
const B: u64 = 0x00b2_0000_0000_00b2;
const UNIX: u64 = 1_700_000_000_000_000_000;

fn origin(node: u64, service: u32) -> Origin {
    Origin { node, service }
}

fn completed(trace: u128, spans: Vec<TracedSpan>) -> Completed {
    Completed {
        trace: nexus_trace::TraceId::new(trace).unwrap(),
        spans,
        continuation: false,
        dropped_spans: 0,
        completion: Completion::Idle,
    }
}

/// Two traces. T1: a root on A/5 (ok, a repeated attribute), B/7's
/// server span under it (remote parent, B's clock 3.25 s ahead, error
/// with a message, an event, a tracestate), a local child on A/5 (unset,
/// dropped attributes and events). T2: one root on A/6.
fn fixture() -> Vec<Completed> {
    let mut root = record(T1, 1, None, 1_000, 9_000);
    root.attrs = vec![
        ("http.method".into(), "GET".into()),
        ("peer".into(), "b".into()),
        ("http.method".into(), "POST".into()),
    ];
    let mut server = record(T1, 2, Some(1), 3_250_002_000, 3_250_006_000);
    server.remote_parent = true;
    server.status = SpanStatus::Error;
    server.status_message = Some("timeout".into());
    server.events = vec![SpanEvent {
        name: "retry".into(),
        time_ns: 3_250_003_000,
        attrs: vec![("n".into(), "2".into())],
    }];
    server.tracestate = Some(TraceState::parse("vendor=x").unwrap());
    let offset = Estimate {
        offset_ns: 3_250_000_000,
        error_ns: 200_000,
        rtt_ns: 400_000,
    };
    let mut child = record(T1, 3, Some(1), 7_000, 8_000);
    child.status = SpanStatus::Unset;
    child.dropped_attrs = 2;
    child.dropped_events = 1;
    vec![
        completed(
            T1,
            vec![
                TracedSpan::local(root, origin(A, 5)),
                TracedSpan::remote(server, origin(B, 7), offset),
                TracedSpan::local(child, origin(A, 5)),
            ],
        ),
        completed(
            T2,
            vec![TracedSpan::local(
                record(T2, 0x0102_0304_0506_0708, None, 500, 600),
                origin(A, 6),
            )],
        ),
    ]
}

fn resource(service: &str, host: &str) -> serde_json::Value {
    json!({"attributes": [
        {"key": "service.name", "value": {"stringValue": service}},
        {"key": "host.id", "value": {"stringValue": host}},
    ]})
}

#[test]
fn mapping_is_exact() {
    let got = otlp::export_request(&fixture(), UNIX).unwrap();
    let want = json!({"resourceSpans": [
        {
            "resource": resource("svc-5", "00000000000000a1"),
            "scopeSpans": [{"scope": {"name": "nexus-trace"}, "spans": [
                {
                    "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
                    "spanId": "0000000000000001",
                    "flags": 1,
                    "name": "op1",
                    "startTimeUnixNano": "1700000000000001000",
                    "endTimeUnixNano": "1700000000000009000",
                    "attributes": [
                        {"key": "http.method", "value": {"stringValue": "POST"}},
                        {"key": "peer", "value": {"stringValue": "b"}},
                    ],
                    "status": {"code": 1},
                },
                {
                    "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
                    "spanId": "0000000000000003",
                    "parentSpanId": "0000000000000001",
                    "flags": 0x101,
                    "name": "op3",
                    "startTimeUnixNano": "1700000000000007000",
                    "endTimeUnixNano": "1700000000000008000",
                    "attributes": [],
                    "droppedAttributesCount": 2,
                    "droppedEventsCount": 1,
                    "status": {"code": 0},
                },
            ]}],
        },
        {
            "resource": resource("svc-6", "00000000000000a1"),
            "scopeSpans": [{"scope": {"name": "nexus-trace"}, "spans": [
                {
                    "traceId": "0af7651916cd43dd8448eb211c80319c",
                    "spanId": "0102030405060708",
                    "flags": 1,
                    "name": "op72623859790382856",
                    "startTimeUnixNano": "1700000000000000500",
                    "endTimeUnixNano": "1700000000000000600",
                    "attributes": [],
                    "status": {"code": 1},
                },
            ]}],
        },
        {
            "resource": resource("svc-7", "00b20000000000b2"),
            "scopeSpans": [{"scope": {"name": "nexus-trace"}, "spans": [
                {
                    "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
                    "spanId": "0000000000000002",
                    "parentSpanId": "0000000000000001",
                    "traceState": "vendor=x",
                    "flags": 0x301,
                    "name": "op2",
                    "startTimeUnixNano": "1700000000000002000",
                    "endTimeUnixNano": "1700000000000006000",
                    "attributes": [
                        {"key": "nexus.clock_offset_ns", "value": {"intValue": "3250000000"}},
                        {"key": "nexus.clock_error_ns", "value": {"intValue": "200000"}},
                    ],
                    "events": [{
                        "timeUnixNano": "1700000000000003000",
                        "name": "retry",
                        "attributes": [{"key": "n", "value": {"stringValue": "2"}}],
                    }],
                    "status": {"message": "timeout", "code": 2},
                },
            ]}],
        },
    ]});
    assert_eq!(got, want);
}

#[test]
fn mapping_without_offset_sends_boot_relative_times_and_saturates() {
    let got = otlp::export_request(&fixture()[1..], 0).unwrap();
    let span = &got["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
    assert_eq!(span["startTimeUnixNano"], "500");
    assert_eq!(span["endTimeUnixNano"], "600");
    let got = otlp::export_request(&fixture()[1..], u64::MAX - 550).unwrap();
    let span = &got["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
    assert_eq!(span["startTimeUnixNano"], (u64::MAX - 50).to_string());
    assert_eq!(span["endTimeUnixNano"], u64::MAX.to_string());
}

#[test]
fn mapping_of_nothing_is_an_empty_request() {
    assert_eq!(
        otlp::export_request(&[], UNIX).unwrap(),
        json!({"resourceSpans": []})
    );
}

fn decode(body: &[u8]) -> ExportTraceServiceRequest {
    serde_json::from_slice(body).unwrap()
}

fn string_attr(kv: &KeyValue) -> (&str, &str) {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => (kv.key.as_str(), s.as_str()),
        other => panic!("{}: {other:?}", kv.key),
    }
}

fn resource_of(rs: &opentelemetry_proto::tonic::trace::v1::ResourceSpans) -> Vec<(&str, &str)> {
    rs.resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .map(string_attr)
        .collect()
}

/// Every key the exporter sent is one of the official messages' fields
/// (the decoder ignores unknown keys, so re-encoding must give each value
/// back; fields left out are the defaults).
fn assert_sent_is_official(sent: &serde_json::Value, official: &serde_json::Value, path: &str) {
    match (sent, official) {
        (serde_json::Value::Object(s), serde_json::Value::Object(o)) => {
            for (k, v) in s {
                let Some(ov) = o.get(k) else {
                    panic!("{path}.{k} is not a field of the official message");
                };
                assert_sent_is_official(v, ov, &format!("{path}.{k}"));
            }
        }
        (serde_json::Value::Array(s), serde_json::Value::Array(o)) => {
            assert_eq!(s.len(), o.len(), "{path}");
            for (i, (a, b)) in s.iter().zip(o).enumerate() {
                assert_sent_is_official(a, b, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(sent, official, "{path}"),
    }
}

#[test]
fn mapping_decodes_with_the_official_otlp_types() {
    let traces = fixture();
    let spans: Vec<TracedSpan> = traces.iter().flat_map(|t| t.spans.clone()).collect();
    let body = otlp::request_body(&spans, UNIX).unwrap();
    let req = decode(&body);

    let sent: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_sent_is_official(&sent, &serde_json::to_value(&req).unwrap(), "");

    assert_eq!(req.resource_spans.len(), 3);
    let rs = &req.resource_spans;
    assert_eq!(
        resource_of(&rs[0]),
        [("service.name", "svc-5"), ("host.id", "00000000000000a1")]
    );
    assert_eq!(
        resource_of(&rs[1]),
        [("service.name", "svc-6"), ("host.id", "00000000000000a1")]
    );
    assert_eq!(
        resource_of(&rs[2]),
        [("service.name", "svc-7"), ("host.id", "00b20000000000b2")]
    );
    for r in rs {
        assert_eq!(r.scope_spans.len(), 1);
        assert_eq!(r.scope_spans[0].scope.as_ref().unwrap().name, "nexus-trace");
    }

    let t1 = T1.to_be_bytes().to_vec();
    let a5 = &rs[0].scope_spans[0].spans;
    assert_eq!(a5.len(), 2);
    let root = &a5[0];
    assert_eq!(root.trace_id, t1);
    assert_eq!(root.span_id, 1u64.to_be_bytes());
    assert!(root.parent_span_id.is_empty());
    assert_eq!(root.name, "op1");
    assert_eq!(root.flags, 1);
    assert_eq!(root.kind, 0);
    assert_eq!(root.start_time_unix_nano, UNIX + 1_000);
    assert_eq!(root.end_time_unix_nano, UNIX + 9_000);
    assert_eq!(
        root.attributes.iter().map(string_attr).collect::<Vec<_>>(),
        [("http.method", "POST"), ("peer", "b")]
    );
    let st = root.status.as_ref().unwrap();
    assert_eq!((st.code, st.message.as_str()), (1, ""));

    let child = &a5[1];
    assert_eq!(child.trace_id, t1);
    assert_eq!(child.span_id, 3u64.to_be_bytes());
    assert_eq!(child.parent_span_id, 1u64.to_be_bytes());
    assert_eq!(child.flags, 0x101);
    assert_eq!(child.dropped_attributes_count, 2);
    assert_eq!(child.dropped_events_count, 1);
    assert_eq!(child.status.as_ref().unwrap().code, 0);

    let a6 = &rs[1].scope_spans[0].spans;
    assert_eq!(a6.len(), 1);
    assert_eq!(a6[0].trace_id, T2.to_be_bytes());
    assert_eq!(a6[0].span_id, 0x0102_0304_0506_0708u64.to_be_bytes());
    assert_eq!(a6[0].start_time_unix_nano, UNIX + 500);

    let b7 = &rs[2].scope_spans[0].spans;
    assert_eq!(b7.len(), 1);
    let server = &b7[0];
    assert_eq!(server.trace_id, t1);
    assert_eq!(server.span_id, 2u64.to_be_bytes());
    assert_eq!(server.parent_span_id, 1u64.to_be_bytes());
    assert_eq!(server.trace_state, "vendor=x");
    assert_eq!(server.flags, 0x301);
    // Aligned: B's clock is 3.25 s ahead.
    assert_eq!(server.start_time_unix_nano, UNIX + 2_000);
    assert_eq!(server.end_time_unix_nano, UNIX + 6_000);
    let ints: Vec<(&str, i64)> = server
        .attributes
        .iter()
        .map(
            |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::IntValue(i)) => (kv.key.as_str(), *i),
                other => panic!("{other:?}"),
            },
        )
        .collect();
    assert_eq!(
        ints,
        [
            ("nexus.clock_offset_ns", 3_250_000_000),
            ("nexus.clock_error_ns", 200_000)
        ]
    );
    assert_eq!(server.events.len(), 1);
    assert_eq!(server.events[0].name, "retry");
    assert_eq!(server.events[0].time_unix_nano, UNIX + 3_000);
    assert_eq!(
        server.events[0]
            .attributes
            .iter()
            .map(string_attr)
            .collect::<Vec<_>>(),
        [("n", "2")]
    );
    let st = server.status.as_ref().unwrap();
    assert_eq!((st.code, st.message.as_str()), (2, "timeout"));
}

// ---------------------------------------------------------------------
// The exporter against a local HTTP server.

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    url: String,
    content_type: Option<String>,
    body: Vec<u8>,
}

/// A local HTTP server answering the scripted statuses in order (with an
/// optional `Retry-After`), then 200 to everything.
struct Collector {
    endpoint: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl Collector {
    fn start(script: &[(u16, Option<&str>)]) -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let addr = server.server_addr().to_ip().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script: Vec<(u16, Option<String>)> = script
            .iter()
            .map(|(s, h)| (*s, h.map(String::from)))
            .collect();
        let thread = {
            let server = Arc::clone(&server);
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || {
                let mut script = script.into_iter();
                for mut req in server.incoming_requests() {
                    let mut body = Vec::new();
                    req.as_reader().read_to_end(&mut body).unwrap();
                    let content_type = req
                        .headers()
                        .iter()
                        .find(|h| h.field.equiv("Content-Type"))
                        .map(|h| h.value.to_string());
                    seen.lock().unwrap().push(Seen {
                        method: req.method().to_string(),
                        url: req.url().to_string(),
                        content_type,
                        body,
                    });
                    let (status, retry_after) = script.next().unwrap_or((200, None));
                    let mut resp = tiny_http::Response::from_string("{}")
                        .with_status_code(tiny_http::StatusCode(status));
                    if let Some(v) = retry_after {
                        resp = resp.with_header(
                            tiny_http::Header::from_bytes("Retry-After", v.as_bytes()).unwrap(),
                        );
                    }
                    req.respond(resp).unwrap();
                }
            })
        };
        Self {
            endpoint: format!("http://{addr}/v1/traces"),
            seen,
            server,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Decoded requests, in the order received.
    fn requests(&self) -> Vec<ExportTraceServiceRequest> {
        self.seen().iter().map(|s| decode(&s.body)).collect()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Records the waits instead of sleeping.
#[derive(Debug, Default)]
struct Waits(Vec<Duration>);

impl Sleep for Waits {
    fn sleep(&mut self, d: Duration) {
        self.0.push(d);
    }
}

fn cfg(endpoint: &str) -> OtlpConfig {
    OtlpConfig {
        enabled: true,
        endpoint: endpoint.into(),
        unix_offset_ns: UNIX,
        ..OtlpConfig::default()
    }
}

fn exporter(cfg: &OtlpConfig) -> OtlpExporter<Waits> {
    OtlpExporter::with_sleep(cfg, Waits::default()).unwrap()
}

fn waits_ms(e: &OtlpExporter<Waits>) -> Vec<u64> {
    e.sleeper().0.iter().map(|d| d.as_millis() as u64).collect()
}

/// A trace of `n` local spans (ids 1..=n) on A/5.
fn trace(id: u128, n: u64) -> Completed {
    completed(
        id,
        (1..=n)
            .map(|s| TracedSpan::local(record(id, s, None, s * 10, s * 10 + 5), origin(A, 5)))
            .collect(),
    )
}

/// (trace id, span id) of every span in a request, in order.
fn ids(req: &ExportTraceServiceRequest) -> Vec<(u128, u64)> {
    req.resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| {
            (
                u128::from_be_bytes(s.trace_id.as_slice().try_into().unwrap()),
                u64::from_be_bytes(s.span_id.as_slice().try_into().unwrap()),
            )
        })
        .collect()
}

#[test]
fn exports_one_request_with_the_mapping_as_json_post() {
    let srv = Collector::start(&[]);
    let mut e = exporter(&cfg(&srv.endpoint));
    for t in fixture() {
        e.push(t);
    }
    assert_eq!(e.flush(), Flush::Drained);
    let seen = srv.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].url, "/v1/traces");
    assert_eq!(seen[0].content_type.as_deref(), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(body, otlp::export_request(&fixture(), UNIX).unwrap());
    assert_eq!(
        e.stats(),
        OtlpStats {
            exported_spans: 4,
            exported_requests: 1,
            ..OtlpStats::default()
        }
    );
    assert_eq!(e.queued_traces(), 0);
    assert_eq!(e.last_status(), Some(200));
    assert!(waits_ms(&e).is_empty());
}

#[test]
fn requests_hold_at_most_max_batch_spans() {
    let srv = Collector::start(&[]);
    let mut e = exporter(&OtlpConfig {
        max_batch_spans: 4,
        ..cfg(&srv.endpoint)
    });
    e.push(trace(1, 3));
    e.push(trace(2, 6)); // split over two requests
    e.push(trace(3, 2));
    assert_eq!(e.flush(), Flush::Drained);
    let reqs = srv.requests();
    assert_eq!(
        reqs.iter().map(ids).collect::<Vec<_>>(),
        [
            vec![(1, 1), (1, 2), (1, 3), (2, 1)],
            vec![(2, 2), (2, 3), (2, 4), (2, 5)],
            vec![(2, 6), (3, 1), (3, 2)],
        ]
    );
    assert_eq!(
        e.stats(),
        OtlpStats {
            exported_spans: 11,
            exported_requests: 3,
            ..OtlpStats::default()
        }
    );
}

#[test]
fn retries_on_429_then_exports_once() {
    let srv = Collector::start(&[(429, None), (200, None)]);
    let mut e = exporter(&cfg(&srv.endpoint));
    e.push(trace(1, 2));
    assert_eq!(e.flush(), Flush::Drained);
    let seen = srv.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].body, seen[1].body);
    assert_eq!(
        e.stats(),
        OtlpStats {
            exported_spans: 2,
            exported_requests: 1,
            retries: 1,
            ..OtlpStats::default()
        }
    );
    assert_eq!(waits_ms(&e), [100]);
}

#[test]
fn retry_after_on_503_and_429_is_honoured_within_max_backoff() {
    let srv = Collector::start(&[
        (503, Some("2")),
        (429, Some("60")),
        (503, Some("soon")),
        (200, None),
    ]);
    let mut e = exporter(&cfg(&srv.endpoint));
    e.push(trace(1, 1));
    assert_eq!(e.flush(), Flush::Drained);
    // 2 s as asked; 60 s capped at max_backoff; an unparsable value falls
    // back to the backoff (third wait: 100 · 2²).
    assert_eq!(waits_ms(&e), [2000, 5000, 400]);
    assert_eq!(srv.seen().len(), 4);
    assert_eq!(e.stats().retries, 3);
    assert_eq!(e.stats().exported_requests, 1);
}

#[test]
fn retry_after_is_ignored_on_502_and_504() {
    let srv = Collector::start(&[(502, Some("3")), (504, Some("3")), (200, None)]);
    let mut e = exporter(&cfg(&srv.endpoint));
    e.push(trace(1, 1));
    assert_eq!(e.flush(), Flush::Drained);
    assert_eq!(waits_ms(&e), [100, 200]);
    assert_eq!(e.stats().retries, 2);
    assert_eq!(e.stats().exported_spans, 1);
}

#[test]
fn backoff_doubles_up_to_max_backoff() {
    let srv = Collector::start(&[
        (502, None),
        (504, None),
        (502, None),
        (503, None),
        (200, None),
    ]);
    let mut e = exporter(&OtlpConfig {
        max_backoff_ms: 300,
        ..cfg(&srv.endpoint)
    });
    e.push(trace(1, 1));
    assert_eq!(e.flush(), Flush::Drained);
    assert_eq!(waits_ms(&e), [100, 200, 300, 300]);
    assert_eq!(
        e.stats(),
        OtlpStats {
            exported_spans: 1,
            exported_requests: 1,
            retries: 4,
            ..OtlpStats::default()
        }
    );
}

/// A non-retryable status drops the batch at once; the next batch still
/// goes out.
fn rejected_once(status: u16) {
    let srv = Collector::start(&[(status, Some("1"))]);
    let mut e = exporter(&OtlpConfig {
        max_batch_spans: 3,
        ..cfg(&srv.endpoint)
    });
    e.push(trace(1, 3));
    e.push(trace(2, 2));
    assert_eq!(e.flush(), Flush::Drained);
    assert_eq!(
        srv.requests().iter().map(ids).collect::<Vec<_>>(),
        [vec![(1, 1), (1, 2), (1, 3)], vec![(2, 1), (2, 2)]]
    );
    assert_eq!(
        e.stats(),
        OtlpStats {
            exported_spans: 2,
            exported_requests: 1,
            dropped_rejected: 3,
            ..OtlpStats::default()
        },
        "status {status}"
    );
    assert!(waits_ms(&e).is_empty());
}

#[test]
fn test_reject_400_without_retry() {
    rejected_once(400);
}

#[test]
fn test_reject_500_without_retry() {
    rejected_once(500);
}

#[test]
fn test_reject_401_404_413_501_without_retry() {
    for s in [401, 404, 413, 501] {
        rejected_once(s);
    }
}

#[test]
fn test_reject_redirect_without_following() {
    rejected_once(307);
}

#[test]
fn retries_exhausted_drop_the_batch_and_keep_the_rest_queued() {
    let srv = Collector::start(&[(503, None); 5]);
    let mut e = exporter(&OtlpConfig {
        max_batch_spans: 2,
        ..cfg(&srv.endpoint)
    });
    e.push(trace(1, 2));
    e.push(trace(2, 1));
    assert_eq!(e.flush(), Flush::GaveUp);
    assert_eq!(srv.seen().len(), 5);
    assert_eq!(waits_ms(&e), [100, 200, 400, 800]);
    assert_eq!(
        e.stats(),
        OtlpStats {
            retries: 4,
            dropped_exhausted: 2,
            ..OtlpStats::default()
        }
    );
    assert_eq!(e.queued_traces(), 1);
    // The collector is back: the rest goes out on the next flush.
    assert_eq!(e.flush(), Flush::Drained);
    assert_eq!(ids(&srv.requests()[5]), [(2, 1)]);
    assert_eq!(e.stats().exported_spans, 1);
}

#[test]
fn connection_refused_is_retried_then_dropped() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut e = exporter(&OtlpConfig {
        max_attempts: 3,
        ..cfg(&format!("http://127.0.0.1:{port}/v1/traces"))
    });
    e.push(trace(1, 4));
    assert_eq!(e.flush(), Flush::GaveUp);
    assert_eq!(waits_ms(&e), [100, 200]);
    assert_eq!(
        e.stats(),
        OtlpStats {
            retries: 2,
            dropped_exhausted: 4,
            ..OtlpStats::default()
        }
    );
    assert_eq!(e.last_status(), None);
}

#[test]
fn test_reject_reply_that_is_not_http() {
    // A server that reads the whole request (the exporter's body is known)
    // and answers with bytes that are not an HTTP status line.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let t = trace(1, 1);
    let body = otlp::request_body(&t.spans, UNIX).unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.ends_with(&body) {
            let n = conn.read(&mut buf).unwrap();
            assert_ne!(n, 0, "request cut short");
            got.extend_from_slice(&buf[..n]);
        }
        conn.write_all(b"\x00\xffnot http at all\r\n\r\n").unwrap();
    });
    let mut e = exporter(&cfg(&format!("http://{addr}/v1/traces")));
    e.push(t);
    assert_eq!(e.flush(), Flush::Drained);
    server.join().unwrap();
    assert_eq!(
        e.stats(),
        OtlpStats {
            dropped_rejected: 1,
            ..OtlpStats::default()
        }
    );
    assert!(waits_ms(&e).is_empty());
}

#[test]
fn queue_overflow_drops_the_oldest_counted() {
    let srv = Collector::start(&[]);
    let mut e = exporter(&OtlpConfig {
        queue_traces: 2,
        ..cfg(&srv.endpoint)
    });
    e.push(trace(1, 3));
    e.push(trace(2, 1));
    e.push(trace(3, 2));
    assert_eq!(e.queued_traces(), 2);
    assert_eq!(e.stats().dropped_queue_full, 3);
    assert_eq!(e.flush(), Flush::Drained);
    assert_eq!(
        srv.requests().iter().map(ids).collect::<Vec<_>>(),
        [vec![(2, 1), (3, 1), (3, 2)]]
    );
    assert_eq!(
        e.stats(),
        OtlpStats {
            exported_spans: 3,
            exported_requests: 1,
            dropped_queue_full: 3,
            ..OtlpStats::default()
        }
    );
}

#[test]
fn a_zero_queue_keeps_nothing() {
    let srv = Collector::start(&[]);
    let mut e = exporter(&OtlpConfig {
        queue_traces: 0,
        ..cfg(&srv.endpoint)
    });
    e.push(trace(1, 2));
    assert_eq!(e.flush(), Flush::Drained);
    assert!(srv.seen().is_empty());
    assert_eq!(e.stats().dropped_queue_full, 2);
}

#[test]
fn disabled_config_exports_nothing() {
    let srv = Collector::start(&[]);
    let mut e = exporter(&OtlpConfig {
        enabled: false,
        ..cfg(&srv.endpoint)
    });
    for t in fixture() {
        e.push(t);
    }
    assert_eq!(e.queued_traces(), 0);
    assert_eq!(e.flush(), Flush::Drained);
    assert!(srv.seen().is_empty());
    assert_eq!(e.stats(), OtlpStats::default());
    // The shipped default is disabled, and a disabled config is not
    // checked.
    assert!(!OtlpConfig::default().enabled);
    let off = OtlpConfig {
        endpoint: "not a url".into(),
        max_batch_spans: 0,
        ..OtlpConfig::default()
    };
    assert!(OtlpExporter::new(&off).is_ok());
}

#[test]
fn test_reject_unusable_config() {
    let ok = cfg("http://127.0.0.1:4318/v1/traces");
    assert!(OtlpExporter::new(&ok).is_ok());
    let err = |c: OtlpConfig| OtlpExporter::new(&c).unwrap_err();
    assert_eq!(
        err(OtlpConfig {
            max_batch_spans: 0,
            ..ok.clone()
        }),
        OtlpConfigError::ZeroBatch
    );
    assert_eq!(
        err(OtlpConfig {
            max_attempts: 0,
            ..ok.clone()
        }),
        OtlpConfigError::ZeroAttempts
    );
    assert_eq!(
        err(OtlpConfig {
            timeout_ms: 0,
            ..ok.clone()
        }),
        OtlpConfigError::ZeroTimeout
    );
    for bad in [
        "https://127.0.0.1:4318/v1/traces",
        "127.0.0.1:4318",
        "http://",
        "http://exa mple:4318/",
        "",
    ] {
        assert!(
            matches!(
                err(OtlpConfig {
                    endpoint: bad.into(),
                    ..ok.clone()
                }),
                OtlpConfigError::Endpoint(_)
            ),
            "{bad}"
        );
    }
}
