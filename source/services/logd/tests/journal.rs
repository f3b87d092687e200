//! Bounds, fairness, sender churn, paging and the query policy, and
//! queries whose cost does not grow with the journal.
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

// Queries that must not grow with the journal, checked by what they
// return (no timing).

const SENDERS: u32 = 100;

/// `n` records from 100 senders taking turns, the i-th at `ts0 + i * 1000`.
fn journal(n: u32) -> logd::Logd {
    let mut cfg = unlimited(Config::default());
    cfg.journal.max_records = n;
    cfg.journal.max_bytes = n * 64;
    cfg.rate.max_senders = 128;
    let mut l = logd(cfg);
    for i in 0..n {
        append(&mut l, u64::from(i) * 1000, sid(1 + i % SENDERS), "m").unwrap();
    }
    l
}

#[test]
fn a_sender_filtered_page_is_full_among_100_senders() {
    // 30k records: every sender holds 300, interleaved with 99 others.
    let mut l = journal(30_000);
    let who = sid(42);
    let mut q = QueryRequest::all(256);
    q.sender = Some(who);
    let p = query(&mut l, 0, READER, &q).unwrap();
    assert_eq!(p.records.len(), 256, "a full page, not 82 of 256");
    assert!(p.more);
    assert!(p.records.iter().all(|r| r.sender == who));
    assert!(p.records.windows(2).all(|w| w[0].id < w[1].id));
    q.cursor = p.next;
    let p2 = query(&mut l, 0, READER, &q).unwrap();
    assert_eq!(p2.records.len(), 44);
    assert!(!p2.more);
    assert_eq!(p2.gap, 0);
    // The sender reading its own records (no filter given) gets the same.
    let p3 = query(&mut l, 0, who, &QueryRequest::all(256)).unwrap();
    assert_eq!(p3.records, p.records);
}

#[test]
fn a_since_query_starts_at_the_first_matching_record() {
    let n = 20_000u32;
    let mut l = journal(n);
    for back in [1u64, 10, 100, 5_000] {
        let mut q = QueryRequest::all(256);
        q.since_ns = (u64::from(n) - back) * 1000;
        let p = query(&mut l, 0, READER, &q).unwrap();
        // Record i (1-based id i + 1) has ts i * 1000.
        let first = u64::from(n) - back + 1;
        assert_eq!(p.records[0].id, first, "since {back} records from the end");
        assert_eq!(p.records.len() as u64, back.min(256));
        assert_eq!(p.more, back > 256);
    }
    // A window in the middle, with a sender filter: still no empty page.
    let mut q = QueryRequest::all(10);
    q.since_ns = 12_345_000;
    q.until_ns = 12_999_000;
    q.sender = Some(sid(7));
    let p = query(&mut l, 0, READER, &q).unwrap();
    let ids: Vec<u64> = p.records.iter().map(|r| r.id).collect();
    assert_eq!(ids, [12_407, 12_507, 12_607, 12_707, 12_807, 12_907]);
    assert!(!p.more);
}

#[test]
fn a_since_query_is_exact_across_a_clock_that_went_back() {
    // Records restored from an earlier boot (clock up to ~10 s), then this
    // boot's records, whose clock starts again at 0.
    let mut cfg = unlimited(Config::default());
    cfg.journal.max_records = 20_000;
    cfg.journal.max_bytes = 20_000 * 64;
    let mut l = logd(cfg);
    for i in 1..=10_000u64 {
        let rec = nexus_log::Record {
            id: i,
            ts_ns: i * 1_000_000,
            sender: sid(1 + (i % 3) as u32),
            level: Level::Info,
            target: "boot1".into(),
            message: "old".into(),
            fields: nexus_log::Fields::empty(),
        };
        l.restore(rec).unwrap();
    }
    for i in 0..10_000u64 {
        append(&mut l, i * 1000, sid(1), "new").unwrap();
    }
    // since = 9.9 s: the last 101 restored records, then nothing of this
    // boot (its clock reached only 10 ms).
    let mut q = QueryRequest::all(256);
    q.since_ns = 9_900_000_000;
    let p = query(&mut l, 0, READER, &q).unwrap();
    assert_eq!(p.records.first().map(|r| r.id), Some(9_900));
    assert_eq!(p.records.len(), 101);
    assert!(!p.more);
    // since = 5 ms: restored records from id 5, and this boot's from
    // 5 ms on; paging returns exactly those.
    let mut q = QueryRequest::all(256);
    q.since_ns = 5_000_000;
    let mut ids = Vec::new();
    loop {
        let p = query(&mut l, 0, READER, &q).unwrap();
        ids.extend(p.records.iter().map(|r| r.id));
        q.cursor = p.next;
        if !p.more {
            break;
        }
    }
    let want: Vec<u64> = (5..=10_000).chain(10_001 + 5_000..=20_000).collect();
    assert_eq!(ids, want);
}
