//! The `mux-trace` phase (profile `bus`): one trace across two nodes.
//!
//! | line | node | evidence |
//! |------|------|----------|
//! | `SELFTEST: mux trace served` | B | an OPEN from A on `selftest.trace` carried a span context (nexus-trace binary form, in the mux OPEN's trace metadata) that B continued as the parent of its own span |
//! | `SELFTEST: mux trace ok` | A | A's traced (the collector) answers TRACE for the trace A started in this boot with exactly A's span and B's span under it: B's span stamped with B's device (from the bus session) and the endpoint that sent it on B, its times moved by the clock offset A's traced measured, inside A's span within the offset's error bound |
//! | `SELFTEST: trace jsonl ok` | A | the same trace read back from the `traced` region on A's disk (a read-only view of the state store, not traced's memory): one JSON line with both spans, B's under A's |
//!
//! A opens the stream with its span's context and closes its direction;
//! B ends its span, hands it to B's traced (which forwards it to A's
//! traced on `obs.traces`), then writes its span id on the stream and
//! closes; A ends its span once that id arrived and hands it to its own
//! traced.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use nexus_bounds::Clock;
use nexus_bus::proto::BusEvent;
use nexus_bus::{BusClient, DeviceId};
use nexus_ipc::{Endpoint, ServiceId};
use nexus_svc::node::Node;
use nexus_svc::platform::Platform;
use nexus_trace::{
    Baggage, BaggageLimits, IdGenerator, IdSeed, Propagator, Scope, SpanId, TraceContext, TraceId,
    Tracer, TracerConfig,
};
use traced::client::SpanBatcher;
use traced::proto::{self, Reply, Request};
use traced::remote::node_of;

use selftest_client::stream::{berr, open_retrying, read_to_end, send_all, timed_out};

use crate::start::StoreReader;

/// The stream the phase uses.
pub const STREAM: &str = "selftest.trace";
/// The endpoint spans and queries go from.
pub const ENDPOINT: &str = "selftest-trace";
const PHASE_TIMEOUT_NS: u64 = 30_000_000_000;
const WAIT_NS: u64 = 100_000_000;

/// What both sides need.
#[derive(Debug, Clone, Copy)]
pub struct Sides {
    /// This node's bus device.
    pub me: DeviceId,
    /// The other node's.
    pub peer: DeviceId,
    /// This node's traced.
    pub traced: ServiceId,
    /// The endpoint spans and queries go from.
    pub from: ServiceId,
    /// Node part of id seeds.
    pub seed_node: u64,
    /// This boot.
    pub boot: u64,
}

fn tracer<C: Clock + Clone>(
    clock: C,
    s: &Sides,
) -> (Tracer<C, Arc<SpanBatcher>>, Arc<SpanBatcher>) {
    let batcher = Arc::new(SpanBatcher::new(16));
    let t = Tracer::new(
        clock,
        Arc::clone(&batcher),
        IdGenerator::new(&IdSeed::new(s.seed_node, u64::from(s.from.get()), s.boot)),
        TracerConfig::default(),
    );
    (t, batcher)
}

/// Node A's side: starts the trace, checks the collector and its store.
pub fn run_a<C: Clock + Clone, P: Platform, E: Endpoint>(
    node: &Node<C>,
    p: &P,
    bus: &mut BusClient<E>,
    s: &Sides,
    store: Option<&StoreReader>,
    out: &mut dyn FnMut(&str),
) -> Result<(), String> {
    let deadline = p.now_ns().saturating_add(PHASE_TIMEOUT_NS);
    let (tracer, batcher) = tracer(node.clock().clone(), s);
    let root = tracer.span("selftest.mux.call");
    let (trace, root_id) = (root.trace(), root.id());
    let mut meta = Vec::new();
    Propagator::default()
        .encode_mux_meta(
            &TraceContext::new(root.context()),
            &Baggage::new(BaggageLimits::default()),
            &mut meta,
        )
        .map_err(|e| format!("context: {e:?}"))?;
    let h = open_retrying(p, bus, (s.peer, STREAM), Some(&meta), deadline)?;
    bus.close(h).map_err(berr("close"))?;
    p.console(&format!("runtime: mux trace: stream to {} open", s.peer));
    let mut got = Vec::new();
    read_to_end(p, bus, h, (64, deadline), &mut |d| got.extend_from_slice(d))?;
    let child = <[u8; 8]>::try_from(got.as_slice())
        .ok()
        .and_then(|b| SpanId::new(u64::from_le_bytes(b)))
        .ok_or_else(|| format!("B answered {got:?}, not a span id"))?;
    root.end();
    p.console(&format!(
        "runtime: mux trace: B's span {child} under {root_id}"
    ));
    let mut ep = node.endpoint(s.from);
    let batch = batcher.take_frame().ok_or("no SPANS frame for A's span")?;
    ep.send(s.traced, &batch)
        .map_err(|e| format!("send SPANS: {e:?}"))?;

    // The collector completes the trace after its idle timeout, with B's
    // span forwarded and aligned.
    let mut nonce = 0u64;
    let line = loop {
        nonce += 1;
        let q = proto::encode_request(nonce, &Request::Trace(trace)).map_err(|e| format!("{e}"))?;
        ep.send(s.traced, &q)
            .map_err(|e| format!("send TRACE: {e:?}"))?;
        let reply = ep.recv_timeout(2_000_000_000).ok_or("no reply to TRACE")?;
        if let Ok((_, Reply::Trace(line))) = proto::decode_reply(&reply.bytes) {
            break line;
        }
        timed_out(p, deadline, "the trace on the collector")?;
        p.sleep(WAIT_NS);
    };
    check_line(&line, trace, (root_id, s.me), (child, s.peer))?;
    out("SELFTEST: mux trace ok");

    let store = store.ok_or("no traced region on this node's disk")?;
    let want = format!("\"trace_id\":\"{trace}\"");
    let line = loop {
        let entries = store.read()?;
        if let Some(l) = entries
            .iter()
            .rev()
            .filter_map(|e| core::str::from_utf8(e).ok())
            .find(|l| l.contains(&want))
        {
            break String::from(l);
        }
        timed_out(p, deadline, "the trace in the traced region")?;
        p.sleep(WAIT_NS);
    };
    check_line(&line, trace, (root_id, s.me), (child, s.peer))?;
    out("SELFTEST: trace jsonl ok");
    Ok(())
}

/// Checks one JSONL trace: exactly the root on `a` and its child on `b`,
/// the child aligned inside the root within its error bound.
fn check_line(
    line: &str,
    trace: TraceId,
    (root, a): (SpanId, DeviceId),
    (child, b): (SpanId, DeviceId),
) -> Result<(), String> {
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("JSONL line: {e}"))?;
    let str_of = |o: &serde_json::Value, k: &str| {
        o.get(k)
            .and_then(serde_json::Value::as_str)
            .map(String::from)
    };
    let u64_of = |o: &serde_json::Value, k: &str| o.get(k).and_then(serde_json::Value::as_u64);
    if str_of(&v, "trace_id") != Some(format!("{trace}")) {
        return Err(format!("not trace {trace}: {line}"));
    }
    let spans = v
        .get("spans")
        .and_then(serde_json::Value::as_array)
        .ok_or("no spans")?;
    if spans.len() != 2 {
        return Err(format!("{} spans, not 2: {line}", spans.len()));
    }
    let find = |id: SpanId| {
        spans
            .iter()
            .find(|x| str_of(x, "span_id") == Some(format!("{id}")))
            .ok_or_else(|| format!("span {id} missing: {line}"))
    };
    let (r, c) = (find(root)?, find(child)?);
    let hex = |d: DeviceId| format!("{:016x}", node_of(d));
    let ok = str_of(r, "node") == Some(hex(a))
        && r.get("parent_span_id")
            .is_some_and(serde_json::Value::is_null)
        && str_of(c, "node") == Some(hex(b))
        && str_of(c, "parent_span_id") == Some(format!("{root}"))
        && c.get("remote_parent").and_then(serde_json::Value::as_bool) == Some(true);
    if !ok {
        return Err(format!("nodes or parents wrong: {line}"));
    }
    {
        let err = u64_of(c, "clock_error_ns").ok_or("B's span has no clock error bound")?;
        if c.get("clock_offset_ns")
            .and_then(serde_json::Value::as_i64)
            .is_none()
        {
            return Err(format!("B's span has no clock offset: {line}"));
        }
        let t = |o, k| u64_of(o, k).ok_or_else(|| format!("no {k}: {line}"));
        let (rs, re, cs, ce) = (
            t(r, "start_ns")?,
            t(r, "end_ns")?,
            t(c, "start_ns")?,
            t(c, "end_ns")?,
        );
        if cs.saturating_add(err) < rs || ce > re.saturating_add(err) {
            return Err(format!(
                "B's span [{cs}, {ce}] ± {err} is outside A's [{rs}, {re}]"
            ));
        }
    }
    Ok(())
}

/// Node B's side: continues A's trace, hands its span to B's traced.
pub fn run_b<C: Clock + Clone, P: Platform, E: Endpoint>(
    node: &Node<C>,
    p: &P,
    bus: &mut BusClient<E>,
    s: &Sides,
    out: &mut dyn FnMut(&str),
) -> Result<(), String> {
    let deadline = p.now_ns().saturating_add(PHASE_TIMEOUT_NS);
    bus.listen(STREAM).map_err(berr("listen"))?;
    let (h, meta) = loop {
        if let Some(BusEvent::Incoming {
            handle,
            name,
            trace,
            peer,
        }) = bus.next_event(WAIT_NS)
        {
            if name == STREAM && peer == s.peer {
                break (handle, trace);
            }
        }
        timed_out(p, deadline, "A's traced stream")?;
    };
    let parent = meta
        .and_then(|m| {
            Propagator::default()
                .decode_binary(&m, Scope::CrossNode)
                .ok()
        })
        .and_then(|x| x.parent)
        .ok_or("A's OPEN carried no valid span context")?;
    let (tracer, batcher) = tracer(node.clock().clone(), s);
    let mut span = tracer.span_remote("selftest.mux.serve", &parent);
    span.attr("phase", "mux-trace");
    let id = span.id();
    span.end();
    let mut ep = node.endpoint(s.from);
    let batch = batcher.take_frame().ok_or("no SPANS frame for B's span")?;
    ep.send(s.traced, &batch)
        .map_err(|e| format!("send SPANS: {e:?}"))?;
    out("SELFTEST: mux trace served");
    send_all(p, bus, h, &id.get().to_le_bytes(), deadline)?;
    bus.close(h).map_err(berr("close"))?;
    Ok(())
}
