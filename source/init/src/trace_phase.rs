//! The `trace` selftest phase: this boot's spans go to traced over IPC,
//! are correlated into one trace, and are read back as its JSONL line.
//!
//! Evidence for `SELFTEST: trace local ok`, all from this boot: a root and
//! a child span minted now (ids seeded with this node and boot) are sent
//! as one SPANS batch; after traced's idle timeout, TRACE for that id
//! answers a JSONL line holding exactly those two spans, the child under
//! the root, stamped with this node's id and the sending endpoint's id
//! (which the batch does not carry), with the times the tracer measured.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;

use nexus_bounds::Clock;
use nexus_ipc::{Endpoint, ServiceId};
use nexus_svc::node::Node;
use nexus_svc::platform::Platform;
use nexus_trace::{IdGenerator, IdSeed, RecentSpans, Tee, Tracer, TracerConfig};
use traced::client::SpanBatcher;
use traced::proto::{self, Reply, Request};

/// The endpoint the phase sends from.
pub const ENDPOINT: &str = "selftest-trace";

/// Runs the phase; `Err` says what was seen instead of the evidence.
pub fn run<C: Clock + Clone, P: Platform>(
    node: &Node<C>,
    platform: &P,
    traced: ServiceId,
    me: ServiceId,
    (node_id, stamped): (u64, u64),
    boot: u64,
) -> Result<(), String> {
    // The app side as a service would set it up: finished spans go to a
    // batcher for traced; a ring keeps them too, to compare.
    let batcher = Arc::new(SpanBatcher::new(64));
    let ring = Arc::new(RecentSpans::default());
    let tracer = Tracer::new(
        node.clock().clone(),
        Tee(Arc::clone(&batcher), Arc::clone(&ring)),
        IdGenerator::new(&IdSeed::new(node_id, u64::from(me.get()), boot)),
        TracerConfig::default(),
    );
    let root = tracer.span("selftest.trace");
    let trace = root.trace();
    let root_id = root.id();
    let child = root.child("selftest.trace.child");
    let child_id = child.id();
    child.end();
    root.end();
    let spans = ring.recent(2);
    if spans.len() != 2 {
        return Err(format!("the tracer recorded {} spans, not 2", spans.len()));
    }
    let times: alloc::vec::Vec<(u64, u64)> = spans.iter().map(|s| (s.start_ns, s.end_ns)).collect();

    let mut ep = node.endpoint(me);
    let batch = batcher
        .take_frame()
        .ok_or("the batcher made no SPANS frame")?;
    if batcher.stats().sent != 2 || batcher.take_frame().is_some() {
        return Err(format!("batcher: {:?}", batcher.stats()));
    }
    ep.send(traced, &batch)
        .map_err(|e| format!("send SPANS: {e:?}"))?;
    node.settle(1000);
    // Past traced's idle timeout: the trace is complete.
    platform.sleep(traced::Config::default().idle_timeout_ns + 50_000_000);
    node.settle(1000);

    let q = proto::encode_request(1, &Request::Trace(trace)).map_err(|e| format!("{e}"))?;
    ep.send(traced, &q)
        .map_err(|e| format!("send TRACE: {e:?}"))?;
    node.settle(1000);
    let reply = ep.try_recv().ok_or("no reply to TRACE")?;
    let (_, reply) = proto::decode_reply(&reply.bytes).map_err(|e| format!("reply: {e}"))?;
    let Reply::Trace(line) = reply else {
        return Err(format!("TRACE answered {reply:?}"));
    };
    let v: serde_json::Value =
        serde_json::from_str(&line).map_err(|e| format!("JSONL line: {e}"))?;
    let null = serde_json::Value::Null;
    let field = |o: &'_ serde_json::Value, k: &str| o.get(k).cloned().unwrap_or(null.clone());
    let hex = |x: u64| format!("{x:016x}");
    if field(&v, "trace_id") != format!("{trace}").as_str() {
        return Err(format!("trace id {} in {line}", field(&v, "trace_id")));
    }
    let got = v
        .get("spans")
        .and_then(serde_json::Value::as_array)
        .ok_or("no spans array")?;
    if got.len() != 2 {
        return Err(format!("{} spans in {line}", got.len()));
    }
    // Spans come ordered by start; two spans started in the same clock
    // tick come by id, so each is found by its id.
    let want = [
        (root_id, serde_json::Value::Null, "selftest.trace"),
        (
            child_id,
            serde_json::Value::String(hex(root_id.get())),
            "selftest.trace.child",
        ),
    ];
    for (id, parent, name) in want {
        let s = got
            .iter()
            .find(|s| field(s, "span_id") == hex(id.get()).as_str())
            .ok_or_else(|| format!("span {id} ({name}) missing from {line}"))?;
        let ok = field(s, "parent_span_id") == parent
            && field(s, "name") == name
            && field(s, "node") == hex(stamped).as_str()
            && field(s, "service") == u64::from(me.get());
        if !ok {
            return Err(format!("span {s} is not {id} ({name}) under {parent}"));
        }
        let t = (field(s, "start_ns").as_u64(), field(s, "end_ns").as_u64());
        if !times.iter().any(|(a, b)| t == (Some(*a), Some(*b))) {
            return Err(format!("span {s}: times not the tracer's {times:?}"));
        }
    }
    Ok(())
}

/// The endpoint the fallback check's metrics client sends from.
pub const METRICS_ENDPOINT: &str = "selftest-trace-metrics";

/// Evidence for `SELFTEST: trace logd fallback ok`, from this boot: a span
/// minted now goes only through the nexus-metrics span API (metricsd
/// writes its span-end record to logd; nothing is sent to traced); traced,
/// reading logd's records back, answers TRACE for that trace id with
/// exactly that span, its name, this node's id and, as its service, the
/// endpoint that owned the span (metricsd's `owner`, from the transport).
pub fn run_fallback<C: Clock + Clone, P: Platform>(
    node: &Node<C>,
    platform: &P,
    (traced, metricsd): (ServiceId, ServiceId),
    me: ServiceId,
    (node_id, stamped): (u64, u64),
    boot: u32,
) -> Result<(), String> {
    let cfg = nexus_metrics::MetricsConfig {
        node_id,
        boot,
        ..nexus_metrics::MetricsConfig::default()
    };
    let mut m = nexus_metrics::Metrics::new(node.endpoint(me), metricsd, node.clock().clone(), cfg);
    let span = m.span("selftest.fallback");
    let (trace, id) = (span.trace(), span.id());
    span.end();
    m.flush_sync()
        .map_err(|e| format!("span to metricsd: {e}"))?;

    let mut ep = node.endpoint(me);
    let deadline = platform.now_ns().saturating_add(20_000_000_000);
    let mut nonce = 0u64;
    let line = loop {
        node.settle(1000);
        nonce += 1;
        let q = proto::encode_request(nonce, &Request::Trace(trace)).map_err(|e| format!("{e}"))?;
        ep.send(traced, &q)
            .map_err(|e| format!("send TRACE: {e:?}"))?;
        node.settle(1000);
        if let Some(f) = ep.try_recv() {
            if let Ok((_, Reply::Trace(line))) = proto::decode_reply(&f.bytes) {
                break line;
            }
        }
        if platform.now_ns() >= deadline {
            return Err(format!("traced never held trace {trace} from logd"));
        }
        platform.sleep(100_000_000);
    };
    let v: serde_json::Value =
        serde_json::from_str(&line).map_err(|e| format!("JSONL line: {e}"))?;
    let spans = v
        .get("spans")
        .and_then(serde_json::Value::as_array)
        .ok_or("no spans array")?;
    let ok = spans.len() == 1
        && spans.iter().all(|s| {
            s.get("span_id").and_then(serde_json::Value::as_str) == Some(&*format!("{id}"))
                && s.get("name").and_then(serde_json::Value::as_str) == Some("selftest.fallback")
                && s.get("node").and_then(serde_json::Value::as_str)
                    == Some(&*format!("{stamped:016x}"))
                && s.get("service").and_then(serde_json::Value::as_u64) == Some(u64::from(me.get()))
        });
    if !ok {
        return Err(format!("not span {id} of {me:?} alone: {line}"));
    }
    Ok(())
}
