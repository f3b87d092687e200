//! The service contract every nexus-obs service is written to.
//!
//! A service is a pure core ([`Service`]): it handles one frame at a time
//! from a sender the transport stamped, ticks when time passes, hands its
//! state to one [`Persist`] implementation, and declares the metrics it
//! reports about itself. It never touches a queue, a clock or a disk
//! directly: [`Ctx`] gives it the time, its links (other services,
//! resolved by name when the node starts) and a way to send.
//!
//! One generic [`Shell`] runs any service: drain the endpoint, handle,
//! tick, persist, report, print first-reject markers. The same shell runs
//! as a task on the QEMU runtime's cooperative [`node::Node`], on the
//! host's cooperative test node, and on a host thread (`host`, feature
//! `std`). [`platform`] holds what a platform offers besides IPC (time,
//! console, entropy, TCP).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "std")]
pub mod host;
pub mod node;
pub mod platform;
mod shell;

pub use shell::{Shell, StepReport};

use alloc::string::String;
use alloc::vec::Vec;

use nexus_ipc::{Endpoint, SendError, ServiceId};
use nexus_metrics::reporter::Spec;
use nexus_wire::Status;

/// How often a shell reports its service's own metrics to metricsd.
pub const REPORT_INTERVAL_NS: u64 = 1_000_000_000;
/// The link name self-metrics are reported to.
pub const METRICSD: &str = "metricsd";

/// Other services a service sends to, by name, resolved to transport ids
/// when the node starts. A name that did not resolve is absent: the
/// service runs without that peer (and says so in its own way).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Links {
    entries: Vec<(String, ServiceId)>,
}

impl Links {
    /// No links.
    pub const fn new() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    /// Adds (or replaces) the link `name`.
    pub fn insert(&mut self, name: &str, id: ServiceId) {
        match self.entries.iter_mut().find(|(n, _)| n == name) {
            Some(e) => e.1 = id,
            None => self.entries.push((String::from(name), id)),
        }
    }

    /// The id linked as `name`.
    pub fn get(&self, name: &str) -> Option<ServiceId> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| *id)
    }

    /// Every link, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, ServiceId)> {
        self.entries.iter().map(|(n, id)| (n.as_str(), *id))
    }
}

/// What a service tells its shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A request (or an entry inside one) was refused with this status.
    Rejected(Status),
    /// A whole console line (a marker whose evidence the service holds,
    /// e.g. an authenticated peer coming up).
    Console(String),
}

/// Counters a shell keeps for its service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShellStats {
    /// Frames handed to the service.
    pub frames: u64,
    /// Sends the transport refused (queue full, no endpoint, too large).
    pub sends_dropped: u64,
    /// Persistence flushes that failed.
    pub flush_failures: u64,
    /// Self-metric reports sent.
    pub reports: u64,
    /// Steps in which the service said it made progress on its own
    /// (sockets, timers), so the shell runs it again without waiting.
    pub progress: u64,
}

/// The service's view of the world during one call.
pub struct Ctx<'a> {
    now_ns: u64,
    ep: &'a mut dyn Endpoint,
    links: &'a Links,
    events: &'a mut Vec<Event>,
    stats: &'a mut ShellStats,
}

impl core::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ctx")
            .field("now_ns", &self.now_ns)
            .field("me", &self.ep.id())
            .finish_non_exhaustive()
    }
}

impl<'a> Ctx<'a> {
    /// A context over `ep` at `now_ns` (shells build these; tests may too).
    pub fn new(
        now_ns: u64,
        ep: &'a mut dyn Endpoint,
        links: &'a Links,
        events: &'a mut Vec<Event>,
        stats: &'a mut ShellStats,
    ) -> Self {
        Self {
            now_ns,
            ep,
            links,
            events,
            stats,
        }
    }

    /// The time of this step.
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// This service's own transport id.
    pub fn me(&self) -> ServiceId {
        self.ep.id()
    }

    /// The service linked as `name`, if it resolved.
    pub fn link(&self, name: &str) -> Option<ServiceId> {
        self.links.get(name)
    }

    /// Sends a frame; a refusal is counted and returned (never waited on).
    pub fn send(&mut self, to: ServiceId, frame: &[u8]) -> Result<(), SendError> {
        let r = self.ep.send(to, frame);
        if r.is_err() {
            self.stats.sends_dropped = self.stats.sends_dropped.saturating_add(1);
        }
        r
    }

    /// Reports an outcome (e.g. a reject status, for markers and counts).
    pub fn event(&mut self, e: Event) {
        self.events.push(e);
    }

    /// Says the service moved something outside IPC (bytes on a socket):
    /// the shell's scheduler runs it again soon instead of waiting.
    pub fn progressed(&mut self) {
        self.stats.progress = self.stats.progress.saturating_add(1);
    }
}

/// A service core: decode → decide → encode, no I/O of its own.
pub trait Service {
    /// The name it is registered and printed under (`logd`).
    fn name(&self) -> &'static str;

    /// Handles one frame from `sender` (stamped by the transport). Replies
    /// and other sends go through `cx`.
    fn handle(&mut self, cx: &mut Ctx<'_>, sender: ServiceId, frame: &[u8]);

    /// Called once per shell step, after the queued frames: periodic work
    /// (rollups, expiry, exports).
    fn tick(&mut self, _cx: &mut Ctx<'_>) {}

    /// The metrics this service reports about itself to metricsd (the
    /// link named [`METRICSD`]); empty for none.
    fn self_metrics(&self) -> &'static [Spec] {
        &[]
    }

    /// Current values of [`Service::self_metrics`], in the same order.
    fn self_metric_values(&self, _now_ns: u64, _out: &mut Vec<i64>) {}

    /// Drops whatever is waiting for persistence (a node without a disk:
    /// [`InMemory`] calls it every step, so nothing piles up).
    fn discard_unsaved(&mut self);
}

/// Where a service's state goes besides memory. The shell calls
/// [`Persist::save`] after every step and [`Persist::flush`] when it saved
/// anything.
pub trait Persist<S: ?Sized> {
    /// Buffers whatever changed in `svc` since the last call; returns how
    /// many entries were buffered.
    fn save(&mut self, svc: &mut S) -> u32;
    /// Makes buffered entries durable. False on failure (counted).
    fn flush(&mut self) -> bool;
}

/// No persistence: the state lives in memory only.
#[derive(Debug, Clone, Copy, Default)]
pub struct InMemory;

impl<S: Service + ?Sized> Persist<S> for InMemory {
    fn save(&mut self, svc: &mut S) -> u32 {
        svc.discard_unsaved();
        0
    }
    fn flush(&mut self) -> bool {
        true
    }
}

impl<S: Service + ?Sized, P: Persist<S>> Persist<S> for Option<P> {
    fn save(&mut self, svc: &mut S) -> u32 {
        match self.as_mut() {
            Some(p) => p.save(svc),
            None => InMemory.save(svc),
        }
    }
    fn flush(&mut self) -> bool {
        self.as_mut().is_none_or(|p| p.flush())
    }
}
