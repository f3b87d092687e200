//! The byte bound is the memory: with a counting global allocator, logd's
//! heap stays within the documented bound (`docs/observability/logd.md`,
//! *Memory*):
//!
//! heap ≤ 1.14 × journal.max_bytes + 10 B × journal.max_records
//!        + 512 B × senders + 16 KiB
//!
//! One test per binary: the counter is process-wide, and tests in one
//! binary run on parallel threads (`memory_small.rs` holds the other).
#![allow(
    unsafe_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::atomic::Ordering;

use logd::{Config, Logd};
use nexus_ipc::ServiceId;
use nexus_log::proto::{self, AppendRequest};

mod alloc_count;

use alloc_count::LIVE;

#[global_allocator]
static GLOBAL: alloc_count::Counting = alloc_count::Counting;

/// A small deterministic generator (xorshift), for record sizes.
fn next(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

#[test]
fn heap_stays_within_the_documented_factor_of_the_byte_bound() {
    const SENDERS: u64 = 100;
    let max_bytes: u32 = 2 << 20;
    let max_records: u32 = 100_000;
    // Frames are built first: they are not logd's memory.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let messages: Vec<String> = (0..64)
        .map(|_| "x".repeat(20 + (next(&mut seed) % 300) as usize))
        .collect();
    let frames: Vec<Vec<u8>> = messages
        .iter()
        .map(|m| {
            proto::encode_append(
                1,
                true,
                &AppendRequest {
                    level: 2,
                    target: "mem",
                    message: m,
                    fields: "k=v\n",
                },
            )
            .unwrap()
        })
        .collect();

    let before = LIVE.load(Ordering::Relaxed);
    let mut cfg = Config::default();
    cfg.rate.events_per_sec = u32::MAX / 2;
    cfg.rate.events_burst = u32::MAX / 2;
    cfg.rate.bytes_per_sec = u32::MAX / 2;
    cfg.rate.bytes_burst = u32::MAX / 2;
    cfg.journal.max_records = max_records;
    cfg.journal.max_bytes = max_bytes;
    cfg.rate.max_senders = 128;
    let mut l = Logd::new(cfg, 64 * 1024, []).unwrap();
    let bound = |senders: u64| {
        (1.14 * f64::from(max_bytes)) as usize
            + 10 * max_records as usize
            + 512 * senders as usize
            + 16 * 1024
    };
    let mut worst = 0f64;
    // Fill the byte bound four times over: every append past the first
    // turn evicts, fairly, from 100 senders with mixed record sizes.
    for i in 0..60_000u64 {
        let f = &frames[(next(&mut seed) % 64) as usize];
        let h = l.handle(i, ServiceId::new(1 + (i % SENDERS) as u32), f);
        assert_eq!(h.status, Some(nexus_log::proto::Status::Ok));
        if i % 1000 == 999 {
            let heap = LIVE.load(Ordering::Relaxed) - before;
            let j = l.journal();
            assert!(j.bytes() <= u64::from(max_bytes));
            assert!(heap <= bound(SENDERS), "heap {heap} at {i}: over the bound");
            if j.bytes() > u64::from(max_bytes) * 9 / 10 {
                worst = worst.max(heap as f64 / j.bytes() as f64);
            }
        }
    }
    assert!(l.journal().evicted_total() > 40_000);
    // Records here average ~200 wire bytes: the heap is at most 1.3x the
    // bytes the journal counts.
    assert!(
        worst > 1.0 && worst <= 1.3,
        "heap / counted bytes = {worst}"
    );
    eprintln!("heap / counted bytes, worst when full: {worst:.3}");
}
