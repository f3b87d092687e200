//! logd throughput on the host: `cargo bench -p logd`.
//!
//! * `append/steady_state`: APPEND frames (decode, rate check, validation,
//!   insert with fair eviction) into a full journal, from 8 senders.
//! * `query/page_256`: one 256-record page from a full 4096-record journal.
//! * `json/record`: one record rendered as a JSON line.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use logd::{Config, Logd};
use nexus_ipc::ServiceId;
use nexus_log::proto::{self, AppendRequest, QueryRequest};

fn full_logd() -> Logd {
    let mut cfg = Config::default();
    cfg.rate.events_per_sec = u32::MAX / 2;
    cfg.rate.events_burst = u32::MAX / 2;
    cfg.rate.bytes_per_sec = u32::MAX / 2;
    cfg.rate.bytes_burst = u32::MAX / 2;
    let mut l = Logd::new(cfg, 64 * 1024, [ServiceId::new(1000)]).expect("config");
    let frame = append_frame(1);
    for i in 0..5000u32 {
        l.handle(u64::from(i), ServiceId::new(1 + i % 8), &frame);
    }
    l
}

fn append_frame(nonce: u64) -> Vec<u8> {
    proto::encode_append(
        nonce,
        true,
        &AppendRequest {
            level: 2,
            target: "bench.http",
            message: "request served in 12 ms",
            fields: "method=GET\npath=/api/v1/items\nstatus=200\n",
        },
    )
    .expect("encode")
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(1));
    let mut l = full_logd();
    let frame = append_frame(2);
    let mut i = 0u64;
    g.bench_function("steady_state", |b| {
        b.iter(|| {
            i += 1;
            l.handle(i, ServiceId::new(1 + (i % 8) as u32), &frame)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("query");
    g.throughput(Throughput::Elements(1));
    let mut l = full_logd();
    let q = proto::encode_query(3, &QueryRequest::all(256));
    g.bench_function("page_256", |b| {
        b.iter(|| l.handle(0, ServiceId::new(1000), &q))
    });
    g.finish();

    let mut g = c.benchmark_group("json");
    g.throughput(Throughput::Elements(1));
    let l = full_logd();
    let rec = l.journal().range_from(0).next().expect("a record");
    g.bench_function("record", |b| {
        b.iter(|| nexus_log::json::record_to_json(&rec))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
