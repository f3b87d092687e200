//! Log records per second from logd on node A to the collector on node B,
//! through two host busd on loopback (obs.logs: chunks of JSON lines,
//! credit, resume bookkeeping, sampling, storage).
//!
//! `cargo bench -p obsscraped --features testkit --bench remote -- --warm-up-time 1 --measurement-time 5`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nexus_log::{Fields, Level, LogdClient};
use obsscraped::testkit::{stats, wait_for, world_with};

const BATCH: u64 = 1000;

fn records(c: &mut Criterion) {
    let mut g = c.benchmark_group("obs_logs");
    g.throughput(Throughput::Elements(BATCH));
    g.sample_size(10);
    // logd's per-sender rate limit would be what is measured: lift it.
    let mut cfg = logd::Config::default();
    cfg.rate.events_per_sec = 1_000_000;
    cfg.rate.events_burst = 1_000_000;
    cfg.rate.bytes_per_sec = 500_000_000;
    cfg.rate.bytes_burst = 500_000_000;
    let w = world_with(cfg, 1_000_000, 10_000_000);
    let mut app = LogdClient::new(
        w.a.bus.endpoint("app").unwrap(),
        w.logd_a,
        busd::testkit::TIMEOUT,
    );
    let mut q = w.b.bus.endpoint("query").unwrap();
    let f = Fields::parse("k=v\nn:i=7\n").unwrap();
    let mut appended = 0u64;
    g.bench_function("collect_1000_records", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                app.append(Level::Info, "bench", "a remote record", &f)
                    .unwrap();
            }
            appended += BATCH;
            wait_for("the batch on B", || {
                stats(&mut q, w.collector).records_received >= appended
            });
        })
    });
    g.finish();
}

criterion_group!(benches, records);
criterion_main!(benches);
