//! traced in the generic shell on a node: an app's tracer records a
//! parent and a child, the app sends them as one SPANS batch, and after
//! the idle timeout the trace is queried back over IPC with the app's id
//! as its service (stamped by the router, not sent).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::rc::Rc;
use std::sync::Arc;

use nexus_bounds::ManualClock;
use nexus_ipc::router::RouterConfig;
use nexus_ipc::Endpoint;
use nexus_svc::node::{Idle, Node};
use nexus_svc::{InMemory, Links, Shell};
use nexus_trace::{IdGenerator, IdSeed, RecentSpans, Tracer, TracerConfig};
use nexus_wire::Status;
use traced::proto::{self, Reply, Request};
use traced::{Config, Traced, TracedService};

#[test]
fn spans_sent_by_an_app_are_correlated_and_queried_back() {
    let clock = Rc::new(ManualClock::new(1_000));
    let node = Node::new(
        RouterConfig::default(),
        Rc::clone(&clock),
        Idle::ReturnWhenIdle,
        Box::new(|_: &str| {}),
    );
    let td = node.register("traced").unwrap();
    let app = node.register("app").unwrap();
    let cfg = Config {
        idle_timeout_ns: 500,
        ..Config::default()
    };
    node.add_task(
        td,
        Box::new(Shell::new(
            TracedService::new(Traced::new(cfg, 0xa1)),
            InMemory,
            Links::new(),
        )),
    );

    // The app's tracer: a request span with a child, both finished.
    let app_clock = Arc::new(ManualClock::new(5_000));
    let ring = Arc::new(RecentSpans::default());
    let tracer = Tracer::new(
        Arc::clone(&app_clock),
        Arc::clone(&ring),
        IdGenerator::new(&IdSeed::new(1, 2, 3)),
        TracerConfig::default(),
    );
    let root = tracer.span("request");
    app_clock.advance(100);
    let child = root.child("db.query");
    app_clock.advance(50);
    child.end();
    app_clock.advance(10);
    let trace = root.trace();
    root.end();
    let spans = ring.recent(2);
    assert_eq!(spans.len(), 2);

    let mut ep = node.endpoint(app);
    ep.send(
        td,
        &proto::encode_request(0, &Request::Spans(spans)).unwrap(),
    )
    .unwrap();
    node.settle(10);
    assert!(ep.try_recv().is_none(), "SPANS is one-way");
    clock.advance(1_000);
    node.settle(10);

    ep.send(
        td,
        &proto::encode_request(4, &Request::Trace(trace)).unwrap(),
    )
    .unwrap();
    node.settle(10);
    let f = ep.try_recv().expect("a reply to TRACE");
    assert_eq!(f.meta.sender, td);
    let (h, reply) = proto::decode_reply(&f.bytes).unwrap();
    assert_eq!(h.nonce, 4);
    let Reply::Trace(line) = reply else {
        panic!("{reply:?}")
    };
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["trace_id"], format!("{trace}"));
    let s = v["spans"].as_array().unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(s[0]["name"], "request");
    assert_eq!(s[1]["name"], "db.query");
    assert_eq!(s[1]["parent_span_id"], s[0]["span_id"]);
    assert_eq!(
        (s[0]["start_ns"].as_u64(), s[0]["end_ns"].as_u64()),
        (Some(5_000), Some(5_160))
    );
    assert_eq!(
        (s[1]["start_ns"].as_u64(), s[1]["end_ns"].as_u64()),
        (Some(5_100), Some(5_150))
    );
    for sp in s {
        assert_eq!(sp["service"], u64::from(app.get()));
        assert_eq!(sp["node"], "00000000000000a1");
    }

    // A refusal goes back with its status too.
    ep.send(td, b"TR\x01\x07\0\0\0\0\0\0\0\x09").unwrap();
    node.settle(10);
    let f = ep.try_recv().unwrap();
    let (h, body) = nexus_wire::Header::parse(&f.bytes, proto::MAGIC).unwrap();
    assert_eq!((h.op, h.nonce), (0x87, 0x09 << 56));
    assert_eq!(body, [Status::Unsupported.as_u8()]);
}
