//! The small-journal memory case, alone in its binary so nothing else
//! allocates while it measures (see `memory.rs` for the bound).
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

/// The small-journal case of `make bench-scale`: 1k records of 135 wire
/// bytes from 100 senders taking turns (10 records each), the record bound
/// the binding one. Per-sender state is spread over only 10 records here,
/// yet the heap stays within 1.3x the counted bytes.
#[test]
fn heap_per_record_at_1k_records_from_100_senders() {
    const SENDERS: u32 = 100;
    const N: usize = 1000;
    let frame = proto::encode_append(
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
    assert_eq!(frame.len() + 8, 135);
    let before = LIVE.load(Ordering::Relaxed);
    let mut cfg = Config::default();
    cfg.journal.max_records = N as u32;
    cfg.journal.max_bytes = (N * (135 + 16)) as u32;
    cfg.rate.events_per_sec = u32::MAX / 2;
    cfg.rate.events_burst = u32::MAX / 2;
    cfg.rate.bytes_per_sec = u32::MAX / 2;
    cfg.rate.bytes_burst = u32::MAX / 2;
    cfg.rate.max_senders = 256;
    // The reader is given by id below: the default reader names (a config
    // constant, not journal memory) are left out of the measurement.
    cfg.query.readers.clear();
    let mut l = Logd::new(cfg, 64 * 1024, [ServiceId::new(1000)]).unwrap();
    let mut worst = 0f64;
    for i in 1..=(N as u32 + 20_000) {
        let h = l.handle(u64::from(i) * 1000, ServiceId::new(1 + i % SENDERS), &frame);
        assert_eq!(h.status, Some(nexus_log::proto::Status::Ok));
        if i as usize >= N && i % 100 == 0 {
            let j = l.journal();
            assert_eq!(j.len(), N);
            let heap = LIVE.load(Ordering::Relaxed) - before;
            worst = worst.max(heap as f64 / j.bytes() as f64);
        }
    }
    eprintln!("1k records, 100 senders: heap / counted bytes, worst {worst:.3}");
    assert!(worst <= 1.3, "heap / counted bytes = {worst}");
}
