//! One JSON log line, nexus-log against `tracing-subscriber`'s JSON
//! formatter, in one run: `cargo bench -p nexus-log --bench json`.
//!
//! The event is the same on both sides: level `info`, target `bench.http`,
//! message `request served`, fields `path = "/api/v1/items"` (a string) and
//! `status = 200` (an integer), a wall-clock timestamp, one line into an
//! in-memory buffer.
//!
//! * `json/nexus_format`: nexus-log's JSON-lines formatter
//!   ([`write_event_json`]) for a built event, into a reused `String`.
//! * `json/nexus_event_to_json`: the same, allocating the line.
//! * `json/nexus_info_macro`: `info!` end to end — fields built, message
//!   formatted, clock read, line written — the counterpart of tracing's
//!   `info!`.
//! * `json/tracing_subscriber_info`: `tracing::info!` through a
//!   `tracing_subscriber::fmt().json()` subscriber writing into memory.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_debug_implementations
)]

use std::cell::RefCell;
use std::hint::black_box;
use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nexus_log::json::{event_to_json, write_event_json};
use nexus_log::{info, Event, FieldsBuilder, Level, Log};

thread_local! {
    static SINK: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1 << 20));
}

/// Appends every line to a thread-local buffer (cleared when it is full).
struct MemWriter;

impl io::Write for MemWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        SINK.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() + buf.len() > s.capacity() {
                s.clear();
            }
            s.extend_from_slice(buf);
        });
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A logger that writes each event as a JSON line into a reused buffer.
struct JsonLines {
    line: String,
    out: Vec<u8>,
}

impl Log for JsonLines {
    fn log(&mut self, e: Event) {
        let Ok(fields) = e.fields else { return };
        self.line.clear();
        write_event_json(
            &mut self.line,
            now_ns(),
            e.level,
            &e.target,
            &e.message,
            &fields,
        );
        self.line.push('\n');
        if self.out.len() + self.line.len() > self.out.capacity() {
            self.out.clear();
        }
        self.out.extend_from_slice(self.line.as_bytes());
    }
}

fn bench(c: &mut Criterion) {
    let mut b = FieldsBuilder::new();
    b.insert("path", "/api/v1/items").unwrap();
    b.insert_typed("status", nexus_log::fields::FieldType::Int, "200")
        .unwrap();
    let fields = b.build().unwrap();
    let ts = 1_768_473_000_123_456_789u64;
    let line = event_to_json(ts, Level::Info, "bench.http", "request served", &fields);
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["status"], serde_json::json!(200));
    assert_eq!(v["path"], serde_json::json!("/api/v1/items"));

    let mut g = c.benchmark_group("json");
    g.throughput(Throughput::Elements(1));
    let mut out = String::with_capacity(256);
    g.bench_function("nexus_format", |bch| {
        bch.iter(|| {
            out.clear();
            write_event_json(
                &mut out,
                black_box(ts),
                Level::Info,
                black_box("bench.http"),
                black_box("request served"),
                black_box(&fields),
            );
            black_box(out.len())
        })
    });
    g.bench_function("nexus_event_to_json", |bch| {
        bch.iter(|| {
            event_to_json(
                black_box(ts),
                Level::Info,
                black_box("bench.http"),
                black_box("request served"),
                black_box(&fields),
            )
        })
    });
    let mut log = JsonLines {
        line: String::with_capacity(256),
        out: Vec::with_capacity(1 << 20),
    };
    g.bench_function("nexus_info_macro", |bch| {
        bch.iter(|| {
            info!(log, target: "bench.http", "request served"; path = "/api/v1/items", status = black_box(200));
        })
    });
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::INFO)
        .with_writer(|| MemWriter)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        g.bench_function("tracing_subscriber_info", |bch| {
            bch.iter(|| {
                tracing::info!(target: "bench.http", path = "/api/v1/items", status = black_box(200), "request served");
            })
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
