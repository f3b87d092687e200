//! nexus-metrics/metricsd against the crates users would pick instead:
//! `prometheus` (tikv) and `metrics` with `metrics-exporter-prometheus`'s
//! recorder (installed locally with `metrics::with_local_recorder`).
//!
//! `cargo bench -p metricsd --bench metrics`
//!
//! Every group does the same work on each side:
//!
//! * `counter_inc/*`: `inc` on a resolved, unlabelled counter handle.
//! * `labelled_inc/*_cached`: `inc` on a resolved handle with 2 labels;
//!   `labelled_inc/*_lookup`: resolve the handle by name and labels, then
//!   `inc` (nexus: the client's local cache; prometheus:
//!   `with_label_values`; metrics: `counter!` with literal labels).
//! * `histogram_observe/*`: one observation into 11 fixed buckets. The
//!   `metrics` exporter only appends the sample and buckets it when it
//!   drains (render or upkeep): `metrics_record` times the append alone,
//!   `metrics_record_drained` includes the drain, amortised.
//! * `exposition_1000/*`: the Prometheus text of 1,000 counter series
//!   (10 families x 100 series, labels `owner`, `route`, `method` on every
//!   side; metricsd adds `owner` itself and its own 8 families).
//!   prometheus: `gather` + `TextEncoder`; metrics: `PrometheusHandle::render`.
//! * `nexus_flush/flush_100`: `Metrics::flush` of 100 changed counters into
//!   one one-way BATCH frame, sent on the host bus (nexus only).
//! * `nexus_ingest/batch_100`: `Metricsd::handle` of that frame (decode,
//!   budget, 100 updates with their rollup samples); throughput per entry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use metricsd::{Config, Metricsd};
use nexus_bounds::ManualClock;
use nexus_ipc::host::{HostBus, HostEndpoint};
use nexus_ipc::router::RouterConfig;
use nexus_ipc::{Endpoint, ServiceId};
use nexus_metrics::proto::{self, Entry, Register};
use nexus_metrics::{Metrics, MetricsConfig};
use prometheus::{Encoder, HistogramOpts, IntCounter, IntCounterVec, Opts, TextEncoder};

type Client = Metrics<HostEndpoint, ManualClock>;

/// Histogram upper bounds, the same on every side.
const BOUNDS: [u64; 11] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000];
/// Observed values, cycled (they land in every bucket, `+Inf` included).
const VALUES: [u64; 16] = [
    1, 7, 12, 30, 60, 99, 180, 320, 480, 760, 1500, 3000, 4999, 7000, 9000, 20_000,
];
/// The two labels of the labelled cases (sorted by key, as nexus sends them).
const LABELS: [(&str, &str); 2] = [("method", "get"), ("route", "/api/items")];
const FAMILIES: usize = 10;
const SERIES_PER_FAMILY: usize = 100;
const FLUSH_HANDLES: usize = 100;

/// metricsd bounds for the benches: budgets out of the way, caps that fit
/// 1,000 series of one sender.
fn bench_config() -> Config {
    let mut cfg = Config::default();
    cfg.rate.events_per_sec = u32::MAX / 2;
    cfg.rate.events_burst = u32::MAX / 2;
    cfg.rate.bytes_per_sec = u32::MAX / 2;
    cfg.rate.bytes_burst = u32::MAX / 2;
    cfg.cardinality.max_series_per_metric = 128;
    cfg.cardinality.max_series_per_sender = 1024;
    cfg.cardinality.max_series_global = 1024;
    cfg
}

/// A metricsd answering on `bus` from a thread until [`Server::stop`],
/// which gives the core and its endpoint back (no thread runs while the
/// benches measure).
struct Server {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(Metricsd, HostEndpoint)>,
}

impl Server {
    fn start(bus: &HostBus) -> Self {
        let mut ep = bus.endpoint("metricsd").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut m = Metricsd::new(bench_config()).unwrap();
            while !s2.load(Ordering::Relaxed) {
                if let Some(f) = ep.recv_timeout(1_000_000) {
                    if let Some(r) = m.handle(0, f.meta.sender, &f.bytes).reply {
                        ep.send(f.meta.sender, &r).unwrap();
                    }
                }
            }
            (m, ep)
        });
        Self { stop, thread }
    }

    fn stop(self) -> (Metricsd, HostEndpoint) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// Two clients of one metricsd (one for the update cases, one holding the
/// 100 flush handles), and the stopped metricsd with its endpoint.
struct Nexus {
    app: Client,
    flusher: Client,
    flush_handles: Vec<nexus_metrics::Counter>,
    server: Metricsd,
    server_ep: HostEndpoint,
}

fn nexus_setup() -> Nexus {
    let bus = HostBus::new(RouterConfig::default());
    let srv = Server::start(&bus);
    let md = bus.lookup("metricsd").unwrap();
    let client = |name: &str| {
        Metrics::new(
            bus.endpoint(name).unwrap(),
            md,
            ManualClock::new(0),
            MetricsConfig::default(),
        )
    };
    let mut app = client("app");
    // Register every series the update cases use while metricsd answers.
    app.counter("requests_total", &[]).unwrap();
    app.counter("http_requests_total", &LABELS).unwrap();
    app.histogram("latency_us", &[], &BOUNDS).unwrap();
    let mut flusher = client("flusher");
    let flush_handles = (0..FLUSH_HANDLES)
        .map(|i| {
            let route = format!("/r/{i}");
            flusher
                .counter("flushed_total", &[("route", route.as_str())])
                .unwrap()
        })
        .collect();
    let (server, server_ep) = srv.stop();
    Nexus {
        app,
        flusher,
        flush_handles,
        server,
        server_ep,
    }
}

/// A `metrics` recorder rendering Prometheus text, histograms in `BOUNDS`.
fn metrics_recorder() -> PrometheusRecorder {
    let bounds: Vec<f64> = BOUNDS.iter().map(|b| *b as f64).collect();
    PrometheusBuilder::new()
        .set_buckets(&bounds)
        .unwrap()
        .build_recorder()
}

fn counter_inc(c: &mut Criterion, nx: &mut Nexus) {
    let mut g = c.benchmark_group("counter_inc");
    g.throughput(Throughput::Elements(1));

    let h = nx.app.counter("requests_total", &[]).unwrap();
    g.bench_function("nexus", |b| b.iter(|| black_box(&h).inc()));

    let p = IntCounter::new("requests_total", "Requests.").unwrap();
    g.bench_function("prometheus", |b| b.iter(|| black_box(&p).inc()));

    let rec = metrics_recorder();
    let m = metrics::with_local_recorder(&rec, || metrics::counter!("requests_total"));
    g.bench_function("metrics", |b| b.iter(|| black_box(&m).increment(1)));
    g.finish();
}

fn labelled_inc(c: &mut Criterion, nx: &mut Nexus) {
    let mut g = c.benchmark_group("labelled_inc");
    g.throughput(Throughput::Elements(1));
    let name = "http_requests_total";

    let h = nx.app.counter(name, &LABELS).unwrap();
    g.bench_function("nexus_cached", |b| b.iter(|| black_box(&h).inc()));
    let app = &mut nx.app;
    g.bench_function("nexus_lookup", |b| {
        b.iter(|| {
            app.counter(black_box(name), black_box(&LABELS))
                .unwrap()
                .inc()
        })
    });

    let vec = IntCounterVec::new(Opts::new(name, "Requests."), &["method", "route"]).unwrap();
    let values = ["get", "/api/items"];
    let p = vec.with_label_values(&values);
    g.bench_function("prometheus_cached", |b| b.iter(|| black_box(&p).inc()));
    g.bench_function("prometheus_lookup", |b| {
        b.iter(|| vec.with_label_values(black_box(&values)).inc())
    });

    let rec = metrics_recorder();
    metrics::with_local_recorder(&rec, || {
        let m =
            metrics::counter!("http_requests_total", "method" => "get", "route" => "/api/items");
        g.bench_function("metrics_cached", |b| b.iter(|| black_box(&m).increment(1)));
        g.bench_function("metrics_lookup", |b| {
            b.iter(|| {
                metrics::counter!("http_requests_total", "method" => "get", "route" => "/api/items")
                    .increment(1)
            })
        });
    });
    g.finish();
}

fn histogram_observe(c: &mut Criterion, nx: &mut Nexus) {
    let mut g = c.benchmark_group("histogram_observe");
    g.throughput(Throughput::Elements(1));
    let floats: Vec<f64> = VALUES.iter().map(|v| *v as f64).collect();

    let h = nx.app.histogram("latency_us", &[], &BOUNDS).unwrap();
    let mut i = 0usize;
    g.bench_function("nexus", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            h.observe(black_box(
                VALUES.get(i % VALUES.len()).copied().unwrap_or(0),
            ));
        })
    });

    let bounds: Vec<f64> = BOUNDS.iter().map(|b| *b as f64).collect();
    let p = prometheus::Histogram::with_opts(
        HistogramOpts::new("latency_us", "Latency.").buckets(bounds.clone()),
    )
    .unwrap();
    g.bench_function("prometheus", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            p.observe(black_box(
                floats.get(i % floats.len()).copied().unwrap_or(0.0),
            ));
        })
    });

    let rec = metrics_recorder();
    let handle = rec.handle();
    let m = metrics::with_local_recorder(&rec, || metrics::histogram!("latency_us"));
    // The exporter keeps raw samples until a drain (render or upkeep):
    // drain after each criterion sample so memory stays flat, outside the
    // timing or inside it (amortised over the sample's iterations).
    for (id, drained) in [("metrics_record", false), ("metrics_record_drained", true)] {
        g.bench_function(id, |b| {
            b.iter_custom(|iters| {
                let t0 = Instant::now();
                for _ in 0..iters {
                    i = i.wrapping_add(1);
                    m.record(black_box(
                        floats.get(i % floats.len()).copied().unwrap_or(0.0),
                    ));
                }
                let recorded = t0.elapsed();
                handle.run_upkeep();
                if drained {
                    t0.elapsed()
                } else {
                    recorded
                }
            })
        });
    }
    g.finish();
}

/// The labels of series `j` of a family: `route` and `method`.
fn route(j: usize) -> String {
    format!("/api/v1/items/{j}")
}
fn method(j: usize) -> &'static str {
    ["get", "post", "put", "delete"]
        .get(j % 4)
        .copied()
        .unwrap_or("get")
}

/// A metricsd with 1,000 counter series of one sender, registered and
/// incremented through frames.
fn metricsd_1000() -> (Metricsd, String) {
    let mut m = Metricsd::new(bench_config()).unwrap();
    let sender = ServiceId::new(1);
    let mut ids = Vec::new();
    for f in 0..FAMILIES {
        let name = format!("family_{f}_total");
        for j in 0..SERIES_PER_FAMILY {
            let r = route(j);
            let frame = proto::encode_register(
                1,
                &Register {
                    kind: 0,
                    name: &name,
                    labels: vec![("method", method(j)), ("route", r.as_str())],
                    bounds: Vec::new(),
                    help: "",
                },
            )
            .unwrap();
            let h = m.handle(0, sender, &frame);
            match proto::decode_reply(&h.reply.unwrap()).unwrap().1 {
                proto::Reply::Registered(id) => ids.push(id),
                other => unreachable!("register refused: {other:?}"),
            }
        }
    }
    let entries: Vec<Entry<'_>> = ids
        .iter()
        .enumerate()
        .map(|(k, id)| Entry::Inc {
            series: *id,
            delta: 1 + k as u64,
        })
        .collect();
    for chunk in entries.chunks(256) {
        let h = m.handle(0, sender, &proto::encode_batch(2, false, chunk).unwrap());
        assert!(h.entry_rejects.is_empty());
    }
    assert_eq!(m.registry().len(), FAMILIES * SERIES_PER_FAMILY);
    let owner = sender.get().to_string();
    (m, owner)
}

fn exposition(c: &mut Criterion) {
    let mut g = c.benchmark_group("exposition_1000");
    g.sample_size(30);
    g.throughput(Throughput::Elements((FAMILIES * SERIES_PER_FAMILY) as u64));

    let (md, owner) = metricsd_1000();
    let text = md.exposition();
    eprintln!("exposition_1000/nexus: {} bytes", text.len());
    g.bench_function("nexus", |b| b.iter(|| md.exposition()));

    let reg = prometheus::Registry::new();
    for f in 0..FAMILIES {
        let name = format!("family_{f}_total");
        let vec =
            IntCounterVec::new(Opts::new(&name, &name), &["owner", "route", "method"]).unwrap();
        for j in 0..SERIES_PER_FAMILY {
            let r = route(j);
            vec.with_label_values(&[owner.as_str(), r.as_str(), method(j)])
                .inc_by((f * SERIES_PER_FAMILY + j + 1) as u64);
        }
        reg.register(Box::new(vec)).unwrap();
    }
    let enc = TextEncoder::new();
    let mut buf = Vec::new();
    enc.encode(&reg.gather(), &mut buf).unwrap();
    eprintln!("exposition_1000/prometheus: {} bytes", buf.len());
    g.bench_function("prometheus", |b| {
        b.iter(|| {
            let mut out = Vec::new();
            enc.encode(&reg.gather(), &mut out).unwrap();
            out
        })
    });

    // prometheus-client: one Family per metric, label sets as string pairs.
    let mut pc = prometheus_client::registry::Registry::default();
    for f in 0..FAMILIES {
        let name = format!("family_{f}");
        let fam = prometheus_client::metrics::family::Family::<
            Vec<(String, String)>,
            prometheus_client::metrics::counter::Counter,
        >::default();
        for j in 0..SERIES_PER_FAMILY {
            fam.get_or_create(&vec![
                ("owner".to_string(), owner.clone()),
                ("route".to_string(), route(j)),
                ("method".to_string(), method(j).to_string()),
            ])
            .inc_by((f * SERIES_PER_FAMILY + j + 1) as u64);
        }
        pc.register(name.clone(), name, fam);
    }
    let mut text_pc = String::new();
    prometheus_client::encoding::text::encode(&mut text_pc, &pc).unwrap();
    eprintln!("exposition_1000/prometheus_client: {} bytes", text_pc.len());
    g.bench_function("prometheus_client", |b| {
        b.iter(|| {
            let mut out = String::new();
            prometheus_client::encoding::text::encode(&mut out, &pc).unwrap();
            out
        })
    });

    let rec = metrics_recorder();
    let handle = rec.handle();
    metrics::with_local_recorder(&rec, || {
        for f in 0..FAMILIES {
            let name = format!("family_{f}_total");
            metrics::describe_counter!(name.clone(), name.clone());
            for j in 0..SERIES_PER_FAMILY {
                metrics::counter!(
                    name.clone(),
                    "owner" => owner.clone(),
                    "route" => route(j),
                    "method" => method(j)
                )
                .increment((f * SERIES_PER_FAMILY + j + 1) as u64);
            }
        }
    });
    eprintln!("exposition_1000/metrics: {} bytes", handle.render().len());
    g.bench_function("metrics", |b| b.iter(|| handle.render()));
    g.finish();
}

fn nexus_only(c: &mut Criterion, nx: &mut Nexus) {
    let mut g = c.benchmark_group("nexus_flush");
    g.throughput(Throughput::Elements(FLUSH_HANDLES as u64));
    let mut last = None;
    g.bench_function("flush_100", |b| {
        b.iter_custom(|iters| {
            let mut t = Duration::ZERO;
            for _ in 0..iters {
                for h in &nx.flush_handles {
                    h.inc();
                }
                let t0 = Instant::now();
                black_box(nx.flusher.flush());
                t += t0.elapsed();
                // Empty metricsd's queue (untimed) so every send succeeds.
                while let Some(f) = nx.server_ep.try_recv() {
                    last = Some(f);
                }
            }
            t
        })
    });
    g.finish();
    let st = nx.flusher.stats();
    assert_eq!(st.frames_failed, 0, "{st:?}");
    if last.is_none() {
        // The timed loop did not run (a filter skipped it): flush once.
        for h in &nx.flush_handles {
            h.inc();
        }
        nx.flusher.flush();
        while let Some(f) = nx.server_ep.try_recv() {
            last = Some(f);
        }
    }
    let frame = last.expect("a flushed frame");
    eprintln!(
        "nexus_flush/flush_100: {} bytes per frame",
        frame.bytes.len()
    );

    let mut g = c.benchmark_group("nexus_ingest");
    g.throughput(Throughput::Elements(FLUSH_HANDLES as u64));
    let sender = frame.meta.sender;
    let h = nx.server.handle(1, sender, &frame.bytes);
    assert!(h.status == Some(proto::Status::Ok) && h.entry_rejects.is_empty());
    let server = &mut nx.server;
    g.bench_function("batch_100", |b| {
        b.iter_custom(|iters| {
            let mut t = Duration::ZERO;
            for _ in 0..iters {
                let t0 = Instant::now();
                black_box(server.handle(1, sender, &frame.bytes));
                t += t0.elapsed();
                // What the I/O step hands to the state store (untimed).
                drop(server.drain_persisted());
            }
            t
        })
    });
    g.finish();
}

fn bench(c: &mut Criterion) {
    let mut nx = nexus_setup();
    counter_inc(c, &mut nx);
    labelled_inc(c, &mut nx);
    histogram_observe(c, &mut nx);
    exposition(c);
    nexus_only(c, &mut nx);
}

criterion_group!(benches, bench);
criterion_main!(benches);
