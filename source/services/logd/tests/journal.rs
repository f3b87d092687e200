//! Bounds, fairness, sender churn, paging and the query policy.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::*;

use logd::Config;
use nexus_log::proto::{QueryRequest, Status};
use nexus_log::Level;

fn small(max_records: u32, max_bytes: u32) -> Config {
    let mut cfg = unlimited(Config::default());
    cfg.journal.max_records = max_records;
    cfg.journal.max_bytes = max_bytes;
    cfg.record.max_record_bytes = max_bytes.min(4096);
    cfg
}

#[test]
fn journal_stays_bounded_forever_with_no_lifetime_cap() {
    let cap = 100u32;
    let mut l = logd(small(cap, 8 * 1024));
    let me = sid(1);
    let total = 10 * cap as usize;
    for i in 0..total {
        // Every append succeeds: freed room is reused for good.
        let id = append(&mut l, i as u64, me, &format!("record {i:05}")).unwrap();
        assert_eq!(id, i as u64 + 1);
        assert!(l.journal().len() <= cap as usize);
        assert!(l.journal().bytes() <= 8 * 1024);
    }
    let s = stats(&mut l, 0, READER);
    assert_eq!(s.appended, total as u64);
    assert_eq!(s.evicted + s.records, total as u64);
    // The newest records are the ones kept, and readable.
    let all = query(&mut l, 0, me, &QueryRequest::all(256)).unwrap();
    assert_eq!(all.records.len() as u64, s.records);
    assert_eq!(
        all.records.last().unwrap().message,
        format!("record {:05}", total - 1)
    );
}

#[test]
fn byte_bound_holds_with_mixed_sizes() {
    let mut l = logd(small(10_000, 4000));
    for i in 0..500u32 {
        let msg = "x".repeat((i as usize * 37) % 900);
        append(&mut l, 0, sid(i % 7 + 1), &msg).unwrap();
        assert!(l.journal().bytes() <= 4000);
    }
}

#[test]
fn spammer_cannot_evict_a_quiet_sender() {
    let cap = 200u32;
    let mut l = logd(small(cap, 64 * 1024));
    let (victim, spammer) = (sid(1), sid(2));
    for i in 0..10 {
        append(&mut l, 0, victim, &format!("victim {i}")).unwrap();
    }
    for i in 0..(10 * cap) {
        append(&mut l, 0, spammer, &format!("spam {i}")).unwrap();
    }
    let mine = query(&mut l, 0, victim, &QueryRequest::all(100)).unwrap();
    let msgs: Vec<_> = mine.records.iter().map(|r| r.message.as_str()).collect();
    let want: Vec<String> = (0..10).map(|i| format!("victim {i}")).collect();
    assert_eq!(msgs, want);
    let s = stats(&mut l, 0, READER);
    let by = |id| s.senders.iter().find(|e| e.sender == id).copied().unwrap();
    assert_eq!(by(victim).evicted, 0);
    assert_eq!(
        by(spammer).evicted,
        u64::from(10 * cap) - u64::from(cap - 10)
    );
    assert_eq!(by(spammer).records, u64::from(cap - 10));
    // Readers see the per-sender dropped count; so does the spammer itself.
    assert_eq!(
        stats(&mut l, 0, spammer).senders[0].evicted,
        by(spammer).evicted
    );
}

#[test]
fn two_heavy_senders_converge_to_equal_shares() {
    let mut l = logd(small(100, 1 << 20));
    for i in 0..1000u32 {
        append(&mut l, 0, sid(1 + i % 2), "same size").unwrap();
    }
    let s = stats(&mut l, 0, READER);
    let recs: Vec<u64> = s.senders.iter().map(|e| e.records).collect();
    assert_eq!(recs, vec![50, 50]);
}

#[test]
fn a_thousand_distinct_senders_in_sequence_are_all_served() {
    let mut cfg = Config::default();
    cfg.rate.max_senders = 16;
    cfg.rate.events_burst = 2;
    cfg.rate.events_per_sec = 1;
    let mut l = logd(cfg);
    for n in 0..1000u32 {
        let s = sid(10 + n);
        assert!(append(&mut l, u64::from(n), s, "hi").is_ok(), "sender {n}");
        assert!(append(&mut l, u64::from(n), s, "hi").is_ok());
        assert_eq!(
            append(&mut l, u64::from(n), s, "hi"),
            Err(Status::RateLimited)
        );
    }
    let s = stats(&mut l, 0, READER);
    assert_eq!(s.senders_tracked, 16);
    assert_eq!(s.sender_evictions, 1000 - 16);
    assert_eq!(s.appended, 2000);
    assert_eq!(s.rejects.rate_limited, 1000);
}

#[test]
fn paging_a_full_journal_returns_every_record_exactly_once() {
    let mut l = logd(small(300, 1 << 20));
    for i in 0..900u32 {
        append(&mut l, u64::from(i), sid(1 + i % 3), &format!("{i}")).unwrap();
    }
    let expected: Vec<u64> = (601..=900).collect();
    for (count, bytes) in [
        (1u16, u32::MAX),
        (7, u32::MAX),
        (256, u32::MAX),
        (256, 200),
        (3, 1),
    ] {
        let mut q = QueryRequest::all(count);
        q.max_bytes = bytes;
        let mut ids = Vec::new();
        let mut pages = 0;
        loop {
            let p = query(&mut l, 0, READER, &q).unwrap();
            assert_eq!(p.gap, 0);
            ids.extend(p.records.iter().map(|r| r.id));
            q.cursor = p.next;
            pages += 1;
            if !p.more {
                break;
            }
            assert!(pages < 10_000);
        }
        assert_eq!(ids, expected, "count {count} bytes {bytes}");
        // Resuming from the end returns nothing and stays there.
        let p = query(&mut l, 0, READER, &q).unwrap();
        assert!(p.records.is_empty() && !p.more && p.next == 901);
    }
}

#[test]
fn a_gap_between_pages_is_reported_not_hidden() {
    let mut l = logd(small(10, 1 << 20));
    let me = sid(1);
    for i in 0..10 {
        append(&mut l, 0, me, &format!("{i}")).unwrap();
    }
    let mut q = QueryRequest::all(4);
    let p1 = query(&mut l, 0, me, &q).unwrap();
    assert_eq!(
        p1.records.iter().map(|r| r.id).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    q.cursor = p1.next;
    // Six more appends evict ids 1..=6; ids 5 and 6 were never read.
    for i in 10..16 {
        append(&mut l, 0, me, &format!("{i}")).unwrap();
    }
    let mut got = Vec::new();
    let mut gap = 0;
    loop {
        let p = query(&mut l, 0, me, &q).unwrap();
        gap += p.gap;
        got.extend(p.records.iter().map(|r| r.id));
        q.cursor = p.next;
        if !p.more {
            break;
        }
    }
    assert_eq!(gap, 2);
    assert_eq!(got, (7..=16).collect::<Vec<_>>());
}

#[test]
fn query_filters_by_time_level_and_sender() {
    let mut l = logd(unlimited(Config::default()));
    let levels = [Level::Debug, Level::Info, Level::Warn, Level::Error];
    for i in 0..20u64 {
        append_with(
            &mut l,
            i * 10,
            sid(1 + (i % 2) as u32),
            levels[(i % 4) as usize],
            "m",
            &fields(&[]),
        )
        .unwrap();
    }
    let mut q = QueryRequest::all(100);
    q.since_ns = 50;
    q.until_ns = 150;
    q.min_level = Level::Warn.as_u8();
    q.sender = Some(sid(1));
    let p = query(&mut l, 0, READER, &q).unwrap();
    let got: Vec<_> = p
        .records
        .iter()
        .map(|r| (r.ts_ns, r.level, r.sender))
        .collect();
    assert_eq!(
        got,
        vec![
            (60, Level::Warn, sid(1)),
            (100, Level::Warn, sid(1)),
            (140, Level::Warn, sid(1))
        ]
    );
}

#[test]
fn query_policy_denies_reading_other_senders() {
    let mut l = logd(unlimited(Config::default()));
    let (a, b) = (sid(1), sid(2));
    append(&mut l, 0, a, "from a").unwrap();
    append(&mut l, 0, b, "from b").unwrap();
    let mut q = QueryRequest::all(10);
    q.sender = Some(b);
    assert_eq!(query(&mut l, 0, a, &q), Err(Status::Denied));
    // Without a filter a non-reader reads only its own records.
    let own = query(&mut l, 0, a, &QueryRequest::all(10)).unwrap();
    assert_eq!(own.records.len(), 1);
    assert_eq!(own.records[0].sender, a);
    // A reader reads everyone, and can filter by sender.
    assert_eq!(
        query(&mut l, 0, READER, &QueryRequest::all(10))
            .unwrap()
            .records
            .len(),
        2
    );
    assert_eq!(
        query(&mut l, 0, READER, &q).unwrap().records[0].message,
        "from b"
    );
    // A non-reader's STATS shows only itself.
    let s = stats(&mut l, 0, a);
    assert_eq!(s.senders.len(), 1);
    assert_eq!(s.senders[0].sender, a);
    assert_eq!(stats(&mut l, 0, a).rejects.denied, 1);
}

#[test]
fn scan_bound_keeps_pages_cheap_and_progressing() {
    let mut cfg = unlimited(Config::default());
    cfg.query.max_scan = 10;
    let mut l = logd(cfg);
    for _ in 0..50 {
        append(&mut l, 0, sid(1), "other").unwrap();
    }
    append_with(&mut l, 0, sid(2), Level::Error, "mine", &Default::default()).unwrap();
    let read_all = |l: &mut logd::Logd, who, q: &mut QueryRequest| {
        let (mut pages, mut got) = (0, Vec::new());
        loop {
            let p = query(l, 0, who, q).unwrap();
            got.extend(p.records);
            q.cursor = p.next;
            pages += 1;
            if !p.more {
                return (pages, got);
            }
        }
    };
    // A level filter is not indexed: the scan bound splits the 51 records
    // examined into pages of 10.
    let mut q = QueryRequest::all(100);
    q.min_level = Level::Error.as_u8();
    let (pages, got) = read_all(&mut l, READER, &mut q);
    assert_eq!(pages, 6);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message, "mine");
    // A sender filter visits only that sender's records: one page.
    let (pages, got) = read_all(&mut l, sid(2), &mut QueryRequest::all(100));
    assert_eq!(pages, 1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message, "mine");
}
