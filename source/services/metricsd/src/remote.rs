//! metricsd serves its registry on the bus stream `obs.metrics` (through
//! busd): a collector on another node opens the stream and gets, every
//! [`INTERVAL_NS`], compact delta frames (`nexus_remote::metrics`): each
//! series defined once (name, kind, labels with its `owner`, buckets,
//! help), then only what changed — counter deltas, gauge values, histogram
//! bucket deltas with sum and count. A new stream starts with a full
//! snapshot, so a restarted peer resyncs.
//!
//! Bounded: at most [`MAX_SUBSCRIBERS`] collectors; a collector that has
//! not taken the previous interval gets no new one (the next interval
//! carries the changes since what it did take), so memory per collector is
//! one interval's frames plus the encoder's copy of the registry.

use alloc::format;
use alloc::vec::Vec;

use nexus_bus::proto::{BusEvent, DeviceId, Handle};
use nexus_bus::{AgentEvent, BusAgent, Outbox};
use nexus_ipc::ServiceId;
use nexus_metrics::types::{LabelKey, LabelValue, Labels};
use nexus_remote::frame::frame;
use nexus_remote::metrics::{Definition, DeltaEncoder, HistValue, Series, Value};
use nexus_svc::{Ctx, Event};

use crate::registry::Value as RegValue;
use crate::server::Metricsd;

/// The stream metricsd serves.
pub const STREAM: &str = nexus_remote::METRICS_STREAM;
/// Collectors served at once; more are reset (counted).
pub const MAX_SUBSCRIBERS: usize = 4;
/// How often changes go out.
pub const INTERVAL_NS: u64 = 1_000_000_000;

/// Counters of the `obs.metrics` server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemoteStats {
    /// Collectors that opened the stream.
    pub opened: u64,
    /// Collectors refused (over [`MAX_SUBSCRIBERS`]).
    pub refused: u64,
    /// Intervals sent.
    pub intervals: u64,
    /// Intervals skipped because the collector had not taken the last one.
    pub skipped: u64,
    /// Series left out of the stream (their labels plus `owner` exceed the
    /// label cap).
    pub unexportable: u64,
}

struct Sub {
    handle: Handle,
    peer: DeviceId,
    enc: DeltaEncoder,
    out: Outbox,
    last_ns: Option<u64>,
}

/// metricsd's side of `obs.metrics`.
pub struct MetricsServer {
    agent: BusAgent,
    asked: bool,
    subs: Vec<Sub>,
    stats: RemoteStats,
}

impl core::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("subscribers", &self.subs.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn sender<'a, 'b>(cx: &'a mut Ctx<'b>) -> impl FnMut(ServiceId, &[u8]) -> bool + use<'a, 'b> {
    move |to, frame| cx.send(to, frame).is_ok()
}

/// The registry as remote series: every series, its owner as a label.
fn current(m: &Metricsd, unexportable: &mut u64) -> Vec<Series> {
    let reg = m.registry();
    let mut out = Vec::with_capacity(reg.len());
    for (id, s) in reg.iter() {
        let Some(fam) = reg.family(&s.name) else {
            continue;
        };
        let owner = format!("{}", s.owner.get());
        let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(s.labels.len() + 1);
        pairs.push(("owner", owner.as_str()));
        pairs.extend(s.labels.iter());
        let (Ok(labels), Ok(_), Ok(_)) = (
            Labels::new(&pairs),
            LabelKey::new("owner"),
            LabelValue::new(&owner),
        ) else {
            *unexportable += 1;
            continue;
        };
        let bounds = fam.buckets.as_ref().map_or(&[][..], |b| b.bounds());
        let Ok(mut def) = Definition::new(fam.kind, s.name.clone(), labels, bounds) else {
            *unexportable += 1;
            continue;
        };
        def.help = fam.help.clone();
        let value = match &s.value {
            RegValue::Counter(v) => Value::Counter(*v),
            RegValue::Gauge(v) => Value::Gauge(*v),
            RegValue::Histogram { counts, sum, count } => Value::Histogram(HistValue {
                buckets: counts.clone(),
                sum: *sum,
                count: *count,
            }),
        };
        out.push(Series { id, def, value });
    }
    out
}

impl MetricsServer {
    /// A server talking to busd at `busd`.
    pub fn new(busd: ServiceId) -> Self {
        Self {
            agent: BusAgent::new(busd),
            asked: false,
            subs: Vec::new(),
            stats: RemoteStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> RemoteStats {
        self.stats
    }

    fn index(&self, h: Handle) -> Option<usize> {
        self.subs.iter().position(|s| s.handle == h)
    }

    /// Takes `frame` if it is from busd; returns whether it was.
    pub fn on_frame(&mut self, cx: &mut Ctx<'_>, from: ServiceId, frame: &[u8]) -> bool {
        let Some(ev) = self.agent.on_frame(from, frame) else {
            return false;
        };
        let Some(ev) = ev else {
            return true;
        };
        match ev {
            AgentEvent::Listening(name) if name == STREAM => {
                cx.event(Event::Console(alloc::string::String::from(
                    "metricsd: obs metrics live ready",
                )));
            }
            AgentEvent::ListenFailed(name, status) => {
                cx.event(Event::Console(format!(
                    "metricsd: listen {name} refused: {status}"
                )));
            }
            AgentEvent::Bus(BusEvent::Incoming {
                handle, peer, name, ..
            }) if name == STREAM => {
                if self.subs.len() >= MAX_SUBSCRIBERS {
                    self.stats.refused += 1;
                    self.agent.reset(&mut sender(cx), handle);
                } else {
                    self.stats.opened += 1;
                    self.subs.push(Sub {
                        handle,
                        peer,
                        enc: DeltaEncoder::new(),
                        out: Outbox::new(),
                        last_ns: None,
                    });
                }
            }
            AgentEvent::Sent { handle, n } => {
                if let Some(s) = self.index(handle).and_then(|i| self.subs.get_mut(i)) {
                    s.out.on_sent(n);
                }
            }
            AgentEvent::Bus(BusEvent::Writable(h)) => {
                if let Some(s) = self.index(h).and_then(|i| self.subs.get_mut(i)) {
                    s.out.on_writable();
                }
            }
            AgentEvent::Bus(BusEvent::Closed(h) | BusEvent::Reset { handle: h, .. })
            | AgentEvent::StreamFailed { handle: h, .. } => {
                if let Some(i) = self.index(h) {
                    let s = self.subs.swap_remove(i);
                    let _ = s.peer;
                }
            }
            _ => {}
        }
        true
    }

    /// Asks busd for the stream once; sends an interval to each collector
    /// that is due and has taken the previous one.
    pub fn tick(&mut self, cx: &mut Ctx<'_>, m: &Metricsd, now_ns: u64) {
        if !self.asked {
            self.asked = self.agent.listen(&mut sender(cx), STREAM);
        }
        let due: Vec<usize> = self
            .subs
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.last_ns
                    .is_none_or(|t| now_ns.saturating_sub(t) >= INTERVAL_NS)
            })
            .map(|(i, _)| i)
            .collect();
        let series = if due.is_empty() {
            Vec::new()
        } else {
            let mut unexportable = 0;
            let s = current(m, &mut unexportable);
            self.stats.unexportable = unexportable;
            s
        };
        for i in due {
            let Some(s) = self.subs.get_mut(i) else {
                continue;
            };
            if !s.out.is_empty() {
                self.stats.skipped += 1;
                continue;
            }
            s.last_ns = Some(now_ns);
            match s.enc.encode(now_ns, &series) {
                Ok(bodies) => {
                    for b in bodies {
                        if let Ok(f) = frame(&b) {
                            s.out.load(&f);
                        }
                    }
                    self.stats.intervals += 1;
                }
                Err(e) => {
                    cx.event(Event::Console(format!(
                        "metricsd: obs metrics encode failed: {}",
                        e.reason()
                    )));
                }
            }
        }
        for s in &mut self.subs {
            s.out.pump(&mut self.agent, &mut sender(cx), s.handle);
        }
    }
}
