//! `nexus-obs node NAME`: a node of the cluster file run on the host —
//! logd, metricsd, busd (loopback TCP) and traced, each in the service
//! shell on its own thread, the same cores as on the OS. The host (the
//! tool's own device) may open `obs.logs` and `obs.metrics` here; traced
//! forwards its spans to the host on `obs.traces`. With a load, an app
//! appends a record, bumps a counter and records a two-span trace every
//! period, so there is something to look at.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use busd::Busd;
use dsoftbus::identity::DeviceKey;
use logd::{Logd, LogdService};
use metricsd::{Metricsd, MetricsdService};
use nexus_bounds::Clock;
use nexus_ipc::host::{HostBus, HostEndpoint};
use nexus_ipc::router::RouterConfig;
use nexus_ipc::{Endpoint, ServiceId};
use nexus_svc::host::net::StdNetwork;
use nexus_svc::host::serve;
use nexus_svc::{InMemory, Links, Persist, Service, Shell};

use crate::config::{hex, Cluster, NodeEntry};

/// Wall-clock nanoseconds since the Unix epoch, never going back (a
/// process-wide high-water mark absorbs a wall clock stepped back). Every
/// service of a host node, and the host's own, read this one clock, so
/// records carry real dates and spans of processes started at different
/// times share an epoch.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostClock;

static HIGH_WATER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl HostClock {
    /// The clock.
    pub fn new() -> Self {
        Self
    }
}

impl Clock for HostClock {
    fn now_ns(&self) -> u64 {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        HIGH_WATER.fetch_max(wall, Ordering::Relaxed).max(wall)
    }
}

/// How long an idle service shell waits before polling again.
pub const POLL_NS: u64 = 200_000;

/// 32 bytes from the OS's random source (handshake seeds).
pub fn entropy() -> Result<[u8; 32], String> {
    use std::io::Read;
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .map_err(|e| format!("no entropy (/dev/urandom): {e}"))?;
    Ok(seed)
}

/// Console lines of a running set of services.
pub type Console = Arc<Mutex<Vec<String>>>;

/// Services on threads, stopped together.
#[derive(Debug, Default)]
pub struct Threads {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Every console line, in order.
    pub console: Console,
}

impl Threads {
    /// Runs `svc` in the shell on its own thread.
    pub fn spawn<S, P>(&mut self, mut ep: HostEndpoint, svc: S, persist: P, links: Links)
    where
        S: Service + Send + 'static,
        P: Persist<S> + Send + 'static,
    {
        let stop = Arc::clone(&self.stop);
        let console = Arc::clone(&self.console);
        let echo = std::env::var_os("NEXUS_OBS_ECHO").is_some();
        self.threads.push(std::thread::spawn(move || {
            let mut shell = Shell::new(svc, persist, links);
            let clock = HostClock::new();
            serve(&mut shell, &mut ep, &clock, &stop, POLL_NS, &mut |l| {
                if echo {
                    eprintln!("{l}");
                }
                if let Ok(mut c) = console.lock() {
                    c.push(l.to_string());
                }
            });
        }));
    }

    /// Runs `f` on its own thread until stopped; `f` is given the stop flag.
    pub fn spawn_fn(&mut self, f: impl FnOnce(Arc<AtomicBool>) + Send + 'static) {
        let stop = Arc::clone(&self.stop);
        self.threads.push(std::thread::spawn(move || f(stop)));
    }

    /// The stop flag.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// Console lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.console.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Stops every thread and waits for them.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.stop();
    }
}

/// busd's recipe for a device on 127.0.0.1:`port` with `peers` (name,
/// public key, port, the streams that peer may open here).
pub fn busd_config(
    port: u16,
    peers: &[(&str, [u8; 32], u16, &[&str])],
) -> Result<busd::Config, String> {
    let mut text = format!(
        "listen_port = {port}\nhandshake_timeout_ms = 5000\ncontrol = []\n\
         [limits]\nmax_listeners = 16\nmax_streams_per_service = 16\nmax_streams_per_peer = 16\n\
         max_watchers = 16\nmax_pending_accepts = 4\nwindow = 65536\n\
         [backoff]\ninitial_ms = 100\nmax_ms = 2000\n"
    );
    for (name, public, p, streams) in peers {
        let names: Vec<String> = streams.iter().map(|s| format!("\"{s}\"")).collect();
        text.push_str(&format!(
            "[[peer]]\nname = \"{name}\"\nkey = \"{}\"\naddr = \"127.0.0.1:{p}\"\nstreams = [{}]\n",
            hex(public),
            names.join(", ")
        ));
    }
    busd::Config::parse(&text).map_err(|e| format!("bus config: {e}"))
}

/// A node running on the host.
#[derive(Debug)]
pub struct RunningNode {
    /// Its in-process bus.
    pub bus: HostBus,
    /// Its services, by name.
    pub services: Vec<(&'static str, ServiceId)>,
    /// The service threads.
    pub threads: Threads,
}

impl RunningNode {
    /// The service called `name`.
    pub fn id(&self, name: &str) -> Option<ServiceId> {
        self.services
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, id)| *id)
    }
}

/// Starts node `name` of `cluster` (it must have a `secret`).
pub fn start(cluster: &Cluster, name: &str) -> Result<RunningNode, String> {
    let me: &NodeEntry = cluster.node(name).map_err(|e| e.to_string())?;
    let secret = me.secret.ok_or_else(|| {
        format!("node '{name}' has only a public key in the cluster file: it cannot be run here")
    })?;
    let host_public = DeviceKey::from_secret(cluster.host.secret).public();
    let mut peers: Vec<(&str, [u8; 32], u16, &[&str])> = vec![(
        cluster.host.name.as_str(),
        host_public,
        cluster.host.port,
        HOST_STREAMS,
    )];
    for n in cluster.nodes.iter().filter(|n| n.name != me.name) {
        peers.push((n.name.as_str(), n.public, n.port, NODE_STREAMS));
    }
    let bus_cfg = busd_config(me.port, &peers)?;
    let bus = HostBus::new(RouterConfig::default());
    let reg = |n: &str| bus.endpoint(n).map_err(|e| format!("register {n}: {e:?}"));
    let (logd_ep, md_ep, busd_ep, traced_ep) =
        (reg("logd")?, reg("metricsd")?, reg("busd")?, reg("traced")?);
    let ids = [
        ("logd", logd_ep.id()),
        ("metricsd", md_ep.id()),
        ("busd", busd_ep.id()),
        ("traced", traced_ep.id()),
    ];
    let mut threads = Threads::default();
    let link = |names: &[&str]| {
        let mut l = Links::new();
        for n in names {
            if let Some((_, id)) = ids.iter().find(|(x, _)| x == n) {
                l.insert(n, *id);
            }
        }
        l
    };
    let logd = Logd::new(
        logd::Config::default(),
        RouterConfig::default().max_frame_bytes,
        [],
    )
    .map_err(|e| format!("logd: {e:?}"))?;
    threads.spawn(
        logd_ep,
        LogdService::new(logd),
        InMemory,
        link(&["metricsd", "busd"]),
    );
    let md = Metricsd::new(metricsd::Config::default()).map_err(|e| format!("metricsd: {e:?}"))?;
    threads.spawn(
        md_ep,
        MetricsdService::new(md),
        InMemory,
        link(&["logd", "busd"]),
    );
    let key = DeviceKey::from_secret(secret);
    let b = Busd::new(bus_cfg, StdNetwork, key, entropy()?, vec![])
        .map_err(|e| format!("busd: {e}"))?;
    threads.spawn(busd_ep, b, InMemory, link(&["metricsd"]));
    let tcfg =
        traced::Config::from_toml(traced::config::RECIPE).map_err(|e| format!("traced: {e}"))?;
    let node_id = traced::remote::node_of(me.id);
    let svc = traced::TracedService::new(traced::Traced::new(tcfg.clone(), node_id)).forwarding(
        ids[2].1,
        cluster.host_id(),
        tcfg.forward_queue,
    );
    threads.spawn(traced_ep, svc, InMemory, link(&["metricsd", "busd"]));
    Ok(RunningNode {
        bus,
        services: ids.to_vec(),
        threads,
    })
}

/// What the host may open on a node.
const HOST_STREAMS: &[&str] = &["obs.logs", "obs.metrics"];
/// What another node may open here.
const NODE_STREAMS: &[&str] = &["obs.traces"];

/// Every `period`, an app on `node` appends an info record (`n` counts),
/// bumps `nexus_obs_demo_ticks_total` and sends a two-span trace; every
/// tenth record is a warning. Runs until the node stops.
pub fn start_load(node: &mut RunningNode, period: Duration) -> Result<(), String> {
    let (logd, md, traced) = (
        node.id("logd").ok_or("no logd")?,
        node.id("metricsd").ok_or("no metricsd")?,
        node.id("traced").ok_or("no traced")?,
    );
    let reg = |n: &str| {
        node.bus
            .endpoint(n)
            .map_err(|e| format!("register {n}: {e:?}"))
    };
    let (log_ep, m_ep, mut t_ep) = (reg("app")?, reg("app-metrics")?, reg("app-trace")?);
    let seed = u64::from_le_bytes(
        entropy()?
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .unwrap_or([0; 8]),
    );
    node.threads.spawn_fn(move |stop| {
        let clock = HostClock::new();
        let mut log = nexus_log::LogdClient::new(log_ep, logd, 2_000_000_000);
        let mut m =
            nexus_metrics::Metrics::new(m_ep, md, clock, nexus_metrics::MetricsConfig::default());
        let ticks = m
            .counter("nexus_obs_demo_ticks_total", &[("app", "demo")])
            .ok();
        let batcher = Arc::new(traced::client::SpanBatcher::new(64));
        let tracer = nexus_trace::Tracer::new(
            clock,
            Arc::clone(&batcher),
            nexus_trace::IdGenerator::new(&nexus_trace::IdSeed::new(seed, 1, 1)),
            nexus_trace::TracerConfig::default(),
        );
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let root = tracer.span("demo.tick");
            let level = if n.is_multiple_of(10) {
                nexus_log::Level::Warn
            } else {
                nexus_log::Level::Info
            };
            let f = nexus_log::Fields::parse(&format!(
                "n:i={n}\nspan_id={}\ntrace_id={}\n",
                root.id(),
                root.trace()
            ))
            .unwrap_or_default();
            let _ = log.append(level, "demo", "tick", &f);
            let mut child = root.child("demo.work");
            child.attr("n", n);
            child.end();
            root.end();
            if let Some(c) = &ticks {
                c.inc();
            }
            let _ = m.flush();
            while let Some(frame) = batcher.take_frame() {
                let _ = t_ep.send(traced, &frame);
            }
            std::thread::sleep(period);
        }
    });
    Ok(())
}
