//! obs.logs: frame round trips, decoders on hostile input, the sampling
//! rule, and the collector's resume bookkeeping against a model sender.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, BTreeSet};

use nexus_ipc::ServiceId;
use nexus_log::{json::record_to_json, FieldsBuilder, Level, Record};
use nexus_remote::frame::{frame, FrameReader, MAX_FRAME};
use nexus_remote::logs::{
    decode, encode_gap, encode_header, encode_open, keep, ChunkWriter, Gap, GapReason, LogFrame,
    LogRecord, Open, Resume, SenderHeader, MAX_LINE, MAX_RECORDS_PER_CHUNK, PPM,
};
use nexus_remote::RemoteError;
use proptest::prelude::*;

fn header(start: u64, gap: u64) -> SenderHeader {
    SenderHeader {
        sample_ppm: PPM,
        exempt_warn_error: true,
        restarted: false,
        rate_events_per_s: 1000,
        rate_bytes_per_s: 1 << 20,
        start,
        gap,
    }
}

fn chunk(ids: &[u64]) -> Vec<u8> {
    let mut cw = ChunkWriter::new(MAX_RECORDS_PER_CHUNK);
    for id in ids {
        assert!(cw.push(*id, Level::Info, 5, "{}").unwrap());
    }
    cw.finish().unwrap()
}

fn valid_frames() -> Vec<Vec<u8>> {
    vec![
        encode_open(&Open {
            resume_after: 7,
            max_records_per_chunk: 64,
        })
        .unwrap(),
        encode_header(&header(8, 0)).unwrap(),
        chunk(&[8, 9, 12]),
        encode_gap(&Gap {
            after_id: 12,
            missing: 3,
            reason: GapReason::Evicted,
        })
        .unwrap(),
    ]
}

#[test]
fn frames_round_trip_byte_exact() {
    let open = Open {
        resume_after: 0x0102,
        max_records_per_chunk: 3,
    };
    let b = encode_open(&open).unwrap();
    assert_eq!(b, [b'R', b'L', 1, 1, 2, 1, 0, 0, 0, 0, 0, 0, 3, 0]);
    assert_eq!(decode(&b), Ok(LogFrame::Open(open)));
    let h = SenderHeader {
        restarted: true,
        ..header(9, 4)
    };
    let b = encode_header(&h).unwrap();
    assert_eq!(b.len(), 4 + 4 + 1 + 4 + 4 + 8 + 8);
    assert_eq!(b[8], 0b11);
    assert_eq!(decode(&b), Ok(LogFrame::Header(h)));
    let g = Gap {
        after_id: 1,
        missing: 2,
        reason: GapReason::RateLimited,
    };
    assert_eq!(decode(&encode_gap(&g).unwrap()), Ok(LogFrame::Gap(g)));
    let b = chunk(&[1, 2]);
    assert_eq!(b.len(), 4 + 2 + 2 * (19 + 2));
    let LogFrame::Chunk(recs) = decode(&b).unwrap() else {
        panic!()
    };
    assert_eq!(
        recs[1],
        LogRecord {
            id: 2,
            level: Level::Info,
            ts_ns: 5,
            line: "{}"
        }
    );
}

#[test]
fn encoders_and_decoders_refuse_out_of_range_values() {
    for max in [0, MAX_RECORDS_PER_CHUNK + 1] {
        let o = Open {
            resume_after: 0,
            max_records_per_chunk: max,
        };
        assert!(encode_open(&o).is_err());
    }
    let mut h = header(1, 0);
    h.sample_ppm = PPM + 1;
    assert!(encode_header(&h).is_err());
    assert!(encode_header(&header(0, 0)).is_err());
    assert!(encode_header(&header(3, 3)).is_err());
    let g = Gap {
        after_id: u64::MAX,
        missing: 1,
        reason: GapReason::Evicted,
    };
    assert!(encode_gap(&g).is_err());
    // Unknown flag bit, level, reason, op, version, magic; empty chunk.
    let mut b = encode_header(&header(2, 1)).unwrap();
    b[8] |= 4;
    assert_eq!(
        decode(&b),
        Err(RemoteError::Wire(nexus_wire::WireError::BadValue))
    );
    let mut b = chunk(&[1]);
    b[6 + 8] = 5;
    assert!(decode(&b).is_err());
    let mut b = valid_frames()[3].clone();
    *b.last_mut().unwrap() = 9;
    assert!(decode(&b).is_err());
    assert_eq!(decode(b"RL\x01\x09"), Err(RemoteError::BadOp(9)));
    assert_eq!(decode(b"RL\x02\x01"), Err(RemoteError::BadVersion(2)));
    assert_eq!(decode(b"XX\x01\x01"), Err(RemoteError::BadMagic));
    assert!(decode(b"RL\x01\x03\x00\x00").is_err());
    // A raw line feed in a JSON line.
    let mut cw = ChunkWriter::new(4);
    assert!(cw.push(1, Level::Info, 0, "a\nb").is_err());
    assert!(cw
        .push(1, Level::Info, 0, &"x".repeat(MAX_LINE + 1))
        .is_err());
}

#[test]
fn chunk_writer_stays_under_count_and_frame_limits() {
    let mut cw = ChunkWriter::new(3);
    for id in 1..=3 {
        assert!(cw.push(id, Level::Debug, 0, "{}").unwrap());
    }
    assert!(!cw.push(4, Level::Debug, 0, "{}").unwrap());
    assert_eq!(cw.len(), 3);
    let mut cw = ChunkWriter::new(MAX_RECORDS_PER_CHUNK);
    let line = "y".repeat(10_000);
    let mut n = 0;
    while cw.push(n + 1, Level::Info, 0, &line).unwrap() {
        n += 1;
    }
    assert_eq!(n, 6);
    let body = cw.finish().unwrap();
    assert!(body.len() <= MAX_FRAME);
    assert!(frame(&body).is_ok());
    // One record with the longest line fits alone.
    let mut cw = ChunkWriter::new(1);
    assert!(cw.push(1, Level::Info, 0, &"z".repeat(MAX_LINE)).unwrap());
    assert_eq!(cw.finish().unwrap().len(), MAX_FRAME);
    assert_eq!(ChunkWriter::new(1).finish(), None);
}

#[test]
fn chunk_carries_nexus_log_json_line() {
    let mut b = FieldsBuilder::new();
    b.insert("peer", "7").unwrap();
    let r = Record {
        id: 42,
        ts_ns: 1_500_000_000,
        sender: ServiceId::new(3),
        level: Level::Warn,
        target: "net".into(),
        message: "slow \"link\"".into(),
        fields: b.build().unwrap(),
    };
    let mut cw = ChunkWriter::new(8);
    assert!(cw.push_record(&r).unwrap());
    let body = cw.finish().unwrap();
    let LogFrame::Chunk(recs) = decode(&body).unwrap() else {
        panic!()
    };
    assert_eq!(recs[0].line, record_to_json(&r));
    assert_eq!(
        (recs[0].id, recs[0].level, recs[0].ts_ns),
        (42, Level::Warn, 1_500_000_000)
    );
}

#[test]
fn every_truncation_and_any_trailing_byte_is_refused() {
    for f in valid_frames() {
        assert!(decode(&f).is_ok());
        for cut in 0..f.len() {
            assert!(decode(&f[..cut]).is_err(), "prefix {cut} of {f:?}");
        }
        let mut longer = f.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
    }
}

proptest! {
    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode(&bytes);
        let mut with_prefix = b"RL\x01".to_vec();
        with_prefix.extend(&bytes);
        let _ = decode(&with_prefix);
        let mut resume = Resume::new(16);
        resume.open();
        let _ = resume.on_frame(&with_prefix);
    }

    #[test]
    fn mutated_valid_frames_never_panic(which in 0usize..4, pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut f = valid_frames()[which].clone();
        let i = pos.index(f.len());
        f[i] = byte;
        let _ = decode(&f);
    }
}

// ---- sampling ----

#[test]
fn sampling_is_deterministic_and_near_the_ratio() {
    for (peer, ppm) in [
        (1u64, 100_000u32),
        (0xdead_beef, 500_000),
        (7, 10_000),
        (9, 999_000),
    ] {
        let run = || -> Vec<u64> {
            (1..=100_000u64)
                .filter(|id| keep(peer, *id, Level::Info, ppm, true))
                .collect()
        };
        let a = run();
        assert_eq!(a, run(), "a rerun keeps the same records");
        let expected = 100_000.0 * f64::from(ppm) / f64::from(PPM);
        // 5 standard deviations of a binomial, at least 0.2 % of the ids.
        let sd = (expected * (1.0 - f64::from(ppm) / f64::from(PPM))).sqrt();
        let tol = (5.0 * sd).max(200.0);
        let got = a.len() as f64;
        assert!(
            (got - expected).abs() <= tol,
            "ppm {ppm}: kept {got}, expected {expected}"
        );
    }
    // Another peer keeps a different subset.
    let a: Vec<u64> = (1..1000)
        .filter(|i| keep(1, *i, Level::Info, 500_000, false))
        .collect();
    let b: Vec<u64> = (1..1000)
        .filter(|i| keep(2, *i, Level::Info, 500_000, false))
        .collect();
    assert_ne!(a, b);
}

#[test]
fn sampling_edges_and_exemption() {
    for id in 1..2000 {
        assert!(!keep(3, id, Level::Info, 0, true));
        assert!(keep(3, id, Level::Trace, PPM, false));
        assert!(keep(3, id, Level::Warn, 0, true));
        assert!(keep(3, id, Level::Error, 0, true));
        assert!(!keep(3, id, Level::Error, 0, false));
    }
}

// ---- resume bookkeeping ----

fn open_session(r: &mut Resume) {
    r.open();
}

#[test]
fn resume_refuses_disorder_duplicates_and_misplaced_frames() {
    let mut r = Resume::new(4);
    // Nothing before the header.
    assert_eq!(r.on_frame(&chunk(&[1])), Err(RemoteError::Unexpected));
    let o = r.open();
    assert_eq!(o.resume_after, 0);
    assert_eq!(o.max_records_per_chunk, 4);
    r.on_frame(&encode_header(&header(3, 2)).unwrap()).unwrap();
    assert_eq!(r.missing_evicted(), 2);
    assert_eq!(
        r.on_frame(&encode_header(&header(3, 0)).unwrap()),
        Err(RemoteError::Unexpected)
    );
    r.on_frame(&chunk(&[3, 5])).unwrap();
    assert_eq!(
        r.on_frame(&chunk(&[5])),
        Err(RemoteError::OutOfOrder { last: 5, got: 5 })
    );
    assert_eq!(
        r.on_frame(&chunk(&[7, 6])),
        Err(RemoteError::OutOfOrder { last: 7, got: 6 })
    );
    assert_eq!(
        r.on_frame(&chunk(&[8, 9, 10, 11, 12])),
        Err(RemoteError::ChunkTooLarge { count: 5, max: 4 })
    );
    // Failed frames changed nothing.
    assert_eq!((r.last(), r.received()), (5, 2));
    let g = |after_id, missing| {
        encode_gap(&Gap {
            after_id,
            missing,
            reason: GapReason::RateLimited,
        })
        .unwrap()
    };
    assert!(r.on_frame(&g(4, 1)).is_err());
    r.on_frame(&g(6, 2)).unwrap();
    assert_eq!((r.last(), r.missing_rate_limited()), (8, 2));
    assert_eq!(r.on_frame(&valid_frames()[0]), Err(RemoteError::Unexpected));
    // Reconnect: the header must start after what was accounted for.
    open_session(&mut r);
    assert_eq!(r.open().resume_after, 8);
    assert_eq!(
        r.on_frame(&encode_header(&header(8, 0)).unwrap()),
        Err(RemoteError::OutOfOrder { last: 8, got: 8 })
    );
    // More gap than ids in the range.
    assert!(r.on_frame(&encode_header(&header(10, 2)).unwrap()).is_err());
    r.on_frame(&encode_header(&header(10, 1)).unwrap()).unwrap();
    assert_eq!((r.last(), r.missing_evicted()), (9, 3));
}

#[test]
fn a_restarted_journal_starts_over() {
    let mut r = Resume::new(8);
    r.open();
    r.on_frame(&encode_header(&header(1, 0)).unwrap()).unwrap();
    r.on_frame(&chunk(&[1, 2, 3])).unwrap();
    assert_eq!(r.open().resume_after, 3);
    let h = SenderHeader {
        restarted: true,
        ..header(1, 0)
    };
    r.on_frame(&encode_header(&h).unwrap()).unwrap();
    r.on_frame(&chunk(&[1])).unwrap();
    assert_eq!((r.restarts(), r.received(), r.last()), (1, 4, 1));
}

/// logd as the model: contiguous ids from 1, evictions of any retained
/// record (per-sender fairness evicts out of order).
#[derive(Default)]
struct Journal {
    next: u64,
    levels: BTreeMap<u64, Level>,
    retained: BTreeSet<u64>,
    evicted: BTreeSet<u64>,
}

/// The sender algorithm of `docs/observability/remote.md`, for one stream.
struct Sender {
    pos: u64,
    max: u16,
    peer: u64,
    ppm: u32,
}

impl Sender {
    fn open(o: Open, j: &Journal, peer: u64, ppm: u32) -> (Sender, Vec<u8>) {
        let restarted = o.resume_after >= j.next;
        let base = if restarted { 0 } else { o.resume_after };
        let start = j
            .retained
            .range(base + 1..)
            .next()
            .copied()
            .unwrap_or(j.next);
        let h = SenderHeader {
            sample_ppm: ppm,
            exempt_warn_error: true,
            restarted,
            rate_events_per_s: 0,
            rate_bytes_per_s: 0,
            start,
            gap: start - 1 - base,
        };
        let s = Sender {
            pos: start - 1,
            max: o.max_records_per_chunk,
            peer,
            ppm,
        };
        (s, encode_header(&h).unwrap())
    }

    /// The next frame, if the sender has anything to send.
    fn next(&mut self, j: &Journal) -> Option<Vec<u8>> {
        loop {
            let mut id = self.pos + 1;
            if id >= j.next {
                return None;
            }
            let mut missing = 0;
            while id < j.next && !j.retained.contains(&id) {
                missing += 1;
                id += 1;
            }
            if missing > 0 {
                let g = Gap {
                    after_id: self.pos,
                    missing,
                    reason: GapReason::Evicted,
                };
                self.pos += missing;
                return Some(encode_gap(&g).unwrap());
            }
            let mut cw = ChunkWriter::new(self.max);
            while id < j.next && j.retained.contains(&id) {
                let level = j.levels[&id];
                if keep(self.peer, id, level, self.ppm, true)
                    && !cw.push(id, level, id * 10, "{\"m\":1}").unwrap()
                {
                    break;
                }
                self.pos = id;
                id += 1;
            }
            if let Some(body) = cw.finish() {
                return Some(body);
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Step {
    Append(Vec<u8>),
    Evict(Vec<prop::sample::Index>),
    Send(u8),
    Reconnect,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => proptest::collection::vec(0u8..5, 1..20).prop_map(Step::Append),
        2 => proptest::collection::vec(any::<prop::sample::Index>(), 1..6).prop_map(Step::Evict),
        3 => (1u8..8).prop_map(Step::Send),
        1 => Just(Step::Reconnect),
    ]
}

/// Collector side of the test: frames go through real framing, cut into
/// `chunk`-byte pieces, into `Resume`; delivered ids and gap ranges are
/// recorded to be checked against the journal.
struct Collector {
    resume: Resume,
    reader: FrameReader,
    delivered: Vec<u64>,
    covered: Vec<u64>,
    chunk: usize,
}

impl Collector {
    fn take(&mut self, body: Vec<u8>) {
        let bytes = frame(&body).unwrap();
        for piece in bytes.chunks(self.chunk) {
            self.reader.push(piece).unwrap();
            while let Some(b) = self.reader.next_frame().unwrap() {
                let before = self.resume.last();
                match self.resume.on_frame(b).unwrap() {
                    LogFrame::Chunk(recs) => self.delivered.extend(recs.iter().map(|r| r.id)),
                    LogFrame::Gap(g) => {
                        self.covered.extend(g.after_id + 1..=g.after_id + g.missing)
                    }
                    LogFrame::Header(h) => {
                        let base = if h.restarted { 0 } else { before };
                        self.covered.extend(base + 1..base + 1 + h.gap)
                    }
                    LogFrame::Open(_) => unreachable!(),
                }
            }
        }
    }
}

fn run_model(steps: Vec<Step>, ppm: u32, max: u16, chunk: usize, peer: u64) {
    let mut j = Journal {
        next: 1,
        ..Journal::default()
    };
    let mut c = Collector {
        resume: Resume::new(max),
        reader: FrameReader::new(),
        delivered: Vec::new(),
        covered: Vec::new(),
        chunk,
    };
    let connect = |c: &mut Collector, j: &Journal| {
        c.reader = FrameReader::new();
        let o = c.resume.open();
        // The OPEN goes over the wire too.
        let LogFrame::Open(o2) = decode(&encode_open(&o).unwrap()).unwrap() else {
            panic!()
        };
        assert_eq!(o, o2);
        let (s, h) = Sender::open(o2, j, peer, ppm);
        c.take(h);
        s
    };
    let mut sender = connect(&mut c, &j);
    for s in steps {
        match s {
            Step::Append(levels) => {
                for l in levels {
                    let id = j.next;
                    j.next += 1;
                    j.levels.insert(id, Level::from_u8(l).unwrap());
                    j.retained.insert(id);
                }
            }
            Step::Evict(idx) => {
                for i in idx {
                    if j.retained.is_empty() {
                        break;
                    }
                    let id = *j.retained.iter().nth(i.index(j.retained.len())).unwrap();
                    j.retained.remove(&id);
                    j.evicted.insert(id);
                }
            }
            Step::Send(n) => {
                for _ in 0..n {
                    match sender.next(&j) {
                        Some(f) => c.take(f),
                        None => break,
                    }
                }
            }
            Step::Reconnect => sender = connect(&mut c, &j),
        }
    }
    // Drain on a fresh stream, as after a last reconnect.
    sender = connect(&mut c, &j);
    while let Some(f) = sender.next(&j) {
        c.take(f);
    }
    assert!(c.reader.finish().is_ok());

    let delivered: BTreeSet<u64> = c.delivered.iter().copied().collect();
    assert_eq!(
        delivered.len(),
        c.delivered.len(),
        "a record delivered twice"
    );
    let covered: BTreeSet<u64> = c.covered.iter().copied().collect();
    assert_eq!(
        covered.len(),
        c.covered.len(),
        "an id reported missing twice"
    );
    assert_eq!(c.resume.missing_evicted(), covered.len() as u64);
    assert_eq!(c.resume.received(), delivered.len() as u64);
    for id in 1..j.next {
        let level = j.levels[&id];
        let kept = keep(peer, id, level, ppm, true);
        match (delivered.contains(&id), covered.contains(&id)) {
            (true, true) => panic!("{id} delivered and reported missing"),
            (true, false) => assert!(kept, "{id} delivered but sampled out"),
            // Only real evictions are reported as gaps.
            (false, true) => assert!(j.evicted.contains(&id), "{id} reported but not evicted"),
            (false, false) => assert!(!kept, "{id} silently lost"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Across any interleaving of appends, evictions, partial sends and
    /// reconnects: every kept record is delivered exactly once unless it
    /// was evicted first, and then it is reported in a gap, exactly once.
    #[test]
    fn resume_after_reconnect_is_exactly_once_with_exact_gaps(
        steps in proptest::collection::vec(step(), 0..40),
        ppm in prop_oneof![Just(PPM), Just(300_000u32), Just(0u32)],
        max in 1u16..6,
        chunk in 1usize..64,
        peer in any::<u64>(),
    ) {
        run_model(steps, ppm, max, chunk, peer);
    }
}
