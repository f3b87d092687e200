//! Sampling decisions, remote parents, events, status, redaction and the
//! ring of recent spans.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;

use nexus_bounds::ManualClock;
use nexus_trace::recent::{RecentConfig, RecentSpans};
use nexus_trace::sampler::{self, Sampler, SamplerConfig};
use nexus_trace::tracer::NullSink;
use nexus_trace::{
    IdGenerator, IdSeed, Propagator, SpanContext, SpanId, SpanStatus, Tee, TraceContext,
    TraceFlags, TraceId, TraceState, Tracer, TracerConfig,
};

fn tid(v: u128) -> TraceId {
    TraceId::new(v).unwrap()
}

#[test]
fn root_decision_is_the_low_56_bits_against_ratio_times_2_pow_56() {
    // 0.1 as f64 is 0x3FB999999999999A; times 2^56 that is exactly 0x0019_9999_9999_999A.
    assert_eq!(sampler::threshold(0.1), 0x0019_9999_9999_999a);
    assert_eq!(sampler::threshold(0.5), 1 << 55);
    assert_eq!(sampler::threshold(1.0), 1 << 56);
    assert_eq!(sampler::threshold(2.0), 1 << 56);
    assert_eq!(sampler::threshold(0.0), 0);
    assert_eq!(sampler::threshold(-1.0), 0);
    assert_eq!(sampler::threshold(f64::NAN), 0);
    let s = Sampler::default();
    assert_eq!(s.threshold(), sampler::threshold(0.1));
    // The high 72 bits do not matter; the low 56 do.
    let t = 0x0019_9999_9999_9999_u128;
    assert!(s.sample_trace(tid(t)));
    assert!(s.sample_trace(tid(t | 0xffff_ffff_ffff_ffff_ff00_0000_0000_0000)));
    assert!(!s.sample_trace(tid(t + 1)));
    assert!(!s.sample_trace(tid(0x00ff_ffff_ffff_ffff)));
    assert_eq!(
        sampler::random_part(tid(0xabcd_0123_4567_89ab_cdef)),
        0x23_4567_89ab_cdef
    );
    assert!(Sampler::always().sample_trace(tid(0x00ff_ffff_ffff_ffff)));
    assert!(!Sampler::never().sample_trace(tid(1)));
}

#[test]
fn every_node_agrees_and_the_ratio_holds() {
    // Two "nodes" (two samplers from the same config) over minted ids.
    let cfg = SamplerConfig::default();
    let (a, b) = (Sampler::new(&cfg), Sampler::new(&cfg));
    let ids = IdGenerator::new(&IdSeed::new(42, 1, 1));
    let n = 20_000;
    let mut hits = 0;
    for _ in 0..n {
        let t = ids.next_trace();
        assert_eq!(a.sample_trace(t), b.sample_trace(t));
        hits += usize::from(a.sample_trace(t));
    }
    let r = hits as f64 / n as f64;
    assert!((0.09..0.11).contains(&r), "ratio {r}");
    // A lower ratio samples a subset.
    let low = Sampler::new(&SamplerConfig {
        ratio: 0.01,
        force: vec![],
    });
    for _ in 0..5000 {
        let t = ids.next_trace();
        assert!(!low.sample_trace(t) || a.sample_trace(t));
    }
}

fn tracer(sampler: Sampler) -> Tracer<Arc<ManualClock>, Arc<RecentSpans>> {
    Tracer::with_sampler(
        Arc::new(ManualClock::new(100)),
        Arc::new(RecentSpans::new(RecentConfig { capacity: 4 })),
        IdGenerator::new(&IdSeed::new(1, 2, 3)),
        TracerConfig::default(),
        sampler,
    )
}

#[test]
fn parent_based_with_force_list_and_remote_flags_honoured() {
    let t = tracer(Sampler::new(&SamplerConfig {
        ratio: 0.0,
        force: vec!["payment".into()],
    }));
    let root = t.span("request");
    assert!(!root.is_sampled());
    let child = root.child("db");
    assert!(!child.is_sampled(), "children follow the parent");
    let forced = root.child("payment");
    assert!(forced.is_sampled(), "forced under an unsampled parent");
    assert!(forced.child("inner").is_sampled());
    assert!(t.span("payment").is_sampled());

    // A remote sampled parent is honoured even with ratio 0 ...
    let remote = TraceContext::new(SpanContext::new(
        tid(5),
        SpanId::new(9).unwrap(),
        TraceFlags::new(0x81),
    ));
    let s = t.span_remote("served", &remote);
    assert!(s.is_sampled());
    assert_eq!(s.context().flags, TraceFlags::new(0x81));
    assert!(s.has_remote_parent());
    // ... and a remote unsampled one with ratio 1.
    let t1 = tracer(Sampler::always());
    let un = TraceContext::new(SpanContext::new(
        tid(5),
        SpanId::new(9).unwrap(),
        TraceFlags::NONE,
    ));
    assert!(!t1.span_remote("served", &un).is_sampled());
    assert!(!t1.span_from("served", &un.span).is_sampled());
    assert!(t1.span_or_remote("x", None).is_sampled());
    drop((root, child, forced, s));
    assert_eq!(t.stats().spans_unsampled, 2);
    assert_eq!(t.sink().len(), 4);
}

#[test]
fn remote_parent_keeps_tracestate_through_children_and_reinjection() {
    let t = tracer(Sampler::default());
    let p = Propagator::default();
    let hdrs: Vec<(String, String)> = vec![
        (
            "traceparent".into(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
        ),
        (
            "tracestate".into(),
            "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE".into(),
        ),
    ];
    let x = p.extract(&hdrs);
    let server = t.span_or_remote("server", x.parent.as_ref());
    assert_eq!(
        server.parent(),
        Some(SpanId::from_hex("00f067aa0ba902b7").unwrap())
    );
    assert_eq!(
        server.trace(),
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
    );
    let call = server.child("call");
    assert!(!call.has_remote_parent());
    assert_eq!(call.tracestate().unwrap().get("congo"), Some("t61rcWkgMzE"));
    let mut out: Vec<(String, String)> = Vec::new();
    p.inject_cross_node(&call.trace_context(), &Default::default(), &mut out);
    assert_eq!(
        out[1],
        (
            "tracestate".into(),
            "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE".into()
        )
    );
    assert!(out[0].1.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
    assert_eq!(out[0].1[36..52], call.id().to_string());
    drop(call);
    drop(server);
    let rec = t.sink().recent(2);
    assert_eq!(rec[0].name, "server");
    assert!(rec[0].remote_parent);
    assert_eq!(rec[0].tracestate.as_ref().map(TraceState::len), Some(2));
}

#[test]
fn events_status_attrs_redaction_and_the_ring() {
    let clock = Arc::new(ManualClock::new(1_000));
    let ring = Arc::new(RecentSpans::new(RecentConfig { capacity: 3 }));
    let t = Tracer::new(
        Arc::clone(&clock),
        Tee(NullSink, Arc::clone(&ring)),
        IdGenerator::new(&IdSeed::new(1, 2, 3)),
        TracerConfig {
            max_attrs: 2,
            max_events: 2,
            ..TracerConfig::default()
        },
    );
    let mut s = t.span("login");
    s.attr("user", "alice");
    s.attr("apiKey", "hunter2");
    s.attr("third", 3);
    clock.advance(10);
    s.event("cache_miss");
    clock.advance(5);
    s.event_with(
        "retry",
        &[("attempt", &2), ("x_auth_token", &"t"), ("dropped", &0)],
    );
    s.event("third event");
    s.set_error("bad password");
    assert_eq!(s.status(), SpanStatus::Error);
    assert_eq!(s.status_message(), Some("bad password"));
    clock.advance(5);
    s.end();
    let r = &ring.recent(1)[0];
    assert_eq!((r.start_ns, r.end_ns, r.duration_ns()), (1_000, 1_020, 20));
    assert_eq!(
        r.attrs,
        vec![
            ("user".into(), "alice".into()),
            ("apiKey".into(), "[redacted]".into())
        ]
    );
    assert_eq!(r.events.len(), 2);
    assert_eq!(
        (r.events[0].name.as_str(), r.events[0].time_ns),
        ("cache_miss", 1_010)
    );
    assert_eq!(
        r.events[1].attrs,
        vec![
            ("attempt".into(), "2".into()),
            ("x_auth_token".into(), "[redacted]".into())
        ]
    );
    assert_eq!((r.dropped_attrs, r.dropped_events), (2, 1));
    assert_eq!(
        (r.status, r.status_message.as_deref()),
        (SpanStatus::Error, Some("bad password"))
    );
    let st = t.stats();
    assert_eq!(
        (st.attrs_redacted, st.events_dropped, st.attrs_dropped),
        (2, 1, 2)
    );

    let mut ok = t.span("again");
    ok.set_error("x");
    ok.set_status(SpanStatus::Ok);
    assert_eq!(ok.status_message(), None);
    drop(ok);
    // The ring keeps the last 3, newest first.
    for n in ["a", "b", "c"] {
        drop(t.span(n));
    }
    let names: Vec<String> = ring.recent(10).into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["c", "b", "a"]);
    assert_eq!(ring.recent(1).len(), 1);
    assert_eq!(ring.overwritten(), 2);
    assert_eq!(ring.capacity(), 3);
}

#[test]
fn unsampled_spans_record_nothing() {
    let t = tracer(Sampler::never());
    let mut s = t.span("quiet");
    s.attr("k", 1);
    s.event("e");
    s.set_error("no");
    assert!(s.attrs().is_empty() && s.events().is_empty());
    assert_eq!(s.status_message(), None);
    let c = s.child("c");
    assert_eq!(c.trace(), s.trace());
    drop(c);
    drop(s);
    assert!(t.sink().is_empty());
    assert_eq!(t.stats().spans_started, 0);
    assert_eq!(t.stats().spans_unsampled, 2);
}
