//! metricsd end to end at the frame level: semantics, rollups by time,
//! persistence and replay, snapshots, span export, scrape.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::*;

use metricsd::persist::MetricsStore;
use metricsd::Config;
use nexus_metrics::proto::{self, Entry, Reply, WireSegment};
use nexus_store::MemDisk;

const COUNTER: u8 = 0;
const GAUGE: u8 = 1;
const HIST: u8 = 2;

fn segments(
    m: &mut metricsd::Metricsd,
    owner: nexus_ipc::ServiceId,
    series: u32,
    tier: u8,
) -> Vec<WireSegment> {
    match call(m, 0, owner, &proto::encode_segments(1, series, tier)) {
        Reply::Segments(v) => v,
        other => panic!("{other:?}"),
    }
}

#[test]
fn histogram_bucket_boundaries_with_fixed_vectors() {
    let mut m = md(unlimited(Config::default()));
    let me = sid(1);
    let id = register(&mut m, 0, me, HIST, "lat_us", &[], &[10, 100, 1000]).unwrap();
    // Observations 5, 10 | 11, 100 | 101 | 5000 as the client buckets them.
    batch(
        &mut m,
        0,
        me,
        &[Entry::Hist {
            series: id,
            counts: vec![2, 2, 1, 1],
            sum: 5 + 10 + 11 + 100 + 101 + 5000,
        }],
    )
    .unwrap();
    let text = m.exposition();
    for line in [
        "lat_us_bucket{owner=\"1\",le=\"10\"} 2\n",
        "lat_us_bucket{owner=\"1\",le=\"100\"} 4\n",
        "lat_us_bucket{owner=\"1\",le=\"1000\"} 5\n",
        "lat_us_bucket{owner=\"1\",le=\"+Inf\"} 6\n",
        "lat_us_sum{owner=\"1\"} 5227\n",
        "lat_us_count{owner=\"1\"} 6\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    // A layout mismatch is refused, not misapplied.
    assert_eq!(
        one_reject(batch(
            &mut m,
            0,
            me,
            &[Entry::Hist {
                series: id,
                counts: vec![1, 1],
                sum: 1
            }]
        )),
        proto::Status::InvalidArgs
    );
}

#[test]
fn registry_dedupes_over_the_wire_and_gauges_set() {
    let mut m = md(unlimited(Config::default()));
    let me = sid(1);
    let a = register(
        &mut m,
        0,
        me,
        GAUGE,
        "depth",
        &[("q", "rx"), ("dev", "eth0")],
        &[],
    )
    .unwrap();
    let b = register(
        &mut m,
        0,
        me,
        GAUGE,
        "depth",
        &[("dev", "eth0"), ("q", "rx")],
        &[],
    )
    .unwrap();
    assert_eq!(a, b);
    batch(
        &mut m,
        0,
        me,
        &[
            Entry::Set {
                series: a,
                value: 5,
            },
            Entry::Add {
                series: a,
                delta: -2,
            },
            Entry::Set {
                series: a,
                value: 9,
            },
        ],
    )
    .unwrap();
    assert!(m
        .exposition()
        .contains("depth{owner=\"1\",dev=\"eth0\",q=\"rx\"} 9\n"));
}

#[test]
fn rollups_are_by_time_aligned_and_exact() {
    let mut m = md(unlimited(Config::default()));
    let me = sid(1);
    let id = register(&mut m, 0, me, GAUGE, "g", &[], &[]).unwrap();
    // Samples at 1 s, 5 s, 9.999 s (window [0,10)) and 10 s, 19 s ([10,20)), 61 s.
    for (t, v) in [
        (1, 4),
        (5, -2),
        (9_999, 10),
        (10_000, 7),
        (19_000, 1),
        (61_000, 3),
    ] {
        batch(
            &mut m,
            t * 1_000_000,
            me,
            &[Entry::Set {
                series: id,
                value: v,
            }],
        )
        .unwrap();
        m.tick(t * 1_000_000);
    }
    m.tick(200 * SEC);
    let st = stats(&mut m, me);
    assert_eq!(
        (st.updates, st.segments),
        (6, 5),
        "three 10 s and two 60 s segments"
    );
    let s10 = segments(&mut m, me, id, 1);
    let got: Vec<_> = s10
        .iter()
        .map(|s| (s.start_ns / SEC, s.count, s.sum, s.min, s.max))
        .collect();
    assert_eq!(
        got,
        vec![(0, 3, 12, -2, 10), (10, 2, 8, 1, 7), (60, 1, 3, 3, 3)]
    );
    let s60 = segments(&mut m, me, id, 2);
    let got: Vec<_> = s60
        .iter()
        .map(|s| (s.start_ns / SEC, s.count, s.sum, s.min, s.max))
        .collect();
    assert_eq!(got, vec![(0, 5, 20, -2, 10), (60, 1, 3, 3, 3)]);
    // Another owner may not read them.
    assert_eq!(
        call(&mut m, 0, sid(2), &proto::encode_segments(1, id, 1)),
        Reply::Rejected(proto::Status::InvalidArgs)
    );
}

fn persist_all(m: &mut metricsd::Metricsd, store: &mut MetricsStore<MemDisk>) {
    store.write(m);
    store.flush().unwrap();
}

#[test]
fn restart_replays_series_segments_and_open_windows_idempotently() {
    let disk = MemDisk::new(2048);
    let mut m = md(unlimited(Config::default()));
    let (mut store, rep) = MetricsStore::open(disk, &mut m).unwrap();
    assert_eq!(rep.mount.boot_count, 1);
    let me = sid(3);
    let id = register(&mut m, 0, me, COUNTER, "c", &[("k", "v")], &[]).unwrap();
    for t in [1u64, 2, 3, 12, 13] {
        batch(
            &mut m,
            t * SEC,
            me,
            &[Entry::Inc {
                series: id,
                delta: t,
            }],
        )
        .unwrap();
        m.tick(t * SEC);
    }
    persist_all(&mut m, &mut store);
    // The [0,10) window is closed; [10,20) is open at the "crash".
    let before: Vec<_> = m.retention().iter().copied().collect();
    assert_eq!(before.len(), 1);

    // Reboot: same disk, fresh metricsd.
    let mut m2 = md(unlimited(Config::default()));
    let (mut store2, rep) = MetricsStore::open(store.into_device(), &mut m2).unwrap();
    assert_eq!(
        (
            rep.mount.boot_count,
            rep.series,
            rep.segments,
            rep.samples,
            rep.skipped
        ),
        (2, 1, 1, 5, 0)
    );
    // Same id for the same registration.
    assert_eq!(
        register(&mut m2, 0, me, COUNTER, "c", &[("k", "v")], &[]),
        Ok(id)
    );
    // Closing everything after replay gives the segments an uninterrupted
    // run would have given: the replayed [0,10) is identical, not doubled.
    m2.tick(100 * SEC);
    m.tick(100 * SEC);
    let a: Vec<_> = m.retention().iter().copied().collect();
    let b: Vec<_> = m2.retention().iter().copied().collect();
    assert_eq!(a, b);
    assert_eq!(
        segments(&mut m2, me, id, 1)
            .iter()
            .map(|s| s.sum)
            .collect::<Vec<_>>(),
        vec![6, 25]
    );
    persist_all(&mut m2, &mut store2);
}

#[test]
fn wal_replay_skips_a_corrupted_tail() {
    let mut m = md(unlimited(Config::default()));
    let (mut store, _) = MetricsStore::open(MemDisk::new(2048), &mut m).unwrap();
    let me = sid(1);
    let id = register(&mut m, 0, me, GAUGE, "g", &[], &[]).unwrap();
    for v in 1..=5 {
        batch(
            &mut m,
            SEC,
            me,
            &[Entry::Set {
                series: id,
                value: v,
            }],
        )
        .unwrap();
    }
    persist_all(&mut m, &mut store);
    let mut disk = store.into_device();
    // Corrupt the last entry's payload (the last W sample, value 5).
    let bytes = disk.as_bytes_mut();
    let last = bytes.iter().rposition(|b| *b == 5).unwrap();
    bytes[last] ^= 0xff;
    let mut m2 = md(unlimited(Config::default()));
    let (_, rep) = MetricsStore::open(disk, &mut m2).unwrap();
    assert!(rep.mount.torn, "the torn tail is reported");
    assert_eq!(
        (rep.series, rep.samples),
        (1, 4),
        "earlier entries survive, the torn one is skipped"
    );
}

#[test]
fn compaction_keeps_the_live_set_when_the_region_fills() {
    let mut cfg = unlimited(Config::default());
    cfg.retention.wal_max_samples = 64;
    let mut m = md(cfg);
    // A tiny region: two halves of 8 blocks.
    let (mut store, _) = MetricsStore::open(MemDisk::new(17), &mut m).unwrap();
    let me = sid(1);
    let id = register(&mut m, 0, me, COUNTER, "c", &[], &[]).unwrap();
    for i in 0..2000u64 {
        batch(
            &mut m,
            i * SEC / 10,
            me,
            &[Entry::Inc {
                series: id,
                delta: 1,
            }],
        )
        .unwrap();
        m.tick(i * SEC / 10);
        persist_all(&mut m, &mut store);
    }
    assert!(store.stats().compactions > 0);
    let mut m2 = md(unlimited(Config::default()));
    let (_, rep) = MetricsStore::open(store.into_device(), &mut m2).unwrap();
    assert_eq!(rep.series, 1, "registrations survive every compaction");
    assert!(rep.segments > 0);
}

#[test]
fn snapshots_export_every_series_with_labels_at_the_cadence() {
    let mut m = md(unlimited(Config::default()));
    let me = sid(2);
    let c = register(&mut m, 0, me, COUNTER, "reqs", &[("route", "/a")], &[]).unwrap();
    let h = register(&mut m, 0, me, HIST, "lat", &[], &[10]).unwrap();
    for _ in 0..100 {
        batch(
            &mut m,
            SEC,
            me,
            &[Entry::Inc {
                series: c,
                delta: 1,
            }],
        )
        .unwrap();
    }
    batch(
        &mut m,
        SEC,
        me,
        &[Entry::Hist {
            series: h,
            counts: vec![1, 2],
            sum: 45,
        }],
    )
    .unwrap();
    assert!(m.drain_exports().is_empty(), "updates alone export nothing");
    m.tick(SEC);
    let out = m.drain_exports();
    assert_eq!(out.len(), 2);
    let reqs = out.iter().find(|e| e.message == "reqs").unwrap();
    assert_eq!(reqs.target, "metrics.snapshot");
    assert_eq!(
        reqs.fields.as_str(),
        "kind=counter\nlabel.route=/a\nowner:i=2\nseries:i=1\nvalue:i=100\n"
    );
    let lat = out.iter().find(|e| e.message == "lat").unwrap();
    assert_eq!(
        lat.fields.as_str(),
        "bucket.le_10:i=1\nbucket.le_inf:i=3\ncount:i=3\nkind=histogram\nowner:i=2\nseries:i=2\nsum:i=45\n"
    );
    // Not again before the interval, again after it.
    m.tick(5 * SEC);
    assert!(m.drain_exports().is_empty());
    m.tick(11 * SEC);
    assert_eq!(m.drain_exports().len(), 2);
}

#[test]
fn span_end_records_carry_ids_timing_and_status() {
    let mut m = md(unlimited(Config::default()));
    let me = sid(5);
    let trace: u128 = 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736;
    let entries = [
        Entry::SpanStart {
            span: 0x500000001,
            trace,
            parent: 0,
            start_ns: 1_000,
            name: "request",
        },
        Entry::SpanStart {
            span: 0x500000002,
            trace,
            parent: 0x500000001,
            start_ns: 1_200,
            name: "db",
        },
        Entry::SpanEnd {
            span: 0x500000002,
            end_ns: 1_700,
            status: 2,
            attrs: vec![("rows", "0")],
        },
        Entry::SpanEnd {
            span: 0x500000001,
            end_ns: 2_000,
            status: 1,
            attrs: vec![],
        },
    ];
    assert_eq!(batch(&mut m, 0, me, &entries).unwrap().accepted, 4);
    let out = m.drain_exports();
    let db = &out[0];
    assert_eq!(
        (db.target, db.message.as_str(), db.level),
        ("trace.span", "db", nexus_log::Level::Warn)
    );
    assert_eq!(
        db.fields.get("trace_id"),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(db.fields.get("span_id"), Some("0000000500000002"));
    assert_eq!(db.fields.get("parent_id"), Some("0000000500000001"));
    assert_eq!(db.fields.get("duration_ns"), Some("500"));
    assert_eq!(db.fields.get("status"), Some("error"));
    assert_eq!(db.fields.get("attr.rows"), Some("0"));
    assert_eq!(out[1].fields.get("parent_id"), None);
    assert_eq!(out[1].fields.get("duration_ns"), Some("1000"));
}

#[test]
fn scrape_pages_parse_with_a_real_parser() {
    let mut m = md(unlimited(Config::default()));
    for owner in 1..=3 {
        let me = sid(owner);
        for i in 0..20 {
            let id = register(
                &mut m,
                0,
                me,
                COUNTER,
                &format!("m{i}_total"),
                &[("path", &format!("/p\\{i}\""))],
                &[],
            )
            .unwrap();
            batch(
                &mut m,
                0,
                me,
                &[Entry::Inc {
                    series: id,
                    delta: u64::from(owner),
                }],
            )
            .unwrap();
        }
        let h = register(&mut m, 0, me, HIST, "lat", &[], &[1, 2, 3]).unwrap();
        batch(
            &mut m,
            0,
            me,
            &[Entry::Hist {
                series: h,
                counts: vec![1, 0, 1, 1],
                sum: 9,
            }],
        )
        .unwrap();
    }
    // Page through with a small budget.
    let mut text = String::new();
    let mut cursor = 0;
    let mut pages = 0;
    loop {
        let page = match call(&mut m, 0, sid(9), &proto::encode_scrape(1, cursor, 512)) {
            Reply::Scrape(p) => p,
            other => panic!("{other:?}"),
        };
        text.push_str(&page.text);
        pages += 1;
        cursor = page.next;
        if !page.more {
            break;
        }
    }
    assert!(pages > 5);
    assert_eq!(
        text,
        m.exposition(),
        "pages concatenate to the whole exposition"
    );
    let parsed = openmetrics_parser::prometheus::parse_prometheus(&text).expect("valid exposition");
    assert!(parsed.families.contains_key("m7_total"));
    assert!(parsed.families.contains_key("lat"));
    assert!(parsed.families.contains_key("metricsd_rejects_total"));
}
