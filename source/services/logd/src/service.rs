//! The I/O step shared by the OS task and the host harnesses: drain the
//! endpoint, handle each frame, persist appends, reply, and report logd's
//! own counters to metricsd (without ever waiting for it).

use nexus_ipc::{Endpoint, ServiceId};
use nexus_log::proto::Status;
use nexus_metrics::reporter::{Reporter, Spec};
use nexus_metrics::MetricKind;

use crate::persist::Persist;
use crate::server::Logd;

/// How often logd reports its counters to metricsd.
pub const REPORT_INTERVAL_NS: u64 = 1_000_000_000;

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

/// logd with its persistence and its self-reporting.
#[derive(Debug)]
pub struct LogdService<P> {
    /// The service core.
    pub logd: Logd,
    persist: P,
    reporter: Option<Reporter>,
    last_report_ns: Option<u64>,
    replies_dropped: u64,
}

impl<P: Persist> LogdService<P> {
    /// Wraps `logd` and its persistence.
    pub fn new(logd: Logd, persist: P) -> Self {
        Self {
            logd,
            persist,
            reporter: None,
            last_report_ns: None,
            replies_dropped: 0,
        }
    }

    /// Starts reporting logd's own metrics to metricsd at `metricsd`.
    pub fn report_to(&mut self, metricsd: ServiceId) {
        self.reporter = Some(Reporter::new(metricsd, &SELF_METRICS));
    }

    /// The persistence (e.g. to take the device back in tests).
    pub fn persist(&mut self) -> &mut P {
        &mut self.persist
    }

    /// Handles everything queued at `now_ns`. `on_status` sees the outcome
    /// of every request (e.g. to print markers). Returns the frames handled.
    pub fn step<E: Endpoint>(
        &mut self,
        ep: &mut E,
        now_ns: u64,
        on_status: &mut dyn FnMut(Status),
    ) -> u32 {
        let mut frames = 0;
        while let Some(frame) = ep.try_recv() {
            frames += 1;
            if self.reporter.as_mut().is_some_and(|r| r.on_frame(&frame)) {
                continue;
            }
            let h = self.logd.handle(now_ns, frame.meta.sender, &frame.bytes);
            if let Some(id) = h.appended {
                self.persist.on_appended(&self.logd, id);
            }
            if let Some(reply) = &h.reply {
                if ep.send(frame.meta.sender, reply).is_err() {
                    self.logd.note_reply_dropped();
                    self.replies_dropped += 1;
                }
            }
            if let Some(s) = h.status {
                on_status(s);
            }
        }
        if frames > 0 {
            self.persist.flush();
        }
        let due = self
            .last_report_ns
            .is_none_or(|t| now_ns.saturating_sub(t) >= REPORT_INTERVAL_NS);
        if let (true, Some(rep)) = (due, self.reporter.as_mut()) {
            self.last_report_ns = Some(now_ns);
            let s = self.logd.stats_for(ep.id());
            let r = s.rejects;
            let rejected = [
                r.malformed,
                r.unsupported,
                r.invalid_args,
                r.over_limit,
                r.rate_limited,
                r.denied,
            ]
            .iter()
            .fold(0u64, |a, b| a.saturating_add(*b));
            let v = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
            rep.report(
                ep,
                &[
                    v(s.records),
                    v(s.bytes),
                    v(s.appended),
                    v(s.evicted),
                    v(rejected),
                    v(s.identity_spoofs),
                ],
            );
        }
        frames
    }
}
