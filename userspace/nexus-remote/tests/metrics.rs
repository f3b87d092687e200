//! obs.metrics: layouts, hostile input, reconstruction against the sender
//! after every frame, the cardinality cap, and bytes per sample against
//! the Prometheus text of the same series.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::fmt::Write as _;

use nexus_metrics::{Help, Labels, MetricKind, MetricName};
use nexus_remote::frame::{frame, FrameReader, MAX_FRAME};
use nexus_remote::metrics::{
    decode, encode_defines, encode_interval, Definition, DeltaEncoder, HistValue, MetricFrame,
    Reconstructor, ReconstructorConfig, Series, Value,
};
use nexus_remote::RemoteError;
use proptest::prelude::*;

fn def(kind: MetricKind, name: &str, label: &str, bounds: &[u64]) -> Definition {
    let mut d = Definition::new(
        kind,
        MetricName::new(name).unwrap(),
        Labels::new(&[("route", label), ("svc", "netd")]).unwrap(),
        bounds,
    )
    .unwrap();
    d.help = Help::new("Help text.").unwrap();
    d
}

fn hist(buckets: Vec<u64>, sum: u64) -> Value {
    let count = buckets.iter().sum();
    Value::Histogram(HistValue {
        buckets,
        sum,
        count,
    })
}

fn sample_series() -> Vec<Series> {
    vec![
        Series {
            id: 1,
            def: def(MetricKind::Counter, "rx_total", "a", &[]),
            value: Value::Counter(5),
        },
        Series {
            id: 2,
            def: def(MetricKind::Gauge, "queue", "a", &[]),
            value: Value::Gauge(-3),
        },
        Series {
            id: 9,
            def: def(MetricKind::Histogram, "lat_us", "a", &[10, 100]),
            value: hist(vec![1, 0, 2], 250),
        },
    ]
}

fn rebuilt(r: &Reconstructor) -> BTreeMap<u32, (Definition, Value)> {
    r.iter()
        .map(|(id, d, v)| (id, (d.clone(), v.clone())))
        .collect()
}

fn sender_map(s: &[Series]) -> BTreeMap<u32, (Definition, Value)> {
    s.iter()
        .map(|s| (s.id, (s.def.clone(), s.value.clone())))
        .collect()
}

fn apply_all(r: &mut Reconstructor, frames: &[Vec<u8>]) {
    for f in frames {
        r.apply(f).unwrap();
    }
}

#[test]
fn interval_layout_is_compact_and_byte_exact() {
    let c = Value::Counter(300);
    let g = Value::Gauge(-2);
    let frames = encode_interval(7, 9, false, &[(3, &c), (4, &g)]).unwrap();
    assert_eq!(frames.len(), 1);
    let mut expect = vec![b'R', b'M', 1, 2];
    expect.extend(7u64.to_le_bytes());
    expect.extend(9u64.to_le_bytes());
    expect.push(0); // flags
    expect.push(2); // count
    expect.extend([3 << 2, 0xac, 0x02]); // series 3 (skip 3), counter 300
    expect.extend([1, 3]); // series 4 (skip 0), gauge zigzag(-2) = 3
    assert_eq!(frames[0], expect);
    match decode(&frames[0]).unwrap() {
        MetricFrame::Interval(iv) => {
            assert_eq!((iv.seq, iv.ts_ns, iv.full, iv.more), (7, 9, false, false));
            assert_eq!(iv.updates, vec![(3, c.clone()), (4, g.clone())]);
        }
        other => panic!("{other:?}"),
    }
    // Unsorted or duplicate series are refused by the encoder.
    assert!(encode_interval(1, 0, false, &[(4, &g), (3, &c)]).is_err());
    assert!(encode_interval(1, 0, false, &[(4, &g), (4, &g)]).is_err());
}

#[test]
fn defines_round_trip_and_are_validated_when_decoded() {
    let s = sample_series();
    let defs: Vec<(u32, &Definition)> = s.iter().map(|s| (s.id, &s.def)).collect();
    let frames = encode_defines(&defs).unwrap();
    assert_eq!(frames.len(), 1);
    let MetricFrame::Define(got) = decode(&frames[0]).unwrap() else {
        panic!()
    };
    assert_eq!(
        got,
        s.iter().map(|s| (s.id, s.def.clone())).collect::<Vec<_>>()
    );
    // Corrupt the first name's first byte into a digit: refused by the
    // nexus-metrics grammar.
    let mut bad = frames[0].clone();
    bad[4 + 2 + 4 + 1 + 1] = b'9';
    assert!(decode(&bad).is_err());
    // Bounds on a counter.
    let mut bad = Vec::from(&frames[0][..6]);
    bad.extend(1u32.to_le_bytes());
    bad.extend([0, 1, b'a', 0, 1]);
    bad.extend(5u64.to_le_bytes());
    bad.push(0);
    bad[4] = 1;
    assert!(decode(&bad).is_err());
}

#[test]
fn every_truncation_and_trailing_byte_is_refused() {
    let mut enc = DeltaEncoder::new();
    let frames = enc.encode(5, &sample_series()).unwrap();
    assert_eq!(frames.len(), 2);
    for f in &frames {
        assert!(decode(f).is_ok());
        for cut in 0..f.len() {
            assert!(decode(&f[..cut]).is_err());
        }
        let mut longer = f.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
    }
}

proptest! {
    #[test]
    fn decode_and_apply_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), op in 1u8..3) {
        let _ = decode(&bytes);
        let mut b = vec![b'R', b'M', 1, op];
        b.extend(&bytes);
        let _ = decode(&b);
        let mut r = Reconstructor::new(ReconstructorConfig::default());
        let _ = r.apply(&b);
    }

    #[test]
    fn mutated_valid_frames_never_panic(which in 0usize..2, pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let frames = DeltaEncoder::new().encode(5, &sample_series()).unwrap();
        let mut f = frames[which].clone();
        let i = pos.index(f.len());
        f[i] = byte;
        let mut r = Reconstructor::new(ReconstructorConfig::default());
        for g in &frames[..which] {
            r.apply(g).unwrap();
        }
        let _ = r.apply(&f);
    }
}

#[test]
fn reconstructor_refuses_what_breaks_the_rules() {
    let s = sample_series();
    let mut enc = DeltaEncoder::new();
    let first = enc.encode(1, &s).unwrap();
    let cfg = ReconstructorConfig::default();

    // An interval before its defines: undefined series.
    let mut r = Reconstructor::new(cfg);
    assert_eq!(r.apply(&first[1]), Err(RemoteError::UndefinedSeries(1)));
    // A delta before any full interval.
    let c = Value::Counter(1);
    let delta = encode_interval(2, 0, false, &[(1, &c)]).unwrap();
    r.apply(&first[0]).unwrap();
    assert_eq!(r.apply(&delta[0]), Err(RemoteError::NoBaseline));
    r.apply(&first[1]).unwrap();
    r.apply(&delta[0]).unwrap();
    assert_eq!(r.get(1).unwrap().1, &Value::Counter(6));
    // Same or lower seq: out of order.
    assert_eq!(
        r.apply(&delta[0]),
        Err(RemoteError::SeqBackwards { last: 2, got: 2 })
    );
    assert_eq!(
        r.apply(&first[1]),
        Err(RemoteError::SeqBackwards { last: 2, got: 1 })
    );
    // Kind mismatch: a gauge update for a counter, wrong bucket count.
    let g = Value::Gauge(1);
    let f = encode_interval(3, 0, false, &[(1, &g)]).unwrap();
    assert_eq!(r.apply(&f[0]), Err(RemoteError::KindMismatch(1)));
    let h = hist(vec![1, 1], 1);
    let f = encode_interval(3, 0, false, &[(9, &h)]).unwrap();
    assert_eq!(r.apply(&f[0]), Err(RemoteError::KindMismatch(9)));
    // Overflow of a counter delta.
    let big = Value::Counter(u64::MAX);
    let f = encode_interval(3, 0, false, &[(1, &big)]).unwrap();
    assert_eq!(r.apply(&f[0]), Err(RemoteError::Overflow(1)));
    // A different definition for a known id; an identical one is fine.
    let other = def(MetricKind::Gauge, "rx_total", "a", &[]);
    let f = encode_defines(&[(1, &other)]).unwrap();
    assert_eq!(r.apply(&f[0]), Err(RemoteError::Redefined(1)));
    r.apply(&first[0]).unwrap();
    // Failed frames changed nothing.
    assert_eq!(r.get(1).unwrap().1, &Value::Counter(6));
    assert_eq!(r.last_seq(), Some(2));
}

#[test]
fn a_multi_frame_interval_must_be_contiguous() {
    // 5,000 histograms do not fit one frame.
    let series: Vec<Series> = (0..5000u32)
        .map(|i| Series {
            id: i,
            def: def(
                MetricKind::Histogram,
                "h",
                &i.to_string(),
                &[1, 2, 3, 4, 5, 6, 7, 8],
            ),
            value: hist(vec![1_000_000; 9], u64::MAX / 2),
        })
        .collect();
    let mut enc = DeltaEncoder::new();
    let frames = enc.encode(1, &series).unwrap();
    let intervals: Vec<&Vec<u8>> = frames
        .iter()
        .filter(|f| matches!(decode(f), Ok(MetricFrame::Interval(_))))
        .collect();
    assert!(intervals.len() > 1);
    assert!(frames.iter().all(|f| f.len() <= MAX_FRAME));
    let mut r = Reconstructor::new(ReconstructorConfig {
        max_series: 10_000,
        max_refused: 0,
    });
    for f in &frames {
        if std::ptr::eq(f, *intervals.last().unwrap()) {
            // Anything but the rest of the interval is refused in between.
            let defs = encode_defines(&[(1, &series[1].def)]).unwrap();
            assert_eq!(r.apply(&defs[0]), Err(RemoteError::Unexpected));
            assert!(!r.settled());
        }
        r.apply(f).unwrap();
    }
    assert!(r.settled());
    assert_eq!(rebuilt(&r), sender_map(&series));
}

#[test]
fn cardinality_cap_refuses_and_counts() {
    let mk = |n: u32| -> Vec<Series> {
        (0..n)
            .map(|i| Series {
                id: i * 3,
                def: def(MetricKind::Counter, "req_total", &format!("r{i}"), &[]),
                value: Value::Counter(u64::from(i) + 1),
            })
            .collect()
    };
    let mut r = Reconstructor::new(ReconstructorConfig {
        max_series: 4,
        max_refused: 3,
    });
    let mut enc = DeltaEncoder::new();
    let mut s = mk(6);
    apply_all(&mut r, &enc.encode(1, &s).unwrap());
    assert_eq!(r.len(), 4);
    let st = r.stats();
    assert_eq!((st.refused_defines, st.ignored_updates), (2, 2));
    // Accepted series are exact; updates to refused ones keep being ignored.
    for x in &mut s {
        if let Value::Counter(c) = &mut x.value {
            *c += 10;
        }
    }
    apply_all(&mut r, &enc.encode(2, &s).unwrap());
    assert_eq!(r.stats().ignored_updates, 4);
    let want: BTreeMap<_, _> = sender_map(&s).into_iter().take(4).collect();
    assert_eq!(rebuilt(&r), want);
    // One more refused id fits the memory of refusals; two more do not.
    apply_all(&mut r, &enc.encode(3, &mk(7)).unwrap());
    assert_eq!(r.stats().refused_defines, 3);
    assert_eq!(
        r.apply(&enc.encode(4, &mk(8)).unwrap()[0]),
        Err(RemoteError::TooManySeries)
    );
}

#[test]
fn encoder_refuses_bad_input_and_remembers_nothing_then() {
    let mut enc = DeltaEncoder::new();
    let mut s = sample_series();
    s[0].value = Value::Gauge(1);
    assert_eq!(enc.encode(1, &s), Err(RemoteError::KindMismatch(1)));
    let mut s = sample_series();
    s[1].id = 1;
    assert_eq!(enc.encode(1, &s), Err(RemoteError::Redefined(1)));
    assert_eq!(enc.seq(), 0);
    let s = sample_series();
    enc.encode(1, &s).unwrap();
    let mut s2 = s.clone();
    s2[0].def = def(MetricKind::Counter, "other_total", "a", &[]);
    assert_eq!(enc.encode(2, &s2), Err(RemoteError::Redefined(1)));
    // A steady state sends an interval with no update (a heartbeat).
    let f = enc.encode(2, &s).unwrap();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].len(), 4 + 8 + 8 + 1 + 1);
}

// ---- the property: reconstruction equals the sender after every frame ----

#[derive(Debug, Clone)]
enum Op {
    New(u8),
    Inc(prop::sample::Index, u64),
    Set(prop::sample::Index, i64),
    Observe(prop::sample::Index, u64),
    Interval,
    Reset,
    Restart(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0u8..3).prop_map(Op::New),
        4 => (any::<prop::sample::Index>(), prop_oneof![0u64..5, 0u64..1_000_000]).prop_map(|(i, n)| Op::Inc(i, n)),
        3 => (any::<prop::sample::Index>(), any::<i64>()).prop_map(|(i, v)| Op::Set(i, v)),
        3 => (any::<prop::sample::Index>(), prop_oneof![0u64..200, any::<u32>().prop_map(u64::from)]).prop_map(|(i, v)| Op::Observe(i, v)),
        4 => Just(Op::Interval),
        1 => Just(Op::Reset),
        1 => any::<bool>().prop_map(Op::Restart),
    ]
}

fn run_metrics(ops: Vec<Op>, chunk: usize) {
    let mut series: Vec<Series> = Vec::new();
    let mut enc = DeltaEncoder::new();
    let mut r = Reconstructor::new(ReconstructorConfig::default());
    let mut reader = FrameReader::new();
    let mut ts = 0;
    let mut flush = |enc: &mut DeltaEncoder,
                     r: &mut Reconstructor,
                     reader: &mut FrameReader,
                     series: &[Series]| {
        ts += 1;
        let frames = enc.encode(ts, series).unwrap();
        let mut bytes = Vec::new();
        for f in &frames {
            bytes.extend(frame(f).unwrap());
        }
        for piece in bytes.chunks(chunk) {
            reader.push(piece).unwrap();
            while let Some(b) = reader.next_frame().unwrap() {
                r.apply(b).unwrap();
                // After every frame: defined series are the sender's, at the
                // sender's values, except those the interval has yet to reach.
                for (id, d, v) in r.iter() {
                    let s = series.iter().find(|s| s.id == id).unwrap();
                    assert_eq!(&s.def, d);
                    if r.settled() && matches!(decode(b), Ok(MetricFrame::Interval(_))) {
                        assert_eq!(&s.value, v, "series {id}");
                    }
                }
            }
        }
        assert!(r.settled());
        assert_eq!(rebuilt(r), sender_map(series));
    };
    for o in ops {
        let pick = |series: &mut Vec<Series>, i: prop::sample::Index, k: MetricKind| {
            let idx: Vec<usize> = (0..series.len())
                .filter(|j| series[*j].def.kind == k)
                .collect();
            (!idx.is_empty()).then(|| idx[i.index(idx.len())])
        };
        match o {
            Op::New(k) => {
                let id = series.len() as u32 * 7 + 1;
                let name = format!("m{id}");
                let (kind, bounds, value) = match k {
                    0 => (MetricKind::Counter, vec![], Value::Counter(0)),
                    1 => (MetricKind::Gauge, vec![], Value::Gauge(0)),
                    _ => (
                        MetricKind::Histogram,
                        vec![10, 100, 1000],
                        hist(vec![0; 4], 0),
                    ),
                };
                series.push(Series {
                    id,
                    def: def(kind, &name, "x", &bounds),
                    value,
                });
            }
            Op::Inc(i, n) => {
                if let Some(j) = pick(&mut series, i, MetricKind::Counter) {
                    if let Value::Counter(c) = &mut series[j].value {
                        *c = c.saturating_add(n);
                    }
                }
            }
            Op::Set(i, v) => {
                if let Some(j) = pick(&mut series, i, MetricKind::Gauge) {
                    series[j].value = Value::Gauge(v);
                }
            }
            Op::Observe(i, v) => {
                if let Some(j) = pick(&mut series, i, MetricKind::Histogram) {
                    let b = series[j].def.buckets.index(v);
                    if let Value::Histogram(h) = &mut series[j].value {
                        h.buckets[b] += 1;
                        h.sum = h.sum.saturating_add(v);
                        h.count += 1;
                    }
                }
            }
            Op::Interval => flush(&mut enc, &mut r, &mut reader, &series),
            Op::Reset => {
                enc.reset();
                flush(&mut enc, &mut r, &mut reader, &series);
            }
            Op::Restart(keep_values) => {
                // The sender process restarts: a new stream, a new encoder;
                // counts start over unless restored from persisted state.
                if !keep_values {
                    for s in &mut series {
                        s.value = s.def.zero();
                    }
                }
                enc = DeltaEncoder::new();
                reader = FrameReader::new();
                r.reconnect();
                flush(&mut enc, &mut r, &mut reader, &series);
            }
        }
    }
    flush(&mut enc, &mut r, &mut reader, &series);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Counters increase, gauges are set, histograms observe, series
    /// appear, the encoder resets, the sender restarts: after every frame
    /// the collector's values are the sender's, exactly.
    #[test]
    fn reconstruction_equals_sender_after_every_frame(
        ops in proptest::collection::vec(op(), 0..60),
        chunk in 1usize..200,
    ) {
        run_metrics(ops, chunk);
    }
}

#[test]
fn a_counter_that_went_down_forces_a_full_interval() {
    let mut s = sample_series();
    let mut enc = DeltaEncoder::new();
    let mut r = Reconstructor::new(ReconstructorConfig::default());
    apply_all(&mut r, &enc.encode(1, &s).unwrap());
    s[0].value = Value::Counter(1);
    let frames = enc.encode(2, &s).unwrap();
    let MetricFrame::Interval(iv) = decode(frames.last().unwrap()).unwrap() else {
        panic!()
    };
    assert!(iv.full);
    apply_all(&mut r, &frames);
    assert_eq!(rebuilt(&r), sender_map(&s));
}

// ---- bytes per sample against the Prometheus text ----

/// The Prometheus text exposition of `series` (HELP/TYPE once per name,
/// histograms as cumulative `_bucket{le=…}`, `_sum`, `_count`); returns
/// the text and the number of sample lines.
fn prometheus_text(series: &[Series]) -> (String, usize) {
    let mut out = String::new();
    let mut samples = 0;
    let mut last_name = "";
    for s in series {
        let name = s.def.name.as_str();
        if name != last_name {
            let _ = writeln!(out, "# HELP {name} {}", s.def.help.as_str());
            let _ = writeln!(out, "# TYPE {name} {}", s.def.kind.as_str());
            last_name = name;
        }
        let labels: Vec<String> = s
            .def
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        let l = labels.join(",");
        match &s.value {
            Value::Counter(c) => {
                let _ = writeln!(out, "{name}{{{l}}} {c}");
                samples += 1;
            }
            Value::Gauge(g) => {
                let _ = writeln!(out, "{name}{{{l}}} {g}");
                samples += 1;
            }
            Value::Histogram(h) => {
                let mut cum = 0;
                let bounds = s.def.buckets.bounds();
                for (i, b) in h.buckets.iter().enumerate() {
                    cum += b;
                    let le = bounds.get(i).map_or("+Inf".to_string(), |x| x.to_string());
                    let _ = writeln!(out, "{name}_bucket{{{l},le=\"{le}\"}} {cum}");
                }
                let _ = writeln!(out, "{name}_sum{{{l}}} {}", h.sum);
                let _ = writeln!(out, "{name}_count{{{l}}} {}", h.count);
                samples += h.buckets.len() + 2;
            }
        }
    }
    (out, samples)
}

/// 1,000 series: 700 counters, 250 gauges, 50 histograms (8 bounds), over
/// 20 names, with short realistic labels and realistic magnitudes.
fn thousand() -> Vec<Series> {
    let mut v = Vec::new();
    for i in 0..1000u32 {
        let (kind, name, bounds, value) = match i {
            0..=699 => (
                MetricKind::Counter,
                format!("netd_requests_{}_total", i / 70),
                vec![],
                Value::Counter(1_000_000 + u64::from(i) * 37),
            ),
            700..=949 => (
                MetricKind::Gauge,
                format!("netd_queue_depth_{}", (i - 700) / 50),
                vec![],
                Value::Gauge(i64::from(i % 200)),
            ),
            _ => (
                MetricKind::Histogram,
                format!("netd_latency_us_{}", (i - 950) / 10),
                vec![10, 50, 100, 500, 1000, 5000, 10000, 50000],
                hist(
                    vec![900, 800, 700, 600, 500, 400, 300, 200, 100],
                    12_345_678,
                ),
            ),
        };
        let mut d = Definition::new(
            kind,
            MetricName::new(&name).unwrap(),
            Labels::new(&[("route", &format!("r{}", i % 70)), ("svc", "netd")]).unwrap(),
            &bounds,
        )
        .unwrap();
        d.help = Help::new("Requests handled by netd.").unwrap();
        v.push(Series {
            id: i,
            def: d,
            value,
        });
    }
    v
}

#[test]
fn bytes_per_sample_against_prometheus_text() {
    let mut s = thousand();
    let mut enc = DeltaEncoder::new();
    let mut r = Reconstructor::new(ReconstructorConfig::default());
    let first = enc.encode(0, &s).unwrap();
    let first_bytes: usize = first.iter().map(|f| f.len() + 4).sum();
    apply_all(&mut r, &first);

    // Steady state: ten intervals, each changing a deterministic ~10 %.
    let mut wire = 0usize;
    let mut changed_samples = 0usize;
    let mut text = 0usize;
    let mut text_samples = 0usize;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for round in 1..=10u64 {
        let mut changed = Vec::new();
        for (i, x) in s.iter_mut().enumerate() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if !state.is_multiple_of(10) {
                continue;
            }
            changed.push(i);
            match &mut x.value {
                Value::Counter(c) => *c += 1 + state % 50,
                Value::Gauge(g) => *g = (state % 500) as i64,
                Value::Histogram(h) => {
                    let b = (state % 9) as usize;
                    h.buckets[b] += 1;
                    h.count += 1;
                    h.sum += 40;
                }
            }
        }
        let frames = enc.encode(round, &s).unwrap();
        assert_eq!(frames.len(), 1, "no defines in steady state");
        wire += frames[0].len() + 4;
        apply_all(&mut r, &frames);
        let changed_series: Vec<Series> = changed.iter().map(|i| s[*i].clone()).collect();
        changed_samples += prometheus_text(&changed_series).1;
        let (t, n) = prometheus_text(&s);
        text += t.len();
        text_samples += n;
    }
    assert_eq!(rebuilt(&r), sender_map(&s));
    let wire_per_changed = wire as f64 / changed_samples as f64;
    let text_per_sample = text as f64 / text_samples as f64;
    let per_sample_ratio = wire_per_changed / text_per_sample;
    let interval_ratio = wire as f64 / text as f64;
    println!(
        "first interval (defines + full): {first_bytes} B; steady state over 10 intervals: \
         wire {wire} B for {changed_samples} changed samples ({wire_per_changed:.2} B/sample), \
         Prometheus text {text} B for {text_samples} samples ({text_per_sample:.2} B/sample); \
         per changed sample {per_sample_ratio:.3}x, per interval vs full scrape {interval_ratio:.4}x"
    );
    assert!(
        per_sample_ratio <= 0.1,
        "per sample ratio {per_sample_ratio}"
    );
    assert!(interval_ratio <= 0.1, "interval ratio {interval_ratio}");
}
