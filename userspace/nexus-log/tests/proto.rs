//! The logd codec: round trips, and no decoder panics on any input.
//! The regression corpus in `tests/corpus/` is replayed on every run.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use nexus_ipc::ServiceId;
use nexus_log::proto::{
    self, decode_reply, decode_request, encode_append, encode_query, encode_reply, encode_stats,
    AppendRequest, QueryPage, QueryRequest, Rejects, Reply, Request, RequestError, SenderStats,
    Stats, Status,
};
use nexus_log::{Fields, FieldsBuilder, Level, Record};
use nexus_wire::Header;
use proptest::prelude::*;

fn level() -> impl Strategy<Value = Level> {
    (0u8..5).prop_map(|b| Level::from_u8(b).unwrap())
}

fn fields() -> impl Strategy<Value = Fields> {
    proptest::collection::btree_map("[a-z0-9_.-]{1,10}", "[^\n]{0,16}", 0..5).prop_map(|m| {
        let mut b = FieldsBuilder::new();
        for (k, v) in &m {
            let _ = b.insert(k, v);
        }
        b.build().unwrap()
    })
}

fn record() -> impl Strategy<Value = Record> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
        level(),
        ".{0,20}",
        ".{0,40}",
        fields(),
    )
        .prop_map(|(id, ts_ns, s, level, target, message, fields)| Record {
            id,
            ts_ns,
            sender: ServiceId::new(s),
            level,
            target,
            message,
            fields,
        })
}

fn header(op: u8, nonce: u64) -> Header {
    Header {
        magic: proto::MAGIC,
        version: proto::VERSION,
        op,
        nonce,
    }
}

proptest! {
    #[test]
    fn append_round_trips(nonce in any::<u64>(), oneway in any::<bool>(), level in any::<u8>(),
                          target in ".{0,30}", message in ".{0,200}", f in "[ -~\n]{0,100}") {
        let body = AppendRequest { level, target: &target, message: &message, fields: &f };
        let frame = encode_append(nonce, oneway, &body).unwrap();
        let (h, req) = decode_request(&frame).unwrap();
        prop_assert_eq!(h.nonce, nonce);
        prop_assert_eq!(req, Request::Append { oneway, body });
    }

    #[test]
    fn query_round_trips(nonce in any::<u64>(), since in any::<u64>(), until in any::<u64>(), min in any::<u8>(),
                         sender in proptest::option::of(any::<u32>()), cursor in any::<u64>(),
                         count in any::<u16>(), bytes in any::<u32>()) {
        let q = QueryRequest { since_ns: since, until_ns: until, min_level: min, sender: sender.map(ServiceId::new),
                               cursor, max_count: count, max_bytes: bytes };
        let frame = encode_query(nonce, &q);
        prop_assert_eq!(frame.len(), 12 + 36);
        prop_assert_eq!(decode_request(&frame).unwrap(), (header(proto::op::QUERY, nonce), Request::Query(q)));
    }

    #[test]
    fn page_replies_round_trip(nonce in any::<u64>(), next in any::<u64>(), gap in any::<u64>(), more in any::<bool>(),
                               records in proptest::collection::vec(record(), 0..8)) {
        let reply = Reply::Page(QueryPage { next, gap, more, records });
        let frame = encode_reply(&header(proto::op::QUERY, nonce), &reply);
        let (h, back) = decode_reply(&frame).unwrap();
        prop_assert_eq!(h.nonce, nonce);
        prop_assert_eq!(back, reply);
    }

    #[test]
    fn a_page_from_wire_records_is_the_same_frame(nonce in any::<u64>(), next in any::<u64>(), gap in any::<u64>(), more in any::<bool>(),
                               records in proptest::collection::vec(record(), 0..8)) {
        let h = header(proto::op::QUERY, nonce);
        let mut raw = proto::page_reply_head(&h, next, gap, more, records.len() as u16).to_vec();
        for r in &records {
            proto::encode_record(&mut raw, r);
        }
        let reply = Reply::Page(QueryPage { next, gap, more, records });
        prop_assert_eq!(raw, encode_reply(&h, &reply));
    }

    #[test]
    fn stats_replies_round_trip(v in proptest::collection::vec(any::<u64>(), 16),
                                senders in proptest::collection::vec((any::<u32>(), any::<[u64; 4]>()), 0..10)) {
        let s = Stats {
            records: v[0], bytes: v[1], max_records: v[2], max_bytes: v[3], appended: v[4], evicted: v[5],
            rejects: Rejects { malformed: v[6], unsupported: v[7], invalid_args: v[8], over_limit: v[9], rate_limited: v[10], denied: v[11], unavailable: 0 },
            identity_spoofs: v[12], replies_dropped: v[13], senders_tracked: v[14], sender_evictions: v[15],
            senders: senders.iter().map(|(s, [a, b, c, d])| SenderStats { sender: ServiceId::new(*s), records: *a, bytes: *b, evicted: *c, rejected: *d }).collect(),
        };
        let frame = encode_reply(&header(proto::op::STATS, 5), &Reply::Stats(s.clone()));
        prop_assert_eq!(decode_reply(&frame).unwrap().1, Reply::Stats(s));
    }

    #[test]
    fn status_replies_round_trip(op in 1u8..5, nonce in any::<u64>(), st in 1u8..7) {
        let s = Status::from_u8(st).unwrap();
        let frame = encode_reply(&header(op, nonce), &Reply::Rejected(s));
        prop_assert_eq!(frame.len(), 13);
        let (h, r) = decode_reply(&frame).unwrap();
        prop_assert_eq!((h.nonce, r), (nonce, Reply::Rejected(s)));
    }

    /// Arbitrary bytes: decoders return, never panic.
    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_request(&bytes);
        let _ = decode_reply(&bytes);
    }

    /// Arbitrary bytes behind a valid header reach the body decoders.
    #[test]
    fn decoders_never_panic_behind_a_valid_header(op in any::<u8>(), body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut f = Vec::new();
        header(op, 1).emit(&mut f);
        f.extend_from_slice(&body);
        let _ = decode_request(&f);
        let _ = decode_reply(&f);
    }

    /// Valid frames with one byte changed or cut short: never a panic, and
    /// a cut frame is never accepted.
    #[test]
    fn mutated_frames_are_handled(records in proptest::collection::vec(record(), 1..4), pos in any::<usize>(), byte in any::<u8>(), cut in any::<usize>()) {
        let frame = encode_reply(&header(proto::op::QUERY, 1), &Reply::Page(QueryPage { next: 1, gap: 0, more: false, records }));
        let mut m = frame.clone();
        let i = pos % m.len();
        m[i] = byte;
        let _ = decode_reply(&m);
        let c = cut % frame.len();
        prop_assert!(decode_reply(&frame[..c]).is_err());
    }
}

#[test]
fn stats_request_is_a_bare_header() {
    let f = encode_stats(0xAB);
    assert_eq!(f, [b'L', b'G', 1, 3, 0xAB, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(decode_request(&f).unwrap().1, Request::Stats);
}

#[test]
fn query_sender_flag_must_be_0_or_1() {
    let mut f = encode_query(1, &QueryRequest::all(5));
    f[12 + 17] = 2;
    assert!(matches!(
        decode_request(&f),
        Err(RequestError::Malformed(_))
    ));
    // has_sender = 0 with a non-zero id is not canonical either.
    let mut f = encode_query(1, &QueryRequest::all(5));
    f[12 + 18] = 1;
    assert!(matches!(
        decode_request(&f),
        Err(RequestError::Malformed(_))
    ));
}

/// Replays `tests/corpus/*.hex`. Each file: `# request: <outcome>` or
/// `# reply: <outcome>` on its first line, then the frame in hex (spaces
/// and newlines ignored). Outcomes: `ok`, `no_header`, `unsupported`,
/// `malformed`, `err`.
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
        let (first, rest) = text.split_once('\n').unwrap();
        let hex: String = rest.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        let bytes: Vec<u8> = (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        let (kind, want) = first.trim_start_matches("# ").split_once(": ").unwrap();
        let got = match kind {
            "request" => match decode_request(&bytes) {
                Ok(_) => "ok",
                Err(RequestError::NoHeader) => "no_header",
                Err(RequestError::Unsupported(_)) => "unsupported",
                Err(RequestError::Malformed(_)) => "malformed",
            },
            "reply" => match decode_reply(&bytes) {
                Ok(_) => "ok",
                Err(_) => "err",
            },
            other => panic!("{}: unknown kind {other}", path.display()),
        };
        assert_eq!(got, want.trim(), "{}", path.display());
        n += 1;
    }
    assert!(n >= 8, "corpus has {n} files");
}
