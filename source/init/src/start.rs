//! Starting a profile's services on a node.

use alloc::boxed::Box;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;

use logd::persist::JournalStore;
use logd::{Logd, LogdService};
use metricsd::persist::MetricsStore;
use metricsd::{Metricsd, MetricsdService};
use nexus_bounds::Clock;
use nexus_ipc::ServiceId;
use nexus_store::{BlockDevice, LayoutError, Region, RegionTable};
use nexus_svc::node::Node;
use nexus_svc::platform::Network;
use nexus_svc::{InMemory, Links, Shell};

use crate::profile::{Profile, ServiceSpec};

/// What the runtime offers the services beyond IPC and the disk.
#[derive(Debug)]
pub struct Env<N> {
    /// The network, when the node has one.
    pub net: Option<N>,
    /// The device secret from the boot arguments (test images).
    pub device_secret: Option<[u8; 32]>,
    /// 32 fresh bytes (virtio-rng); busd does not start without them.
    pub entropy: Option<[u8; 32]>,
}

impl<N> Env<N> {
    /// No network, no secret, no entropy (a single node).
    pub fn none() -> Self {
        Self {
            net: None,
            device_secret: None,
            entropy: None,
        }
    }
}

/// Reads a region's state store from the disk, without writing anything
/// (a second view of the blocks a service writes): the entries, oldest
/// first.
#[derive(Clone)]
pub struct StoreReader(Rc<dyn Fn() -> Result<Vec<Vec<u8>>, String>>);

impl StoreReader {
    /// The entries on the disk now.
    pub fn read(&self) -> Result<Vec<Vec<u8>>, String> {
        (self.0)()
    }
}

impl fmt::Debug for StoreReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreReader")
    }
}

impl PartialEq for StoreReader {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for StoreReader {}

/// What [`start`] brought up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// The node's boot counter (from the region table; 1 without a disk
    /// or on a refused disk).
    pub boot: u32,
    /// Whether the services persist (a disk with a usable region table).
    pub persistent: bool,
    /// Every endpoint init registered, by name.
    pub endpoints: Vec<(String, ServiceId)>,
    /// This device's secret, when busd runs (the bus phase derives its
    /// stranger from it; it never reaches the console).
    pub device_secret: Option<[u8; 32]>,
    /// A read-only view of each region's store, by region name (the
    /// selftest reads back what a service wrote).
    pub stores: Vec<(String, StoreReader)>,
}

impl Started {
    /// The read-only view of region `name`'s store.
    pub fn store(&self, name: &str) -> Option<&StoreReader> {
        self.stores.iter().find(|(n, _)| n == name).map(|(_, r)| r)
    }

    /// The endpoint registered as `name`.
    pub fn id(&self, name: &str) -> Option<ServiceId> {
        self.endpoints
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| *id)
    }
}

/// Why a node could not be composed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitError {
    /// The router refused an endpoint (table full, name taken).
    Register(String),
    /// A service refused its configuration.
    Config {
        /// The service.
        service: String,
        /// Why.
        why: String,
    },
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::Register(n) => write!(f, "endpoint '{n}' could not be registered"),
            InitError::Config { service, why } => write!(f, "{service} config: {why}"),
        }
    }
}

/// Starts `profile` on `node`, with `disk` (if any) holding the regions.
/// Console lines: the region table, each store's mount report, and
/// `<service>: ready` once a service serves.
pub fn start<C: Clock + 'static, D: BlockDevice + 'static, N: Network + Clone + 'static>(
    node: &Node<C>,
    profile: &Profile,
    disk: Option<D>,
    env: &Env<N>,
) -> Result<Started, InitError> {
    let mut endpoints = Vec::new();
    let names = profile.services.iter().map(|s| s.name.as_str()).chain(
        profile
            .phases
            .iter()
            .flat_map(|p| p.endpoints().iter().copied()),
    );
    for name in names {
        if endpoints
            .iter()
            .any(|(n, _): &(String, ServiceId)| n == name)
        {
            continue;
        }
        let id = node
            .register(name)
            .map_err(|_| InitError::Register(String::from(name)))?;
        endpoints.push((String::from(name), id));
    }

    let (table, disk) = open_layout(node, profile, disk);
    let boot = table.as_ref().map_or(1, |t| t.boot);
    let mut started = Started {
        boot,
        persistent: table.is_some(),
        endpoints,
        device_secret: None,
        stores: Vec::new(),
    };
    if let (Some(t), Some(d)) = (&table, &disk) {
        for e in &t.entries {
            let (d, first, blocks) = (Rc::clone(d), e.first, e.blocks);
            let read = move || {
                let region = Region::at(Rc::clone(&d), first, blocks)
                    .ok_or_else(|| String::from("region outside the disk"))?;
                nexus_store::StateStore::open_read_only(region)
                    .map(|(_, _, entries)| entries)
                    .map_err(|e| format!("{e:?}"))
            };
            started
                .stores
                .push((e.name.clone(), StoreReader(Rc::new(read))));
        }
    }
    for spec in &profile.services {
        let region = match (&table, &disk, &spec.region) {
            (Some(t), Some(d), Some(r)) => t.region(d, r),
            _ => None,
        };
        if let Some(secret) = start_service(node, spec, region, &started, env)? {
            started.device_secret = Some(secret);
        }
        node.console(&format!("{}: ready", spec.name));
    }
    if table.is_none() {
        started.persistent = false;
    }
    Ok(started)
}

type Disk<D> = Rc<RefCell<D>>;

fn open_layout<C: Clock, D: BlockDevice>(
    node: &Node<C>,
    profile: &Profile,
    disk: Option<D>,
) -> (Option<RegionTable>, Option<Disk<D>>) {
    let Some(mut disk) = disk else {
        if !profile.regions.is_empty() {
            node.console("init: no disk: services run without persistence");
        }
        return (None, None);
    };
    if profile.regions.is_empty() {
        return (None, None);
    }
    let wanted: Vec<(&str, u64)> = profile
        .regions
        .iter()
        .map(|r| (r.name.as_str(), r.blocks))
        .collect();
    match RegionTable::open(&mut disk, &wanted) {
        Ok((table, report)) => {
            let mut line = format!(
                "init: disk boot {} (formatted: {}), regions",
                table.boot, report.formatted
            );
            for e in &table.entries {
                line.push_str(&format!(" {}@{}+{}", e.name, e.first, e.blocks));
            }
            if !report.added.is_empty() && !report.formatted {
                line.push_str(&format!(", added {}", report.added.join(",")));
            }
            node.console(&line);
            (Some(table), Some(Rc::new(RefCell::new(disk))))
        }
        Err(e) => {
            node.console(&match e {
                LayoutError::LegacyLayout => String::from(
                    "init: disk has the first-wave layout (no region table): refused; services run without persistence (use a fresh image)",
                ),
                other => format!("init: disk layout refused: {other:?}; services run without persistence"),
            });
            (None, None)
        }
    }
}

fn links_of<C: Clock>(node: &Node<C>, spec: &ServiceSpec) -> Links {
    let mut links = Links::new();
    for l in &spec.links {
        if let Some(id) = node.lookup(l) {
            links.insert(l, id);
        }
    }
    links
}

/// Starts one service; returns the device secret when it is busd.
fn start_service<C: Clock + 'static, D: BlockDevice + 'static, N: Network + Clone + 'static>(
    node: &Node<C>,
    spec: &ServiceSpec,
    region: Option<Region<D>>,
    started: &Started,
    env: &Env<N>,
) -> Result<Option<[u8; 32]>, InitError> {
    let cfg_err = |why: String| InitError::Config {
        service: spec.name.clone(),
        why,
    };
    let id = started
        .id(&spec.name)
        .ok_or_else(|| InitError::Register(spec.name.clone()))?;
    let links = links_of(node, spec);
    match spec.name.as_str() {
        "logd" => {
            let cfg = logd::Config::default();
            let readers: Vec<ServiceId> = cfg
                .query
                .readers
                .iter()
                .filter_map(|n| node.lookup(n))
                .collect();
            let mut logd = Logd::new(cfg, node.router_config().max_frame_bytes, readers)
                .map_err(|e| cfg_err(format!("{e:?}")))?;
            let store = region.and_then(|dev| match JournalStore::open(dev, &mut logd) {
                Ok((store, r)) => {
                    node.console(&format!(
                        "init: logd store boot {} (formatted: {}), {} records restored, {} skipped, torn tail: {}",
                        r.mount.boot_count, r.mount.formatted, r.records, r.skipped, r.mount.torn
                    ));
                    Some(store)
                }
                Err(e) => {
                    node.console(&format!("init: logd store unusable: {e:?}"));
                    None
                }
            });
            let shell = Shell::new(LogdService::new(logd), store, links);
            node.add_task(id, Box::new(shell));
        }
        "metricsd" => {
            let mut m = Metricsd::new(metricsd::Config::default())
                .map_err(|e| cfg_err(format!("{e:?}")))?;
            let store = region.and_then(|dev| match MetricsStore::open(dev, &mut m) {
                Ok((store, r)) => {
                    node.console(&format!(
                        "init: metricsd store boot {}, {} series, {} segments, {} samples replayed, {} skipped, torn tail: {}",
                        r.mount.boot_count, r.series, r.segments, r.samples, r.skipped, r.mount.torn
                    ));
                    Some(store)
                }
                Err(e) => {
                    node.console(&format!("init: metricsd store unusable: {e:?}"));
                    None
                }
            });
            let shell = Shell::new(MetricsdService::new(m), store, links);
            node.add_task(id, Box::new(shell));
        }
        "busd" => {
            let cfg = busd::Config::builtin().map_err(|e| cfg_err(format!("{e}")))?;
            let net = env
                .net
                .clone()
                .ok_or_else(|| cfg_err(String::from("no network (virtio-net and nexus.ip)")))?;
            let seed = env
                .entropy
                .ok_or_else(|| cfg_err(String::from("no entropy source (virtio-rng)")))?;
            let (secret, source) =
                crate::identity::device_secret(region, env.device_secret, seed).map_err(cfg_err)?;
            let control = cfg.control.iter().filter_map(|n| node.lookup(n)).collect();
            let key = dsoftbus::identity::DeviceKey::from_secret(secret);
            node.console(&format!(
                "init: busd device {} (key from {source})",
                key.id()
            ));
            let b = busd::Busd::new(cfg, net, key, seed, control)
                .map_err(|e| cfg_err(format!("{e}")))?;
            node.add_task(id, Box::new(Shell::new(b, InMemory, links)));
            return Ok(Some(secret));
        }
        "obsscraped" => {
            let cfg = obsscraped::Config::builtin().map_err(cfg_err)?;
            let me = started.device_secret.map(|s| {
                let id = dsoftbus::identity::DeviceKey::from_secret(s).id();
                nexus_bus::DeviceId(id.to_bytes())
            });
            let now = node.clock().now_ns();
            // On its region when the profile gives it one (kept across
            // reboots), else in memory; bounded by the same budgets.
            let region =
                region.and_then(|dev| match obsscraped::region::RegionStorage::open(dev) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        node.console(&format!("init: obsscraped store unusable: {e:?}"));
                        None
                    }
                });
            match region {
                Some((storage, found)) => {
                    node.console(&format!(
                        "init: obsscraped store: {} segments restored",
                        found.len()
                    ));
                    let mut c = obsscraped::Collector::new(cfg, storage, now);
                    c.resume(&found);
                    if let Some(me) = me {
                        c.exclude(me);
                    }
                    node.add_task(id, Box::new(Shell::new(c, InMemory, links)));
                }
                None => {
                    let mut c = obsscraped::Collector::new(
                        cfg,
                        obsscraped::storage::MemStorage::new(),
                        now,
                    );
                    if let Some(me) = me {
                        c.exclude(me);
                    }
                    node.add_task(id, Box::new(Shell::new(c, InMemory, links)));
                }
            }
        }
        "traced" => {
            // Spans arriving over IPC are from this node: with a device
            // key its bus id (what busd and the peers call it), else the
            // single-node id.
            let key = started
                .device_secret
                .map(dsoftbus::identity::DeviceKey::from_secret);
            let me = crate::selftest::traced_node(key.as_ref());
            let cfg = traced::Config::from_toml(traced::config::RECIPE)
                .map_err(|e| cfg_err(format!("{e}")))?;
            let frame = node.router_config().max_frame_bytes;
            if frame < traced::proto::MAX_REPLY.max(traced::proto::MAX_FRAME) {
                return Err(cfg_err(format!(
                    "IPC frames of {frame} bytes are smaller than traced's replies ({} bytes)",
                    traced::proto::MAX_REPLY
                )));
            }
            let mut svc = traced::TracedService::new(traced::Traced::new(cfg.clone(), me))
                .with_logd_fallback(cfg.logd_fallback);
            let busd = node
                .lookup("busd")
                .filter(|_| spec.links.iter().any(|l| l == "busd"));
            let collector = spec.trace_collector.as_ref().unwrap_or(&cfg.collector);
            if let (Some(busd), Some(k), false) = (busd, key.as_ref(), collector.is_empty()) {
                let peers = busd::Config::builtin()
                    .and_then(|b| b.peers())
                    .map_err(|e| cfg_err(format!("{e}")))?;
                let p = peers.iter().find(|p| p.name == *collector).ok_or_else(|| {
                    cfg_err(format!("collector '{collector}' is not a busd peer"))
                })?;
                if p.id == k.id() {
                    node.console("init: traced collects obs.traces");
                    svc = svc.collecting(busd);
                } else {
                    let id = nexus_bus::DeviceId(p.id.to_bytes());
                    node.console(&format!("init: traced forwards to {} ({id})", p.name));
                    svc = svc.forwarding(busd, id, cfg.forward_queue);
                }
            }
            match region.map(traced::region::JsonlRegion::open) {
                Some(Ok(store)) => {
                    node.console(&format!(
                        "init: traced store: {} traces restored",
                        store.stats().restored
                    ));
                    svc.traced.export_completed(cfg.store_queue);
                    node.add_task(id, Box::new(Shell::new(svc, store, links)));
                }
                other => {
                    if let Some(Err(e)) = other {
                        node.console(&format!("init: traced store unusable: {e:?}"));
                    }
                    node.add_task(id, Box::new(Shell::new(svc, InMemory, links)));
                }
            }
        }
        other => return Err(cfg_err(format!("init cannot start '{other}'"))),
    }
    Ok(None)
}
