//! metricsd's state-store entries: every `Persisted` variant round trips, and `decode` never panics.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use metricsd::persist::{decode, encode};
use metricsd::registry::Registration;
use metricsd::rollup::{Agg, Segment, Tier, SEGMENT_LEN, SEGMENT_TAG};
use metricsd::Persisted;
use nexus_ipc::ServiceId;
use nexus_metrics::{Buckets, Help, Labels, MetricKind, MetricName};
use proptest::prelude::*;

fn kind() -> impl Strategy<Value = MetricKind> {
    proptest::sample::select(vec![
        MetricKind::Counter,
        MetricKind::Gauge,
        MetricKind::Histogram,
    ])
}

fn labels() -> impl Strategy<Value = Labels> {
    proptest::collection::vec(
        ("[a-z_][a-z0-9_]{0,12}", "[^\\x00-\\x1f\\x7f-\\x9f]{0,16}"),
        0..=8,
    )
    .prop_filter_map("valid labels (unique keys, no `__`)", |pairs| {
        let refs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Labels::new(&refs).ok()
    })
}

fn buckets() -> impl Strategy<Value = Option<Buckets>> {
    proptest::option::of(
        proptest::collection::btree_set(any::<u64>(), 1..=16).prop_map(|s| {
            let v: Vec<u64> = s.into_iter().collect();
            Buckets::new(&v).unwrap()
        }),
    )
}

fn registration() -> impl Strategy<Value = (u32, Registration)> {
    (
        any::<u32>(),
        any::<u32>(),
        kind(),
        "[a-zA-Z:][a-zA-Z0-9_:]{0,20}",
        labels(),
        buckets(),
        "[ -~\n]{0,40}",
    )
        .prop_map(|(id, owner, kind, name, labels, buckets, help)| {
            // A histogram always has a layout (maybe `+Inf` only).
            let buckets = match kind {
                MetricKind::Histogram => buckets.or_else(|| Some(Buckets::new(&[]).unwrap())),
                _ => buckets,
            };
            (
                id,
                Registration {
                    owner: ServiceId::new(owner),
                    kind,
                    name: MetricName::new(&name).unwrap(),
                    labels,
                    buckets,
                    help: Help::new(&help).unwrap(),
                },
            )
        })
}

fn segment() -> impl Strategy<Value = Segment> {
    (
        any::<u32>(),
        proptest::sample::select(Tier::ALL.to_vec()),
        any::<u64>(),
        1u64..=u64::MAX,
        any::<i64>(),
        any::<i64>(),
        any::<i64>(),
    )
        .prop_map(|(series, tier, start, count, sum, a, b)| Segment {
            series,
            tier,
            start_ns: tier.window_start(start),
            agg: Agg {
                count,
                sum,
                min: a.min(b),
                max: a.max(b),
            },
        })
}

fn persisted() -> impl Strategy<Value = Persisted> {
    prop_oneof![
        registration().prop_map(|(id, r)| Persisted::Register(id, r)),
        (any::<u32>(), any::<u64>(), any::<i64>()).prop_map(|(series, ts_ns, value)| {
            Persisted::Sample {
                series,
                ts_ns,
                value,
            }
        }),
        segment().prop_map(Persisted::Segment),
    ]
}

proptest! {
    #[test]
    fn every_variant_round_trips(p in persisted()) {
        let bytes = encode(&p);
        match &p {
            Persisted::Sample { .. } => prop_assert_eq!(bytes.len(), 21),
            Persisted::Segment(_) => prop_assert_eq!(bytes.len(), SEGMENT_LEN),
            Persisted::Register(_, r) if r.help.is_empty() => prop_assert_eq!(bytes[0], b'R'),
            Persisted::Register(..) => prop_assert_eq!(bytes[0], b'H'),
        }
        prop_assert_eq!(decode(&bytes), Some(p));
    }

    #[test]
    fn registrations_round_trip(r in registration()) {
        let p = Persisted::Register(r.0, r.1);
        prop_assert_eq!(decode(&encode(&p)), Some(p));
    }

    #[test]
    fn segments_round_trip(s in segment()) {
        let p = Persisted::Segment(s);
        prop_assert_eq!(decode(&encode(&p)), Some(p));
    }

    /// Arbitrary bytes, and arbitrary bytes behind each tag: never a panic.
    #[test]
    fn decode_never_panics(t in prop_oneof![Just(b'R'), Just(b'W'), Just(SEGMENT_TAG), any::<u8>()],
                           body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&body);
        let mut b = vec![t];
        b.extend_from_slice(&body);
        if let Some(p) = decode(&b) {
            // Whatever is accepted decodes the same after a re-encode.
            prop_assert_eq!(decode(&encode(&p)), Some(p));
        }
    }

    /// Every cut of a valid encoding is refused; one changed byte never panics.
    #[test]
    fn truncations_are_refused(p in persisted(), pos in any::<usize>(), byte in any::<u8>()) {
        let bytes = encode(&p);
        for c in 0..bytes.len() {
            prop_assert_eq!(decode(&bytes[..c]), None, "cut at {} of {}", c, bytes.len());
        }
        let mut m = bytes.clone();
        let i = pos % m.len();
        m[i] = byte;
        if let Some(q) = decode(&m) {
            prop_assert_eq!(decode(&encode(&q)), Some(q));
        }
        // A trailing byte is refused too.
        let mut t = bytes;
        t.push(0);
        prop_assert_eq!(decode(&t), None);
    }
}

#[test]
fn sample_layout() {
    let b = encode(&Persisted::Sample {
        series: 0x0102_0304,
        ts_ns: 0x1112_1314_1516_1718,
        value: -2,
    });
    let mut want = vec![b'W', 4, 3, 2, 1];
    want.extend_from_slice(&[0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11]);
    want.extend_from_slice(&[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    assert_eq!(b, want);
}

#[test]
fn register_layout() {
    let r = Registration {
        owner: ServiceId::new(0x0a0b_0c0d),
        kind: MetricKind::Histogram,
        name: MetricName::new("lat").unwrap(),
        labels: Labels::new(&[("z", "1"), ("a", "2")]).unwrap(),
        buckets: Some(Buckets::new(&[10, 0x0100]).unwrap()),
        help: Help::default(),
    };
    let b = encode(&Persisted::Register(7, r.clone()));
    let mut want = vec![b'R', 7, 0, 0, 0, 0x0d, 0x0c, 0x0b, 0x0a, 2];
    want.extend_from_slice(&[3, b'l', b'a', b't']);
    // Labels in key order.
    want.extend_from_slice(&[2, 1, b'a', 1, b'2', 1, b'z', 1, b'1']);
    want.extend_from_slice(&[2, 10, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(b, want);
    assert_eq!(decode(&b), Some(Persisted::Register(7, r.clone())));

    // With help: tag `H`, the same bytes, then `help u8-len`.
    let with_help = Registration {
        help: Help::new("Latency.").unwrap(),
        ..r
    };
    let b = encode(&Persisted::Register(7, with_help.clone()));
    want[0] = b'H';
    want.extend_from_slice(&[8, b'L', b'a', b't', b'e', b'n', b'c', b'y', b'.']);
    assert_eq!(b, want);
    assert_eq!(decode(&b), Some(Persisted::Register(7, with_help)));

    // A `+Inf`-only histogram: no bound, still a histogram.
    let inf_only = Registration {
        owner: ServiceId::new(1),
        kind: MetricKind::Histogram,
        name: MetricName::new("h").unwrap(),
        labels: Labels::empty(),
        buckets: Some(Buckets::new(&[]).unwrap()),
        help: Help::default(),
    };
    let b = encode(&Persisted::Register(2, inf_only.clone()));
    assert_eq!(decode(&b), Some(Persisted::Register(2, inf_only)));
}

#[test]
fn segment_layout() {
    let s = Segment {
        series: 3,
        tier: Tier::S60,
        start_ns: 120_000_000_000,
        agg: Agg {
            count: 2,
            sum: -1,
            min: -3,
            max: 2,
        },
    };
    let b = encode(&Persisted::Segment(s));
    assert_eq!(b.len(), SEGMENT_LEN);
    assert_eq!(b[..6], [b'S', 2, 3, 0, 0, 0]);
    assert_eq!(b[6..14], 120_000_000_000u64.to_le_bytes());
    assert_eq!(b[14..22], 2u64.to_le_bytes());
    assert_eq!(b[22..30], (-1i64).to_le_bytes());
    assert_eq!(b[30..38], (-3i64).to_le_bytes());
    assert_eq!(b[38..46], 2i64.to_le_bytes());
}

#[test]
fn invalid_entries_are_refused() {
    let seg = Segment {
        series: 3,
        tier: Tier::S10,
        start_ns: 10_000_000_000,
        agg: Agg {
            count: 1,
            sum: 5,
            min: 5,
            max: 5,
        },
    };
    let good = encode(&Persisted::Segment(seg));
    assert!(decode(&good).is_some());
    let bad = |at: usize, bytes: &[u8]| {
        let mut b = good.clone();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        decode(&b)
    };
    assert_eq!(bad(1, &[3]), None, "unknown tier");
    assert_eq!(bad(6, &1u64.to_le_bytes()), None, "unaligned start");
    assert_eq!(bad(14, &0u64.to_le_bytes()), None, "count 0");
    assert_eq!(bad(30, &6i64.to_le_bytes()), None, "min > max");

    let reg = Registration {
        owner: ServiceId::new(1),
        kind: MetricKind::Counter,
        name: MetricName::new("a").unwrap(),
        labels: Labels::new(&[("k", "v")]).unwrap(),
        buckets: Some(Buckets::new(&[1, 2]).unwrap()),
        help: Help::default(),
    };
    let good = encode(&Persisted::Register(1, reg));
    // R | id 4 | owner 4 | kind @9 | name len @10, 'a' @11 | nlabels @12 |
    // 1 'k' @13..15 | 1 'v' @15..17 | nbounds @17 | bounds @18..34
    assert!(decode(&good).is_some());
    let bad = |at: usize, bytes: &[u8]| {
        let mut b = good.clone();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        decode(&b)
    };
    assert_eq!(bad(9, &[3]), None, "unknown kind");
    assert_eq!(bad(11, b"-"), None, "name grammar");
    assert_eq!(bad(14, b"-"), None, "label key grammar");
    assert_eq!(bad(16, &[0x0a]), None, "control char in label value");
    assert_eq!(bad(16, &[0xff]), None, "label value not utf-8");
    assert_eq!(bad(18, &3u64.to_le_bytes()), None, "bounds not increasing");
    assert_eq!(decode(&[]), None);
    assert_eq!(decode(b"X"), None);
}
