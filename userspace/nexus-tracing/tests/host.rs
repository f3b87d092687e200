//! The layer and the log bridge against the real logd and traced cores on
//! one host bus: events are queried back from logd (exact records), spans
//! from traced (the completed trace), and the bounds are hit on purpose.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

// The real logd and traced cores, each in the generic shell on its own
// host thread, on one `HostBus`; a logd reader and a traced caller to
// read back what the layer sent. Both services read one `ManualClock`,
// which only the test moves. Waits are bounded loops, never timing
// assertions.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use logd::{Logd, LogdService};
use nexus_bounds::ManualClock;
use nexus_ipc::caller::Caller;
use nexus_ipc::host::{HostBus, HostEndpoint};
use nexus_ipc::router::RouterConfig;
use nexus_ipc::{Endpoint, ServiceId};
use nexus_log::proto::QueryRequest;
use nexus_log::{LogdClient, Record};
use nexus_svc::host::serve;
use nexus_svc::{InMemory, Links, Shell};
use nexus_trace::TraceId;
use traced::proto::{self, Reply, Request};
use traced::{Traced, TracedService};

const TIMEOUT_NS: u64 = 2_000_000_000;
/// Bounded waits: this many tries, 10 ms apart.
const TRIES: u32 = 500;

#[derive(Debug)]
struct Stack {
    pub bus: HostBus,
    pub logd: ServiceId,
    pub traced: ServiceId,
    /// The services' clock.
    pub clock: Arc<ManualClock>,
    reader: LogdClient<HostEndpoint>,
    tracer_q: Caller<HostEndpoint>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Stack {
    pub fn start(logd_cfg: logd::Config) -> Self {
        let router = RouterConfig::default();
        let bus = HostBus::new(router);
        let clock = Arc::new(ManualClock::new(1_000_000_000));
        let stop = Arc::new(AtomicBool::new(false));
        let mut logd_ep = bus.endpoint("logd").unwrap();
        let mut traced_ep = bus.endpoint("traced").unwrap();
        let reader_ep = bus.endpoint("logd-reader").unwrap();
        let (logd, traced) = (logd_ep.id(), traced_ep.id());
        let core = Logd::new(logd_cfg, router.max_frame_bytes, [reader_ep.id()]).unwrap();
        let mut threads = Vec::new();
        {
            let (clock, stop) = (Arc::clone(&clock), Arc::clone(&stop));
            threads.push(std::thread::spawn(move || {
                let mut shell = Shell::new(LogdService::new(core), InMemory, Links::new());
                serve(
                    &mut shell,
                    &mut logd_ep,
                    &clock,
                    &stop,
                    5_000_000,
                    &mut |_| {},
                );
            }));
        }
        {
            let (clock, stop) = (Arc::clone(&clock), Arc::clone(&stop));
            let cfg = traced::Config {
                idle_timeout_ns: 1_000_000,
                ..traced::Config::default()
            };
            threads.push(std::thread::spawn(move || {
                let svc = TracedService::new(Traced::new(cfg, 0x5eed));
                let mut shell = Shell::new(svc, InMemory, Links::new());
                serve(
                    &mut shell,
                    &mut traced_ep,
                    &clock,
                    &stop,
                    5_000_000,
                    &mut |_| {},
                );
            }));
        }
        let tracer_q = Caller::new(bus.endpoint("trace-reader").unwrap(), traced, TIMEOUT_NS);
        Self {
            reader: LogdClient::new(reader_ep, logd, TIMEOUT_NS),
            tracer_q,
            bus,
            logd,
            traced,
            clock,
            stop,
            threads,
        }
    }

    /// Every record logd holds, once it holds at least `n` (bounded wait).
    pub fn records(&mut self, n: usize) -> Vec<Record> {
        let mut last = Vec::new();
        for _ in 0..TRIES {
            last = self
                .reader
                .query_all(&QueryRequest::all(64), 100)
                .unwrap()
                .records;
            if last.len() >= n {
                return last;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("logd holds {} records, wanted {n}: {last:?}", last.len());
    }

    pub fn logd_stats(&mut self) -> nexus_log::proto::Stats {
        self.reader.stats().unwrap()
    }

    /// The completed trace as traced's JSONL line, parsed: the services'
    /// clock is moved past the idle timeout until traced has completed it
    /// (bounded wait).
    pub fn trace(&mut self, trace: TraceId) -> serde_json::Value {
        let mut last = None;
        for _ in 0..TRIES {
            self.clock.advance(2_000_000);
            let nonce = self.tracer_q.next_nonce();
            let frame = proto::encode_request(nonce, &Request::Trace(trace)).unwrap();
            match self
                .tracer_q
                .call(nonce, &frame, proto::decode_reply)
                .unwrap()
            {
                Reply::Trace(line) => return serde_json::from_str(&line).unwrap(),
                other => last = Some(other),
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("trace {trace} never completed: {last:?}");
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

use nexus_log::fields::FieldType;
use nexus_log::Level;
use nexus_trace::{IdSeed, SpanId};
use nexus_tracing::{NexusLayer, NexusLogger, TRUNCATED_KEY};
use tracing::field::Empty;
use tracing_subscriber::layer::SubscriberExt;

fn layer_for(
    stack: &Stack,
    name: &str,
    clock: &Arc<ManualClock>,
) -> (
    NexusLayer<HostEndpoint, Arc<ManualClock>>,
    ServiceId,
    ServiceId,
) {
    let log_ep = stack.bus.endpoint(&format!("{name}.log")).unwrap();
    let span_ep = stack.bus.endpoint(&format!("{name}.spans")).unwrap();
    let (log_id, span_id) = (log_ep.id(), span_ep.id());
    let layer = NexusLayer::builder(log_ep, stack.logd)
        .traced(span_ep, stack.traced)
        .min_level(Level::Debug)
        .clock(Arc::clone(clock))
        .seed(IdSeed::new(1, 2, 3))
        .build();
    (layer, log_id, span_id)
}

#[test]
fn events_reach_logd_and_spans_reach_traced_with_the_same_ids() {
    let mut stack = Stack::start(logd::Config::default());
    let clock = Arc::new(ManualClock::new(5_000_000));
    let (layer, log_id, span_sender) = layer_for(&stack, "app", &clock);
    let handle = layer.handle();
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let outer = tracing::info_span!(
            "request",
            user_id = 42u64,
            path = "/agents",
            api_token = "s3cr3t"
        );
        let entered = outer.enter();
        clock.advance(1_000);
        tracing::info!(agent_id = "a1", ok = true, "agent started");
        let inner = tracing::info_span!("db.query", rows = Empty, error = Empty);
        {
            let _i = inner.enter();
            clock.advance(500);
            tracing::warn!(latency_ms = 12.5, retries = -2i64, "slow query {}", 3);
            inner.record("rows", 7);
            inner.record("error", "timeout");
        }
        drop(inner);
        clock.advance(100);
        tracing::debug!(target: "custom::target", "done");
        tracing::trace!("below the minimum level");
        drop(entered);
        drop(outer);
    });

    // logd: three records, exactly.
    let recs = stack.records(3);
    assert_eq!(recs.len(), 3, "{recs:?}");
    let (r1, r2, r3) = (&recs[0], &recs[1], &recs[2]);
    for r in &recs {
        assert_eq!(r.sender, log_id, "identity from the transport");
    }
    let trace = r1.fields.get("trace_id").unwrap().to_string();
    let outer_span = r1.fields.get("span_id").unwrap().to_string();
    let inner_span = r2.fields.get("span_id").unwrap().to_string();
    assert_eq!(trace.len(), 32);
    assert_ne!(outer_span, inner_span);

    assert_eq!((r1.level, r1.target.as_str()), (Level::Info, "host"));
    assert_eq!(r1.message, "agent started");
    assert_eq!(
        r1.fields.as_str(),
        format!(
            "agent_id=a1\napi_token=[redacted]\nok:b=true\npath=/agents\n\
             span_id={outer_span}\ntrace_id={trace}\nuser_id:i=42\n"
        )
    );
    assert_eq!((r2.level, r2.target.as_str()), (Level::Warn, "host"));
    assert_eq!(r2.message, "slow query 3");
    assert_eq!(
        r2.fields.as_str(),
        format!(
            "api_token=[redacted]\nlatency_ms:f=12.5\npath=/agents\nretries:i=-2\n\
             span_id={inner_span}\ntrace_id={trace}\nuser_id:i=42\n"
        ),
        "the inner span's fields were still empty; the outer's are inherited"
    );
    assert_eq!(
        r2.fields.get_typed("latency_ms"),
        Some((FieldType::Float, "12.5"))
    );
    assert_eq!(
        (r3.level, r3.target.as_str()),
        (Level::Debug, "custom::target")
    );
    assert_eq!(r3.message, "done");
    assert_eq!(r3.fields.get("span_id"), Some(outer_span.as_str()));

    // traced: the same trace, parent and child, attributes and status.
    let v = stack.trace(nexus_trace::TraceId::from_hex(&trace).unwrap());
    assert_eq!(v["trace_id"], trace);
    let spans = v["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 2, "{v}");
    let (req, db) = (&spans[0], &spans[1]);
    assert_eq!(req["name"], "request");
    assert_eq!(req["span_id"], outer_span);
    assert_eq!(req["parent_span_id"], serde_json::Value::Null);
    assert_eq!(req["service"], u64::from(span_sender.get()));
    assert_eq!(
        req["attributes"],
        serde_json::json!({"user_id": "42", "path": "/agents", "api_token": "[redacted]"})
    );
    assert_eq!(req["status"], "unset");
    assert_eq!(
        (req["start_ns"].as_u64(), req["end_ns"].as_u64()),
        (Some(5_000_000), Some(5_001_600))
    );
    assert_eq!(db["name"], "db.query");
    assert_eq!(db["span_id"], inner_span);
    assert_eq!(db["parent_span_id"], outer_span);
    assert_eq!(
        db["attributes"],
        serde_json::json!({"rows": "7", "error": "timeout"})
    );
    assert_eq!(
        (db["status"].as_str(), db["status_message"].as_str()),
        (Some("error"), Some("timeout"))
    );
    assert_eq!(
        (db["start_ns"].as_u64(), db["end_ns"].as_u64()),
        (Some(5_001_000), Some(5_001_500))
    );
    assert!(SpanId::from_hex(&inner_span).is_ok());

    let s = handle.stats();
    assert_eq!(
        (s.events.seen, s.events.filtered, s.events.logd.sent),
        (4, 1, 3)
    );
    assert_eq!((s.events.redacted, s.events.records_truncated), (3, 0));
    assert_eq!(
        (
            s.tracer.spans_started,
            s.tracer.spans_ended,
            s.tracer.attrs_redacted
        ),
        (2, 2, 1)
    );
    assert_eq!(
        (s.batcher.queued, s.batcher.sent, s.span_frames_sent),
        (2, 2, 1),
        "one frame, sent when the root closed"
    );
    assert_eq!(
        (s.spans_dropped_queue_full, s.spans_dropped_transport),
        (0, 0)
    );
}

#[test]
fn reserved_and_identity_keys_are_renamed_not_refused() {
    let mut stack = Stack::start(logd::Config::default());
    let clock = Arc::new(ManualClock::new(1));
    let (layer, _, _) = layer_for(&stack, "keys", &clock);
    let handle = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        tracing::info!(
            level = 3,
            pid = 5,
            trace_id = "mine",
            "HTTP.Method" = "GET",
            "keys"
        );
    });
    let recs = stack.records(1);
    assert_eq!(
        recs[0].fields.as_str(),
        "http.method=GET\nlevel_:i=3\npid_:i=5\ntrace_id_=mine\n"
    );
    assert_eq!(handle.stats().events.keys_renamed, 4);
    let st = stack.logd_stats();
    assert_eq!((st.identity_spoofs, st.rejects.invalid_args), (0, 0));
}

#[test]
fn an_event_over_logds_limits_is_truncated_and_counted() {
    let mut stack = Stack::start(logd::Config::default());
    let clock = Arc::new(ManualClock::new(1));
    let (layer, _, _) = layer_for(&stack, "big", &clock);
    let handle = layer.handle();
    let big = "é".repeat(200); // 400 bytes
    let msg = "m".repeat(300);
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        tracing::error!(big = %big, small = 1u8, "{}", msg);
    });
    let recs = stack.records(1);
    let r = &recs[0];
    // The guaranteed budget: message 128 bytes, value 128 bytes (cut on
    // a char boundary), and the record says how many cuts.
    assert_eq!(r.message, "m".repeat(128));
    assert_eq!(r.fields.get("big"), Some("é".repeat(64).as_str()));
    assert_eq!(
        r.fields.get_typed(TRUNCATED_KEY),
        Some((FieldType::Int, "2"))
    );
    assert_eq!(r.fields.get_typed("small"), Some((FieldType::Int, "1")));
    let s = handle.stats().events;
    assert_eq!(
        (s.records_truncated, s.values_truncated, s.fields_dropped),
        (1, 2, 0)
    );
    assert_eq!(s.logd.sent, 1);
    assert_eq!(stack.logd_stats().rejects.over_limit, 0);
}

#[test]
fn a_full_logd_queue_drops_and_counts() {
    // A bus whose queues hold one frame, and a logd that never reads.
    let bus = HostBus::new(RouterConfig {
        queue_depth: 1,
        ..RouterConfig::default()
    });
    let stopped_logd = bus.endpoint("logd").unwrap();
    let stopped_traced = bus.endpoint("traced").unwrap();
    let layer = NexusLayer::builder(bus.endpoint("app.log").unwrap(), stopped_logd.id())
        .traced(bus.endpoint("app.spans").unwrap(), stopped_traced.id())
        .clock(Arc::new(ManualClock::new(1)))
        .build();
    let handle = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        for i in 0..3 {
            let _s = tracing::info_span!("root", i).entered();
            tracing::info!(i, "event");
        }
    });
    let s = handle.stats();
    assert_eq!(
        (s.events.logd.sent, s.events.logd.dropped_queue_full),
        (1, 2)
    );
    assert_eq!((s.span_frames_sent, s.spans_dropped_queue_full), (1, 2));
    assert_eq!(s.batcher.queued, 3);
    drop((stopped_logd, stopped_traced));
}

#[test]
fn without_traced_spans_still_give_events_their_ids() {
    let mut stack = Stack::start(logd::Config::default());
    let layer = NexusLayer::builder(stack.bus.endpoint("solo").unwrap(), stack.logd)
        .min_span_level(Level::Info)
        .build();
    let handle = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let _a = tracing::info_span!("a", k = "outer").entered();
        let _b = tracing::debug_span!("b", k = "filtered").entered();
        tracing::info!("inside");
    });
    let recs = stack.records(1);
    let f = &recs[0].fields;
    assert_eq!(f.get("k"), Some("outer"), "a filtered span is transparent");
    assert_eq!(f.get("trace_id").map(str::len), Some(32));
    assert_eq!(f.get("span_id").map(str::len), Some(16));
    let s = handle.stats();
    assert_eq!(
        (s.spans_filtered, s.tracer.spans_started, s.batcher.queued),
        (1, 1, 0)
    );
}

#[test]
fn the_log_bridge_sends_records_with_typed_key_values() {
    let mut stack = Stack::start(logd::Config::default());
    let logger = NexusLogger::new(
        stack.bus.endpoint("legacy").unwrap(),
        stack.logd,
        Level::Info,
    );
    let sender = logger.sender();
    // Directly through the trait: no global logger involved.
    let kvs: &[(&str, log::kv::Value<'_>)] = &[
        ("free_mb", log::kv::Value::from(120u64)),
        ("delta", log::kv::Value::from(-4i64)),
        ("ok", log::kv::Value::from(false)),
        ("mount", log::kv::Value::from("/data")),
        ("Password", log::kv::Value::from("hunter2")),
    ];
    log::Log::log(
        &logger,
        &log::Record::builder()
            .level(log::Level::Warn)
            .target("legacy::disk")
            .args(format_args!("disk {}% full", 91))
            .key_values(&kvs)
            .build(),
    );
    log::Log::log(
        &logger,
        &log::Record::builder()
            .level(log::Level::Debug)
            .args(format_args!("filtered"))
            .build(),
    );
    // And as the global logger, through `log`'s macros (kv syntax).
    let global = logger.init().unwrap();
    log::error!(target: "legacy::net", peer = 7, up = true; "link {} down", "eth0");
    log::debug!("filtered by log's max level");

    let recs = stack.records(2);
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert_eq!(recs[0].sender, sender);
    assert_eq!(
        (recs[0].level, recs[0].target.as_str()),
        (Level::Warn, "legacy::disk")
    );
    assert_eq!(recs[0].message, "disk 91% full");
    assert_eq!(
        recs[0].fields.as_str(),
        "delta:i=-4\nfree_mb:i=120\nmount=/data\nok:b=false\npassword=[redacted]\n"
    );
    assert_eq!(
        (recs[1].level, recs[1].target.as_str()),
        (Level::Error, "legacy::net")
    );
    assert_eq!(recs[1].message, "link eth0 down");
    assert_eq!(recs[1].fields.as_str(), "peer:i=7\nup:b=true\n");
    let s = global.stats();
    assert_eq!((s.seen, s.filtered, s.logd.sent), (3, 1, 2));
    assert_eq!((s.redacted, s.keys_renamed), (1, 1));
}

#[test]
fn spans_leave_in_batches_under_a_long_root_and_on_flush() {
    let mut stack = Stack::start(logd::Config::default());
    let clock = Arc::new(ManualClock::new(1));
    let layer = NexusLayer::builder(stack.bus.endpoint("batch.log").unwrap(), stack.logd)
        .traced(stack.bus.endpoint("batch.spans").unwrap(), stack.traced)
        .clock(Arc::clone(&clock))
        .bounds(nexus_tracing::Bounds {
            batch_spans: 2,
            ..nexus_tracing::Bounds::default()
        })
        .build();
    let handle = layer.handle();
    let subscriber = tracing_subscriber::registry().with(layer);
    let (root, trace) = tracing::subscriber::with_default(subscriber, || {
        let root = tracing::info_span!("server");
        let _e = root.enter();
        for i in 0..5 {
            let _c = tracing::info_span!("job", i).entered();
            clock.advance(10);
        }
        // 5 children closed: two frames of 2 went out, 1 waits.
        let s = handle.stats();
        assert_eq!((s.span_frames_sent, s.batcher.sent), (2, 4));
        handle.flush();
        assert_eq!(handle.stats().span_frames_sent, 3);
        tracing::info!("still in the root");
        (
            root.clone(),
            stack.records(1)[0]
                .fields
                .get("trace_id")
                .unwrap()
                .to_string(),
        )
    });
    // The root is still open (a handle is held): traced has the five
    // jobs; closing the root later would add it as a continuation.
    let v = stack.trace(nexus_trace::TraceId::from_hex(&trace).unwrap());
    let spans = v["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 5, "{v}");
    assert!(spans
        .iter()
        .all(|s| s["name"] == "job" && s["parent_span_id"].is_string()));
    drop(root);
}

#[test]
fn events_from_many_threads_are_all_accounted_for() {
    let mut stack = Stack::start(logd::Config::default());
    let layer = NexusLayer::builder(stack.bus.endpoint("mt.log").unwrap(), stack.logd).build();
    let handle = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let d = dispatch.clone();
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&d, || {
                    let _s = tracing::info_span!("worker", t).entered();
                    for i in 0..50 {
                        tracing::info!(i, "tick");
                    }
                })
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = handle.stats().events;
    assert_eq!(s.seen, 200);
    assert_eq!(
        s.logd.sent + s.logd.dropped_queue_full,
        200,
        "every event sent or counted as dropped: {s:?}"
    );
    let held = stack.records(usize::try_from(s.logd.sent).unwrap());
    // Records of one worker carry that worker's span and field.
    for r in &held {
        let t = r.fields.get("t").unwrap();
        assert!(held
            .iter()
            .filter(|o| o.fields.get("t") == Some(t))
            .all(|o| o.fields.get("span_id") == r.fields.get("span_id")));
    }
}
