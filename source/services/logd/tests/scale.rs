//! Queries that must not grow with the journal, checked by what they
//! return (no timing): a sender-filtered page is full, and a `since` query
//! starts at the first matching record, also across a clock that went back
//! (restored records of an earlier boot).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::*;

use logd::{Config, Logd};
use nexus_ipc::ServiceId;
use nexus_log::proto::QueryRequest;
use nexus_log::{Fields, Level, Record};

const SENDERS: u32 = 100;

/// `n` records from 100 senders taking turns, the i-th at `ts0 + i * 1000`.
fn journal(n: u32) -> Logd {
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
        let rec = Record {
            id: i,
            ts_ns: i * 1_000_000,
            sender: ServiceId::new(1 + (i % 3) as u32),
            level: Level::Info,
            target: "boot1".into(),
            message: "old".into(),
            fields: Fields::empty(),
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
