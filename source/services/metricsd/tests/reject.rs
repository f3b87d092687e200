//! Hardening: every reject, with exact counters.
//! `cargo test -p metricsd -- reject`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::*;

use metricsd::Config;
use nexus_metrics::proto::{Entry, Status};

const COUNTER: u8 = 0;

#[test]
fn test_reject_oversized_metric_fields() {
    let mut m = md(unlimited(Config::default()));
    let me = sid(1);
    let long_name = "n".repeat(65);
    let long_value = "v".repeat(65);
    let nine: Vec<(String, String)> = (0..9)
        .map(|i| (format!("k{i}"), String::from("v")))
        .collect();
    let nine: Vec<(&str, &str)> = nine.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        register(&mut m, 0, me, COUNTER, &long_name, &[], &[]),
        Err(Status::OverLimit)
    );
    assert_eq!(
        register(&mut m, 0, me, COUNTER, "c", &[("k", &long_value)], &[]),
        Err(Status::OverLimit)
    );
    assert_eq!(
        register(&mut m, 0, me, COUNTER, "c", &nine, &[]),
        Err(Status::OverLimit)
    );
    let bounds: Vec<u64> = (1..=17).collect();
    assert_eq!(
        register(&mut m, 0, me, 2, "h", &[], &bounds),
        Err(Status::OverLimit)
    );
    // Span name and attributes.
    let long_span = "s".repeat(65);
    let start = Entry::SpanStart {
        span: 1,
        trace: 1,
        parent: 0,
        start_ns: 0,
        name: &long_span,
    };
    assert_eq!(
        one_reject(batch(&mut m, 0, me, &[start])),
        Status::OverLimit
    );
    let ok_start = Entry::SpanStart {
        span: 1,
        trace: 1,
        parent: 0,
        start_ns: 0,
        name: "op",
    };
    assert_eq!(batch(&mut m, 0, me, &[ok_start]).unwrap().accepted, 1);
    let attrs: Vec<(&str, &str)> = vec![("a", "x"); 17];
    let end = Entry::SpanEnd {
        span: 1,
        end_ns: 1,
        status: 1,
        attrs,
    };
    assert_eq!(one_reject(batch(&mut m, 0, me, &[end])), Status::OverLimit);
    // The refused end still ended the span (a bad attribute never leaks a
    // live span): start another for the next check.
    assert_eq!(stats(&mut m, me).live_spans, 0);
    let again = Entry::SpanStart {
        span: 2,
        trace: 1,
        parent: 0,
        start_ns: 0,
        name: "op",
    };
    assert_eq!(batch(&mut m, 0, me, &[again]).unwrap().accepted, 1);
    let big = "x".repeat(129);
    let end = Entry::SpanEnd {
        span: 2,
        end_ns: 1,
        status: 1,
        attrs: vec![("a", &big)],
    };
    assert_eq!(one_reject(batch(&mut m, 0, me, &[end])), Status::OverLimit);
    // A batch with more entries than batch.max_entries is refused whole.
    let many: Vec<Entry<'_>> = (0..513)
        .map(|_| Entry::Inc {
            series: 1,
            delta: 1,
        })
        .collect();
    assert_eq!(batch(&mut m, 0, me, &many), Err(Status::OverLimit));
    let st = stats(&mut m, me);
    assert_eq!(st.rejected(Status::OverLimit), 8);
    assert_eq!(st.series, 0, "nothing was registered");
}

#[test]
fn test_reject_series_cap_exceeded() {
    let mut cfg = unlimited(Config::default());
    cfg.cardinality.max_series_per_metric = 3;
    cfg.cardinality.max_series_per_sender = 5;
    cfg.cardinality.max_series_global = 6;
    let mut m = md(cfg);
    let me = sid(1);
    let ids: Vec<u32> = ["a", "b", "c"]
        .iter()
        .map(|v| register(&mut m, 0, me, COUNTER, "reqs", &[("route", v)], &[]).unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 3]);
    assert_eq!(
        register(&mut m, 0, me, COUNTER, "reqs", &[("route", "d")], &[]),
        Err(Status::OverLimit)
    );
    assert_eq!(
        register(&mut m, 0, me, COUNTER, "reqs", &[("route", "e")], &[]),
        Err(Status::OverLimit)
    );
    // Live series are untouched and still served; the refusals are counted
    // in the metric's overflow series.
    assert_eq!(
        register(&mut m, 0, me, COUNTER, "reqs", &[("route", "a")], &[]),
        Ok(1)
    );
    assert!(m
        .exposition()
        .contains("metricsd_series_overflow_total{metric=\"reqs\",owner=\"1\"} 2\n"));
    // Per-sender cap, then the global cap for another sender.
    register(&mut m, 0, me, COUNTER, "x", &[], &[]).unwrap();
    register(&mut m, 0, me, COUNTER, "y", &[], &[]).unwrap();
    assert_eq!(
        register(&mut m, 0, me, COUNTER, "z", &[], &[]),
        Err(Status::OverLimit)
    );
    register(&mut m, 0, sid(2), COUNTER, "x", &[], &[]).unwrap();
    assert_eq!(
        register(&mut m, 0, sid(3), COUNTER, "x", &[], &[]),
        Err(Status::OverLimit)
    );
    let st = stats(&mut m, me);
    assert_eq!(
        (
            st.series,
            st.series_overflow,
            st.rejected(Status::OverLimit)
        ),
        (6, 4, 4)
    );
}

#[test]
fn test_reject_live_span_cap_exceeded() {
    let mut cfg = unlimited(Config::default());
    cfg.spans.max_live = 2;
    cfg.spans.max_live_per_sender = 2;
    let mut m = md(cfg);
    let me = sid(1);
    let start = |span| Entry::SpanStart {
        span,
        trace: 9,
        parent: 0,
        start_ns: 10,
        name: "work",
    };
    let b = batch(&mut m, 0, me, &[start(1), start(2), start(3)]).unwrap();
    assert_eq!(
        (b.accepted, b.rejected, b.first_reject),
        (2, 1, Status::OverLimit)
    );
    assert_eq!(stats(&mut m, me).live_spans, 2);
    // Ending one frees a slot.
    let end = Entry::SpanEnd {
        span: 1,
        end_ns: 20,
        status: 1,
        attrs: vec![],
    };
    assert_eq!(batch(&mut m, 0, me, &[end, start(3)]).unwrap().accepted, 2);
    assert_eq!(stats(&mut m, me).spans_ended, 1);
    // Another sender cannot end my span, and gets no slot either.
    let end2 = Entry::SpanEnd {
        span: 2,
        end_ns: 20,
        status: 1,
        attrs: vec![],
    };
    assert_eq!(
        one_reject(batch(&mut m, 0, sid(2), &[end2])),
        Status::InvalidArgs
    );
    assert_eq!(
        one_reject(batch(&mut m, 0, sid(2), &[start(7)])),
        Status::OverLimit
    );
}

#[test]
fn test_reject_payload_identity_spoof() {
    let mut m = md(unlimited(Config::default()));
    let me = sid(4);
    for key in ["sender", "service_id", "sender_service_id"] {
        assert_eq!(
            register(&mut m, 0, me, COUNTER, "c", &[(key, "1")], &[]),
            Err(Status::InvalidArgs),
            "{key}"
        );
    }
    // `owner` is the label metricsd itself sets from the transport.
    assert_eq!(
        register(&mut m, 0, me, COUNTER, "c", &[("owner", "1")], &[]),
        Err(Status::InvalidArgs)
    );
    let start = Entry::SpanStart {
        span: 1,
        trace: 1,
        parent: 0,
        start_ns: 0,
        name: "op",
    };
    batch(&mut m, 0, me, &[start]).unwrap();
    let end = Entry::SpanEnd {
        span: 1,
        end_ns: 5,
        status: 1,
        attrs: vec![("service_id", "1")],
    };
    assert_eq!(
        one_reject(batch(&mut m, 0, me, &[end])),
        Status::InvalidArgs
    );
    let st = stats(&mut m, me);
    assert_eq!(st.identity_spoofs, 4);
    // The identity that shows is the transport's.
    let id = register(&mut m, 0, me, COUNTER, "c", &[], &[]).unwrap();
    assert_eq!(m.registry().get(id).unwrap().owner, me);
    assert!(m.exposition().contains("c{owner=\"4\"} 0\n"));
}

#[test]
fn test_reject_rate_limit_exceeded() {
    let mut cfg = Config::default();
    cfg.rate.events_per_sec = 10;
    cfg.rate.events_burst = 10;
    cfg.batch.max_entries = 10;
    let mut m = md(cfg);
    let (me, other) = (sid(1), sid(2));
    let id = register(&mut m, 0, me, COUNTER, "c", &[], &[]).unwrap();
    let incs: Vec<Entry<'_>> = (0..9)
        .map(|_| Entry::Inc {
            series: id,
            delta: 1,
        })
        .collect();
    assert_eq!(batch(&mut m, 0, me, &incs).unwrap().accepted, 9);
    // One registration + nine entries used the burst of ten.
    assert_eq!(batch(&mut m, 0, me, &incs[..1]), Err(Status::RateLimited));
    assert!(
        register(&mut m, 0, other, COUNTER, "c", &[], &[]).is_ok(),
        "other senders have their own budget"
    );
    // 100 ms at 10/s buys one entry back.
    assert_eq!(batch(&mut m, SEC / 10, me, &incs[..1]).unwrap().accepted, 1);
    assert_eq!(
        batch(&mut m, SEC / 10, me, &incs[..1]),
        Err(Status::RateLimited)
    );
    let st = stats(&mut m, other);
    assert_eq!(st.rejected(Status::RateLimited), 2);
    assert_eq!(st.updates, 10);
}

#[test]
fn reject_secret_looking_labels_and_redact_attributes() {
    let mut m = md(unlimited(Config::default()));
    let me = sid(1);
    for key in ["api_token", "password", "session_id", "authorization"] {
        assert_eq!(
            register(&mut m, 0, me, COUNTER, "c", &[(key, "hunter2")], &[]),
            Err(Status::InvalidArgs),
            "{key}"
        );
    }
    let start = Entry::SpanStart {
        span: 1,
        trace: 1,
        parent: 0,
        start_ns: 0,
        name: "login",
    };
    let end = Entry::SpanEnd {
        span: 1,
        end_ns: 9,
        status: 1,
        attrs: vec![("user", "ann"), ("password", "hunter2")],
    };
    assert_eq!(batch(&mut m, 0, me, &[start, end]).unwrap().accepted, 2);
    let out = m.drain_exports();
    let span = out.iter().find(|e| e.target == "trace.span").unwrap();
    assert_eq!(span.fields.get("attr.password"), Some("[redacted]"));
    assert_eq!(span.fields.get("attr.user"), Some("ann"));
    assert!(!m.exposition().contains("hunter2"));
    assert!(out.iter().all(|e| !e.fields.as_str().contains("hunter2")));
}

#[test]
fn reject_malformed_and_unsupported() {
    let mut m = md(Config::default());
    let me = sid(1);
    let mut f = nexus_metrics::proto::encode_stats(5);
    f[2] = 9;
    assert_eq!(
        call(&mut m, 0, me, &f),
        nexus_metrics::proto::Reply::Rejected(Status::Unsupported)
    );
    let mut f = nexus_metrics::proto::encode_stats(5);
    f.push(0);
    assert_eq!(
        call(&mut m, 0, me, &f),
        nexus_metrics::proto::Reply::Rejected(Status::Malformed)
    );
    assert!(m.handle(0, me, b"MT").reply.is_none());
    let mut oneway = nexus_metrics::proto::encode_batch(
        1,
        true,
        &[Entry::Inc {
            series: 1,
            delta: 1,
        }],
    )
    .unwrap();
    oneway.pop();
    assert!(
        m.handle(0, me, &oneway).reply.is_none(),
        "one-way frames are never answered"
    );
    let st = stats(&mut m, me);
    assert_eq!(
        (
            st.rejected(Status::Malformed),
            st.rejected(Status::Unsupported)
        ),
        (3, 1)
    );
}
