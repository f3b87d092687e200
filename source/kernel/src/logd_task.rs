//! logd as a runtime task: the service core from `logd`, its journal on
//! the virtio-blk state store, and the console markers.

use logd::persist::{JournalStore, Persist};
use logd::Logd;
use nexus_bounds::Clock;
use nexus_ipc::{Endpoint, ServiceId};
use nexus_log::proto::Status;
use nexus_store::BlockDevice;

use crate::runtime::{Runtime, Service};

/// The logd task.
pub struct LogdTask<D: BlockDevice> {
    id: ServiceId,
    logd: Logd,
    store: Option<JournalStore<D>>,
    announced: [bool; 3],
    flush_failures: u64,
}

/// Rejects that get a console marker, the first time logd produces them.
const MARKED: [Status; 3] = [Status::InvalidArgs, Status::OverLimit, Status::RateLimited];

impl<D: BlockDevice> LogdTask<D> {
    /// A task serving endpoint `id` with `logd`, persisting to `store`.
    pub fn new(id: ServiceId, logd: Logd, store: Option<JournalStore<D>>) -> Self {
        Self {
            id,
            logd,
            store,
            announced: [false; 3],
            flush_failures: 0,
        }
    }
}

impl<D: BlockDevice> Service for LogdTask<D> {
    fn poll(&mut self, rt: &Runtime) -> bool {
        let mut ep = rt.endpoint(self.id);
        let mut worked = false;
        while let Some(frame) = ep.try_recv() {
            worked = true;
            let h = self
                .logd
                .handle(rt.clock().now_ns(), frame.meta.sender, &frame.bytes);
            if let (Some(id), Some(store)) = (h.appended, self.store.as_mut()) {
                Persist::on_appended(store, &self.logd, id);
            }
            if let Some(reply) = &h.reply {
                if ep.send(frame.meta.sender, reply).is_err() {
                    self.logd.note_reply_dropped();
                }
            }
            if let Some(i) = h.status.and_then(|s| MARKED.iter().position(|m| *m == s)) {
                if let (Some(done), Some(status)) = (self.announced.get_mut(i), MARKED.get(i)) {
                    if !*done {
                        *done = true;
                        crate::kprintln!("logd: reject {}", status.as_str());
                    }
                }
            }
        }
        if worked {
            if let Some(store) = self.store.as_mut() {
                if !Persist::flush(store) {
                    self.flush_failures += 1;
                    if self.flush_failures == 1 {
                        crate::kprintln!("logd: state store flush failed");
                    }
                }
            }
        }
        worked
    }
}
