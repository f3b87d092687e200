//! Span guards with a manual clock and a recording sink.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::{Arc, Mutex};

use nexus_bounds::ManualClock;
use nexus_trace::wire::{SpanEnd, SpanStart};
use nexus_trace::{
    IdGenerator, IdSeed, SpanContext, SpanId, SpanSink, SpanStatus, TraceFlags, TraceId, Tracer,
    TracerConfig, TracerStats,
};

/// An owned copy of what the sink was given.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Start {
        span: SpanId,
        trace: TraceId,
        parent: Option<SpanId>,
        start_ns: u64,
        name: String,
    },
    End {
        span: SpanId,
        end_ns: u64,
        status: u8,
        attrs: Vec<(String, String)>,
    },
}

#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<Event>>);

impl Recorder {
    fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }
    fn ends_of(&self, id: SpanId) -> usize {
        self.events()
            .iter()
            .filter(|e| matches!(e, Event::End { span, .. } if *span == id))
            .count()
    }
}

impl SpanSink for Recorder {
    fn start(&self, s: &SpanStart<'_>) {
        self.0.lock().unwrap().push(Event::Start {
            span: s.span,
            trace: s.trace,
            parent: s.parent,
            start_ns: s.start_ns,
            name: s.name.to_string(),
        });
    }
    fn end(&self, e: &SpanEnd<'_>) {
        self.0.lock().unwrap().push(Event::End {
            span: e.span,
            end_ns: e.end_ns,
            status: e.status,
            attrs: e
                .attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        });
    }
}

type T = Tracer<Arc<ManualClock>, Arc<Recorder>>;

fn setup(cfg: TracerConfig) -> (T, Arc<ManualClock>, Arc<Recorder>) {
    let clock = Arc::new(ManualClock::new(1_000));
    let rec = Arc::new(Recorder::default());
    let ids = IdGenerator::new(&IdSeed::new(0xabcd, 3, 7));
    let t = Tracer::new(Arc::clone(&clock), Arc::clone(&rec), ids, cfg);
    (t, clock, rec)
}

#[test]
fn root_and_child_carry_exact_times_ids_and_status() {
    let (t, clock, rec) = setup(TracerConfig::default());
    let mut root = t.span("handle_request");
    clock.advance(200);
    let mut db = root.child("db_query");
    clock.advance(500);
    db.attr("rows", 3);
    db.set_status(SpanStatus::Error);
    let (root_id, db_id, trace) = (root.id(), db.id(), root.trace());
    assert_ne!(root_id, db_id);
    assert_eq!(db.trace(), trace);
    assert_eq!(db.parent(), Some(root_id));
    assert_eq!(root.parent(), None);
    assert_eq!(db.status(), SpanStatus::Error);
    drop(db);
    clock.advance(300);
    root.set_status(SpanStatus::Ok);
    root.end();
    assert_eq!(
        rec.events(),
        vec![
            Event::Start {
                span: root_id,
                trace,
                parent: None,
                start_ns: 1_000,
                name: "handle_request".into(),
            },
            Event::Start {
                span: db_id,
                trace,
                parent: Some(root_id),
                start_ns: 1_200,
                name: "db_query".into(),
            },
            Event::End {
                span: db_id,
                end_ns: 1_700,
                status: 2,
                attrs: vec![("rows".into(), "3".into())],
            },
            Event::End {
                span: root_id,
                end_ns: 2_000,
                status: 1,
                attrs: vec![],
            },
        ]
    );
    assert_eq!(
        t.stats(),
        TracerStats {
            spans_started: 2,
            spans_ended: 2,
            attrs_dropped: 0,
            ..TracerStats::default()
        }
    );
}

#[test]
fn roots_get_new_traces_with_the_generators_tag() {
    let (t, _, _) = setup(TracerConfig::default());
    let a = t.span("a");
    let b = t.span("b");
    assert_ne!(a.trace(), b.trace());
    assert_eq!((a.trace().get() >> 64) as u64, t.boot_tag());
    assert!(a.context().is_sampled());
    assert_eq!(a.context().flags, TraceFlags::SAMPLED);
}

#[test]
fn span_in_and_span_from_continue_a_given_context() {
    let (t, _, rec) = setup(TracerConfig::default());
    let trace = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    let remote = SpanId::from_hex("00f067aa0ba902b7").unwrap();
    let s = t.span_in("served", trace, Some(remote));
    assert_eq!((s.trace(), s.parent()), (trace, Some(remote)));
    let top = t.span_in("top", trace, None);
    assert_eq!(top.parent(), None);
    // Flags travel from a propagated context to its children.
    let ctx = SpanContext::new(trace, remote, TraceFlags::new(0x80));
    let f = t.span_from("from", &ctx);
    let c = f.child("grandchild");
    assert_eq!(c.context().flags, TraceFlags::new(0x80));
    assert_eq!(c.trace(), trace);
    assert_eq!(f.parent(), Some(remote));
    assert!(matches!(
        &rec.events()[0],
        Event::Start { trace: tr, parent: Some(p), .. } if *tr == trace && *p == remote
    ));
}

#[test]
fn drop_ends_once_and_end_then_drop_does_not_double_end() {
    let (t, clock, rec) = setup(TracerConfig::default());
    let a = t.span("a");
    let a_id = a.id();
    clock.advance(5);
    drop(a);
    assert_eq!(rec.ends_of(a_id), 1);

    let b = t.span("b");
    let b_id = b.id();
    b.end(); // consumes the guard; its drop must not end it again
    assert_eq!(rec.ends_of(b_id), 1);
    assert_eq!(t.stats().spans_ended, 2);
    assert_eq!(rec.events().len(), 4);
}

#[test]
fn end_time_is_the_clocks_never_zero() {
    let (t, clock, rec) = setup(TracerConfig::default());
    clock.set(987_654_321);
    let s = t.span("s");
    clock.advance(1);
    drop(s);
    let ev = rec.events();
    assert!(matches!(
        ev[0],
        Event::Start {
            start_ns: 987_654_321,
            ..
        }
    ));
    assert!(matches!(
        ev[1],
        Event::End {
            end_ns: 987_654_322,
            ..
        }
    ));
}

#[test]
fn attributes_past_the_bound_are_dropped_and_counted() {
    let (t, _, rec) = setup(TracerConfig {
        max_attrs: 2,
        ..TracerConfig::default()
    });
    let mut s = t.span("s");
    s.attr("a", 1);
    s.attr("b", "two");
    s.attr("c", 3.5);
    s.attr("d", 'x');
    assert_eq!(s.dropped_attrs(), 2);
    drop(s);
    let mut s2 = t.span("s2");
    s2.attr("e", 1);
    s2.attr("f", 1);
    s2.attr("g", 1);
    drop(s2);
    assert_eq!(t.stats().attrs_dropped, 3);
    let ends: Vec<_> = rec
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::End { attrs, .. } => Some(attrs),
            _ => None,
        })
        .collect();
    assert_eq!(
        ends[0],
        vec![("a".into(), "1".into()), ("b".into(), "two".into())]
    );
    assert_eq!(ends[1].len(), 2);
}

#[test]
fn default_bound_is_metricsds() {
    assert_eq!(TracerConfig::default().max_attrs, 16);
    let (t, _, rec) = setup(TracerConfig {
        max_attrs: usize::MAX,
        ..TracerConfig::default()
    });
    let mut s = t.span("s");
    for i in 0..300 {
        s.attr("k", i);
    }
    assert_eq!(
        s.dropped_attrs(),
        300 - 255,
        "the wire's count byte caps it"
    );
    drop(s);
    // What the sink got still encodes.
    let e = rec.events().pop().unwrap();
    let Event::End { span, attrs, .. } = e else {
        panic!()
    };
    let pairs: Vec<(&str, &str)> = attrs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut out = Vec::new();
    let mut w = nexus_wire::Writer::new(&mut out);
    SpanEnd {
        span,
        end_ns: 1,
        status: 0,
        attrs: pairs,
    }
    .emit(&mut w);
    assert!(w.finish().is_ok());
}

#[test]
fn guards_cross_threads_and_ids_stay_unique() {
    let (t, _, rec) = setup(TracerConfig::default());
    std::thread::scope(|s| {
        for _ in 0..4 {
            let t = t.clone();
            s.spawn(move || {
                for _ in 0..500 {
                    let g = t.span("work");
                    let c = g.child("inner");
                    std::thread::spawn(move || drop(c)).join().unwrap();
                }
            });
        }
    });
    let ev = rec.events();
    assert_eq!(ev.len(), 4 * 500 * 4);
    let mut starts = std::collections::HashSet::new();
    for e in &ev {
        if let Event::Start { span, .. } = e {
            assert!(starts.insert(*span));
        }
    }
    assert_eq!(t.stats().spans_ended, 4000);
}
