//! metricsd as a runtime task: the service step from `metricsd`, its state
//! on its region of the disk, exports to logd through the logd sink, and
//! the console markers.

use metricsd::persist::{InMemory, MetricsStore};
use metricsd::service::step;
use metricsd::Metricsd;
use nexus_bounds::Clock;
use nexus_ipc::ServiceId;
use nexus_log::{Event, Level, Log, LogdSink};
use nexus_metrics::proto::Status;
use nexus_store::BlockDevice;

use crate::markers::FirstRejects;
use crate::runtime::{Runtime, Service};

/// The metricsd task.
pub struct MetricsdTask<D: BlockDevice> {
    id: ServiceId,
    logd: ServiceId,
    m: Metricsd,
    store: Option<MetricsStore<D>>,
    announced: FirstRejects,
    /// Added to the clock: the time replayed from the store, so metricsd's
    /// time moves forward across reboots.
    resume_ns: u64,
}

impl<D: BlockDevice> MetricsdTask<D> {
    /// A task serving endpoint `id`, exporting to logd at `logd`.
    pub fn new(
        id: ServiceId,
        logd: ServiceId,
        m: Metricsd,
        store: Option<MetricsStore<D>>,
    ) -> Self {
        let resume_ns = m.resume_ns();
        Self {
            id,
            logd,
            m,
            store,
            announced: FirstRejects::new("metricsd"),
            resume_ns,
        }
    }
}

impl<D: BlockDevice> Service for MetricsdTask<D> {
    fn poll(&mut self, rt: &Runtime) -> bool {
        let now = self.resume_ns.saturating_add(rt.clock().now_ns());
        let mut ep = rt.endpoint(self.id);
        // Exports go to logd from metricsd's own identity, one-way.
        let mut sink = LogdSink::new(rt.endpoint(self.id), self.logd, Level::Trace);
        let announced = &mut self.announced;
        let mut on_reject = |s: Status| announced.note(s);
        // A record logd's queue cannot take stays in metricsd's outbox.
        let mut export = |e: Event| {
            let before = sink.stats().sent;
            sink.log(e);
            sink.stats().sent > before
        };
        let done = match self.store.as_mut() {
            Some(store) => step(
                &mut self.m,
                &mut ep,
                now,
                store,
                &mut export,
                &mut on_reject,
            ),
            None => step(
                &mut self.m,
                &mut ep,
                now,
                &mut InMemory,
                &mut export,
                &mut on_reject,
            ),
        };
        done.frames > 0 || done.exported > 0
    }
}
