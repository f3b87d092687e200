//! How logd scales with the journal: `make bench-scale`
//! (`cargo bench -p logd --bench scale`).
//!
//! For journals of 1k, 10k, 100k and 1M records (100 senders taking turns,
//! 135 wire bytes per record, the record bound the binding one), prints a
//! markdown table of:
//! * append: ns per APPEND frame into the full journal (each evicts one);
//! * cursor page: one 256-record page from the middle, unfiltered;
//! * sender page: the first page of a sender holding 1% of the journal,
//!   and reading all of that sender's records (pages, ms);
//! * since page: the first page of a query whose `since_ns` is at 99% of
//!   the journal, and the empty pages a reader gets before the first record;
//! * heap: bytes on the heap per record (a counting global allocator, after
//!   the steady-state appends), against the record's counted (wire) bytes.
#![allow(
    unsafe_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::time::Instant;

use logd::{Config, Logd};
use nexus_ipc::ServiceId;
use nexus_log::proto::{self, AppendRequest, QueryPage, QueryRequest, Reply};

/// The counting allocator of the memory tests.
#[path = "../tests/alloc_count/mod.rs"]
mod alloc_count;

use alloc_count::LIVE;

#[global_allocator]
static GLOBAL: alloc_count::Counting = alloc_count::Counting;

const SENDERS: u32 = 100;
const READER: ServiceId = ServiceId::new(1000);
const STEP_NS: u64 = 1000;
const RECORD_WIRE: usize = 135;

fn frame() -> Vec<u8> {
    let f = proto::encode_append(
        1,
        true,
        &AppendRequest {
            level: 2,
            target: "bench.http",
            message: "request served in 12.5 ms",
            fields:
                "method=GET\npath=/api/v1/items\nstatus=200\nuser=alice.liddell@example.co.uk\n",
        },
    )
    .unwrap();
    // Frame = 12-byte header, level, three prefixes (5 bytes), strings;
    // the record drops the header and adds id, ts, sender (20 bytes).
    assert_eq!(f.len() + 8, RECORD_WIRE);
    f
}

fn logd_for(n: usize) -> Logd {
    let mut cfg = Config::default();
    cfg.journal.max_records = n as u32;
    // Room for every record: the record bound is the one hit.
    cfg.journal.max_bytes = (n * (RECORD_WIRE + 16)) as u32;
    cfg.rate.events_per_sec = u32::MAX / 2;
    cfg.rate.events_burst = u32::MAX / 2;
    cfg.rate.bytes_per_sec = u32::MAX / 2;
    cfg.rate.bytes_burst = u32::MAX / 2;
    cfg.rate.max_senders = 256;
    Logd::new(cfg, 64 * 1024, [READER]).unwrap()
}

fn query(l: &mut Logd, q: &QueryRequest) -> QueryPage {
    decode(&serve(l, q))
}

/// What the timed loops measure: logd handling a QUERY frame (decode,
/// page, encode the reply), not the client decoding the reply.
fn serve(l: &mut Logd, q: &QueryRequest) -> Vec<u8> {
    l.handle(0, READER, &proto::encode_query(7, q))
        .reply
        .unwrap()
}

fn decode(frame: &[u8]) -> QueryPage {
    match proto::decode_reply(frame).unwrap().1 {
        Reply::Page(p) => p,
        other => panic!("{other:?}"),
    }
}

/// Median time of `reps` runs of `f`, in microseconds.
fn time_us(reps: usize, mut f: impl FnMut()) -> f64 {
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Row {
    n: usize,
    append_ns: f64,
    cursor_us: f64,
    cursor_recs: usize,
    sender_us: f64,
    sender_recs: usize,
    sender_all_pages: usize,
    sender_all_ms: f64,
    since_us: f64,
    since_recs: usize,
    since_empty: usize,
    heap_per_rec: f64,
    counted_per_rec: f64,
}

fn run(n: usize) -> Row {
    let frame = frame();
    let before = LIVE.load(Ordering::Relaxed);
    let mut l = logd_for(n);
    let mut t = 0u64;
    let mut i = 0u32;
    let append = |l: &mut Logd, t: &mut u64, i: &mut u32| {
        *t += STEP_NS;
        *i = i.wrapping_add(1);
        l.handle(*t, ServiceId::new(1 + *i % SENDERS), &frame);
    };
    for _ in 0..n {
        append(&mut l, &mut t, &mut i);
    }
    // Steady state: every append evicts one record. Enough appends to
    // include the journal's periodic housekeeping.
    let steady = (n / 4).max(20_000);
    let start = Instant::now();
    for _ in 0..steady {
        append(&mut l, &mut t, &mut i);
    }
    let append_ns = start.elapsed().as_secs_f64() * 1e9 / steady as f64;
    assert_eq!(l.journal().len(), n);
    let heap = LIVE.load(Ordering::Relaxed).saturating_sub(before);
    let counted = l.journal().bytes();

    let reps = 15;
    let first = l.journal().first_id().unwrap();
    let mut q = QueryRequest::all(256);
    q.cursor = first + n as u64 / 2;
    let cursor_us = time_us(reps, || {
        black_box(serve(&mut l, &q));
    });
    let cursor_recs = query(&mut l, &q).records.len();

    let mut q = QueryRequest::all(256);
    q.sender = Some(ServiceId::new(42));
    let sender_us = time_us(reps, || {
        black_box(serve(&mut l, &q));
    });
    let sender_recs = query(&mut l, &q).records.len();
    let (mut sender_all_pages, mut total) = (0, 0);
    let mut sender_all_ms = 0.0;
    loop {
        let s = Instant::now();
        let frame = serve(&mut l, &q);
        sender_all_ms += s.elapsed().as_secs_f64() * 1e3;
        let p = decode(&frame);
        sender_all_pages += 1;
        total += p.records.len();
        q.cursor = p.next;
        if !p.more {
            break;
        }
    }
    assert_eq!(total, n / SENDERS as usize);

    let mut q = QueryRequest::all(256);
    q.since_ns = t - (n as u64 / 100) * STEP_NS;
    let since_us = time_us(reps, || {
        black_box(serve(&mut l, &q));
    });
    let since_recs = query(&mut l, &q).records.len();
    let mut since_empty = 0;
    loop {
        let p = query(&mut l, &q);
        if !p.records.is_empty() || !p.more {
            break;
        }
        since_empty += 1;
        q.cursor = p.next;
    }
    Row {
        n,
        append_ns,
        cursor_us,
        cursor_recs,
        sender_us,
        sender_recs,
        sender_all_pages,
        sender_all_ms,
        since_us,
        since_recs,
        since_empty,
        heap_per_rec: heap as f64 / n as f64,
        counted_per_rec: counted as f64 / n as f64,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a name filter is not supported.
    let sizes = [1_000usize, 10_000, 100_000, 1_000_000];
    let rows: Vec<Row> = sizes.iter().map(|&n| run(n)).collect();
    println!("| records | append ns/op | cursor page µs (records) | sender page µs (records) | sender read-all pages / ms | since page µs (records) | empty pages before since | heap B/record | counted B/record | heap / counted |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {:.0} | {:.1} ({}) | {:.1} ({}) | {} / {:.2} | {:.1} ({}) | {} | {:.0} | {:.0} | {:.2} |",
            r.n,
            r.append_ns,
            r.cursor_us,
            r.cursor_recs,
            r.sender_us,
            r.sender_recs,
            r.sender_all_pages,
            r.sender_all_ms,
            r.since_us,
            r.since_recs,
            r.since_empty,
            r.heap_per_rec,
            r.counted_per_rec,
            r.heap_per_rec / r.counted_per_rec,
        );
    }
}
