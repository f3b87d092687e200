//! traced across two nodes through two real busd over loopback TCP: B's
//! traced forwards its spans on `obs.traces` to A's, whose clock is 7 s
//! behind B's; A's traced measures the offset over the stream and puts
//! B's span into A's trace, under A's span, with times aligned.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use busd::testkit::{config, free_port, id_of, key, wait_up, Node, WallClock, POLL_NS};
use nexus_bounds::Clock;
use nexus_bus::proto::BusEvent;
use nexus_bus::DeviceId;
use nexus_ipc::host::HostEndpoint;
use nexus_ipc::{Endpoint, ServiceId};
use nexus_svc::host::serve;
use nexus_svc::{InMemory, Links, Shell};
use nexus_trace::{
    Baggage, BaggageLimits, IdGenerator, IdSeed, Propagator, Scope, TraceContext, Tracer,
    TracerConfig,
};
use traced::client::SpanBatcher;
use traced::proto::{self, Reply, Request};
use traced::remote::node_of;
use traced::{Config, Traced, TracedService};

const SKEW_NS: u64 = 7_000_000_000;

/// B's clock: A's wall clock plus 7 s.
#[derive(Debug, Clone, Copy)]
struct Skewed(WallClock, u64);

impl Clock for Skewed {
    fn now_ns(&self) -> u64 {
        self.0.now_ns() + self.1
    }
}

struct Running {
    id: ServiceId,
    console: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    fn lines(&self) -> Vec<String> {
        self.console.lock().unwrap().clone()
    }

    fn wait_line(&self, want: &str) {
        for _ in 0..1000 {
            if self.lines().iter().any(|l| l == want) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("no '{want}' in {:?}", self.lines());
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn run_traced<C: Clock + Send + 'static>(node: &Node, svc: TracedService, clock: C) -> Running {
    let mut ep = node.bus.endpoint("traced").unwrap();
    let id = ep.id();
    let console = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (c2, s2) = (Arc::clone(&console), Arc::clone(&stop));
    let thread = std::thread::spawn(move || {
        let mut shell = Shell::new(svc, InMemory, Links::new());
        serve(&mut shell, &mut ep, &clock, &s2, POLL_NS, &mut |l| {
            c2.lock().unwrap().push(l.to_string())
        });
    });
    Running {
        id,
        console,
        stop,
        thread: Some(thread),
    }
}

fn cfg() -> Config {
    Config {
        idle_timeout_ns: 300_000_000,
        ..Config::default()
    }
}

fn trace_line(q: &mut HostEndpoint, traced: ServiceId, trace: nexus_trace::TraceId) -> String {
    for nonce in 1..400u64 {
        let f = proto::encode_request(nonce, &Request::Trace(trace)).unwrap();
        q.send(traced, &f).unwrap();
        let r = q.recv_timeout(1_000_000_000).expect("traced answers");
        if let Ok((_, Reply::Trace(line))) = proto::decode_reply(&r.bytes) {
            return line;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("trace {trace} never completed on the collector");
}

#[test]
fn a_span_on_b_lands_in_as_trace_under_its_parent_with_aligned_times() {
    const STREAMS: &[&str] = &["obs.traces", "t.rpc"];
    let (ka, kb) = (key(1), key(2));
    let (pa, pb) = (free_port(), free_port());
    let peers = [(ka, pa, STREAMS), (kb, pb, STREAMS)];
    let a = Node::start(ka, config(pa, &peers, 4));
    let b = Node::start(kb, config(pb, &peers, 4));
    let (id_a, id_b): (DeviceId, DeviceId) = (id_of(ka), id_of(kb));
    let clock_a = WallClock::new();
    let clock_b = Skewed(clock_a, SKEW_NS);

    let ta = run_traced(
        &a,
        TracedService::new(Traced::new(cfg(), node_of(id_a))).collecting(a.busd),
        clock_a,
    );
    let tb = run_traced(
        &b,
        TracedService::new(Traced::new(cfg(), node_of(id_b))).forwarding(b.busd, id_a, 1024),
        clock_b,
    );
    ta.wait_line("traced: obs traces live ready");
    tb.wait_line(&format!("traced: forwarding to {id_a}"));

    // The app on B serves t.rpc; the app on A calls it.
    let mut srv = b.client("app-b");
    srv.listen("t.rpc").unwrap();
    let mut cli = a.client("app-a");
    wait_up(&mut cli, id_b);

    let batch_a = Arc::new(SpanBatcher::new(16));
    let tracer_a = Tracer::new(
        clock_a,
        Arc::clone(&batch_a),
        IdGenerator::new(&IdSeed::new(node_of(id_a), 1, 1)),
        TracerConfig::default(),
    );
    let batch_b = Arc::new(SpanBatcher::new(16));
    let tracer_b = Tracer::new(
        clock_b,
        Arc::clone(&batch_b),
        IdGenerator::new(&IdSeed::new(node_of(id_b), 1, 1)),
        TracerConfig::default(),
    );
    let prop = Propagator::default();

    let root = tracer_a.span("rpc.call");
    let mut meta = Vec::new();
    prop.encode_mux_meta(
        &TraceContext::new(root.context()),
        &Baggage::new(BaggageLimits::default()),
        &mut meta,
    )
    .unwrap();
    cli.open(id_b, "t.rpc", Some(&meta)).unwrap();
    let trace = (0..1000)
        .find_map(|_| match srv.next_event(10_000_000) {
            Some(BusEvent::Incoming { trace, .. }) => trace,
            _ => None,
        })
        .expect("B's app got the stream with its trace context");
    let parent = prop
        .decode_binary(&trace, Scope::CrossNode)
        .unwrap()
        .parent
        .expect("a valid parent");
    let server = tracer_b.span_remote("rpc.serve", &parent);
    let child_id = server.id();
    std::thread::sleep(Duration::from_millis(2));
    server.end();
    // B's app hands its span to B's traced over IPC.
    let mut app_b = b.bus.endpoint("app-b-spans").unwrap();
    app_b.send(tb.id, &batch_b.take_frame().unwrap()).unwrap();
    std::thread::sleep(Duration::from_millis(2));
    let (root_id, trace_id) = (root.id(), root.trace());
    root.end();
    let mut app_a = a.bus.endpoint("app-a-spans").unwrap();
    app_a.send(ta.id, &batch_a.take_frame().unwrap()).unwrap();

    let mut q = a.bus.endpoint("query").unwrap();
    let line = trace_line(&mut q, ta.id, trace_id);
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let spans = v["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 2, "{line}");
    let find = |id: nexus_trace::SpanId| {
        spans
            .iter()
            .find(|s| s["span_id"] == format!("{id}"))
            .unwrap_or_else(|| panic!("span {id} missing from {line}"))
    };
    let (r, c) = (find(root_id), find(child_id));
    assert_eq!(r["node"], format!("{:016x}", node_of(id_a)));
    assert_eq!(r["parent_span_id"], serde_json::Value::Null);
    assert_eq!(r["clock_offset_ns"], serde_json::Value::Null);
    assert_eq!(c["node"], format!("{:016x}", node_of(id_b)));
    assert_eq!(c["service"], u64::from(app_b.id().get()));
    assert_eq!(c["parent_span_id"], format!("{root_id}"));
    assert_eq!(c["remote_parent"], true);
    // The measured offset is B's skew, within its error bound, and the
    // child's aligned times sit inside the parent's, within that bound.
    let off = c["clock_offset_ns"].as_i64().unwrap();
    let err = c["clock_error_ns"].as_u64().unwrap();
    assert!(
        off.abs_diff(SKEW_NS as i64) <= err,
        "offset {off} ± {err} misses {SKEW_NS}"
    );
    let (rs, re) = (
        r["start_ns"].as_u64().unwrap(),
        r["end_ns"].as_u64().unwrap(),
    );
    let (cs, ce) = (
        c["start_ns"].as_u64().unwrap(),
        c["end_ns"].as_u64().unwrap(),
    );
    assert!(
        cs + err >= rs && ce <= re + err,
        "child [{cs}, {ce}] ± {err} outside parent [{rs}, {re}]"
    );
    ta.wait_line("traced: cross-node ok");
    assert!(!tb.lines().iter().any(|l| l == "traced: cross-node ok"));

    // OFFSETS: the collector reports B's clock; a forwarder has none.
    let f = proto::encode_request(900, &Request::Offsets).unwrap();
    q.send(ta.id, &f).unwrap();
    let r = q.recv_timeout(1_000_000_000).unwrap();
    let Ok((_, Reply::Offsets(list))) = proto::decode_reply(&r.bytes) else {
        panic!("OFFSETS answered {:?}", proto::decode_reply(&r.bytes));
    };
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].node, node_of(id_b));
    assert!(list[0].offset_ns.abs_diff(SKEW_NS as i64) <= list[0].error_ns);
    assert!(list[0].error_ns <= list[0].rtt_ns.div_ceil(2) + 1);
    let mut qb = b.bus.endpoint("query-b").unwrap();
    qb.send(tb.id, &f).unwrap();
    let r = qb.recv_timeout(1_000_000_000).unwrap();
    assert!(matches!(
        proto::decode_reply(&r.bytes),
        Ok((_, Reply::Rejected(nexus_wire::Status::Unavailable)))
    ));
}

/// A service on B that is not traced opens `obs.traces` to A and sends
/// what it likes: garbage, spans before HELLO, spans it never lets A
/// time. A drops that stream with the reason, counts, and never takes a
/// span from it; the honest forwarder next to it is untouched.
#[test]
fn test_reject_hostile_obs_traces_streams() {
    const STREAMS: &[&str] = &["obs.traces"];
    let (ka, kb) = (key(3), key(4));
    let (pa, pb) = (free_port(), free_port());
    let peers = [(ka, pa, STREAMS), (kb, pb, STREAMS)];
    let a = Node::start(ka, config(pa, &peers, 8));
    let b = Node::start(kb, config(pb, &peers, 8));
    let (id_a, id_b): (DeviceId, DeviceId) = (id_of(ka), id_of(kb));
    let clock = WallClock::new();
    let ta = run_traced(
        &a,
        TracedService::new(Traced::new(cfg(), node_of(id_a))).collecting(a.busd),
        clock,
    );
    ta.wait_line("traced: obs traces live ready");
    let mut rogue = b.client("rogue");
    wait_up(&mut rogue, id_a);
    let framed = |body: &[u8]| nexus_remote::frame::frame(body).unwrap();

    // 1. Garbage: an unknown kind.
    let h = rogue.open(id_a, "obs.traces", None).unwrap();
    rogue.send(h, &framed(&[9, 9, 9])).unwrap();
    ta.wait_line(&format!(
        "traced: forwarder {id_b} dropped: unknown frame kind"
    ));

    // 2. Spans before HELLO.
    let mut body = traced::link::SpansBody::new();
    let span = nexus_trace::SpanRecord {
        name: String::from("forged"),
        ..sample_record()
    };
    body.push(1, &span).unwrap();
    let spans = body.finish().unwrap();
    let h = rogue.open(id_a, "obs.traces", None).unwrap();
    rogue.send(h, &framed(&spans)).unwrap();
    ta.wait_line(&format!("traced: forwarder {id_b} dropped: expected HELLO"));

    // 3. A length prefix past the frame bound.
    let h = rogue.open(id_a, "obs.traces", None).unwrap();
    rogue.send(h, &u32::MAX.to_le_bytes()).unwrap();
    let dropped = |n: &Running| {
        n.lines()
            .iter()
            .filter(|l| l.starts_with(&format!("traced: forwarder {id_b} dropped:")))
            .count()
    };
    for _ in 0..1000 {
        if dropped(&ta) == 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(dropped(&ta), 3, "{:?}", ta.lines());

    // 4. HELLO and spans, but the probes are never answered: no clock
    //    offset, so the spans are held (bounded) and never ingested.
    let h = rogue.open(id_a, "obs.traces", None).unwrap();
    let mut out = framed(&traced::link::hello());
    out.extend(framed(&spans));
    rogue.send(h, &out).unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let mut q = a.bus.endpoint("query").unwrap();
    let f = proto::encode_request(1, &Request::Trace(span.context.trace)).unwrap();
    q.send(ta.id, &f).unwrap();
    let r = q.recv_timeout(1_000_000_000).unwrap();
    assert!(matches!(
        proto::decode_reply(&r.bytes),
        Ok((_, Reply::Rejected(nexus_wire::Status::Unavailable)))
    ));
    assert!(!ta.lines().iter().any(|l| l == "traced: cross-node ok"));
}

fn sample_record() -> nexus_trace::SpanRecord {
    nexus_trace::SpanRecord {
        context: nexus_trace::SpanContext::new(
            nexus_trace::TraceId::new(0xfeed).unwrap(),
            nexus_trace::SpanId::new(0xbeef).unwrap(),
            nexus_trace::TraceFlags::SAMPLED,
        ),
        parent: None,
        remote_parent: false,
        name: String::new(),
        start_ns: 1,
        end_ns: 2,
        status: nexus_trace::SpanStatus::Ok,
        status_message: None,
        attrs: Vec::new(),
        events: Vec::new(),
        tracestate: None,
        dropped_attrs: 0,
        dropped_events: 0,
    }
}
