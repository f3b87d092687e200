//! metricsd on the service contract (`nexus_svc::Service`): frames are
//! handled by the core, the tick rolls up and expires, and the records the
//! core exports (snapshots, span ends) go to logd — the link named
//! [`LOGD`] — as one-way APPENDs from metricsd's own identity. A record
//! logd's queue cannot take now stays first in the core's bounded outbox.

use alloc::vec::Vec;

use nexus_ipc::{SendError, ServiceId};
use nexus_log::proto::{self, AppendRequest};
use nexus_svc::{Ctx, Event, Service};
use nexus_wire::Status;

use crate::remote::MetricsServer;
use crate::server::Metricsd;

/// The name metricsd registers and prints under.
pub const NAME: &str = "metricsd";
/// The link exports go to.
pub const LOGD: &str = "logd";
/// The link to busd: with it, metricsd serves `obs.metrics`.
pub const BUSD: &str = "busd";

/// Counters of the export path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Records sent to logd.
    pub sent: u64,
    /// Records dropped: no logd link, or not encodable, or the transport
    /// refused for a reason other than a full queue.
    pub dropped: u64,
    /// Times logd's queue was full (the record waited for the next step).
    pub deferred: u64,
}

/// metricsd as a service.
#[derive(Debug)]
pub struct MetricsdService {
    /// The core.
    pub core: Metricsd,
    /// Added to the node's clock: the time replayed from the store, so
    /// metricsd's time moves forward across reboots.
    resume_ns: u64,
    nonce: u64,
    exports: ExportStats,
    remote: Option<MetricsServer>,
}

impl MetricsdService {
    /// Wraps `core` (after its store was replayed into it).
    pub fn new(core: Metricsd) -> Self {
        let resume_ns = core.resume_ns();
        Self {
            core,
            resume_ns,
            nonce: 0,
            exports: ExportStats::default(),
            remote: None,
        }
    }

    /// metricsd's time for a node time.
    pub fn time(&self, node_now_ns: u64) -> u64 {
        self.resume_ns.saturating_add(node_now_ns)
    }

    /// Export counters.
    pub fn export_stats(&self) -> ExportStats {
        self.exports
    }

    fn export(&mut self, cx: &mut Ctx<'_>) {
        while let Some(e) = self.core.next_export() {
            let Some(logd) = cx.link(LOGD) else {
                self.exports.dropped += 1;
                continue;
            };
            let body = AppendRequest {
                level: e.level.as_u8(),
                target: e.target,
                message: &e.message,
                fields: e.fields.as_str(),
            };
            self.nonce = self.nonce.wrapping_add(1);
            let Ok(frame) = proto::encode_append(self.nonce, true, &body) else {
                self.exports.dropped += 1;
                continue;
            };
            match cx.send(logd, &frame) {
                Ok(()) => self.exports.sent += 1,
                Err(SendError::QueueFull) => {
                    self.exports.deferred += 1;
                    self.core.requeue_export(e);
                    break;
                }
                Err(_) => self.exports.dropped += 1,
            }
        }
    }
}

impl Service for MetricsdService {
    fn name(&self) -> &'static str {
        NAME
    }

    fn handle(&mut self, cx: &mut Ctx<'_>, sender: ServiceId, frame: &[u8]) {
        if let Some(r) = self.remote.as_mut() {
            if r.on_frame(cx, sender, frame) {
                return;
            }
        }
        let now = self.time(cx.now_ns());
        let h = self.core.handle(now, sender, frame);
        if let Some(s) = h.status.filter(|s| *s != Status::Ok) {
            cx.event(Event::Rejected(s));
        }
        for s in &h.entry_rejects {
            cx.event(Event::Rejected(*s));
        }
        if let Some(reply) = &h.reply {
            // A refused reply is counted by the shell; nothing to retry.
            let _ = cx.send(sender, reply);
        }
    }

    fn tick(&mut self, cx: &mut Ctx<'_>) {
        let now = self.time(cx.now_ns());
        self.core.tick(now);
        self.export(cx);
        if self.remote.is_none() {
            self.remote = cx.link(BUSD).map(MetricsServer::new);
        }
        if let Some(r) = self.remote.as_mut() {
            r.tick(cx, &self.core, now);
        }
    }

    fn discard_unsaved(&mut self) {
        let _: Vec<_> = self.core.drain_persisted();
    }
}
