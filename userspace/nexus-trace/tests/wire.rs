//! The span entry bodies: exact bytes (as today's metricsd BATCH carries
//! them), round trips, and no panic on any input.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use nexus_trace::wire::{tag, RawSpanEnd, RawSpanStart, SpanEnd, SpanStart};
use nexus_trace::{SpanId, SpanStatus, TraceId};
use nexus_wire::{Reader, WireError, Writer};
use proptest::prelude::*;

fn start_bytes(s: &SpanStart<'_>) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::new();
    let mut w = Writer::new(&mut out);
    s.emit(&mut w);
    w.finish()?;
    Ok(out)
}

fn end_bytes(e: &SpanEnd<'_>) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::new();
    let mut w = Writer::new(&mut out);
    e.emit(&mut w);
    w.finish()?;
    Ok(out)
}

/// The bytes below were written by hand from nexus-metrics'
/// `proto::encode_entry` (what follows the tag byte of entries 5 and 6).
#[test]
fn golden_start() {
    let s = SpanStart {
        span: SpanId::new(0x1122_3344_5566_7788).unwrap(),
        trace: TraceId::new(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10).unwrap(),
        parent: SpanId::new(0xa1),
        start_ns: 1_000_000_001,
        name: "db_query",
    };
    #[rustfmt::skip]
    let want: [u8; 49] = [
        // span u64 LE
        0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,
        // trace u128 LE
        0x10, 0x0f, 0x0e, 0x0d, 0x0c, 0x0b, 0x0a, 0x09, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
        // parent u64 LE
        0xa1, 0, 0, 0, 0, 0, 0, 0,
        // start_ns u64 LE: 1_000_000_001 = 0x3b9a_ca01
        0x01, 0xca, 0x9a, 0x3b, 0, 0, 0, 0,
        // name: u8 length, UTF-8
        8, b'd', b'b', b'_', b'q', b'u', b'e', b'r', b'y',
    ];
    assert_eq!(start_bytes(&s).unwrap(), want);
    let mut r = Reader::new(&want);
    assert_eq!(SpanStart::parse(&mut r), Ok(s.clone()));
    assert!(r.is_empty());

    // A root: parent 0.
    let root = SpanStart { parent: None, ..s };
    let bytes = start_bytes(&root).unwrap();
    assert_eq!(bytes[24..32], [0; 8]);
    assert_eq!(SpanStart::parse(&mut Reader::new(&bytes)), Ok(root));
    assert_eq!(tag::SPAN_START, 5);
}

#[test]
fn golden_end() {
    let e = SpanEnd {
        span: SpanId::new(0x1122_3344_5566_7788).unwrap(),
        end_ns: 0x0102,
        status: SpanStatus::Error.as_u8(),
        attrs: vec![("rows", "3"), ("k", "")],
    };
    #[rustfmt::skip]
    let want: [u8; 28] = [
        // span u64 LE
        0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,
        // end_ns u64 LE
        0x02, 0x01, 0, 0, 0, 0, 0, 0,
        // status, nattrs
        2, 2,
        // ("rows", "3")
        4, b'r', b'o', b'w', b's', 1, b'3',
        // ("k", "")
        1, b'k', 0,
    ];
    assert_eq!(end_bytes(&e).unwrap(), want);
    let mut r = Reader::new(&want);
    let back = SpanEnd::parse(&mut r).unwrap();
    assert!(r.is_empty());
    assert_eq!(back, e);
    assert_eq!(back.status(), Some(SpanStatus::Error));
    assert_eq!(tag::SPAN_END, 6);
}

/// The span entries of a frame in nexus-metrics' regression corpus
/// (span 5, trace 1, root, start 7, "op"; end 8, status 2, k=v).
#[test]
fn matches_the_metrics_corpus() {
    let s = SpanStart {
        span: SpanId::new(5).unwrap(),
        trace: TraceId::new(1).unwrap(),
        parent: None,
        start_ns: 7,
        name: "op",
    };
    let e = SpanEnd {
        span: SpanId::new(5).unwrap(),
        end_ns: 8,
        status: 2,
        attrs: vec![("k", "v")],
    };
    // From tests/corpus/batch_oneway_all_kinds_ok.hex of nexus-metrics,
    // entries 05 and 06 without their tag.
    let start_hex = "0500000000000000 01000000000000000000000000000000 0000000000000000 0700000000000000 02 6f70";
    let end_hex = "0500000000000000 0800000000000000 02 01 01 6b 01 76";
    assert_eq!(start_bytes(&s).unwrap(), hex(start_hex));
    assert_eq!(end_bytes(&e).unwrap(), hex(end_hex));
}

fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

#[test]
fn unknown_status_is_kept_raw() {
    let mut bytes = end_bytes(&SpanEnd {
        span: SpanId::new(1).unwrap(),
        end_ns: 2,
        status: 0,
        attrs: vec![],
    })
    .unwrap();
    bytes[16] = 0xee;
    let e = SpanEnd::parse(&mut Reader::new(&bytes)).unwrap();
    assert_eq!(e.status, 0xee);
    assert_eq!(e.status(), None);
}

#[test]
fn zero_ids_and_truncation_are_refused() {
    let s = SpanStart {
        span: SpanId::new(1).unwrap(),
        trace: TraceId::new(2).unwrap(),
        parent: None,
        start_ns: 3,
        name: "n",
    };
    let good = start_bytes(&s).unwrap();
    let mut zero_span = good.clone();
    zero_span[..8].fill(0);
    assert_eq!(
        SpanStart::parse(&mut Reader::new(&zero_span)),
        Err(WireError::BadValue)
    );
    let mut zero_trace = good.clone();
    zero_trace[8..24].fill(0);
    assert_eq!(
        SpanStart::parse(&mut Reader::new(&zero_trace)),
        Err(WireError::BadValue)
    );
    for n in 0..good.len() {
        assert_eq!(
            SpanStart::parse(&mut Reader::new(&good[..n])),
            Err(WireError::Truncated),
            "{n} bytes"
        );
    }
    let mut bad_utf8 = good.clone();
    *bad_utf8.last_mut().unwrap() = 0xff;
    assert_eq!(
        SpanStart::parse(&mut Reader::new(&bad_utf8)),
        Err(WireError::BadValue)
    );
    let end = end_bytes(&SpanEnd {
        span: SpanId::new(1).unwrap(),
        end_ns: 2,
        status: 1,
        attrs: vec![("a", "b")],
    })
    .unwrap();
    let mut zero_end = end.clone();
    zero_end[..8].fill(0);
    assert_eq!(
        SpanEnd::parse(&mut Reader::new(&zero_end)),
        Err(WireError::BadValue)
    );
    for n in 0..end.len() {
        assert_eq!(
            SpanEnd::parse(&mut Reader::new(&end[..n])),
            Err(WireError::Truncated)
        );
    }
}

#[test]
fn oversize_fields_fail_the_writer() {
    let long = "x".repeat(256);
    let s = SpanStart {
        span: SpanId::new(1).unwrap(),
        trace: TraceId::new(2).unwrap(),
        parent: None,
        start_ns: 3,
        name: &long,
    };
    assert_eq!(start_bytes(&s), Err(WireError::BadValue));
    let max = "x".repeat(255);
    assert!(start_bytes(&SpanStart { name: &max, ..s }).is_ok());
    let e = SpanEnd {
        span: SpanId::new(1).unwrap(),
        end_ns: 2,
        status: 0,
        attrs: vec![("k", long.as_str())],
    };
    assert_eq!(end_bytes(&e), Err(WireError::BadValue));
    let many = SpanEnd {
        attrs: vec![("k", "v"); 256],
        ..e.clone()
    };
    assert_eq!(end_bytes(&many), Err(WireError::BadValue));
    let most = SpanEnd {
        attrs: vec![("k", "v"); 255],
        ..e
    };
    assert_eq!(end_bytes(&most).unwrap().len(), 18 + 255 * 4);
    // A bounded writer refuses rather than cuts.
    let mut out = Vec::new();
    let mut w = Writer::bounded(&mut out, 10);
    most.emit(&mut w);
    assert_eq!(w.finish(), Err(WireError::TooLarge));
}

/// Today's nexus-metrics encoder for the two bodies, copied as it is
/// (`extend_from_slice` of little-endian integers), to compare against on
/// arbitrary inputs.
fn reference_start(span: u64, trace: u128, parent: u64, start_ns: u64, name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&span.to_le_bytes());
    out.extend_from_slice(&trace.to_le_bytes());
    out.extend_from_slice(&parent.to_le_bytes());
    out.extend_from_slice(&start_ns.to_le_bytes());
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    out
}

fn reference_end(span: u64, end_ns: u64, status: u8, attrs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&span.to_le_bytes());
    out.extend_from_slice(&end_ns.to_le_bytes());
    out.push(status);
    out.push(attrs.len() as u8);
    for (k, v) in attrs {
        out.push(k.len() as u8);
        out.extend_from_slice(k.as_bytes());
        out.push(v.len() as u8);
        out.extend_from_slice(v.as_bytes());
    }
    out
}

fn short_str() -> impl Strategy<Value = String> {
    // Up to 60 chars of any script: at most 240 bytes, under the u8 prefix.
    "\\PC{0,60}"
}

proptest! {
    #[test]
    fn start_round_trips_and_matches_today(
        span in 1u64..,
        trace in 1u128..,
        parent: u64,
        start_ns: u64,
        name in short_str(),
    ) {
        let s = SpanStart {
            span: SpanId::new(span).unwrap(),
            trace: TraceId::new(trace).unwrap(),
            parent: SpanId::new(parent),
            start_ns,
            name: &name,
        };
        let bytes = start_bytes(&s).unwrap();
        prop_assert_eq!(&bytes, &reference_start(span, trace, parent, start_ns, &name));
        let mut r = Reader::new(&bytes);
        prop_assert_eq!(SpanStart::parse(&mut r), Ok(s));
        prop_assert!(r.is_empty());
    }

    #[test]
    fn end_round_trips_and_matches_today(
        span in 1u64..,
        end_ns: u64,
        status: u8,
        attrs in proptest::collection::vec((short_str(), short_str()), 0..20),
    ) {
        let pairs: Vec<(&str, &str)> = attrs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let e = SpanEnd { span: SpanId::new(span).unwrap(), end_ns, status, attrs: pairs.clone() };
        let bytes = end_bytes(&e).unwrap();
        prop_assert_eq!(&bytes, &reference_end(span, end_ns, status, &pairs));
        let mut r = Reader::new(&bytes);
        prop_assert_eq!(SpanEnd::parse(&mut r), Ok(e));
        prop_assert!(r.is_empty());
    }

    /// Any bytes: never a panic, and whatever parses re-encodes to exactly
    /// the bytes it was read from (one encoding per value).
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut r = Reader::new(&bytes);
        if let Ok(s) = SpanStart::parse(&mut r) {
            let used = bytes.len() - r.remaining();
            prop_assert_eq!(start_bytes(&s).unwrap(), &bytes[..used]);
        }
        let mut r = Reader::new(&bytes);
        if let Ok(e) = SpanEnd::parse(&mut r) {
            let used = bytes.len() - r.remaining();
            prop_assert_eq!(end_bytes(&e).unwrap(), &bytes[..used]);
        }
    }

    /// Mostly-valid bodies with one byte changed or the tail cut.
    #[test]
    fn mutated_bodies_never_panic(
        span in 1u64..,
        n in 0usize..8,
        at: prop::sample::Index,
        flip: u8,
        cut: prop::sample::Index,
    ) {
        let attrs: Vec<(&str, &str)> = vec![("key", "value"); n];
        let mut bytes = end_bytes(&SpanEnd { span: SpanId::new(span).unwrap(), end_ns: 1, status: 1, attrs }).unwrap();
        let i = at.index(bytes.len());
        bytes[i] ^= flip;
        let keep = cut.index(bytes.len() + 1);
        let _ = SpanEnd::parse(&mut Reader::new(&bytes[..keep]));
        let _ = SpanStart::parse(&mut Reader::new(&bytes[..keep]));
    }
}

/// The raw forms read and write the same bytes as the typed ones; zero ids
/// parse raw and are refused only by `check`.
#[test]
fn raw_forms_share_the_bytes_and_defer_the_id_check() {
    let s = SpanStart {
        span: SpanId::new(5).unwrap(),
        trace: TraceId::new(6).unwrap(),
        parent: SpanId::new(7),
        start_ns: 8,
        name: "op",
    };
    let bytes = start_bytes(&s).unwrap();
    let raw = RawSpanStart::parse(&mut Reader::new(&bytes)).unwrap();
    assert_eq!(raw, s.raw());
    assert_eq!(raw.check(), Ok(s));
    let mut out = Vec::new();
    raw.emit(&mut Writer::new(&mut out));
    assert_eq!(out, bytes);
    let zero = RawSpanStart { span: 0, ..raw };
    assert_eq!(zero.check(), Err(WireError::BadValue));
    let zero = RawSpanStart { trace: 0, ..raw };
    assert_eq!(zero.check(), Err(WireError::BadValue));
    assert_eq!(
        RawSpanStart { parent: 0, ..raw }.check().unwrap().parent,
        None
    );

    let e = SpanEnd {
        span: SpanId::new(5).unwrap(),
        end_ns: 9,
        status: 7,
        attrs: vec![("k", "v")],
    };
    let bytes = end_bytes(&e).unwrap();
    let raw = RawSpanEnd::parse(&mut Reader::new(&bytes)).unwrap();
    let mut out = Vec::new();
    raw.emit(&mut Writer::new(&mut out));
    assert_eq!(out, bytes);
    assert_eq!(raw.clone().check(), Ok(e));
    let zero = RawSpanEnd { span: 0, ..raw };
    assert_eq!(zero.check(), Err(WireError::BadValue));
}
