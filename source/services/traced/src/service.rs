//! traced on the service contract (`nexus_svc::Service`): the same code
//! runs on the OS node, the host test node and a host thread. Nothing is
//! persisted yet (the JSONL store is still to come), so there is nothing
//! unsaved to discard.

use alloc::vec::Vec;

use nexus_ipc::ServiceId;
use nexus_metrics::reporter::Spec;
use nexus_metrics::MetricKind;
use nexus_svc::{Ctx, Event, Service};
use nexus_wire::Status;

use crate::server::Traced;

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
    replies_dropped: u64,
}

impl TracedService {
    /// Wraps `traced`.
    pub fn new(traced: Traced) -> Self {
        Self {
            traced,
            replies_dropped: 0,
        }
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
        self.traced.tick(cx.now_ns());
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

    fn discard_unsaved(&mut self) {}
}
