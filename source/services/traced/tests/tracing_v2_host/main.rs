//! Cross-node tracing on the host: two devices over an in-memory
//! authenticated link (dsoftbus Noise XK + mux), each with its own clock.
//!
//! A's client span travels to B in the mux OPEN's trace metadata; B's
//! server span continues it; B ships its finished span back to A on an
//! `obs.traces` stream; A's traced aligns B's times with the offset
//! measured by a four-timestamp exchange over the same link, and writes
//! one JSONL trace holding both spans, B's under A's, `private:` baggage
//! not having left A.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;

use dsoftbus::identity::{DeviceId, DeviceKey};
use dsoftbus::link::{Link, LinkConfig};
use dsoftbus::mux::Event;
use dsoftbus::policy::Acl;
use nexus_bounds::ManualClock;
use nexus_trace::{
    Baggage, BaggageLimits, IdGenerator, IdSeed, Propagator, RecentSpans, Sampler, SamplerConfig,
    Scope, Tee, TraceContext, Tracer, TracerConfig,
};
use traced::client::SpanBatcher;
use traced::proto::{self, Request};
use traced::{Config, Exchange, OffsetEstimator, Origin, Traced, TracedSpan};

/// B's clock runs this far ahead of A's.
const SKEW: u64 = 3_250_000_000;
/// One-way link delays: A→B and B→A (asymmetric).
const UP: u64 = 300_000;
const DOWN: u64 = 100_000;

struct Net {
    a: Link,
    b: Link,
    acl_a: Acl,
    acl_b: Acl,
    /// A's clock; B's reads `SKEW` more.
    clock_a: Arc<ManualClock>,
    clock_b: Arc<ManualClock>,
}

impl Net {
    fn new() -> (Self, DeviceKey, DeviceKey) {
        let (ka, kb) = (
            DeviceKey::from_secret([1; 32]),
            DeviceKey::from_secret([2; 32]),
        );
        let mut acl_a = Acl::new();
        acl_a.allow(kb.public(), &["obs.traces"]).unwrap();
        let mut acl_b = Acl::new();
        acl_b.allow(ka.public(), &["app.request"]).unwrap();
        let cfg = LinkConfig::default();
        let net = Self {
            a: Link::dial(&ka, kb.public(), [7; 32], cfg).unwrap(),
            b: Link::accept(&kb, [8; 32], cfg).unwrap(),
            acl_a,
            acl_b,
            clock_a: Arc::new(ManualClock::new(1_000_000_000)),
            clock_b: Arc::new(ManualClock::new(1_000_000_000 + SKEW)),
        };
        (net, ka, kb)
    }

    fn advance(&self, ns: u64) {
        self.clock_a.advance(ns);
        self.clock_b.advance(ns);
    }

    /// A → B, taking `UP` of time.
    fn a_to_b(&mut self) {
        self.advance(UP);
        let now = self.clock_a.now();
        while let Some(bytes) = self.a.poll_transmit(now) {
            let _ = self.b.on_bytes(&bytes, now, &self.acl_b);
        }
    }

    /// B → A, taking `DOWN` of time.
    fn b_to_a(&mut self) {
        self.advance(DOWN);
        let now = self.clock_a.now();
        while let Some(bytes) = self.b.poll_transmit(now) {
            let _ = self.a.on_bytes(&bytes, now, &self.acl_a);
        }
    }

    fn settle(&mut self) {
        for _ in 0..8 {
            self.a_to_b();
            self.b_to_a();
        }
    }
}

trait Now {
    fn now(&self) -> u64;
}

impl Now for ManualClock {
    fn now(&self) -> u64 {
        nexus_bounds::Clock::now_ns(self)
    }
}

fn events(l: &mut Link) -> Vec<Event> {
    let m = l.mux().unwrap();
    std::iter::from_fn(|| m.poll_event()).collect()
}

fn read_all(l: &mut Link, stream: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = l.mux().unwrap().recv(stream, &mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

fn node_of(key: &DeviceKey) -> u64 {
    u64::from_be_bytes(DeviceId::of(&key.public()).to_bytes())
}

#[test]
fn a_request_across_two_nodes_becomes_one_aligned_jsonl_trace() {
    let (mut net, ka, kb) = Net::new();
    net.settle();
    let (node_a, node_b) = (node_of(&ka), node_of(&kb));

    // A: the client's tracer; its finished spans go to A's traced.
    let batch_a = Arc::new(SpanBatcher::new(16));
    let ring_a = Arc::new(RecentSpans::default());
    let tracer_a = Tracer::new(
        Arc::clone(&net.clock_a),
        Tee(Arc::clone(&batch_a), Arc::clone(&ring_a)),
        IdGenerator::new(&IdSeed::new(node_a, 1, 1)),
        TracerConfig::default(),
    );
    // B: the server's tracer; its spans are shipped to A.
    let batch_b = Arc::new(SpanBatcher::new(16));
    let tracer_b = Tracer::new(
        Arc::clone(&net.clock_b),
        Arc::clone(&batch_b),
        IdGenerator::new(&IdSeed::new(node_b, 1, 1)),
        TracerConfig::default(),
    );
    let prop = Propagator::default();

    // 1. A's request span; its context (and baggage with a private
    //    entry) rides in the OPEN of the request stream.
    let t0 = net.clock_a.now();
    let root = tracer_a.span("client.request");
    let mut bag = Baggage::new(BaggageLimits::default());
    bag.insert("tenant", "blue").unwrap();
    bag.insert("private:token", "s3cr3t").unwrap();
    let mut meta = Vec::new();
    let rep = prop
        .encode_mux_meta(&TraceContext::new(root.context()), &bag, &mut meta)
        .unwrap();
    assert_eq!(rep.private_dropped, 1, "private baggage stays on A");
    let req = net
        .a
        .mux()
        .unwrap()
        .open("app.request", 0, Some(&meta))
        .unwrap();
    net.a_to_b();

    // 2. B continues the trace from the OPEN's metadata.
    let opened = events(&mut net.b)
        .into_iter()
        .find_map(|e| match e {
            Event::Opened { stream, trace, .. } if stream == req => trace,
            _ => None,
        })
        .expect("B saw the OPEN with trace metadata");
    let got = prop.decode_binary(&opened, Scope::CrossNode).unwrap();
    assert_eq!(got.baggage.get("tenant"), Some("blue"));
    assert_eq!(got.baggage.get("private:token"), None);
    let parent = got.parent.expect("a valid remote parent");
    assert_eq!(parent.span, root.context());
    net.advance(40_000);
    let server = tracer_b.span_remote("server.handle", &parent);
    net.advance(500_000);
    server.end();
    net.b_to_a();
    net.advance(20_000);
    root.end();

    // 3. Clock offset: four timestamps over the link (A→B on an
    //    obs.traces-style exchange is modelled by the link's delays).
    let mut est = OffsetEstimator::<8>::new();
    for _ in 0..3 {
        let t1 = net.clock_a.now();
        net.a_to_b();
        let t2 = net.clock_b.now();
        net.advance(10_000);
        let t3 = net.clock_b.now();
        net.b_to_a();
        let t4 = net.clock_a.now();
        est.add(&Exchange { t1, t2, t3, t4 }).unwrap();
    }
    let off = est.best().unwrap();
    assert!(off.offset_ns.abs_diff(SKEW as i64) <= off.error_ns);

    // 4. B ships its finished spans to A on an obs.traces stream.
    let frame = batch_b.take_frame().unwrap();
    let s = net.b.mux().unwrap().open("obs.traces", 0, None).unwrap();
    net.b_to_a();
    net.a_to_b();
    assert!(events(&mut net.b).contains(&Event::Accepted { stream: s }));
    let mut framed = (frame.len() as u32).to_le_bytes().to_vec();
    framed.extend_from_slice(&frame);
    assert_eq!(net.b.mux().unwrap().send(s, &framed).unwrap(), framed.len());
    net.b_to_a();
    let bytes = read_all(&mut net.a, s);
    let len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
    let Request::Spans(remote) = proto::decode_request(&bytes[4..4 + len]).unwrap().1 else {
        panic!("not a SPANS frame")
    };

    // 5. A's traced: its own span over IPC, B's with the link's identity
    //    and the measured offset.
    let mut td = Traced::new(Config::default(), node_a);
    let now = net.clock_a.now();
    let a = td.handle(now, 42, &batch_a.take_frame().unwrap());
    assert_eq!(a.status, nexus_wire::Status::Ok);
    let peer = net.a.peer().unwrap();
    let origin_b = Origin {
        node: u64::from_be_bytes(peer.to_bytes()),
        service: 0,
    };
    assert_eq!(origin_b.node, node_b);
    for r in remote {
        td.ingest(now, TracedSpan::remote(r, origin_b, off));
    }
    td.tick(now + Config::default().idle_timeout_ns);
    let done: Vec<_> = td.recent().collect();
    assert_eq!(done.len(), 1, "one trace");
    let mut line = Vec::new();
    traced::jsonl::write_line(done[0], &mut line).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
    let spans = v["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 2);
    let (client, server) = (&spans[0], &spans[1]);
    assert_eq!(client["name"], "client.request");
    assert_eq!(client["node"], format!("{node_a:016x}"));
    assert_eq!(client["service"], 42);
    assert_eq!(server["name"], "server.handle");
    assert_eq!(server["node"], format!("{node_b:016x}"));
    assert_eq!(server["parent_span_id"], client["span_id"]);
    assert_eq!(server["remote_parent"], true);
    assert_eq!(server["clock_offset_ns"], off.offset_ns);
    // Aligned: B's span lies inside A's, and its start is within the
    // error bound of the truth (A's time when B started it).
    let (cs, ce) = (
        client["start_ns"].as_u64().unwrap(),
        client["end_ns"].as_u64().unwrap(),
    );
    let (ss, se) = (
        server["start_ns"].as_u64().unwrap(),
        server["end_ns"].as_u64().unwrap(),
    );
    // B started its span 40 µs after the OPEN arrived, UP after t0.
    let truth_start = t0 + UP + 40_000;
    assert_eq!(cs, t0);
    assert!(
        ss.abs_diff(truth_start) <= off.error_ns,
        "{ss} vs {truth_start} ± {}",
        off.error_ns
    );
    assert!(cs <= ss && se <= ce, "client {cs}..{ce}, server {ss}..{se}");
    assert_eq!(v["trace_id"], format!("{}", root_trace(&ring_a)));
}

fn root_trace(ring: &RecentSpans) -> nexus_trace::TraceId {
    ring.recent(1)[0].context.trace
}

/// An unsampled root stays unsampled on the other node (parent-based),
/// except for a span name on that node's force list.
#[test]
fn sampling_follows_the_parent_across_the_link_and_the_force_list_wins() {
    let (mut net, ka, kb) = Net::new();
    net.settle();
    let tracer_a = Tracer::with_sampler(
        Arc::clone(&net.clock_a),
        Arc::new(SpanBatcher::new(16)),
        IdGenerator::new(&IdSeed::new(node_of(&ka), 1, 1)),
        TracerConfig::default(),
        Sampler::never(),
    );
    let batch_b = Arc::new(SpanBatcher::new(16));
    let tracer_b = Tracer::with_sampler(
        Arc::clone(&net.clock_b),
        Arc::clone(&batch_b),
        IdGenerator::new(&IdSeed::new(node_of(&kb), 1, 1)),
        TracerConfig::default(),
        Sampler::new(&SamplerConfig {
            ratio: 1.0,
            force: vec!["audit".into()],
        }),
    );
    let prop = Propagator::default();
    let root = tracer_a.span("client.request");
    assert!(!root.is_sampled());
    let mut meta = Vec::new();
    prop.encode_mux_meta(
        &TraceContext::new(root.context()),
        &Baggage::new(BaggageLimits::default()),
        &mut meta,
    )
    .unwrap();
    let req = net
        .a
        .mux()
        .unwrap()
        .open("app.request", 0, Some(&meta))
        .unwrap();
    net.a_to_b();
    let opened = events(&mut net.b)
        .into_iter()
        .find_map(|e| match e {
            Event::Opened { stream, trace, .. } if stream == req => trace,
            _ => None,
        })
        .unwrap();
    let parent = prop
        .decode_binary(&opened, Scope::CrossNode)
        .unwrap()
        .parent
        .unwrap();
    // B samples every root of its own (ratio 1), yet follows the parent.
    let follow = tracer_b.span_remote("server.handle", &parent);
    assert!(!follow.is_sampled());
    assert_eq!(follow.trace(), root.trace());
    follow.end();
    let forced = tracer_b.span_remote("audit", &parent);
    assert!(forced.is_sampled());
    forced.end();
    let f = batch_b.take_frame().unwrap();
    let Request::Spans(spans) = proto::decode_request(&f).unwrap().1 else {
        panic!()
    };
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["audit"], "only the forced span was recorded");
    assert_eq!(spans[0].context.trace, root.trace());
    assert_eq!(spans[0].parent, Some(root.id()));
}

/// Parent to child across an IPC boundary on one node: the binary context
/// in a frame, local scope (private baggage travels), then the child's
/// span reaches traced under its parent.
#[test]
fn a_parent_on_one_service_has_its_child_on_another_over_ipc() {
    let clock = Arc::new(ManualClock::new(100));
    let batch = Arc::new(SpanBatcher::new(16));
    let ids = |i| IdGenerator::new(&IdSeed::new(9, i, 1));
    let caller = Tracer::new(
        Arc::clone(&clock),
        Arc::clone(&batch),
        ids(1),
        TracerConfig::default(),
    );
    let callee = Tracer::new(
        Arc::clone(&clock),
        Arc::clone(&batch),
        ids(2),
        TracerConfig::default(),
    );
    let prop = Propagator::default();
    let root = caller.span("caller.op");
    let mut bag = Baggage::new(BaggageLimits::default());
    bag.insert("private:user", "alice").unwrap();
    // The "IPC frame": the binary context as its prefix.
    let mut frame = Vec::new();
    prop.encode_binary(&TraceContext::new(root.context()), &bag, &mut frame)
        .unwrap();
    let got = prop.decode_binary(&frame, Scope::Local).unwrap();
    assert_eq!(got.baggage.get("private:user"), Some("alice"), "same node");
    clock.advance(10);
    let child = callee.span_remote("callee.op", got.parent.as_ref().unwrap());
    clock.advance(10);
    child.end();
    clock.advance(10);
    root.end();
    let mut td = Traced::new(Config::default(), 9);
    assert_eq!(
        td.handle(clock.now(), 3, &batch.take_frame().unwrap())
            .status,
        nexus_wire::Status::Ok
    );
    td.tick(clock.now() + Config::default().idle_timeout_ns);
    let t = td.recent().next().unwrap();
    assert_eq!(t.spans.len(), 2);
    assert_eq!(t.spans[0].record.name, "caller.op");
    assert_eq!(
        t.spans[1].record.parent,
        Some(t.spans[0].record.context.span)
    );
    assert!(t.spans[1].record.remote_parent);
    assert_eq!(
        (t.spans[1].record.start_ns, t.spans[1].record.end_ns),
        (110, 120)
    );
}
