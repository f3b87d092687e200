//! logd on the service contract (`nexus_svc::Service`): the core handles a
//! frame, the records it appended wait for the shell's persistence step,
//! and logd's own counters are declared for the shell to report to
//! metricsd. The same code runs on the OS node, the host test node and a
//! host thread.

use alloc::vec::Vec;

use nexus_ipc::ServiceId;
use nexus_metrics::reporter::Spec;
use nexus_metrics::MetricKind;
use nexus_svc::{Ctx, Event, Service};
use nexus_wire::Status;

use crate::remote::LogsServer;
use crate::server::Logd;

/// The name logd registers and prints under.
pub const NAME: &str = "logd";
/// The link to busd: with it, logd serves `obs.logs` to other nodes.
pub const BUSD: &str = "busd";

/// The metrics logd reports about itself.
pub const SELF_METRICS: [Spec; 6] = [
    Spec {
        kind: MetricKind::Gauge,
        name: "logd_records",
    },
    Spec {
        kind: MetricKind::Gauge,
        name: "logd_bytes",
    },
    Spec {
        kind: MetricKind::Counter,
        name: "logd_appended_total",
    },
    Spec {
        kind: MetricKind::Counter,
        name: "logd_evicted_total",
    },
    Spec {
        kind: MetricKind::Counter,
        name: "logd_rejected_total",
    },
    Spec {
        kind: MetricKind::Counter,
        name: "logd_identity_spoofs_total",
    },
];

/// logd as a service: the core plus the ids appended since the last
/// persistence step (at most one step's frames, bounded by the router's
/// queue).
#[derive(Debug)]
pub struct LogdService {
    /// The service core.
    pub logd: Logd,
    unsaved: Vec<u64>,
    /// The `obs.logs` server, once a busd link is seen.
    remote: Option<LogsServer>,
}

impl LogdService {
    /// Wraps `logd`.
    pub fn new(logd: Logd) -> Self {
        Self {
            logd,
            unsaved: Vec::new(),
            remote: None,
        }
    }

    /// The `obs.logs` server, when logd has a busd link.
    pub fn remote(&self) -> Option<&LogsServer> {
        self.remote.as_ref()
    }

    /// Takes the ids of the records appended since the last call, oldest
    /// first (the persistence writes them).
    pub fn take_unsaved(&mut self) -> Vec<u64> {
        core::mem::take(&mut self.unsaved)
    }
}

impl Service for LogdService {
    fn name(&self) -> &'static str {
        NAME
    }

    fn handle(&mut self, cx: &mut Ctx<'_>, sender: ServiceId, frame: &[u8]) {
        if let Some(r) = self.remote.as_mut() {
            if r.on_frame(cx, &self.logd, sender, frame) {
                return;
            }
        }
        let h = self.logd.handle(cx.now_ns(), sender, frame);
        if let Some(id) = h.appended {
            self.unsaved.push(id);
        }
        if let Some(reply) = &h.reply {
            if cx.send(sender, reply).is_err() {
                self.logd.note_reply_dropped();
            }
        }
        if let Some(s) = h.status.filter(|s| *s != Status::Ok) {
            cx.event(Event::Rejected(s));
        }
    }

    fn tick(&mut self, cx: &mut Ctx<'_>) {
        if self.remote.is_none() {
            self.remote = cx.link(BUSD).map(LogsServer::new);
        }
        if let Some(r) = self.remote.as_mut() {
            r.tick(cx, &self.logd);
        }
    }

    fn discard_unsaved(&mut self) {
        self.unsaved.clear();
    }

    fn self_metrics(&self) -> &'static [Spec] {
        &SELF_METRICS
    }

    fn self_metric_values(&self, _now_ns: u64, out: &mut Vec<i64>) {
        let s = self.logd.totals();
        let v = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
        out.extend_from_slice(&[
            v(s.records),
            v(s.bytes),
            v(s.appended),
            v(s.evicted),
            v(rejected_total(&s)),
            v(s.identity_spoofs),
        ]);
    }
}

fn rejected_total(s: &nexus_log::proto::Stats) -> u64 {
    let r = &s.rejects;
    [
        r.malformed,
        r.unsupported,
        r.invalid_args,
        r.over_limit,
        r.rate_limited,
        r.denied,
    ]
    .iter()
    .fold(0u64, |a, b| a.saturating_add(*b))
}
