//! The finished-span wire form: exact bytes, round trips, and a refusal
//! (never a panic) for every malformed body.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use nexus_trace::finished::{self, FIXED_LEN};
use nexus_trace::{
    SpanContext, SpanEvent, SpanId, SpanRecord, SpanStatus, TraceFlags, TraceId, TraceState,
};
use nexus_wire::{Reader, WireError, Writer};
use proptest::prelude::*;

fn full() -> SpanRecord {
    SpanRecord {
        context: SpanContext::new(
            TraceId::new(0x0102).unwrap(),
            SpanId::new(0x0304).unwrap(),
            TraceFlags::SAMPLED,
        ),
        parent: SpanId::new(0x0506),
        remote_parent: true,
        name: "server.handle".into(),
        start_ns: 1000,
        end_ns: 2500,
        status: SpanStatus::Error,
        status_message: Some("disk full".into()),
        attrs: vec![("http.route".into(), "/items".into())],
        events: vec![SpanEvent {
            name: "retry".into(),
            time_ns: 1500,
            attrs: vec![("attempt".into(), "2".into())],
        }],
        tracestate: Some(TraceState::parse_all(["vendor=abc,other=1"]).unwrap()),
        dropped_attrs: 3,
        dropped_events: 1,
    }
}

fn encode(s: &SpanRecord) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = Writer::new(&mut out);
    finished::emit(&s.as_finished(), &mut w);
    w.finish().unwrap();
    out
}

fn decode(b: &[u8]) -> Result<SpanRecord, WireError> {
    let mut r = Reader::new(b);
    let s = finished::parse(&mut r)?;
    r.finish()?;
    Ok(s)
}

#[test]
fn a_full_span_has_the_documented_layout_and_round_trips() {
    let s = full();
    let b = encode(&s);
    assert_eq!(&b[0..16], &0x0102u128.to_le_bytes());
    assert_eq!(&b[16..24], &0x0304u64.to_le_bytes());
    assert_eq!(&b[24..32], &0x0506u64.to_le_bytes());
    assert_eq!(b[32], 1, "flags");
    assert_eq!(b[33], 1, "remote parent");
    assert_eq!(&b[34..42], &1000u64.to_le_bytes());
    assert_eq!(&b[42..50], &2500u64.to_le_bytes());
    assert_eq!(b[50], 2, "status error");
    assert_eq!(&b[51..55], &3u32.to_le_bytes());
    assert_eq!(&b[55..59], &1u32.to_le_bytes());
    assert_eq!(b[FIXED_LEN], 13, "name length");
    assert_eq!(&b[60..73], b"server.handle");
    assert_eq!(b[73], 1, "message present");
    assert_eq!(&b[74..76], &9u16.to_le_bytes());
    assert_eq!(decode(&b).unwrap(), s);
}

#[test]
fn a_bare_root_span_is_small_and_round_trips() {
    let mut s = full();
    s.parent = None;
    s.remote_parent = false;
    s.status = SpanStatus::Unset;
    s.status_message = None;
    s.attrs.clear();
    s.events.clear();
    s.tracestate = None;
    s.name = "x".into();
    let b = encode(&s);
    // fixed + name (1 + 1) + message flag + tracestate (2) + 2 counts
    assert_eq!(b.len(), FIXED_LEN + 2 + 1 + 2 + 2);
    assert_eq!(decode(&b).unwrap(), s);
}

#[test]
fn every_truncation_is_refused() {
    let b = encode(&full());
    for n in 0..b.len() {
        assert_eq!(decode(&b[..n]), Err(WireError::Truncated), "cut at {n}");
    }
    let mut long = b.clone();
    long.push(0);
    assert_eq!(decode(&long), Err(WireError::TrailingBytes));
}

#[test]
fn bad_values_are_refused() {
    let b = encode(&full());
    let with = |at: usize, v: &[u8]| {
        let mut c = b.clone();
        c[at..at + v.len()].copy_from_slice(v);
        decode(&c)
    };
    assert_eq!(with(0, &[0; 16]), Err(WireError::BadValue), "zero trace");
    assert_eq!(with(16, &[0; 8]), Err(WireError::BadValue), "zero span");
    assert_eq!(with(33, &[2]), Err(WireError::BadValue), "remote flag");
    assert_eq!(with(50, &[3]), Err(WireError::BadValue), "status");
    assert_eq!(
        with(42, &999u64.to_le_bytes()),
        Err(WireError::BadValue),
        "end < start"
    );
    assert_eq!(with(60, &[0xff]), Err(WireError::BadValue), "utf-8");
    assert_eq!(with(73, &[2]), Err(WireError::BadValue), "message flag");
    // The tracestate follows the message (76 + 9 = 85): its length, then
    // the header; a space inside a key is not allowed.
    assert_eq!(&b[85..87], &18u16.to_le_bytes());
    assert_eq!(with(87, b"ven dor"), Err(WireError::BadValue), "tracestate");
}

#[test]
fn oversized_fields_latch_an_error_in_the_writer() {
    let mut s = full();
    s.attrs = (0..256).map(|i| (format!("k{i}"), String::new())).collect();
    let mut out = Vec::new();
    let mut w = Writer::new(&mut out);
    finished::emit(&s.as_finished(), &mut w);
    assert_eq!(w.finish(), Err(WireError::BadValue));
}

proptest! {
    /// Arbitrary bytes: an error or a span, never a panic; whatever parses
    /// survives its own round trip (a tracestate is kept normalized).
    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(s) = decode(&b) {
            prop_assert_eq!(decode(&encode(&s)).unwrap(), s);
        }
    }

    /// Mutating one byte of a valid body: an error or a span, never a panic.
    #[test]
    fn one_byte_mutations_never_panic(at in 0usize..120, v in any::<u8>()) {
        let mut b = encode(&full());
        let at = at % b.len();
        b[at] = v;
        let _ = decode(&b);
    }
}
