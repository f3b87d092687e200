//! Test and bench support (feature `testkit`): node A with busd, logd and
//! metricsd (serving obs.logs / obs.metrics), node B with busd and the
//! collector, over loopback TCP, each service in the generic shell on its
//! own thread. Setup failures panic: harness code, never a service path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::format;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use std::vec::Vec;

use busd::testkit::{config as busd_config, free_port, id_of, key, Node, WallClock, TIMEOUT};
use logd::{Logd, LogdService};
use metricsd::{Metricsd, MetricsdService};
use nexus_bus::DeviceId;
use nexus_ipc::host::HostEndpoint;
use nexus_ipc::router::RouterConfig;
use nexus_ipc::{Endpoint, ServiceId};
use nexus_svc::host::serve;
use nexus_svc::{InMemory, Links, Persist, Service, Shell};

use crate::query::{self, CollectorStats, Reply, Request};
use crate::storage::MemStorage;
use crate::{Collector, Config};

/// The streams both busd let peers open.
pub const STREAMS: &[&str] = &["obs.logs", "obs.metrics"];

/// A service shell on its own thread until `stop`.
pub fn spawn<S, P>(
    mut ep: HostEndpoint,
    svc: S,
    persist: P,
    links: Links,
    stop: &Arc<AtomicBool>,
) -> std::thread::JoinHandle<()>
where
    S: Service + Send + 'static,
    P: Persist<S> + Send + 'static,
{
    let stop = Arc::clone(stop);
    std::thread::spawn(move || {
        let mut shell = Shell::new(svc, persist, links);
        let clock = WallClock::new();
        serve(&mut shell, &mut ep, &clock, &stop, 200_000, &mut |_| {});
    })
}

/// The two nodes and their services.
#[derive(Debug)]
pub struct World {
    /// Node A.
    pub a: Node,
    /// Node B.
    pub b: Node,
    /// A's device.
    pub id_a: DeviceId,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// logd on A.
    pub logd_a: ServiceId,
    /// metricsd on A.
    pub metricsd_a: ServiceId,
    /// The collector on B.
    pub collector: ServiceId,
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
    }
}

/// The built-in collector recipe for `device`, with sampling and rate.
pub fn collector_config(device: DeviceId, sample_ppm: u32, events_per_sec: u32) -> Config {
    let text = crate::config::RECIPE
        .replace("sample_ppm = 500000", &format!("sample_ppm = {sample_ppm}"))
        .replace(
            "events_per_sec = 2000",
            &format!("events_per_sec = {events_per_sec}"),
        )
        .replace(
            "events_burst = 4000",
            &format!("events_burst = {}", events_per_sec.max(1)),
        )
        .replace("retry_ms = 500", "retry_ms = 50")
        .replace(
            "device = \"5863cd012c8f24a0\"",
            &format!("device = \"{device}\""),
        );
    Config::parse(&text).unwrap()
}

/// Starts both nodes (logd with its default config).
pub fn world(sample_ppm: u32, events_per_sec: u32) -> World {
    world_with(logd::Config::default(), sample_ppm, events_per_sec)
}

/// Starts both nodes, logd on A with `logd_cfg`.
pub fn world_with(logd_cfg: logd::Config, sample_ppm: u32, events_per_sec: u32) -> World {
    let (ka, kb) = (key(1), key(2));
    let (pa, pb) = (free_port(), free_port());
    let peers = [(ka, pa, STREAMS), (kb, pb, STREAMS)];
    let a = Node::start(ka, busd_config(pa, &peers, 8));
    let b = Node::start(kb, busd_config(pb, &peers, 8));
    let id_a = id_of(ka);
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();

    let logd_ep = a.bus.endpoint("logd").unwrap();
    let logd_a = logd_ep.id();
    let reader = a.bus.endpoint("logd-reader").unwrap();
    let logd = Logd::new(
        logd_cfg,
        RouterConfig::default().max_frame_bytes,
        [reader.id()],
    )
    .unwrap();
    drop(reader);
    let mut links = Links::new();
    links.insert("busd", a.busd);
    threads.push(spawn(
        logd_ep,
        LogdService::new(logd),
        InMemory,
        links.clone(),
        &stop,
    ));

    let md_ep = a.bus.endpoint("metricsd").unwrap();
    let metricsd_a = md_ep.id();
    let md = MetricsdService::new(Metricsd::new(metricsd::Config::default()).unwrap());
    threads.push(spawn(md_ep, md, InMemory, links, &stop));

    let c_ep = b.bus.endpoint("obsscraped").unwrap();
    let collector = c_ep.id();
    let mut links = Links::new();
    links.insert("busd", b.busd);
    let col = Collector::new(
        collector_config(id_a, sample_ppm, events_per_sec),
        MemStorage::new(),
        0,
    );
    threads.push(spawn(c_ep, col, InMemory, links, &stop));
    World {
        a,
        b,
        id_a,
        stop,
        threads,
        logd_a,
        metricsd_a,
        collector,
    }
}

/// A query to the collector from `ep`.
pub fn ask(ep: &mut HostEndpoint, collector: ServiceId, req: &Request<'_>) -> Reply {
    static NONCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let nonce = NONCE.fetch_add(1, Ordering::Relaxed);
    ep.send(collector, &query::encode_request(nonce, req).unwrap())
        .unwrap();
    loop {
        let f = ep.recv_timeout(TIMEOUT).expect("a reply");
        if let Ok((h, r)) = query::decode_reply(&f.bytes) {
            if h.nonce == nonce {
                return r;
            }
        }
    }
}

/// The collector's counters.
pub fn stats(ep: &mut HostEndpoint, collector: ServiceId) -> CollectorStats {
    match ask(ep, collector, &Request::Stats) {
        Reply::Stats(s) => s,
        other => panic!("{other:?}"),
    }
}

/// Waits (bounded, 20 s) until `f` holds.
pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(20) {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out waiting for {what}");
}
