//! The whole selftest — logd and metrics phases — on the host, with logd
//! and metricsd run cooperatively exactly as the QEMU runtime runs them
//! (services are polled whenever the app waits), on one in-memory disk
//! split into the same two regions, booted twice.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::cell::RefCell;
use std::rc::Rc;

use logd::persist::JournalStore;
use logd::service::LogdService;
use logd::{Config, Logd};
use metricsd::persist::MetricsStore;
use metricsd::service::{into_log, step};
use metricsd::Metricsd;
use nexus_bounds::{Clock, ManualClock};
use nexus_ipc::host::{HostBus, HostEndpoint};
use nexus_ipc::router::RouterConfig;
use nexus_ipc::{Endpoint, Frame, SendError, ServiceId};
use nexus_log::{Level, LogdClient, LogdSink};
use nexus_metrics::{Metrics, MetricsConfig};
use nexus_store::{MemDisk, Region};

type Disk = Region<MemDisk>;
/// metricsd, its endpoint, its export sink, its store, its time base.
type MetricsdParts = (
    Metricsd,
    HostEndpoint,
    LogdSink<HostEndpoint>,
    MetricsStore<Disk>,
    u64,
);

struct Services {
    clock: Rc<ManualClock>,
    logd: LogdService<JournalStore<Disk>>,
    logd_ep: HostEndpoint,
    md: Option<MetricsdParts>,
}

impl Services {
    fn run_once(&mut self) -> bool {
        let mut worked = self
            .logd
            .step(&mut self.logd_ep, self.clock.now_ns(), &mut |_| {})
            > 0;
        if let Some((m, ep, sink, store, resume)) = self.md.as_mut() {
            let s = step(
                m,
                ep,
                *resume + self.clock.now_ns(),
                store,
                &mut into_log(sink),
                &mut |_| {},
            );
            worked |= s.frames > 0 || s.exported > 0;
        }
        worked
    }

    fn settle(&mut self) {
        for _ in 0..1000 {
            if !self.run_once() {
                break;
            }
        }
    }
}

/// An app endpoint that runs the services while it waits, like the
/// runtime's `KEndpoint`.
struct Pumped {
    ep: HostEndpoint,
    svc: Rc<RefCell<Services>>,
}

impl Endpoint for Pumped {
    fn id(&self) -> ServiceId {
        self.ep.id()
    }
    fn send(&mut self, to: ServiceId, frame: &[u8]) -> Result<(), SendError> {
        self.ep.send(to, frame)
    }
    fn try_recv(&mut self) -> Option<Frame> {
        self.ep.try_recv()
    }
    fn recv_timeout(&mut self, _timeout_ns: u64) -> Option<Frame> {
        loop {
            if let Some(f) = self.ep.try_recv() {
                return Some(f);
            }
            if !self.svc.borrow_mut().run_once() {
                return self.ep.try_recv();
            }
        }
    }
}

fn boot(disk: Rc<RefCell<MemDisk>>) -> (Vec<String>, Result<(), selftest_client::Failure>) {
    let bus = HostBus::new(RouterConfig::default());
    let clock = Rc::new(ManualClock::new(0));
    let logd_ep = bus.endpoint("logd").unwrap();
    let main = bus.endpoint("selftest").unwrap();
    let flood = bus.endpoint("selftest-flood").unwrap();
    let cfg = Config::default();
    let readers: Vec<_> = cfg
        .query
        .readers
        .iter()
        .filter_map(|n| bus.lookup(n))
        .collect();
    let mut logd = Logd::new(cfg, RouterConfig::default().max_frame_bytes, readers).unwrap();
    let mut regions = Region::split_shared(disk, 2).into_iter();
    let (logd_region, md_region) = (regions.next().unwrap(), regions.next().unwrap());
    let (logd_store, restored) = JournalStore::open(logd_region, &mut logd).unwrap();
    let boot = restored.mount.boot_count;
    let logd_id = logd_ep.id();
    let svc = Rc::new(RefCell::new(Services {
        clock: Rc::clone(&clock),
        logd: LogdService::new(logd, logd_store),
        logd_ep,
        md: None,
    }));
    let pumped = |ep| Pumped {
        ep,
        svc: Rc::clone(&svc),
    };
    let mut markers = Vec::new();
    let mut main = LogdClient::new(pumped(main), logd_id, 0);
    let mut flood_log = LogdClient::new(pumped(flood), logd_id, 0);
    let mut result = selftest_client::run(&mut main, &mut flood_log, boot, &mut |m| {
        markers.push(m.to_string())
    });
    assert_eq!(result, Ok(()));

    // metricsd starts after the logd phase, as on the OS.
    let md_ep = bus.endpoint("metricsd").unwrap();
    let md_id = md_ep.id();
    let export = LogdSink::new(
        bus.endpoint("metricsd-export").unwrap(),
        logd_id,
        Level::Trace,
    );
    let mut m = Metricsd::new(metricsd::Config::default()).unwrap();
    let (md_store, _) = MetricsStore::open(md_region, &mut m).unwrap();
    let resume = m.resume_ns();
    svc.borrow_mut().md = Some((m, md_ep, export, md_store, resume));
    svc.borrow_mut().logd.report_to(md_id);
    let cfg = MetricsConfig::default();
    let mut metrics = Metrics::new(
        pumped(bus.endpoint("selftest-metrics").unwrap()),
        md_id,
        Rc::clone(&clock),
        cfg,
    );
    let flood_ep = bus.endpoint("selftest-metrics-flood").unwrap();
    let mut mflood = Metrics::new(pumped(flood_ep), md_id, Rc::clone(&clock), cfg);
    let mut settle = |ns: u64| {
        svc.borrow_mut().settle();
        clock.advance(ns);
        svc.borrow_mut().settle();
    };
    if result.is_ok() {
        result = selftest_client::metrics::run(
            &mut main,
            &mut metrics,
            &mut mflood,
            boot,
            &mut |l| markers.push(l.to_string()),
            &mut settle,
        );
    }
    svc.borrow_mut().settle();
    (markers, result)
}

#[test]
fn both_phases_pass_twice_and_the_second_boot_finds_the_first() {
    let disk = Rc::new(RefCell::new(MemDisk::new(32 * 1024)));
    let (m1, r1) = boot(Rc::clone(&disk));
    assert_eq!(r1, Ok(()));
    let phase = |persist: &str, retention: &str| {
        vec![
            "SELFTEST: logd hardening rejects ok".to_string(),
            "SELFTEST: log query ok".into(),
            persist.into(),
            "SELFTEST: metrics security rejects ok".into(),
            "SELFTEST: metrics counters ok".into(),
            "SELFTEST: metrics histograms ok".into(),
            "SELFTEST: tracing spans ok".into(),
            retention.into(),
        ]
    };
    assert_eq!(
        m1,
        phase(
            "SELFTEST: log persist pending",
            "SELFTEST: metrics retention pending"
        )
    );
    let (m2, r2) = boot(Rc::clone(&disk));
    assert_eq!(r2, Ok(()));
    assert_eq!(
        m2,
        phase("SELFTEST: log persist ok", "SELFTEST: metrics retention ok")
    );
}

#[test]
fn no_retention_marker_without_the_previous_boots_segments() {
    let disk = Rc::new(RefCell::new(MemDisk::new(32 * 1024)));
    let (_, r1) = boot(Rc::clone(&disk));
    assert_eq!(r1, Ok(()));
    // Wipe metricsd's region (keep logd's): the segments are gone.
    {
        let mut d = disk.borrow_mut();
        let half = d.as_bytes().len() / 2;
        d.as_bytes_mut()[half..].fill(0);
    }
    let (m2, r2) = boot(disk);
    assert!(r2.is_err(), "{r2:?}");
    assert!(!m2.iter().any(|m| m == "SELFTEST: metrics retention ok"));
}
