//! nexus-metrics against the real metricsd over the host bus.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use std::borrow::Cow;

use metricsd::service::LOGD;
use metricsd::{Config, Metricsd, MetricsdService};
use nexus_bounds::ManualClock;
use nexus_ipc::host::HostBus;
use nexus_ipc::router::RouterConfig;
use nexus_ipc::Endpoint;
use nexus_log::proto::{decode_request, Request};
use nexus_log::{Event, Log};
use nexus_log::{Fields, Level};
use nexus_metrics::{counter, gauge, histogram, span, Metrics, MetricsConfig, MetricsError};
use nexus_svc::host::serve;
use nexus_svc::{InMemory, Links, Shell};
use nexus_trace::{IdGenerator, SpanStatus};

#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<Event>>>);
impl Log for Collect {
    fn log(&mut self, e: Event) {
        self.0.lock().unwrap().push(e);
    }
}

struct Server {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}
impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
    }
}

/// metricsd on a host thread (the generic shell), exporting to a "logd"
/// endpoint whose one-way APPENDs a second thread decodes into `log`.
fn start(bus: &HostBus, log: Collect) -> Server {
    let mut ep = bus.endpoint("metricsd").unwrap();
    let mut logd_ep = bus.endpoint("logd").unwrap();
    let mut links = Links::new();
    links.insert(LOGD, logd_ep.id());
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = Arc::clone(&stop);
    let server = std::thread::spawn(move || {
        let m = Metricsd::new(Config::default()).unwrap();
        let mut shell = Shell::new(MetricsdService::new(m), InMemory, links);
        let clock = ManualClock::new(0);
        serve(&mut shell, &mut ep, &clock, &s2, 1_000_000, &mut |_| {});
    });
    let s3 = Arc::clone(&stop);
    let collector = std::thread::spawn(move || {
        let mut log = log;
        while !s3.load(Ordering::Relaxed) {
            let Some(f) = logd_ep.recv_timeout(1_000_000) else {
                continue;
            };
            let (_, Request::Append { oneway: true, body }) = decode_request(&f.bytes).unwrap()
            else {
                panic!("metricsd sent logd something else than a one-way APPEND");
            };
            log.log(Event {
                level: Level::from_u8(body.level).unwrap(),
                target: Cow::Owned(body.target.to_string()),
                key: "export",
                message: body.message.to_string(),
                fields: Ok(Fields::parse(body.fields).unwrap()),
            });
        }
    });
    Server {
        stop,
        threads: vec![server, collector],
    }
}

#[test]
fn handles_flush_and_the_scrape_shows_the_values() {
    let bus = HostBus::new(RouterConfig::default());
    let _srv = start(&bus, Collect::default());
    let clock = ManualClock::new(0);
    let md = bus.lookup("metricsd").unwrap();
    let mut m = Metrics::new(
        bus.endpoint("app").unwrap(),
        md,
        &clock,
        MetricsConfig::default(),
    );
    let app = m.endpoint().id().get();
    let reqs = counter!(m, "http_requests_total", "route" => "/a").unwrap();
    let same = counter!(m, "http_requests_total", "route" => "/a").unwrap();
    assert_eq!(reqs.series(), same.series(), "resolved once, cached");
    let two = m.counter("two_labels", &[("a", "1"), ("b", "2")]).unwrap();
    let swapped = m.counter("two_labels", &[("b", "2"), ("a", "1")]).unwrap();
    let other = m.counter("two_labels", &[("a", "2"), ("b", "1")]).unwrap();
    assert_eq!(
        two.series(),
        swapped.series(),
        "label order does not matter"
    );
    assert_ne!(two.series(), other.series());
    assert!(
        m.counter("two_labels", &[("a", "1"), ("a", "1")]).is_err(),
        "duplicate keys never match a cached key"
    );
    let depth = gauge!(m, "queue_depth").unwrap();
    let lat = histogram!(m, "latency_us", [10, 100]).unwrap();
    for _ in 0..5 {
        reqs.inc();
    }
    same.add(10);
    depth.set(7);
    depth.add(-2);
    for v in [5, 10, 50, 500] {
        lat.observe(v);
    }
    let res = m.flush_sync().unwrap();
    assert_eq!(
        (res.accepted, res.rejected),
        (3, 0),
        "one entry per changed handle"
    );
    assert_eq!(m.flush_sync().unwrap().accepted, 0, "nothing changed since");
    let text = m.scrape(100).unwrap();
    for line in [
        format!("http_requests_total{{owner=\"{app}\",route=\"/a\"}} 15\n"),
        format!("queue_depth{{owner=\"{app}\"}} 5\n"),
        format!("latency_us_bucket{{owner=\"{app}\",le=\"10\"}} 2\n"),
        format!("latency_us_bucket{{owner=\"{app}\",le=\"100\"}} 3\n"),
        format!("latency_us_bucket{{owner=\"{app}\",le=\"+Inf\"}} 4\n"),
        format!("latency_us_sum{{owner=\"{app}\"}} 565\n"),
    ] {
        assert!(text.contains(&line), "missing {line:?} in\n{text}");
    }
    // Refused before sending: a bad name never reaches metricsd.
    assert!(matches!(
        counter!(m, "Bad-Name"),
        Err(MetricsError::Type(_))
    ));
    assert!(matches!(
        histogram!(m, "latency_us", [1, 2]),
        Err(MetricsError::Conflict)
    ));
}

#[test]
fn span_guards_end_on_drop_with_real_times_and_deterministic_ids() {
    let bus = HostBus::new(RouterConfig::default());
    let log = Collect::default();
    let _srv = start(&bus, log.clone());
    let clock = ManualClock::new(1_000);
    let md = bus.lookup("metricsd").unwrap();
    let mut m = Metrics::new(
        bus.endpoint("app").unwrap(),
        md,
        &clock,
        MetricsConfig::default(),
    );
    let app = u64::from(m.endpoint().id().get());
    let (trace, root_id, child_id);
    {
        let mut root = span!(m, "request");
        trace = root.trace();
        root_id = root.id();
        clock.advance(200);
        {
            let mut child = span!(root => "db");
            child_id = child.id();
            child.attr("rows", 3);
            child.attr("api_key", "hunter2");
            clock.advance(300);
            child.set_status(SpanStatus::Error);
        }
        root.set_status(SpanStatus::Ok);
        clock.advance(500);
    }
    assert_eq!(m.flush_sync().unwrap().accepted, 4);
    // The exports reach the logger after the server's next step.
    let mut events = Vec::new();
    for _ in 0..1000 {
        events = log
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.target == "trace.span")
            .cloned()
            .collect();
        if events.len() == 2 {
            break;
        }
        let _ = m.server_stats();
    }
    assert_eq!(events.len(), 2);
    let f = |e: &Event, k: &str| e.fields.as_ref().unwrap().get(k).map(String::from);
    let (db, req) = (&events[0], &events[1]);
    assert_eq!(
        (db.message.as_str(), req.message.as_str()),
        ("db", "request")
    );
    // Ids: the guards' ids are the exported ones, and they are the
    // deterministic sequence of the default seed (node 0, boot 0) with the
    // client's endpoint as the instance.
    assert_eq!(f(req, "span_id"), Some(root_id.to_string()));
    assert_eq!(f(db, "span_id"), Some(child_id.to_string()));
    assert_eq!(f(db, "parent_id"), f(req, "span_id"));
    assert_eq!(f(db, "trace_id"), Some(trace.to_string()));
    assert_eq!(f(req, "trace_id"), Some(trace.to_string()));
    let ids = IdGenerator::new(&MetricsConfig::default().id_seed(app));
    let want = (ids.next_trace(), ids.next_span(), ids.next_span());
    assert_eq!(want, (trace, root_id, child_id));
    assert_eq!(
        (f(db, "start_ns"), f(db, "end_ns")),
        (Some("1200".into()), Some("1500".into()))
    );
    assert_eq!(f(req, "duration_ns"), Some("1000".into()));
    assert_eq!(
        (f(db, "status"), f(req, "status")),
        (Some("error".into()), Some("ok".into()))
    );
    assert_eq!(f(db, "attr.rows"), Some("3".into()));
    assert_eq!(f(db, "attr.api_key"), Some("[redacted]".into()));
}

#[test]
fn a_full_metricsd_queue_delays_updates_instead_of_losing_them() {
    let bus = HostBus::new(RouterConfig {
        queue_depth: 1,
        ..RouterConfig::default()
    });
    let mut md_ep = bus.endpoint("metricsd").unwrap();
    let md = md_ep.id();
    // Registration needs an answer: serve exactly that request.
    let reg = std::thread::spawn(move || {
        let mut m = Metricsd::new(Config::default()).unwrap();
        let f = md_ep.recv_timeout(5_000_000_000).unwrap();
        let r = m.handle(0, f.meta.sender, &f.bytes).reply.unwrap();
        md_ep.send(f.meta.sender, &r).unwrap();
        (m, md_ep)
    });
    let clock = ManualClock::new(0);
    let mut m = Metrics::new(
        bus.endpoint("app").unwrap(),
        md,
        &clock,
        MetricsConfig::default(),
    );
    let c = counter!(m, "c").unwrap();
    let (mut server, mut md_ep) = reg.join().unwrap();
    bus.endpoint("filler")
        .unwrap()
        .send(md, b"occupy the only slot")
        .unwrap();
    c.add(3);
    let st = m.flush();
    assert_eq!((st.frames, st.frames_failed), (0, 1));
    c.add(4);
    // Drain the filler; the next flush carries both deltas.
    md_ep.try_recv().unwrap();
    let st = m.flush();
    assert_eq!(st.frames, 1);
    let f = md_ep.try_recv().unwrap();
    server.handle(0, f.meta.sender, &f.bytes);
    assert!(server
        .exposition()
        .contains(&format!("c{{owner=\"{}\"}} 7\n", m.endpoint().id().get())));
}

#[test]
fn flushes_split_at_the_batch_entry_limit() {
    let bus = HostBus::new(RouterConfig::default());
    let _srv = start(&bus, Collect::default());
    let clock = ManualClock::new(0);
    let md = bus.lookup("metricsd").unwrap();
    let cfg = MetricsConfig {
        max_batch_entries: 100,
        ..MetricsConfig::default()
    };
    let mut m = Metrics::new(bus.endpoint("app").unwrap(), md, &clock, cfg);
    // 250 series (under the per-sender cap of 256): 25 metrics x 10 labels.
    let handles: Vec<_> = (0..250)
        .map(|i| {
            m.counter(&format!("c{}", i % 25), &[("i", &format!("{i}"))])
                .unwrap()
        })
        .collect();
    for h in &handles {
        h.inc();
    }
    let res = m.flush_sync().unwrap();
    assert_eq!((res.accepted, res.rejected), (250, 0));
    assert_eq!(m.stats().frames, 3, "100 + 100 + 50 entries");
    // The default matches metricsd's batch.max_entries.
    assert_eq!(
        u32::from(MetricsConfig::default().max_batch_entries),
        Config::default().batch.max_entries
    );
}

/// The same node, endpoint and spans on two boots (boot counters 1 and 2):
/// no span or trace id of the second boot repeats one of the first, and
/// metricsd exports both boots' spans under their own ids.
#[test]
fn span_ids_differ_across_boots() {
    let bus = HostBus::new(RouterConfig::default());
    let log = Collect::default();
    let _srv = start(&bus, log.clone());
    let md = bus.lookup("metricsd").unwrap();
    let clock = ManualClock::new(1_000);
    // One endpoint lent to both "boots": the same transport id, so the
    // same instance in the seed.
    struct Lent<'a>(&'a mut nexus_ipc::host::HostEndpoint);
    impl Endpoint for Lent<'_> {
        fn id(&self) -> nexus_ipc::ServiceId {
            self.0.id()
        }
        fn send(
            &mut self,
            to: nexus_ipc::ServiceId,
            frame: &[u8],
        ) -> Result<(), nexus_ipc::SendError> {
            self.0.send(to, frame)
        }
        fn try_recv(&mut self) -> Option<nexus_ipc::Frame> {
            self.0.try_recv()
        }
        fn recv_timeout(&mut self, timeout_ns: u64) -> Option<nexus_ipc::Frame> {
            self.0.recv_timeout(timeout_ns)
        }
    }
    let mut ep = bus.endpoint("app").unwrap();
    let mut boot = |n: u32| {
        let cfg = MetricsConfig {
            node_id: 0x5eed,
            boot: n,
            ..MetricsConfig::default()
        };
        let mut m = Metrics::new(Lent(&mut ep), md, &clock, cfg);
        let ids = {
            let root = span!(m, "request");
            let child = span!(root => "db");
            (root.trace(), [root.id(), child.id()])
        };
        assert_eq!(m.flush_sync().unwrap().accepted, 4);
        ids
    };
    let (t1, s1) = boot(1);
    let (t2, s2) = boot(2);
    assert_ne!(t1, t2);
    for a in s1 {
        assert!(!s2.contains(&a), "span id {a} repeated across boots");
    }
    let exported = |trace: nexus_trace::TraceId| {
        let t = trace.to_string();
        log.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| {
                e.target == "trace.span"
                    && e.fields.as_ref().unwrap().get("trace_id") == Some(t.as_str())
            })
            .count()
    };
    for _ in 0..1000 {
        if exported(t1) == 2 && exported(t2) == 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert_eq!((exported(t1), exported(t2)), (2, 2));
}
