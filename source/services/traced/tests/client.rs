//! The span batcher: bounded, ordered, packed within the frame caps, and
//! what it packs decodes to the spans the tracer finished.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;

use nexus_bounds::ManualClock;
use nexus_trace::{IdGenerator, IdSeed, Tracer, TracerConfig};
use traced::client::SpanBatcher;
use traced::proto::{self, Request, MAX_BATCH_SPANS, MAX_FRAME};

fn tracer(b: &Arc<SpanBatcher>) -> Tracer<Arc<ManualClock>, Arc<SpanBatcher>> {
    Tracer::new(
        Arc::new(ManualClock::new(10)),
        Arc::clone(b),
        IdGenerator::new(&IdSeed::new(1, 2, 3)),
        TracerConfig::default(),
    )
}

fn spans_of(frame: &[u8]) -> Vec<nexus_trace::SpanRecord> {
    match proto::decode_request(frame).unwrap().1 {
        Request::Spans(s) => s,
        other => panic!("{other:?}"),
    }
}

#[test]
fn frames_hold_at_most_the_batch_cap_in_finish_order() {
    let b = Arc::new(SpanBatcher::new(1000));
    let t = tracer(&b);
    let names: Vec<String> = (0..70).map(|i| format!("op{i}")).collect();
    for n in &names {
        t.span(n).end();
    }
    let mut got = Vec::new();
    let mut sizes = Vec::new();
    while let Some(f) = b.take_frame() {
        assert!(f.len() <= MAX_FRAME);
        let s = spans_of(&f);
        sizes.push(s.len());
        got.extend(s.into_iter().map(|s| s.name));
    }
    assert_eq!(sizes, [32, 32, 6]);
    assert_eq!(got, names);
    let st = b.stats();
    assert_eq!((st.queued, st.sent, st.dropped_full), (70, 70, 0));
    assert_eq!(usize::from(MAX_BATCH_SPANS), 32);
}

#[test]
fn a_full_queue_drops_the_oldest_and_counts() {
    let b = Arc::new(SpanBatcher::new(4));
    let t = tracer(&b);
    for i in 0..10 {
        t.span(&format!("op{i}")).end();
    }
    assert_eq!(b.waiting(), 4);
    let s = spans_of(&b.take_frame().unwrap());
    let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["op6", "op7", "op8", "op9"]);
    assert_eq!(b.stats().dropped_full, 6);
    assert!(b.take_frame().is_none());
}

#[test]
fn big_spans_are_split_by_bytes_and_oversized_ones_dropped() {
    let b = Arc::new(SpanBatcher::new(100));
    let t = tracer(&b);
    for i in 0..6 {
        let mut s = t.span("big");
        s.attr("payload", "x".repeat(5000 + i));
        s.end();
    }
    let mut huge = t.span("huge");
    for k in 0..4 {
        huge.attr(&format!("k{k}"), "y".repeat(5000));
    }
    huge.end();
    let mut sizes = Vec::new();
    while let Some(f) = b.take_frame() {
        assert!(f.len() <= MAX_FRAME);
        sizes.push(spans_of(&f).len());
    }
    assert_eq!(sizes, [3, 3]);
    let st = b.stats();
    assert_eq!((st.sent, st.dropped_oversized), (6, 1));
}
