//! Runs a profile's selftest phases against the node init composed.
//!
//! Each phase is a function of `selftest_client` that prints its markers
//! only after checking this boot's evidence; here they are only called in
//! the profile's order with the endpoints init registered for them.

use alloc::format;
use alloc::string::String;

use dsoftbus::identity::DeviceKey;
use nexus_bounds::Clock;
use nexus_log::LogdClient;
use nexus_metrics::{Metrics, MetricsConfig};
use nexus_svc::node::Node;
use nexus_svc::platform::{Network, Platform};
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
    /// The peer's address (node A dials it).
    pub peer: Option<[u8; 4]>,
    /// This device's key and the peer's public key (the bus phase).
    pub keys: Option<(DeviceKey, [u8; 32])>,
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
    let mut peer = peer;
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
                let cfg = MetricsConfig {
                    timeout_ns: REPLY_TIMEOUT_NS,
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
            Phase::Pair | Phase::Bus => {
                let Some(args) = peer.take() else {
                    return Err(fail(String::from(
                        "needs a virtio-net device, nexus.ip and nexus.role",
                    )));
                };
                let result = match (phase, args.keys) {
                    (Phase::Bus, Some((key, peer_key))) => selftest_client::bus::run(
                        platform, args.net, args.role, args.peer, key, peer_key,
                    ),
                    (Phase::Bus, None) => Err(String::from(
                        "the bus phase needs nexus.key and nexus.peer_key",
                    )),
                    _ => selftest_client::pair::run(platform, args.net, args.role, args.peer),
                };
                result.map_err(fail)?;
            }
        }
    }
    Ok(())
}
