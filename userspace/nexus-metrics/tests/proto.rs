//! The metricsd codec: round trips, exact layouts, and no decoder panics on any input.
//! The regression corpus in `tests/corpus/` is replayed on every run.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use nexus_metrics::proto::{
    self, decode_reply, decode_request, encode_batch, encode_register, encode_reply, encode_scrape,
    encode_segments, encode_stats, op, tag, BatchResult, Entry, MetricsStats, Register, Rejects,
    Reply, Request, RequestError, ScrapePage, Status, WireSegment,
};
use nexus_wire::{Header, WireError, REPLY_BIT};
use proptest::prelude::*;

fn header(op: u8, nonce: u64) -> Header {
    Header {
        magic: proto::MAGIC,
        version: proto::VERSION,
        op,
        nonce,
    }
}

/// The 12 header bytes, built by hand.
fn hdr_bytes(op: u8, nonce: u64) -> Vec<u8> {
    let mut v = vec![b'M', b'T', 1, op];
    v.extend_from_slice(&nonce.to_le_bytes());
    v
}

/// Re-encodes a decoded request with the public encoders.
fn encode_request(h: &Header, req: &Request<'_>) -> Vec<u8> {
    match req {
        Request::Register(r) => encode_register(h.nonce, r).unwrap(),
        Request::Batch { oneway, entries } => encode_batch(h.nonce, *oneway, entries).unwrap(),
        Request::Scrape { cursor, max_bytes } => encode_scrape(h.nonce, *cursor, *max_bytes),
        Request::Stats => encode_stats(h.nonce),
        Request::Segments { series, tier } => encode_segments(h.nonce, *series, *tier),
    }
}

// ---- strategies ----------------------------------------------------------

/// An owned REGISTER body (`Register` borrows its strings).
#[derive(Debug, Clone)]
struct OwnedRegister {
    kind: u8,
    name: String,
    labels: Vec<(String, String)>,
    bounds: Vec<u64>,
}

impl OwnedRegister {
    fn borrow(&self) -> Register<'_> {
        Register {
            kind: self.kind,
            name: &self.name,
            labels: self
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            bounds: self.bounds.clone(),
            help: "",
        }
    }
}

fn register() -> impl Strategy<Value = OwnedRegister> {
    (
        any::<u8>(),
        ".{0,40}",
        proptest::collection::vec((".{0,12}", ".{0,20}"), 0..6),
        proptest::collection::vec(any::<u64>(), 0..20),
    )
        .prop_map(|(kind, name, labels, bounds)| OwnedRegister {
            kind,
            name,
            labels,
            bounds,
        })
}

/// An owned BATCH entry.
#[derive(Debug, Clone)]
enum OwnedEntry {
    Inc(u32, u64),
    Set(u32, i64),
    Add(u32, i64),
    Hist(u32, Vec<u64>, u64),
    Start(u64, u128, u64, u64, String),
    End(u64, u64, u8, Vec<(String, String)>),
}

impl OwnedEntry {
    fn borrow(&self) -> Entry<'_> {
        match self {
            OwnedEntry::Inc(series, delta) => Entry::Inc {
                series: *series,
                delta: *delta,
            },
            OwnedEntry::Set(series, value) => Entry::Set {
                series: *series,
                value: *value,
            },
            OwnedEntry::Add(series, delta) => Entry::Add {
                series: *series,
                delta: *delta,
            },
            OwnedEntry::Hist(series, counts, sum) => Entry::Hist {
                series: *series,
                counts: counts.clone(),
                sum: *sum,
            },
            OwnedEntry::Start(span, trace, parent, start_ns, name) => Entry::SpanStart {
                span: *span,
                trace: *trace,
                parent: *parent,
                start_ns: *start_ns,
                name,
            },
            OwnedEntry::End(span, end_ns, status, attrs) => Entry::SpanEnd {
                span: *span,
                end_ns: *end_ns,
                status: *status,
                attrs: attrs
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect(),
            },
        }
    }
}

fn entry() -> impl Strategy<Value = OwnedEntry> {
    prop_oneof![
        (any::<u32>(), any::<u64>()).prop_map(|(s, d)| OwnedEntry::Inc(s, d)),
        (any::<u32>(), any::<i64>()).prop_map(|(s, v)| OwnedEntry::Set(s, v)),
        (any::<u32>(), any::<i64>()).prop_map(|(s, d)| OwnedEntry::Add(s, d)),
        (
            any::<u32>(),
            proptest::collection::vec(any::<u64>(), 0..18),
            any::<u64>()
        )
            .prop_map(|(s, c, sum)| OwnedEntry::Hist(s, c, sum)),
        (
            any::<u64>(),
            any::<u128>(),
            any::<u64>(),
            any::<u64>(),
            ".{0,30}"
        )
            .prop_map(|(s, t, p, ts, n)| OwnedEntry::Start(s, t, p, ts, n)),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u8>(),
            proptest::collection::vec(("[a-z0-9_.-]{0,10}", ".{0,20}"), 0..6)
        )
            .prop_map(|(s, ts, st, a)| OwnedEntry::End(s, ts, st, a)),
    ]
}

/// Any valid request frame, of every op.
fn request_frame() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (any::<u64>(), register()).prop_map(|(n, r)| encode_register(n, &r.borrow()).unwrap()),
        (
            any::<u64>(),
            any::<bool>(),
            proptest::collection::vec(entry(), 0..8)
        )
            .prop_map(|(n, o, es)| {
                let es: Vec<Entry<'_>> = es.iter().map(OwnedEntry::borrow).collect();
                encode_batch(n, o, &es).unwrap()
            }),
        (any::<u64>(), any::<u32>(), any::<u32>()).prop_map(|(n, c, m)| encode_scrape(n, c, m)),
        any::<u64>().prop_map(encode_stats),
        (any::<u64>(), any::<u32>(), any::<u8>()).prop_map(|(n, s, t)| encode_segments(n, s, t)),
    ]
}

fn status() -> impl Strategy<Value = Status> {
    proptest::sample::select(Status::ALL.to_vec())
}

fn non_ok_status() -> impl Strategy<Value = Status> {
    proptest::sample::select(Status::ALL[1..].to_vec())
}

fn stats() -> impl Strategy<Value = MetricsStats> {
    (any::<[u64; 15]>()).prop_map(|v| MetricsStats {
        series: v[0],
        live_spans: v[1],
        updates: v[2],
        spans_ended: v[3],
        rejects: Rejects::from_array([v[4], v[5], v[6], v[7], v[8], v[9]]),
        series_overflow: v[10],
        identity_spoofs: v[11],
        snapshots_exported: v[12],
        segments: v[13],
        sender_evictions: v[14],
    })
}

fn wire_segment() -> impl Strategy<Value = WireSegment> {
    any::<(u64, u64, i64, i64, i64)>().prop_map(|(start_ns, count, sum, min, max)| WireSegment {
        start_ns,
        count,
        sum,
        min,
        max,
    })
}

/// Any reply paired with the request op it answers.
fn reply() -> impl Strategy<Value = (u8, Reply)> {
    prop_oneof![
        any::<u32>().prop_map(|id| (op::REGISTER, Reply::Registered(id))),
        (any::<u16>(), any::<u16>(), status()).prop_map(|(a, r, s)| (
            op::BATCH,
            Reply::Batch(BatchResult {
                accepted: a,
                rejected: r,
                first_reject: s
            })
        )),
        (any::<u32>(), any::<bool>(), ".{0,200}").prop_map(|(next, more, text)| (
            op::SCRAPE,
            Reply::Scrape(ScrapePage { next, more, text })
        )),
        stats().prop_map(|s| (op::STATS, Reply::Stats(s))),
        proptest::collection::vec(wire_segment(), 0..12)
            .prop_map(|v| (op::SEGMENTS, Reply::Segments(v))),
        (1u8..=6, non_ok_status()).prop_map(|(o, s)| (o, Reply::Rejected(s))),
    ]
}

/// Ops worth aiming at: every request op, every reply op, and anything else.
fn any_op() -> impl Strategy<Value = u8> {
    prop_oneof![0u8..=7, (0u8..=7).prop_map(|o| o | REPLY_BIT), any::<u8>()]
}

// ---- round trips ---------------------------------------------------------

proptest! {
    #[test]
    fn register_round_trips(nonce in any::<u64>(), reg in register()) {
        let body = reg.borrow();
        let frame = encode_register(nonce, &body).unwrap();
        prop_assert_eq!(decode_request(&frame).unwrap(), (header(op::REGISTER, nonce), Request::Register(body)));
    }

    #[test]
    fn batch_round_trips(nonce in any::<u64>(), oneway in any::<bool>(),
                         entries in proptest::collection::vec(entry(), 0..16)) {
        let entries: Vec<Entry<'_>> = entries.iter().map(OwnedEntry::borrow).collect();
        let frame = encode_batch(nonce, oneway, &entries).unwrap();
        let want_op = if oneway { op::BATCH_ONEWAY } else { op::BATCH };
        prop_assert_eq!(&frame[..12], &hdr_bytes(want_op, nonce)[..]);
        prop_assert_eq!(&frame[12..14], &(entries.len() as u16).to_le_bytes()[..]);
        prop_assert_eq!(decode_request(&frame).unwrap(), (header(want_op, nonce), Request::Batch { oneway, entries }));
    }

    #[test]
    fn scrape_round_trips(nonce in any::<u64>(), cursor in any::<u32>(), max_bytes in any::<u32>()) {
        let frame = encode_scrape(nonce, cursor, max_bytes);
        prop_assert_eq!(frame.len(), 12 + 8);
        prop_assert_eq!(decode_request(&frame).unwrap(), (header(op::SCRAPE, nonce), Request::Scrape { cursor, max_bytes }));
    }

    #[test]
    fn stats_round_trips(nonce in any::<u64>()) {
        let frame = encode_stats(nonce);
        prop_assert_eq!(&frame, &hdr_bytes(op::STATS, nonce));
        prop_assert_eq!(decode_request(&frame).unwrap(), (header(op::STATS, nonce), Request::Stats));
    }

    #[test]
    fn segments_round_trips(nonce in any::<u64>(), series in any::<u32>(), tier in any::<u8>()) {
        let frame = encode_segments(nonce, series, tier);
        prop_assert_eq!(frame.len(), 12 + 5);
        prop_assert_eq!(decode_request(&frame).unwrap(), (header(op::SEGMENTS, nonce), Request::Segments { series, tier }));
    }

    #[test]
    fn replies_round_trip(nonce in any::<u64>(), (req_op, reply) in reply()) {
        let frame = encode_reply(&header(req_op, nonce), &reply);
        prop_assert_eq!(&frame[..12], &hdr_bytes(req_op | REPLY_BIT, nonce)[..]);
        let (h, back) = decode_reply(&frame).unwrap();
        prop_assert_eq!(h, header(req_op | REPLY_BIT, nonce));
        prop_assert_eq!(back, reply);
    }

    #[test]
    fn rejected_replies_are_status_only(req_op in any::<u8>(), nonce in any::<u64>(), s in non_ok_status()) {
        let frame = encode_reply(&header(req_op, nonce), &Reply::Rejected(s));
        prop_assert_eq!(frame.len(), 13);
        prop_assert_eq!(frame[12], s as u8);
        prop_assert_eq!(decode_reply(&frame).unwrap(), (header(req_op | REPLY_BIT, nonce), Reply::Rejected(s)));
    }

    /// Arbitrary bytes: decoders return, never panic.
    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_request(&bytes);
        let _ = decode_reply(&bytes);
    }

    /// Arbitrary bytes behind a valid header (for every op, and versions
    /// other than 1) reach the body decoders.
    #[test]
    fn decoders_never_panic_behind_a_valid_header(op in any_op(), version in prop_oneof![Just(1u8), any::<u8>()],
                                                  body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut f = Vec::new();
        Header { magic: proto::MAGIC, version, op, nonce: 1 }.emit(&mut f);
        f.extend_from_slice(&body);
        match decode_request(&f) {
            Ok((h, req)) => prop_assert_eq!(encode_request(&h, &req), f.clone()),
            Err(RequestError::NoHeader) => prop_assert!(false, "a full header was not seen"),
            Err(RequestError::Unsupported(h) | RequestError::Malformed(h)) => prop_assert_eq!(h.nonce, 1),
        }
        if let Ok((h, r)) = decode_reply(&f) {
            prop_assert_eq!(decode_reply(&encode_reply(&h, &r)).unwrap(), (h, r));
        }
    }

    /// Entries with arbitrary bytes behind every tag: never a panic.
    #[test]
    fn batch_entries_never_panic(count in any::<u16>(), t in 0u8..=8, body in proptest::collection::vec(any::<u8>(), 0..128)) {
        let mut f = hdr_bytes(op::BATCH, 1);
        f.extend_from_slice(&count.to_le_bytes());
        f.push(t);
        f.extend_from_slice(&body);
        if let Ok((h, req)) = decode_request(&f) {
            prop_assert_eq!(encode_request(&h, &req), f);
        }
    }

    /// Valid request frames with one byte changed or cut short: never a
    /// panic, an accepted frame re-encodes to the same bytes, and a cut
    /// frame is never accepted.
    #[test]
    fn mutated_requests_are_handled(frame in request_frame(), pos in any::<usize>(), byte in any::<u8>(), cut in any::<usize>()) {
        let (h, req) = decode_request(&frame).unwrap();
        prop_assert_eq!(encode_request(&h, &req), frame.clone());
        let mut m = frame.clone();
        let i = pos % m.len();
        m[i] = byte;
        if let Ok((h, req)) = decode_request(&m) {
            prop_assert_eq!(encode_request(&h, &req), m);
        }
        let c = cut % frame.len();
        prop_assert!(decode_request(&frame[..c]).is_err(), "accepted a cut at {} of {}", c, frame.len());
    }

    /// Valid reply frames with one byte changed or cut short: never a
    /// panic, and a cut frame is never accepted.
    #[test]
    fn mutated_replies_are_handled(nonce in any::<u64>(), (req_op, reply) in reply(), pos in any::<usize>(), byte in any::<u8>(), cut in any::<usize>()) {
        let frame = encode_reply(&header(req_op, nonce), &reply);
        let mut m = frame.clone();
        let i = pos % m.len();
        m[i] = byte;
        if let Ok((h, r)) = decode_reply(&m) {
            prop_assert_eq!(decode_reply(&encode_reply(&h, &r)).unwrap(), (h, r));
        }
        let c = cut % frame.len();
        prop_assert!(decode_reply(&frame[..c]).is_err(), "accepted a cut at {} of {}", c, frame.len());
    }

    /// Every cut of a valid frame is refused, not only a random one.
    #[test]
    fn every_cut_is_refused(frame in request_frame(), nonce in any::<u64>(), (req_op, reply) in reply()) {
        for c in 0..frame.len() {
            prop_assert!(decode_request(&frame[..c]).is_err(), "request cut at {}", c);
        }
        let r = encode_reply(&header(req_op, nonce), &reply);
        for c in 0..r.len() {
            prop_assert!(decode_reply(&r[..c]).is_err(), "reply cut at {}", c);
        }
    }

    #[test]
    fn stats_rejected_maps_statuses_in_wire_order(s in stats()) {
        prop_assert_eq!(s.rejected(Status::Ok), 0);
        // The six counters of the wire form, in status order.
        for (i, st) in Status::ALL[1..7].iter().enumerate() {
            prop_assert_eq!(s.rejected(*st), s.rejects.as_array()[i]);
        }
    }
}

// ---- exact layouts -------------------------------------------------------

#[test]
fn header_layout_is_magic_version_op_nonce_le() {
    let f = encode_stats(0x0102_0304_0506_0708);
    assert_eq!(f, [b'M', b'T', 1, 5, 8, 7, 6, 5, 4, 3, 2, 1]);
    assert_eq!(
        decode_request(&f).unwrap(),
        (header(op::STATS, 0x0102_0304_0506_0708), Request::Stats)
    );
}

#[test]
fn inc_entry_is_tag_series_delta() {
    let e = Entry::Inc {
        series: 0x1122_3344,
        delta: 0x0102_0304_0506_0708,
    };
    let f = encode_batch(0xAB, false, std::slice::from_ref(&e)).unwrap();
    let mut want = hdr_bytes(op::BATCH, 0xAB);
    want.extend_from_slice(&[1, 0]); // count
    want.push(tag::INC);
    want.extend_from_slice(&[0x44, 0x33, 0x22, 0x11]);
    want.extend_from_slice(&[8, 7, 6, 5, 4, 3, 2, 1]);
    assert_eq!(f, want);
    assert_eq!(f.len(), 12 + 2 + 13);
    // One-way differs only in the op byte.
    let g = encode_batch(0xAB, true, &[e]).unwrap();
    assert_eq!(g[3], op::BATCH_ONEWAY);
    assert_eq!(g[..3], f[..3]);
    assert_eq!(g[4..], f[4..]);
}

#[test]
fn gauge_entries_are_twos_complement() {
    let f = encode_batch(
        1,
        false,
        &[
            Entry::Set {
                series: 2,
                value: -1,
            },
            Entry::Add {
                series: 3,
                delta: i64::MIN,
            },
        ],
    )
    .unwrap();
    let mut want = hdr_bytes(op::BATCH, 1);
    want.extend_from_slice(&[2, 0]);
    want.extend_from_slice(&[tag::SET, 2, 0, 0, 0]);
    want.extend_from_slice(&[0xff; 8]);
    want.extend_from_slice(&[tag::ADD, 3, 0, 0, 0]);
    want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x80]);
    assert_eq!(f, want);
}

#[test]
fn hist_and_span_entries_layout() {
    let f = encode_batch(
        1,
        true,
        &[
            Entry::Hist {
                series: 9,
                counts: vec![1, 2],
                sum: 3,
            },
            Entry::SpanStart {
                span: 5,
                trace: 0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10,
                parent: 0,
                start_ns: 7,
                name: "op",
            },
            Entry::SpanEnd {
                span: 5,
                end_ns: 8,
                status: 2,
                attrs: vec![("k", "v")],
            },
        ],
    )
    .unwrap();
    let mut want = hdr_bytes(op::BATCH_ONEWAY, 1);
    want.extend_from_slice(&[3, 0]);
    // HIST: tag, series, n, counts, sum.
    want.extend_from_slice(&[tag::HIST, 9, 0, 0, 0, 2]);
    want.extend_from_slice(&1u64.to_le_bytes());
    want.extend_from_slice(&2u64.to_le_bytes());
    want.extend_from_slice(&3u64.to_le_bytes());
    // START: tag, span, trace (u128 LE), parent, start_ns, name.
    want.push(tag::SPAN_START);
    want.extend_from_slice(&5u64.to_le_bytes());
    want.extend_from_slice(&[
        0x10, 0x0f, 0x0e, 0x0d, 0x0c, 0x0b, 0x0a, 0x09, 8, 7, 6, 5, 4, 3, 2, 1,
    ]);
    want.extend_from_slice(&0u64.to_le_bytes());
    want.extend_from_slice(&7u64.to_le_bytes());
    want.extend_from_slice(&[2, b'o', b'p']);
    // END: tag, span, end_ns, status, nattrs, pairs.
    want.push(tag::SPAN_END);
    want.extend_from_slice(&5u64.to_le_bytes());
    want.extend_from_slice(&8u64.to_le_bytes());
    want.extend_from_slice(&[2, 1, 1, b'k', 1, b'v']);
    assert_eq!(f, want);
    assert!(decode_request(&f).is_ok());
}

#[test]
fn register_layout() {
    let r = Register {
        kind: 2,
        name: "lat",
        labels: vec![("k", "v")],
        bounds: vec![10, 0x0100],
        help: "",
    };
    let f = encode_register(0x42, &r).unwrap();
    let mut want = hdr_bytes(op::REGISTER, 0x42);
    want.extend_from_slice(&[2, 3, b'l', b'a', b't', 1, 1, b'k', 1, b'v', 2]);
    want.extend_from_slice(&[10, 0, 0, 0, 0, 0, 0, 0]);
    want.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(f, want);
    assert_eq!(
        decode_request(&f).unwrap(),
        (header(op::REGISTER, 0x42), Request::Register(r))
    );
}

#[test]
fn scrape_and_segments_request_layout() {
    let mut want = hdr_bytes(op::SCRAPE, 3);
    want.extend_from_slice(&[1, 0, 0, 0, 0, 0x10, 0, 0]);
    assert_eq!(encode_scrape(3, 1, 0x1000), want);
    let mut want = hdr_bytes(op::SEGMENTS, 3);
    want.extend_from_slice(&[0x78, 0x56, 0x34, 0x12, 2]);
    assert_eq!(encode_segments(3, 0x1234_5678, 2), want);
}

#[test]
fn oversized_fields_do_not_encode() {
    let long = "x".repeat(256);
    let r = Register {
        kind: 0,
        name: &long,
        labels: vec![],
        bounds: vec![],
        help: "",
    };
    assert_eq!(encode_register(1, &r), Err(WireError::BadValue));
    let r = Register {
        kind: 0,
        name: "a",
        labels: vec![],
        bounds: vec![0; 256],
        help: "",
    };
    assert_eq!(encode_register(1, &r), Err(WireError::BadValue));
    let e = Entry::Hist {
        series: 1,
        counts: vec![0; 256],
        sum: 0,
    };
    assert_eq!(encode_batch(1, false, &[e]), Err(WireError::BadValue));
    let e = Entry::SpanEnd {
        span: 1,
        end_ns: 1,
        status: 0,
        attrs: vec![("k", "v"); 256],
    };
    assert_eq!(encode_batch(1, false, &[e]), Err(WireError::BadValue));
    // 255 of each is the most that fits, and round trips.
    let name = "x".repeat(255);
    let r = Register {
        kind: 0,
        name: &name,
        labels: vec![("k", "v"); 255],
        bounds: vec![7; 255],
        help: "",
    };
    let f = encode_register(1, &r).unwrap();
    assert_eq!(decode_request(&f).unwrap().1, Request::Register(r));
}

#[test]
fn reply_layouts() {
    let h = header(op::REGISTER, 0x0807);
    let f = encode_reply(&h, &Reply::Registered(0x0a0b_0c0d));
    let mut want = hdr_bytes(0x81, 0x0807);
    want.extend_from_slice(&[0, 0x0d, 0x0c, 0x0b, 0x0a]);
    assert_eq!(f, want);

    let f = encode_reply(
        &header(op::BATCH, 1),
        &Reply::Batch(BatchResult {
            accepted: 0x0102,
            rejected: 3,
            first_reject: Status::OverLimit,
        }),
    );
    let mut want = hdr_bytes(0x82, 1);
    want.extend_from_slice(&[0, 2, 1, 3, 0, 4]);
    assert_eq!(f, want);

    let f = encode_reply(
        &header(op::SCRAPE, 1),
        &Reply::Scrape(ScrapePage {
            next: 4,
            more: true,
            text: "hi\n".into(),
        }),
    );
    let mut want = hdr_bytes(0x84, 1);
    want.extend_from_slice(&[0, 4, 0, 0, 0, 1, 3, 0, 0, 0, b'h', b'i', b'\n']);
    assert_eq!(f, want);

    let seg = WireSegment {
        start_ns: 10,
        count: 2,
        sum: -3,
        min: -4,
        max: 1,
    };
    let f = encode_reply(&header(op::SEGMENTS, 1), &Reply::Segments(vec![seg; 2]));
    assert_eq!(f.len(), 12 + 1 + 2 + 2 * 40);
    assert_eq!(f[12..15], [0, 2, 0]);
    assert_eq!(f[15..23], 10u64.to_le_bytes());
    assert_eq!(f[23..31], 2u64.to_le_bytes());
    assert_eq!(f[31..39], (-3i64).to_le_bytes());
    assert_eq!(f[39..47], (-4i64).to_le_bytes());
    assert_eq!(f[47..55], 1i64.to_le_bytes());

    let f = encode_reply(&header(op::SEGMENTS, 1), &Reply::Rejected(Status::Denied));
    assert_eq!(f, [b'M', b'T', 1, 0x86, 1, 0, 0, 0, 0, 0, 0, 0, 6]);
}

#[test]
fn stats_reply_is_sixteen_u64_in_documented_order() {
    let s = MetricsStats {
        series: 1,
        live_spans: 2,
        updates: 3,
        spans_ended: 4,
        rejects: Rejects::from_array([5, 6, 7, 8, 9, 10]),
        series_overflow: 11,
        identity_spoofs: 12,
        snapshots_exported: 13,
        segments: 14,
        sender_evictions: 15,
    };
    let f = encode_reply(&header(op::STATS, 1), &Reply::Stats(s));
    assert_eq!(f.len(), 12 + 1 + 16 * 8);
    assert_eq!(f[12], 0);
    for i in 0..16u64 {
        let at = 13 + 8 * i as usize;
        // The last slot is reserved and written as zero.
        let want = if i == 15 { 0 } else { i + 1 };
        assert_eq!(f[at..at + 8], want.to_le_bytes(), "slot {i}");
    }
    assert_eq!(decode_reply(&f).unwrap().1, Reply::Stats(s));
}

#[test]
fn stats_rejected_fixed() {
    let s = MetricsStats {
        rejects: Rejects::from_array([10, 20, 30, 40, 50, 60]),
        ..MetricsStats::default()
    };
    assert_eq!(s.rejected(Status::Ok), 0);
    assert_eq!(s.rejected(Status::Malformed), 10);
    assert_eq!(s.rejected(Status::Unsupported), 20);
    assert_eq!(s.rejected(Status::InvalidArgs), 30);
    assert_eq!(s.rejected(Status::OverLimit), 40);
    assert_eq!(s.rejected(Status::RateLimited), 50);
    assert_eq!(s.rejected(Status::Denied), 60);
}

#[test]
fn header_checks() {
    // A request with the reply bit, a reply without it, another version.
    let mut f = encode_stats(9);
    f[3] |= REPLY_BIT;
    assert_eq!(
        decode_request(&f),
        Err(RequestError::Unsupported(header(op::STATS | REPLY_BIT, 9)))
    );
    let r = encode_reply(&header(op::STATS, 9), &Reply::Rejected(Status::Denied));
    let mut q = r.clone();
    q[3] &= !REPLY_BIT;
    assert!(decode_reply(&q).is_err());
    let mut q = r.clone();
    q[2] = 2;
    assert!(decode_reply(&q).is_err());
    let mut q = r;
    q[0] = b'L';
    assert_eq!(decode_reply(&q), Err(WireError::BadMagic));
    let mut f = encode_stats(9);
    f[2] = 2;
    assert!(matches!(
        decode_request(&f),
        Err(RequestError::Unsupported(h)) if h.version == 2 && h.nonce == 9
    ));
    for bad_op in [0u8, 7, 0x7f] {
        let f = hdr_bytes(bad_op, 4);
        assert_eq!(
            decode_request(&f),
            Err(RequestError::Unsupported(header(bad_op, 4)))
        );
    }
    assert_eq!(decode_request(b"MT"), Err(RequestError::NoHeader));
    let mut f = encode_stats(9);
    f[1] = b'X';
    assert_eq!(decode_request(&f), Err(RequestError::NoHeader));
}

#[test]
fn scrape_reply_more_flag_must_be_0_or_1() {
    let mut f = encode_reply(
        &header(op::SCRAPE, 1),
        &Reply::Scrape(ScrapePage {
            next: 0,
            more: false,
            text: String::new(),
        }),
    );
    f[12 + 5] = 2;
    assert_eq!(decode_reply(&f), Err(WireError::BadValue));
}

#[test]
fn a_huge_count_with_no_body_is_refused_without_allocating_it() {
    let mut f = hdr_bytes(op::BATCH, 1);
    f.extend_from_slice(&[0xff, 0xff]);
    assert!(matches!(
        decode_request(&f),
        Err(RequestError::Malformed(_))
    ));
    let mut f = hdr_bytes(op::SEGMENTS | REPLY_BIT, 1);
    f.extend_from_slice(&[0, 0xff, 0xff]);
    assert_eq!(decode_reply(&f), Err(WireError::Truncated));
}

// ---- corpus --------------------------------------------------------------

/// Replays `tests/corpus/*.hex`. Each file: `# request: <outcome>` or
/// `# reply: <outcome>` on its first line, then the frame in hex (spaces
/// and newlines ignored). Outcomes: `ok`, `no_header`, `unsupported`,
/// `malformed`, `err`. A frame decoded `ok` must re-encode to its bytes.
#[test]
fn regression_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("hex") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
        let hex: String = rest.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        assert_eq!(hex.len() % 2, 0, "{}: odd hex digits", path.display());
        let bytes: Vec<u8> = (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        let (kind, want) = first.trim_start_matches("# ").split_once(": ").unwrap();
        let got = match kind {
            "request" => match decode_request(&bytes) {
                Ok((h, req)) => {
                    assert_eq!(encode_request(&h, &req), bytes, "{}", path.display());
                    "ok"
                }
                Err(RequestError::NoHeader) => "no_header",
                Err(RequestError::Unsupported(_)) => "unsupported",
                Err(RequestError::Malformed(_)) => "malformed",
            },
            "reply" => match decode_reply(&bytes) {
                Ok((h, r)) => {
                    assert_eq!(encode_reply(&h, &r), bytes, "{}", path.display());
                    "ok"
                }
                Err(_) => "err",
            },
            other => panic!("{}: unknown kind {other}", path.display()),
        };
        assert_eq!(got, want.trim(), "{}", path.display());
        n += 1;
    }
    assert!(n >= 10, "corpus has {n} files");
}
