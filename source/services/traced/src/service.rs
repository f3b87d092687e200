//! traced on the service contract (`nexus_svc::Service`): the same code
//! runs on the OS node, the host test node and a host thread. Across
//! nodes it forwards its spans to the collector node, or collects the
//! other nodes' ([`crate::remote`]). Completed traces go to a store when
//! one is given (`Persist`: [`crate::region::JsonlRegion`] on the OS);
//! without one they are not held for it.

use alloc::vec::Vec;

use nexus_ipc::ServiceId;
use nexus_metrics::reporter::Spec;
use nexus_metrics::MetricKind;
use nexus_svc::{Ctx, Event, Service};
use nexus_wire::Status;

use crate::from_logd::LogdFollower;
use crate::remote::{TraceCollector, TraceForwarder};
use crate::server::Traced;

/// traced's role across nodes.
#[derive(Debug)]
pub enum Remote {
    /// Only this node's spans.
    Local,
    /// Sends this node's spans to the collector node.
    Forward(TraceForwarder),
    /// Takes the other nodes' spans on `obs.traces`.
    Collect(TraceCollector),
}

/// The name traced registers and prints under.
pub const NAME: &str = "traced";

/// The metrics traced reports about itself.
pub const SELF_METRICS: [Spec; 5] = [
    Spec {
        kind: MetricKind::Gauge,
        name: "traced_active_traces",
    },
    Spec {
        kind: MetricKind::Counter,
        name: "traced_spans_added_total",
    },
    Spec {
        kind: MetricKind::Counter,
        name: "traced_spans_dropped_total",
    },
    Spec {
        kind: MetricKind::Counter,
        name: "traced_traces_completed_total",
    },
    Spec {
        kind: MetricKind::Counter,
        name: "traced_rejected_total",
    },
];

/// traced as a service.
#[derive(Debug)]
pub struct TracedService {
    /// The service core.
    pub traced: Traced,
    /// Its role across nodes.
    pub remote: Remote,
    /// The logd fallback: span ends read back from logd (when enabled and
    /// linked to logd).
    pub follower: Option<LogdFollower>,
    replies_dropped: u64,
    cross_node_reported: bool,
}

impl TracedService {
    /// Wraps `traced`.
    pub fn new(traced: Traced) -> Self {
        Self {
            traced,
            remote: Remote::Local,
            follower: None,
            replies_dropped: 0,
            cross_node_reported: false,
        }
    }

    /// Forwards this node's spans to `collector` through busd at `busd`,
    /// at most `queue` waiting.
    pub fn forwarding(
        mut self,
        busd: ServiceId,
        collector: nexus_bus::DeviceId,
        queue: usize,
    ) -> Self {
        self.traced.forward_to_collector(queue);
        self.remote = Remote::Forward(TraceForwarder::new(busd, collector));
        self
    }

    /// Reads span ends back from logd (the service must be linked to
    /// `logd`; metricsd's records are trusted for their `owner` when it is
    /// linked to `metricsd`).
    pub fn with_logd_fallback(mut self, cfg: crate::config::LogdFallback) -> Self {
        if cfg.enabled {
            self.follower = Some(LogdFollower::new(cfg, self.traced.node(), None));
        }
        self
    }

    /// Collects the spans other nodes forward, through busd at `busd`.
    pub fn collecting(mut self, busd: ServiceId) -> Self {
        self.remote = Remote::Collect(TraceCollector::new(busd));
        self
    }

    /// Replies the transport refused (the asker's queue was full).
    pub fn replies_dropped(&self) -> u64 {
        self.replies_dropped
    }
}

impl Service for TracedService {
    fn name(&self) -> &'static str {
        NAME
    }

    fn handle(&mut self, cx: &mut Ctx<'_>, sender: ServiceId, frame: &[u8]) {
        let taken = match &mut self.remote {
            Remote::Local => false,
            Remote::Forward(f) => f.on_frame(cx, sender, frame),
            Remote::Collect(c) => c.on_frame(cx, &mut self.traced, sender, frame),
        };
        if taken {
            return;
        }
        // OFFSETS (header byte 3 is the op) is the collector's to answer.
        if let (Remote::Collect(c), Some(&op)) = (&self.remote, frame.get(3)) {
            if op == crate::proto::Op::Offsets.as_u8() {
                if let Ok((h, crate::proto::Request::Offsets)) = crate::proto::decode_request(frame)
                {
                    let reply =
                        crate::proto::encode_reply(&h, &crate::proto::Reply::Offsets(c.offsets()));
                    if cx.send(sender, &reply).is_err() {
                        self.replies_dropped += 1;
                    }
                    return;
                }
            }
        }
        if let (Some(f), Some(logd)) = (self.follower.as_mut(), cx.link("logd")) {
            if sender == logd && frame.starts_with(&nexus_log::proto::MAGIC) {
                let mut spans = Vec::new();
                // A refused or malformed page is counted by the follower.
                let _ = f.on_reply(frame, &mut spans);
                let now = cx.now_ns();
                for s in spans {
                    self.traced.ingest(now, s);
                }
                // A page cut at a bound is followed at once.
                if let Some(q) = f.poll(now) {
                    let _ = cx.send(logd, &q);
                }
                return;
            }
        }
        let a = self.traced.handle(cx.now_ns(), sender.get(), frame);
        if let Some(reply) = &a.frame {
            if cx.send(sender, reply).is_err() {
                self.replies_dropped += 1;
            }
        }
        if a.status != Status::Ok {
            cx.event(Event::Rejected(a.status));
        }
    }

    fn tick(&mut self, cx: &mut Ctx<'_>) {
        match &mut self.remote {
            Remote::Local => {}
            Remote::Forward(f) => f.tick(cx, &mut self.traced),
            Remote::Collect(c) => c.tick(cx, &mut self.traced),
        }
        if let (Some(f), Some(logd)) = (self.follower.as_mut(), cx.link("logd")) {
            f.set_forwarder(cx.link("metricsd"));
            if let Some(q) = f.poll(cx.now_ns()) {
                let _ = cx.send(logd, &q);
            }
        }
        self.traced.tick(cx.now_ns());
        if !self.cross_node_reported && self.traced.cross_node_traces() > 0 {
            // A completed trace holds a span whose parent was recorded on
            // another node, times aligned by that node's clock offset.
            self.cross_node_reported = true;
            cx.event(Event::Console(alloc::string::String::from(
                "traced: cross-node ok",
            )));
        }
    }

    fn self_metrics(&self) -> &'static [Spec] {
        &SELF_METRICS
    }

    fn self_metric_values(&self, _now_ns: u64, out: &mut Vec<i64>) {
        let s = self.traced.stats();
        let c = &s.correlator;
        let v = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
        out.extend_from_slice(&[
            v(self.traced.active() as u64),
            v(c.spans_added),
            v(c.spans_dropped_full
                .saturating_add(c.spans_dropped_duplicate)),
            v(c.completed_idle.saturating_add(c.completed_evicted)),
            v(s.rejects.total()),
        ]);
    }

    fn discard_unsaved(&mut self) {
        while self.traced.next_export().is_some() {}
    }
}
