//! Runs a profile's selftest phases against the node init composed.
//!
//! Each phase is a function of `selftest_client` that prints its markers
//! only after checking this boot's evidence; here they are only called in
//! the profile's order with the endpoints init registered for them.

use alloc::format;
use alloc::string::String;

use dsoftbus::identity::DeviceKey;
use nexus_bounds::Clock;
use nexus_bus::BusClient;
use nexus_log::LogdClient;
use nexus_metrics::{Metrics, MetricsConfig};
use nexus_svc::node::Node;
use nexus_svc::platform::{Network, Platform};
use nexus_trace::IdSeed;
use selftest_client::Role;

use crate::profile::{Phase, Profile};
use crate::start::Started;

/// How long a selftest client waits for a reply.
pub const REPLY_TIMEOUT_NS: u64 = 2_000_000_000;

/// What the two-node phases need from the boot arguments.
#[derive(Debug)]
pub struct PeerArgs<'a, N> {
    /// The network.
    pub net: &'a N,
    /// This node's side.
    pub role: Role,
    /// The peer's address (node A of the plain TCP phase dials it).
    pub peer: Option<[u8; 4]>,
}

/// The other node of the bus phase: the first peer in busd's list that is
/// not this device.
fn bus_peer(secret: [u8; 32]) -> Result<selftest_client::bus::BusPeer, String> {
    let me = DeviceKey::from_secret(secret).id();
    let cfg = busd::Config::builtin().map_err(|e| format!("{e}"))?;
    let peers = cfg.peers().map_err(|e| format!("{e}"))?;
    let p = peers
        .iter()
        .find(|p| p.id != me)
        .ok_or_else(|| String::from("busd lists no other device"))?;
    Ok(selftest_client::bus::BusPeer {
        id: nexus_bus::DeviceId(p.id.to_bytes()),
        key: p.key,
        ip: p.ip,
        port: p.port,
    })
}

/// The node part of span and trace id seeds when no device key is known
/// (profiles without the bus phase): a fixed value, so it only keeps ids
/// apart across boots of a single node (the boot counter and, when there
/// is one, virtio-rng entropy do that). Nodes that may share traces have a
/// device key and use [`node_id`] of it.
pub const SINGLE_NODE_ID: u64 = 0x6e65_7875_732d_6f62; // "nexus-ob"

/// The node id of span and trace id seeds: a hash of the device's public
/// key when the node has one (busd runs), else [`SINGLE_NODE_ID`].
pub fn node_id(key: Option<&DeviceKey>) -> u64 {
    key.map_or(SINGLE_NODE_ID, |k| IdSeed::node_from_key(&k.public()))
}

/// The node id traced stamps on spans that arrive over IPC: with a device
/// key its bus id as a number (what busd prints), else [`SINGLE_NODE_ID`].
pub fn traced_node(key: Option<&DeviceKey>) -> u64 {
    key.map_or(SINGLE_NODE_ID, |k| {
        traced::remote::node_of(nexus_bus::DeviceId(k.id().to_bytes()))
    })
}

/// A phase that failed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseFailure {
    /// The phase.
    pub phase: Phase,
    /// What was seen instead of the evidence.
    pub why: String,
}

impl core::fmt::Display for PhaseFailure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: {}", self.phase.as_str(), self.why)
    }
}

/// The one busd client of the two-node phases, made by the first phase
/// that needs it: events it queued (a peer's next stream) must not be lost
/// between phases.
fn shared_bus<E: nexus_ipc::Endpoint>(
    phase: Phase,
    slot: &mut Option<BusClient<E>>,
    make: impl FnOnce() -> Result<BusClient<E>, PhaseFailure>,
) -> Result<&mut BusClient<E>, PhaseFailure> {
    if slot.is_none() {
        *slot = Some(make()?);
    }
    slot.as_mut().ok_or_else(|| PhaseFailure {
        phase,
        why: String::from("no busd client"),
    })
}

/// Runs every phase of `profile` in order; stops at the first failure.
pub fn run<C, P, N>(
    node: &Node<C>,
    platform: &P,
    profile: &Profile,
    started: &Started,
    peer: Option<PeerArgs<'_, N>>,
) -> Result<(), PhaseFailure>
where
    C: Clock + Clone,
    P: Platform,
    N: Network,
{
    let id = |phase: Phase, name: &str| {
        started.id(name).ok_or_else(|| PhaseFailure {
            phase,
            why: format!("endpoint '{name}' not registered"),
        })
    };
    let mut bus_client = None;
    let device = started.device_secret.map(DeviceKey::from_secret);
    let node_id = node_id(device.as_ref());
    for phase in &profile.phases {
        let phase = *phase;
        let fail = |why: String| PhaseFailure { phase, why };
        match phase {
            Phase::Logd => {
                let logd = id(phase, "logd")?;
                let mut main = LogdClient::new(
                    node.endpoint(id(phase, "selftest")?),
                    logd,
                    REPLY_TIMEOUT_NS,
                );
                let mut flood = LogdClient::new(
                    node.endpoint(id(phase, "selftest-flood")?),
                    logd,
                    REPLY_TIMEOUT_NS,
                );
                selftest_client::run(&mut main, &mut flood, started.boot, &mut |m| {
                    node.console(m)
                })
                .map_err(|f| fail(f.0))?;
                node.settle(1000);
            }
            Phase::Metrics => {
                let logd = id(phase, "logd")?;
                let md = id(phase, "metricsd")?;
                let mut main = LogdClient::new(
                    node.endpoint(id(phase, "selftest")?),
                    logd,
                    REPLY_TIMEOUT_NS,
                );
                // Span and trace ids: this node, this boot, and this
                // boot's entropy when the platform has a source (each
                // client adds its endpoint id as the instance).
                let mut entropy = [0u8; 32];
                let cfg = MetricsConfig {
                    timeout_ns: REPLY_TIMEOUT_NS,
                    node_id,
                    boot: started.boot,
                    entropy: platform.entropy(&mut entropy).then_some(entropy),
                    ..MetricsConfig::default()
                };
                let clock = node.clock().clone();
                let mut m = Metrics::new(
                    node.endpoint(id(phase, "selftest-metrics")?),
                    md,
                    clock.clone(),
                    cfg,
                );
                let mut mflood =
                    Metrics::new(node.endpoint(id(phase, "selftest-flood")?), md, clock, cfg);
                let mut settle = |ns: u64| {
                    node.settle(1000);
                    if ns > 0 {
                        platform.sleep(ns);
                    }
                    node.settle(1000);
                };
                selftest_client::metrics::run(
                    &mut main,
                    &mut m,
                    &mut mflood,
                    started.boot,
                    &mut |l| node.console(l),
                    &mut settle,
                )
                .map_err(|f| fail(f.0))?;
            }
            Phase::Obs => {
                let Some(args) = peer.as_ref() else {
                    return Err(fail(String::from("needs the network and nexus.role")));
                };
                let secret = started
                    .device_secret
                    .ok_or_else(|| fail(String::from("busd is not running")))?;
                let other = bus_peer(secret).map_err(fail)?;
                let bus = shared_bus(phase, &mut bus_client, || {
                    Ok(BusClient::new(
                        node.endpoint(id(phase, "selftest")?),
                        id(phase, "busd")?,
                        REPLY_TIMEOUT_NS,
                    ))
                })?;
                let result = match args.role {
                    Role::A => {
                        let mut logd = LogdClient::new(
                            node.endpoint(id(phase, "selftest-obs")?),
                            id(phase, "logd")?,
                            REPLY_TIMEOUT_NS,
                        );
                        let cfg = MetricsConfig {
                            timeout_ns: REPLY_TIMEOUT_NS,
                            node_id,
                            boot: started.boot,
                            ..MetricsConfig::default()
                        };
                        let mut m = Metrics::new(
                            node.endpoint(id(phase, "selftest-metrics")?),
                            id(phase, "metricsd")?,
                            node.clock().clone(),
                            cfg,
                        );
                        selftest_client::obs::run_a(platform, bus, &mut logd, &mut m, other.id)
                    }
                    Role::B => {
                        let cfg = obsscraped::Config::builtin().map_err(fail)?;
                        let mut q = node.endpoint(id(phase, "selftest-obs")?);
                        selftest_client::obs::run_b(
                            platform,
                            bus,
                            &mut q,
                            id(phase, "obsscraped")?,
                            other.id,
                            cfg.logs.sample_ppm,
                            cfg.logs.keep_warn_error,
                            (cfg.logs.events_per_sec, cfg.logs.events_burst),
                            &mut |l| node.console(l),
                        )
                    }
                };
                result.map_err(fail)?;
            }
            Phase::Trace => {
                crate::trace_phase::run(
                    node,
                    platform,
                    id(phase, "traced")?,
                    id(phase, crate::trace_phase::ENDPOINT)?,
                    (node_id, traced_node(device.as_ref())),
                    u64::from(started.boot),
                )
                .map_err(fail)?;
                node.console("SELFTEST: trace local ok");
                crate::trace_phase::run_fallback(
                    node,
                    platform,
                    (id(phase, "traced")?, id(phase, "metricsd")?),
                    id(phase, crate::trace_phase::METRICS_ENDPOINT)?,
                    (node_id, traced_node(device.as_ref())),
                    started.boot,
                )
                .map_err(fail)?;
                node.console("SELFTEST: trace logd fallback ok");
            }
            Phase::MuxTrace => {
                let Some(args) = peer.as_ref() else {
                    return Err(fail(String::from("needs the network and nexus.role")));
                };
                let secret = started
                    .device_secret
                    .ok_or_else(|| fail(String::from("busd is not running")))?;
                let other = bus_peer(secret).map_err(fail)?;
                let bus = shared_bus(phase, &mut bus_client, || {
                    Ok(BusClient::new(
                        node.endpoint(id(phase, "selftest")?),
                        id(phase, "busd")?,
                        REPLY_TIMEOUT_NS,
                    ))
                })?;
                let sides = crate::mux_trace_phase::Sides {
                    me: nexus_bus::DeviceId(DeviceKey::from_secret(secret).id().to_bytes()),
                    peer: other.id,
                    traced: id(phase, "traced")?,
                    from: id(phase, crate::mux_trace_phase::ENDPOINT)?,
                    seed_node: node_id,
                    boot: u64::from(started.boot),
                };
                let result = match args.role {
                    Role::A => crate::mux_trace_phase::run_a(
                        node,
                        platform,
                        bus,
                        &sides,
                        started.store("traced"),
                        &mut |l| node.console(l),
                    ),
                    Role::B => {
                        crate::mux_trace_phase::run_b(node, platform, bus, &sides, &mut |l| {
                            node.console(l)
                        })
                    }
                };
                result.map_err(fail)?;
            }
            Phase::Pair | Phase::Bus => {
                let Some(args) = peer.as_ref() else {
                    return Err(fail(String::from(
                        "needs a virtio-net device, nexus.ip and nexus.role",
                    )));
                };
                let result = if phase == Phase::Bus {
                    let secret = started
                        .device_secret
                        .ok_or_else(|| fail(String::from("busd is not running")))?;
                    let bus = shared_bus(phase, &mut bus_client, || {
                        Ok(BusClient::new(
                            node.endpoint(id(phase, "selftest")?),
                            id(phase, "busd")?,
                            REPLY_TIMEOUT_NS,
                        ))
                    })?;
                    bus_peer(secret).and_then(|peer| {
                        selftest_client::bus::run(platform, args.net, bus, args.role, peer)
                    })
                } else {
                    selftest_client::pair::run(platform, args.net, args.role, args.peer)
                };
                result.map_err(fail)?;
            }
        }
    }
    Ok(())
}
