//! traced over its IPC contract: a batch in, a trace out; every refusal
//! with its status and counter; caps holding under floods of 100x.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use nexus_trace::{SpanRecord, TraceId};

fn rec(trace: u128, span: u64, parent: Option<u64>, start: u64) -> SpanRecord {
    common::record(trace, span, parent, start, start + 10)
}
use nexus_wire::{Header, Status};
use traced::proto::{self, Reply, Request, MAX_BATCH_SPANS, MAX_FRAME};
use traced::{Config, Traced};

const NODE: u64 = 0xa1;

fn cfg() -> Config {
    Config {
        max_active_traces: 4,
        max_spans_per_trace: 8,
        idle_timeout_ns: 1000,
        remembered_completed: 16,
        max_completed_per_tick: 64,
        recent_traces: 8,
        ..Config::default()
    }
}

fn batch(spans: Vec<SpanRecord>) -> Vec<u8> {
    proto::encode_request(0, &Request::Spans(spans)).unwrap()
}

fn ask(t: &mut Traced, now: u64, req: &Request) -> Reply {
    let a = t.handle(now, 5, &proto::encode_request(9, req).unwrap());
    let (h, r) = proto::decode_reply(&a.frame.unwrap()).unwrap();
    assert_eq!(h.nonce, 9);
    r
}

#[test]
fn a_batch_becomes_a_trace_queried_back_as_its_jsonl_line() {
    let mut t = Traced::new(cfg(), NODE);
    let a = t.handle(
        0,
        7,
        &batch(vec![rec(0x42, 2, Some(1), 110), rec(0x42, 1, None, 100)]),
    );
    assert_eq!(a.status, Status::Ok);
    assert!(a.frame.is_none(), "SPANS is one-way");
    assert_eq!(
        ask(&mut t, 10, &Request::Trace(TraceId::new(0x42).unwrap())),
        Reply::Rejected(Status::Unavailable),
        "not complete yet"
    );
    t.tick(2000);
    let Reply::Trace(line) = ask(&mut t, 2000, &Request::Trace(TraceId::new(0x42).unwrap())) else {
        panic!("no trace")
    };
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["trace_id"], "00000000000000000000000000000042");
    let spans = v["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 2);
    assert_eq!(spans[0]["span_id"], "0000000000000001");
    assert_eq!(spans[1]["parent_span_id"], "0000000000000001");
    // Identity from the transport: this node, the IPC sender.
    assert_eq!(spans[0]["node"], "00000000000000a1");
    assert_eq!(spans[0]["service"], 7);
    let Reply::Recent(list) = ask(&mut t, 2000, &Request::Recent(5)) else {
        panic!()
    };
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0].spans, list[0].start_ns, list[0].end_ns),
        (2, 100, 120)
    );
    let Reply::Stats(s) = ask(&mut t, 2000, &Request::Stats) else {
        panic!()
    };
    assert_eq!((s.batches, s.spans_received), (1, 2));
    assert_eq!(s.correlator.completed_idle, 1);
    assert_eq!(s.rejects.get(Status::Unavailable), 1);
}

fn refused(t: &mut Traced, frame: &[u8]) -> Status {
    t.handle(0, 5, frame).status
}

#[test]
fn test_reject_malformed_frames() {
    let mut t = Traced::new(cfg(), NODE);
    assert_eq!(refused(&mut t, b""), Status::Malformed);
    assert_eq!(refused(&mut t, b"XX\x01\x01"), Status::Malformed);
    let good = batch(vec![rec(1, 1, None, 0)]);
    for n in 13..good.len() {
        assert_eq!(refused(&mut t, &good[..n]), Status::Malformed, "cut at {n}");
    }
    let mut long = good.clone();
    long.push(0);
    assert_eq!(refused(&mut t, &long), Status::Malformed);
    assert_eq!(t.active(), 0, "nothing of a refused batch is kept");
    assert_eq!(
        t.stats().rejects.get(Status::Malformed),
        2 + (good.len() as u64 - 13) + 1
    );
}

#[test]
fn test_reject_unknown_version_and_op() {
    let mut t = Traced::new(cfg(), NODE);
    let mut f = proto::encode_request(3, &Request::Stats).unwrap();
    f[2] = 2;
    let a = t.handle(0, 5, &f);
    assert_eq!(a.status, Status::Unsupported);
    // The answer echoes the request's header (version 2) as a reply,
    // then the status byte.
    let frame = a.frame.unwrap();
    let (h, body) = Header::parse(&frame, proto::MAGIC).unwrap();
    assert_eq!((h.version, h.nonce, h.is_reply()), (2, 3, true));
    assert_eq!(body, [Status::Unsupported.as_u8()]);
    f[2] = 1;
    f[3] = 99;
    assert_eq!(refused(&mut t, &f), Status::Unsupported);
    // A reply frame sent as a request is refused and never answered.
    let mut r = proto::encode_request(3, &Request::Stats).unwrap();
    r[3] |= nexus_wire::REPLY_BIT;
    let a = t.handle(0, 5, &r);
    assert_eq!(a.status, Status::Unsupported);
    assert!(a.frame.is_none());
}

#[test]
fn test_reject_bad_arguments() {
    let mut t = Traced::new(cfg(), NODE);
    let mut zero = batch(vec![rec(1, 1, None, 0)]);
    zero[12] = 0;
    zero.truncate(13);
    assert_eq!(refused(&mut t, &zero), Status::InvalidArgs, "empty batch");
    let mut over = batch(vec![rec(1, 1, None, 0)]);
    over[12] = MAX_BATCH_SPANS + 1;
    assert_eq!(refused(&mut t, &over), Status::InvalidArgs, "batch count");
    assert!(proto::encode_request(0, &Request::Spans(Vec::new())).is_err());
    let mut f = proto::encode_request(1, &Request::Trace(TraceId::new(1).unwrap())).unwrap();
    f[12..28].fill(0);
    assert_eq!(refused(&mut t, &f), Status::InvalidArgs, "zero trace id");
    let mut f = proto::encode_request(1, &Request::Recent(1)).unwrap();
    f[12] = 0;
    assert_eq!(refused(&mut t, &f), Status::InvalidArgs, "recent 0");
    f[12] = proto::MAX_RECENT + 1;
    assert_eq!(refused(&mut t, &f), Status::InvalidArgs, "recent over cap");
    // A span ending before it starts: the whole batch is refused.
    let mut bad = rec(1, 1, None, 100);
    bad.end_ns = 50;
    let mut f = batch(vec![rec(1, 2, None, 0)]);
    let body = {
        let mut out = Vec::new();
        let mut w = nexus_wire::Writer::new(&mut out);
        nexus_trace::finished::emit(&bad.as_finished(), &mut w);
        out
    };
    f[12] = 2;
    f.extend_from_slice(&body);
    assert_eq!(refused(&mut t, &f), Status::Malformed);
    assert_eq!(t.active(), 0);
}

#[test]
fn test_reject_oversized_frame() {
    let mut t = Traced::new(cfg(), NODE);
    let mut s = rec(1, 1, None, 0);
    s.attrs = vec![("k".into(), "v".repeat(MAX_FRAME))];
    // The encoder refuses it; a hand-made frame past the bound is refused.
    assert!(proto::encode_request(0, &Request::Spans(vec![s])).is_err());
    let mut f = batch(vec![rec(1, 1, None, 0)]);
    f.resize(MAX_FRAME + 1, 0);
    assert_eq!(refused(&mut t, &f), Status::OverLimit);
    assert_eq!(t.stats().rejects.get(Status::OverLimit), 1);
}

#[test]
fn test_reject_flood_of_100x_the_caps() {
    // 4 active traces, 8 spans each, 8 recent traces: 400 traces of 80
    // spans each arrive in batches of 32.
    let mut t = Traced::new(cfg(), NODE);
    let mut now = 0;
    for tr in 1..=400u128 {
        for chunk in 0..(80 / 16) {
            let spans = (0..16u64)
                .map(|i| rec(tr, 1 + chunk * 16 + i, None, now))
                .collect();
            assert_eq!(t.handle(now, 5, &batch(spans)).status, Status::Ok);
            now += 1;
            assert!(t.active() <= 4);
        }
    }
    t.tick(now + 10_000);
    let s = t.stats();
    assert_eq!(s.spans_received, 400 * 80);
    assert_eq!(s.correlator.spans_added, 400 * 8);
    assert_eq!(s.correlator.spans_dropped_full, 400 * 72);
    assert_eq!(
        s.correlator.completed_evicted + s.correlator.completed_idle,
        400
    );
    assert_eq!(t.recent().count(), 8);
    assert_eq!(s.recent_evicted, 392);
    assert!(t
        .recent()
        .all(|c| c.spans.len() == 8 && c.dropped_spans == 72));
}

#[test]
fn header_constants_match_the_documented_layout() {
    let f = proto::encode_request(0x0102030405060708, &Request::Stats).unwrap();
    assert_eq!(&f[..2], b"TR");
    assert_eq!(f[2], 1);
    assert_eq!(f[3], 4);
    assert_eq!(&f[4..12], &0x0102030405060708u64.to_le_bytes());
    assert_eq!(f.len(), nexus_wire::HEADER_LEN);
    let (h, _) = Header::parse(&f, proto::MAGIC).unwrap();
    assert_eq!(h.op, proto::Op::Stats.as_u8());
}

proptest::proptest! {
    /// Arbitrary frames (bare, or behind a valid header of each op): a
    /// status, never a panic, and the caps hold.
    #[test]
    fn arbitrary_frames_never_panic(
        op in 0u8..6,
        body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        bare in proptest::prelude::any::<bool>(),
    ) {
        let mut t = Traced::new(cfg(), NODE);
        let mut f = Vec::new();
        if !bare {
            Header::request(proto::MAGIC, proto::VERSION, op, 1).emit(&mut f);
        }
        f.extend_from_slice(&body);
        let _ = t.handle(0, 5, &f);
        t.tick(10_000);
        proptest::prop_assert!(t.active() <= 4);
    }
}

/// The forward queue (spans for the collector) and the store queue
/// (completed traces for the disk) hold their caps: the oldest go first,
/// each counted; a traced that neither forwards nor stores queues nothing.
#[test]
fn test_reject_forward_and_store_queues_past_their_caps() {
    let mut plain = Traced::new(cfg(), NODE);
    plain.handle(0, 7, &batch(vec![rec(1, 1, None, 0)]));
    plain.tick(10_000);
    assert_eq!(plain.next_forward(), None);
    assert!(plain.next_export().is_none());

    let mut t = Traced::new(cfg(), NODE);
    t.forward_to_collector(3);
    t.export_completed(2);
    let spans: Vec<SpanRecord> = (1..=5).map(|i| rec(u128::from(i), i, None, 0)).collect();
    t.handle(0, 7, &batch(spans));
    assert_eq!(t.forward_dropped(), 2);
    let fwd: Vec<(u32, u64)> = std::iter::from_fn(|| t.next_forward())
        .map(|(svc, s)| (svc, s.context.span.get()))
        .collect();
    assert_eq!(
        fwd,
        [(7, 3), (7, 4), (7, 5)],
        "the newest three, with their sender"
    );
    t.tick(10_000); // five one-span traces complete
    assert_eq!(t.export_dropped(), 3);
    let kept: Vec<u128> = std::iter::from_fn(|| t.next_export())
        .map(|c| c.trace.get())
        .collect();
    assert_eq!(kept, [4, 5], "the newest two completed traces");
}

/// OFFSETS lists at most as many forwarders as a collector serves; a
/// longer reply is refused by the decoder.
#[test]
fn test_reject_offsets_reply_over_its_cap() {
    use traced::proto::{PeerOffset, MAX_OFFSETS};
    assert_eq!(traced::remote::MAX_FORWARDERS, MAX_OFFSETS);
    let h = Header::request(proto::MAGIC, proto::VERSION, proto::Op::Offsets.as_u8(), 3);
    let one = PeerOffset {
        node: 1,
        offset_ns: -5,
        error_ns: 2,
        rtt_ns: 3,
    };
    let many = vec![one; MAX_OFFSETS + 3];
    let (_, r) = proto::decode_reply(&proto::encode_reply(&h, &Reply::Offsets(many))).unwrap();
    assert_eq!(r, Reply::Offsets(vec![one; MAX_OFFSETS]), "encoder caps");
    let mut f = proto::encode_reply(&h, &Reply::Offsets(vec![one]));
    f[13] = u8::try_from(MAX_OFFSETS + 1).unwrap(); // count byte after header and status
    assert!(proto::decode_reply(&f).is_err());
}
