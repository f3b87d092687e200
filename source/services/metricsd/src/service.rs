//! The I/O step shared by the host server and the OS task: drain the
//! endpoint, handle each frame, reply, run the periodic tick, persist, and
//! hand exports to a logger (a `LogdSink` in practice). One function, so
//! the code the host tests run is the code that boots.

use alloc::borrow::Cow;

use nexus_ipc::Endpoint;
use nexus_log::{Event, Log};
use nexus_metrics::proto::Status;

use crate::persist::Persist;
use crate::server::Metricsd;

/// What one step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Step {
    /// Frames handled.
    pub frames: u32,
    /// Records handed to the logger.
    pub exported: u32,
    /// Replies the transport refused (counted, not retried).
    pub replies_dropped: u32,
}

/// Handles every queued frame at `now_ns`, then ticks, persists and exports.
/// `export` hands one record to logd and says whether it was taken; a record
/// not taken (logd's queue full) stays first in metricsd's bounded outbox
/// for the next step. `on_reject` sees every refusal (frame or entry), e.g.
/// to print markers.
pub fn step<E: Endpoint, P: Persist>(
    m: &mut Metricsd,
    ep: &mut E,
    now_ns: u64,
    persist: &mut P,
    export: &mut dyn FnMut(Event) -> bool,
    on_reject: &mut dyn FnMut(Status),
) -> Step {
    let mut out = Step::default();
    while let Some(frame) = ep.try_recv() {
        out.frames += 1;
        let h = m.handle(now_ns, frame.meta.sender, &frame.bytes);
        if let Some(s) = h.status.filter(|s| *s != Status::Ok) {
            on_reject(s);
        }
        for s in &h.entry_rejects {
            on_reject(*s);
        }
        if let Some(reply) = &h.reply {
            if ep.send(frame.meta.sender, reply).is_err() {
                out.replies_dropped += 1;
            }
        }
    }
    m.tick(now_ns);
    if persist.write(m) > 0 {
        persist.flush();
    }
    while let Some(e) = m.next_export() {
        let event = Event {
            level: e.level,
            target: Cow::Borrowed(e.target),
            key: e.target,
            message: e.message.clone(),
            fields: Ok(e.fields.clone()),
        };
        if !export(event) {
            m.requeue_export(e);
            break;
        }
        out.exported += 1;
    }
    out
}

/// An export function over any [`Log`] that always takes the record (for
/// loggers that cannot refuse, e.g. in tests).
pub fn into_log<L: Log>(log: &mut L) -> impl FnMut(Event) -> bool + '_ {
    move |e| {
        log.log(e);
        true
    }
}
