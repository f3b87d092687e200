//! metricsd at scale: 1k, 10k and 100k counter series, against the
//! `prometheus` crate rendering the same series in the same run.
//!
//! `cargo bench -p metricsd --bench scale`
//!
//! The series: 100 counter families (`scale_metric_NN_total`), each series
//! with labels `path="/api/v1/resource/<i>"` and `code="200"`, spread over
//! 16 owners (metricsd adds `owner`; the prometheus side has the same three
//! labels). Groups, per size:
//!
//! * `update/<n>`: `Metricsd::handle` of one BATCH of 64 INC entries
//!   (decode, budget, apply, rollup sample); throughput per entry.
//! * `render/<n>`: the whole exposition in one string (`exposition`).
//! * `scrape_all/<n>`: every SCRAPE page (60 KiB) from cursor 0 to the end.
//! * `scrape_page/<n>`: one page, starting mid-registry (cost must not
//!   grow with `n`).
//! * `prometheus_render/<n>`: `gather` + `TextEncoder::encode` of the same
//!   series.
//!
//! Before the timings, a counting allocator reports heap bytes per series
//! (registry, after registering) and per rollup window (after one update per
//! series opens its 10 s window), printed as `heap:` lines.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
// The counting allocator (a `GlobalAlloc` wrapper over `System`) needs it.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use metricsd::server::MAX_SCRAPE_BYTES;
use metricsd::{Config, Metricsd};
use nexus_ipc::ServiceId;
use nexus_metrics::proto::{self, Entry, Register, Reply};
use prometheus::{Encoder, IntCounterVec, Opts, TextEncoder};

/// Live heap bytes.
#[derive(Debug)]
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SIZES: [usize; 3] = [1_000, 10_000, 100_000];
const FAMILIES: usize = 100;
const OWNERS: u32 = 16;

fn cfg(n: usize) -> Config {
    let mut c = Config::default();
    let n = u32::try_from(n).unwrap();
    c.cardinality.max_series_per_metric = n;
    c.cardinality.max_series_per_sender = n;
    c.cardinality.max_series_global = n;
    c.rate.events_per_sec = u32::MAX / 2;
    c.rate.events_burst = u32::MAX / 2;
    c.rate.bytes_per_sec = u32::MAX / 2;
    c.rate.bytes_burst = u32::MAX / 2;
    c.retention.max_open_windows = n * 4;
    c
}

fn family(i: usize) -> String {
    format!("scale_metric_{:02}_total", i % FAMILIES)
}

fn path(i: usize) -> String {
    format!("/api/v1/resource/{i}")
}

fn owner(i: usize) -> ServiceId {
    ServiceId::new(1 + (i as u32 % OWNERS))
}

/// A metricsd holding `n` series; their ids.
fn metricsd(n: usize) -> (Metricsd, Vec<(ServiceId, u32)>) {
    let mut m = Metricsd::new(cfg(n)).unwrap();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let (name, p) = (family(i), path(i));
        let frame = proto::encode_register(
            i as u64,
            &Register {
                kind: 0,
                name: &name,
                labels: vec![("path", &p), ("code", "200")],
                bounds: vec![],
                help: "",
            },
        )
        .unwrap();
        let h = m.handle(0, owner(i), &frame);
        let Reply::Registered(id) = proto::decode_reply(&h.reply.unwrap()).unwrap().1 else {
            panic!("register {i}");
        };
        ids.push((owner(i), id));
    }
    (m, ids)
}

fn prometheus_registry(n: usize) -> prometheus::Registry {
    let reg = prometheus::Registry::new();
    let vecs: Vec<IntCounterVec> = (0..FAMILIES)
        .map(|f| {
            let v = IntCounterVec::new(Opts::new(family(f), family(f)), &["owner", "path", "code"])
                .unwrap();
            reg.register(Box::new(v.clone())).unwrap();
            v
        })
        .collect();
    for i in 0..n {
        let o = owner(i).get().to_string();
        vecs[i % FAMILIES]
            .with_label_values(&[o.as_str(), path(i).as_str(), "200"])
            .inc_by(i as u64);
    }
    reg
}

fn heap_report(n: usize) {
    let before = LIVE.load(Ordering::Relaxed);
    let (mut m, ids) = metricsd(n);
    let _ = m.drain_persisted();
    let registered = LIVE.load(Ordering::Relaxed);
    for (o, id) in &ids {
        let frame = proto::encode_batch(
            1,
            true,
            &[Entry::Inc {
                series: *id,
                delta: 1,
            }],
        )
        .unwrap();
        m.handle(1, *o, &frame);
    }
    let _ = m.drain_persisted();
    let windows = LIVE.load(Ordering::Relaxed);
    println!(
        "heap: {n} series: {:.0} B/series (registry), {:.0} B per open rollup window (10 s + its 60 s accumulator)",
        (registered - before) as f64 / n as f64,
        (windows - registered) as f64 / n as f64,
    );
    drop(m);
}

fn scale(c: &mut Criterion) {
    for &n in &SIZES {
        heap_report(n);
    }
    let mut g = c.benchmark_group("scale");
    g.sample_size(10);
    g.warm_up_time(std::time::Duration::from_millis(500));
    g.measurement_time(std::time::Duration::from_secs(2));
    for &n in &SIZES {
        let (mut m, ids) = metricsd(n);
        let _ = m.drain_persisted();

        // update: 64 INC entries of one owner per BATCH.
        let me = ids[0].0;
        let mine: Vec<u32> = ids
            .iter()
            .filter(|(o, _)| *o == me)
            .map(|(_, id)| *id)
            .take(64)
            .collect();
        let entries: Vec<Entry<'_>> = mine
            .iter()
            .map(|id| Entry::Inc {
                series: *id,
                delta: 1,
            })
            .collect();
        let frame = proto::encode_batch(2, true, &entries).unwrap();
        let mut now = 0u64;
        g.throughput(Throughput::Elements(entries.len() as u64));
        g.bench_with_input(BenchmarkId::new("update", n), &n, |b, _| {
            b.iter(|| {
                now += 1_000;
                black_box(m.handle(now, me, &frame));
                m.drain_persisted();
            })
        });

        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("render", n), &n, |b, _| {
            b.iter(|| black_box(m.exposition()))
        });

        let mut pages = 0u32;
        let mut mid = 0u32;
        g.bench_with_input(BenchmarkId::new("scrape_all", n), &n, |b, _| {
            b.iter(|| {
                let mut cursor = 0;
                let mut count = 0;
                loop {
                    let p = m.scrape(cursor, MAX_SCRAPE_BYTES as u32);
                    count += 1;
                    if count == 1 + pages / 2 {
                        mid = cursor;
                    }
                    if !p.more {
                        break;
                    }
                    cursor = p.next;
                    black_box(p.text);
                }
                pages = count;
            })
        });
        println!("scrape_all/{n}: {pages} pages");

        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::new("scrape_page", n), &n, |b, _| {
            b.iter(|| black_box(m.scrape(mid, MAX_SCRAPE_BYTES as u32)))
        });
        drop(m);

        let reg = prometheus_registry(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("prometheus_render", n), &n, |b, _| {
            b.iter(|| {
                let mut out = Vec::new();
                TextEncoder::new().encode(&reg.gather(), &mut out).unwrap();
                black_box(out)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, scale);
criterion_main!(benches);
