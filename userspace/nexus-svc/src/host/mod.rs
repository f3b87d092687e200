//! The host thread shell: one service on its own thread, over any
//! [`Endpoint`] (the in-process bus), until told to stop.

pub mod net;

use std::string::String;
use std::sync::atomic::{AtomicBool, Ordering};

use nexus_bounds::Clock;
use nexus_ipc::Endpoint;

use crate::{Persist, Service, Shell};

/// Serves until `stop` is set: waits up to `poll_ns` for a frame, then runs
/// one shell step (so ticks and flushes happen even when idle). Console
/// lines go to `console`.
pub fn serve<S: Service, P: Persist<S>, E: Endpoint, C: Clock>(
    shell: &mut Shell<S, P>,
    ep: &mut E,
    clock: &C,
    stop: &AtomicBool,
    poll_ns: u64,
    console: &mut dyn FnMut(&str),
) {
    let mut held = None;
    let mut busy = false;
    while !stop.load(Ordering::Relaxed) {
        // A step that made progress is followed at once by another; an
        // idle one waits for a frame (or `poll_ns`, for ticks).
        if held.is_none() && !busy {
            held = ep.recv_timeout(poll_ns);
        }
        let mut front = Front {
            ep: &mut *ep,
            first: held.take(),
        };
        busy = shell.step(&mut front, clock.now_ns(), console).worked();
    }
}

/// Puts a frame already taken by `recv_timeout` back in front of the queue.
struct Front<'a, E> {
    ep: &'a mut E,
    first: Option<nexus_ipc::Frame>,
}

impl<E: Endpoint> Endpoint for Front<'_, E> {
    fn id(&self) -> nexus_ipc::ServiceId {
        self.ep.id()
    }
    fn send(&mut self, to: nexus_ipc::ServiceId, frame: &[u8]) -> Result<(), nexus_ipc::SendError> {
        self.ep.send(to, frame)
    }
    fn try_recv(&mut self) -> Option<nexus_ipc::Frame> {
        self.first.take().or_else(|| self.ep.try_recv())
    }
    fn recv_timeout(&mut self, timeout_ns: u64) -> Option<nexus_ipc::Frame> {
        self.first
            .take()
            .or_else(|| self.ep.recv_timeout(timeout_ns))
    }
}

/// Console lines collected in memory (host tests and tools print them).
pub fn collect_into(lines: &mut std::vec::Vec<String>) -> impl FnMut(&str) + '_ {
    move |l| lines.push(String::from(l))
}
