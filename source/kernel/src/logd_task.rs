//! logd as a runtime task: `logd::service::LogdService` (the core, its
//! journal on the state store, its self-reporting) plus console markers.

use alloc::rc::Rc;
use core::cell::Cell;

use logd::persist::Persist;
use logd::service::LogdService;
use nexus_bounds::Clock;
use nexus_ipc::ServiceId;
use nexus_log::proto::Status;

use crate::markers::FirstRejects;
use crate::runtime::{Runtime, Service};

/// The logd task.
pub struct LogdTask<P> {
    id: ServiceId,
    svc: LogdService<P>,
    announced: FirstRejects,
    /// Set by the runtime once metricsd serves; logd then reports to it.
    metricsd: Rc<Cell<Option<ServiceId>>>,
    linked: bool,
}

impl<P: Persist> LogdTask<P> {
    /// A task serving endpoint `id`.
    pub fn new(id: ServiceId, svc: LogdService<P>, metricsd: Rc<Cell<Option<ServiceId>>>) -> Self {
        Self {
            id,
            svc,
            announced: FirstRejects::new("logd"),
            metricsd,
            linked: false,
        }
    }
}

impl<P: Persist> Service for LogdTask<P> {
    fn poll(&mut self, rt: &Runtime) -> bool {
        if !self.linked {
            if let Some(md) = self.metricsd.get() {
                self.svc.report_to(md);
                self.linked = true;
            }
        }
        let mut ep = rt.endpoint(self.id);
        let announced = &mut self.announced;
        let mut on_status = |s: Status| announced.note(s);
        self.svc.step(&mut ep, rt.clock().now_ns(), &mut on_status) > 0
    }
}
