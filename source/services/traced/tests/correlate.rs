//! The correlator's bounds and outcomes, the clock alignment of skewed
//! peers, and the exact JSONL line of a cross-node trace.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::record as rec;
use nexus_trace::{SpanStatus, TraceId};
use proptest::prelude::*;
use traced::correlate::Stats;
use traced::{
    Completed, Completion, Config, Correlator, Exchange, Ingest, OffsetEstimator, Origin,
    TracedSpan,
};

const A: Origin = Origin {
    node: 0xa1,
    service: 7,
};
const B: Origin = Origin {
    node: 0xb2,
    service: 9,
};

fn local(trace: u128, span: u64) -> TracedSpan {
    TracedSpan::local(rec(trace, span, None, span * 10, span * 10 + 5), A)
}

fn cfg() -> Config {
    Config {
        max_active_traces: 3,
        max_spans_per_trace: 4,
        idle_timeout_ns: 1000,
        remembered_completed: 2,
        max_completed_per_tick: 2,
        recent_traces: 8,
        ..Config::default()
    }
}

#[test]
fn spans_of_one_trace_complete_together_after_the_idle_timeout() {
    let mut c = Correlator::new(cfg());
    assert_eq!(c.ingest(0, local(1, 3)).0, Ingest::NewTrace);
    assert_eq!(c.ingest(100, local(1, 1)).0, Ingest::Added);
    assert_eq!(c.ingest(200, local(1, 2)).0, Ingest::Added);
    let mut out = Vec::new();
    assert_eq!(c.tick(1199, &mut out), 0, "idle 999 ns < 1000");
    assert_eq!(c.tick(1200, &mut out), 1);
    let t = &out[0];
    assert_eq!(t.trace, TraceId::new(1).unwrap());
    assert_eq!(t.completion, Completion::Idle);
    assert!(!t.continuation);
    let ids: Vec<u64> = t
        .spans
        .iter()
        .map(|s| s.record.context.span.get())
        .collect();
    assert_eq!(ids, [1, 2, 3], "ordered by start");
    assert_eq!(c.active(), 0);
}

#[test]
fn a_full_trace_drops_and_counts_further_spans_and_duplicates() {
    let mut c = Correlator::new(cfg());
    for s in 1..=4 {
        c.ingest(0, local(5, s));
    }
    assert_eq!(c.ingest(0, local(5, 9)).0, Ingest::DroppedTraceFull);
    assert_eq!(c.ingest(0, local(5, 2)).0, Ingest::DroppedDuplicate);
    let mut out = Vec::new();
    c.flush(&mut out);
    assert_eq!(out[0].spans.len(), 4);
    assert_eq!(out[0].dropped_spans, 1);
    let s = c.stats();
    assert_eq!(
        (
            s.spans_added,
            s.spans_dropped_full,
            s.spans_dropped_duplicate
        ),
        (4, 1, 1)
    );
}

#[test]
fn the_table_evicts_the_least_recently_touched_trace_completed() {
    let mut c = Correlator::new(cfg());
    c.ingest(0, local(1, 1));
    c.ingest(1, local(2, 1));
    c.ingest(2, local(3, 1));
    // Touch trace 1: trace 2 is now the least recently touched.
    c.ingest(3, local(1, 2));
    let (o, ev) = c.ingest(4, local(4, 1));
    assert_eq!(o, Ingest::NewTrace);
    let ev = ev.unwrap();
    assert_eq!(ev.trace, TraceId::new(2).unwrap());
    assert_eq!(ev.completion, Completion::Evicted);
    assert_eq!(c.active(), 3);
    // 100x the cap of new traces: the table never holds more than 3.
    for t in 100..400 {
        c.ingest(10 + t as u64, local(t, 1));
        assert!(c.active() <= 3);
    }
    assert_eq!(c.stats().completed_evicted, 301);
}

#[test]
fn a_late_span_opens_a_counted_continuation_while_remembered() {
    let mut c = Correlator::new(cfg());
    let mut out = Vec::new();
    c.ingest(0, local(1, 1));
    c.tick(5000, &mut out);
    assert_eq!(c.ingest(6000, local(1, 2)).0, Ingest::Continuation);
    c.tick(9000, &mut out);
    assert!(out[1].continuation);
    assert_eq!(c.stats().continuations, 1);
    // Two more completed traces push trace 1 out of the memory of 2.
    for t in [2, 3] {
        c.ingest(10_000, local(t, 1));
    }
    c.tick(20_000, &mut out);
    assert_eq!(c.ingest(30_000, local(1, 3)).0, Ingest::NewTrace);
}

#[test]
fn a_tick_completes_at_most_its_bound_oldest_first() {
    let mut c = Correlator::new(cfg());
    for t in 1..=3 {
        c.ingest(t as u64, local(t, 1));
    }
    let mut out = Vec::new();
    assert_eq!(c.tick(10_000, &mut out), 2);
    assert_eq!(c.tick(10_000, &mut out), 1);
    let order: Vec<u128> = out.iter().map(|t| t.trace.get()).collect();
    assert_eq!(order, [1, 2, 3]);
}

#[test]
fn zero_bounds_hold_nothing() {
    let mut c = Correlator::new(Config {
        max_active_traces: 0,
        ..cfg()
    });
    assert_eq!(c.ingest(0, local(1, 1)).0, Ingest::DroppedTraceFull);
    assert_eq!(c.active(), 0);
    assert_eq!(
        c.stats(),
        Stats {
            spans_dropped_full: 1,
            ..Stats::default()
        }
    );
}

/// Node B runs 3.25 s ahead of A with asymmetric links (A→B 300 µs,
/// B→A 100 µs): a span on B under a span on A lands inside its parent
/// on A's clock, within the estimate's error bound.
fn cross_node_trace() -> Completed {
    const SKEW: u64 = 3_250_000_000;
    let mut est = OffsetEstimator::<8>::new();
    for (i, (up, down)) in [
        (900_000u64, 50_000u64),
        (300_000, 100_000),
        (500_000, 500_000),
    ]
    .into_iter()
    .enumerate()
    {
        let t1 = 1_000_000 * i as u64;
        let t2 = t1 + up + SKEW;
        let t3 = t2 + 20_000;
        let t4 = t3 - SKEW + down;
        est.add(&Exchange { t1, t2, t3, t4 }).unwrap();
    }
    let best = est.best().unwrap();
    assert_eq!(best.rtt_ns, 400_000);
    assert_eq!(best.offset_ns, 3_250_100_000);
    assert!(best.offset_ns.abs_diff(SKEW as i64) <= best.error_ns);

    let mut c = Correlator::new(Config::default());
    let mut root = rec(0x77, 1, None, 10_000_000, 12_000_000);
    root.name = "client.request".into();
    root.attrs = vec![("http.route".into(), "/items".into())];
    let mut child = rec(0x77, 2, Some(1), SKEW + 10_500_000, SKEW + 11_000_000);
    child.name = "server.handle".into();
    child.remote_parent = true;
    child.status = SpanStatus::Error;
    child.status_message = Some("disk \"full\"".into());
    c.ingest(0, TracedSpan::remote(child, B, best));
    c.ingest(1, TracedSpan::local(root, A));
    let mut out = Vec::new();
    c.flush(&mut out);
    out.pop().unwrap()
}

#[test]
fn a_remote_child_is_aligned_into_its_parent_within_the_bound() {
    let t = cross_node_trace();
    let (root, child) = (&t.spans[0], &t.spans[1]);
    assert_eq!(root.record.name, "client.request");
    let o = child.offset.unwrap();
    // True aligned start 10_500_000; estimate within the error bound.
    assert!(child.aligned_start_ns().abs_diff(10_500_000) <= o.error_ns);
    assert!(child.aligned_start_ns() >= root.aligned_start_ns());
    assert!(child.aligned_end_ns() <= root.aligned_end_ns());
}

#[test]
fn the_jsonl_line_is_exact() {
    let t = cross_node_trace();
    let mut out = Vec::new();
    traced::jsonl::write_line(&t, &mut out).unwrap();
    let line = String::from_utf8(out).unwrap();
    let want = concat!(
        r#"{"trace_id":"00000000000000000000000000000077","continuation":false,"#,
        r#""completion":"idle","dropped_spans":0,"spans":["#,
        r#"{"span_id":"0000000000000001","parent_span_id":null,"remote_parent":false,"#,
        r#""name":"client.request","node":"00000000000000a1","service":7,"#,
        r#""start_ns":10000000,"end_ns":12000000,"clock_offset_ns":null,"#,
        r#""clock_error_ns":null,"status":"ok","status_message":null,"#,
        r#""attributes":{"http.route":"/items"},"dropped_attributes":0},"#,
        r#"{"span_id":"0000000000000002","parent_span_id":"0000000000000001","#,
        r#""remote_parent":true,"name":"server.handle","node":"00000000000000b2","#,
        r#""service":9,"start_ns":10400000,"end_ns":10900000,"#,
        r#""clock_offset_ns":3250100000,"clock_error_ns":200001,"status":"error","#,
        r#""status_message":"disk \"full\"","attributes":{},"dropped_attributes":0}]}"#,
        "\n"
    );
    assert_eq!(line, want);
    // One line, valid JSON.
    let v: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
    assert_eq!(v["spans"].as_array().unwrap().len(), 2);
}

proptest! {
    /// Whatever the skew and the asymmetry of the two directions, the true
    /// offset lies within the estimate's error bound.
    #[test]
    fn the_true_offset_is_within_the_error_bound(
        t1 in 0u64..1 << 50,
        skew in -(1i64 << 45)..(1i64 << 45),
        up in 0u64..1 << 30,
        down in 0u64..1 << 30,
        held in 0u64..1 << 30,
    ) {
        // The peer's clock reads ours plus `truth` (always positive).
        let truth = skew + (1 << 46);
        let t2 = ((t1 + up) as i64 + truth) as u64;
        let t3 = t2 + held;
        let t4 = (t3 as i64 - truth) as u64 + down;
        let e = Exchange { t1, t2, t3, t4 }.estimate().unwrap();
        prop_assert_eq!(e.rtt_ns, up + down);
        prop_assert!(e.offset_ns.abs_diff(truth) <= e.error_ns);
    }
}
