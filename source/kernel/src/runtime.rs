//! Tasks, the IPC router and the clock.
//!
//! Services are tasks the scheduler polls; the app (the selftest) is the
//! main flow, and whenever it waits for a frame the scheduler polls the
//! services, so a request is served while its sender waits. Services never
//! wait themselves. The router is `nexus_ipc::router::Router`: bounded
//! queues, and the sender id of every frame is the endpoint it was sent
//! from — a task gets an endpoint from the runtime and has no way to send
//! as another.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::cell::RefCell;

use nexus_bounds::Clock;
use nexus_ipc::router::{RegisterError, Router, RouterConfig};
use nexus_ipc::{Endpoint, Frame, SendError, ServiceId};

/// A service task: handles whatever is queued for it, never blocks.
pub trait Service {
    /// Does the work that is ready; returns whether there was any.
    fn poll(&mut self, rt: &Runtime) -> bool;
}

/// The `time` CSR scaled to nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct RdtimeClock {
    hz: u64,
}

impl RdtimeClock {
    /// A clock for a timer of `hz` ticks per second.
    pub fn new(hz: u64) -> Self {
        Self { hz: hz.max(1) }
    }
}

impl RdtimeClock {
    /// Idles for `ns` nanoseconds of guest time.
    pub fn sleep(&self, ns: u64) {
        let ticks = u128::from(ns) * u128::from(self.hz) / 1_000_000_000;
        let ticks = u64::try_from(ticks).unwrap_or(u64::MAX);
        crate::arch::wait_until(crate::arch::rdtime().saturating_add(ticks));
    }
}

impl Clock for RdtimeClock {
    fn now_ns(&self) -> u64 {
        let ns = u128::from(crate::arch::rdtime()) * 1_000_000_000 / u128::from(self.hz);
        u64::try_from(ns).unwrap_or(u64::MAX)
    }
}

/// The runtime: router, clock, services.
pub struct Runtime {
    router: RefCell<Router>,
    clock: RdtimeClock,
    services: RefCell<Vec<Box<dyn Service>>>,
}

impl Runtime {
    /// A runtime with an empty router.
    pub fn new(cfg: RouterConfig, clock: RdtimeClock) -> Self {
        Self {
            router: RefCell::new(Router::new(cfg)),
            clock,
            services: RefCell::new(Vec::new()),
        }
    }

    /// The clock every task reads.
    pub fn clock(&self) -> &RdtimeClock {
        &self.clock
    }

    /// The router's bounds.
    pub fn router_config(&self) -> RouterConfig {
        self.router.borrow().config()
    }

    /// Registers a named endpoint; the router assigns its id.
    pub fn register(&self, name: &str) -> Result<ServiceId, RegisterError> {
        self.router.borrow_mut().register(name)
    }

    /// The id registered under `name`.
    pub fn lookup(&self, name: &str) -> Option<ServiceId> {
        self.router.borrow().lookup(name)
    }

    /// The endpoint of a registered id. Only the runtime's own boot code
    /// hands endpoints to tasks, one per task.
    pub fn endpoint(&self, id: ServiceId) -> KEndpoint<'_> {
        KEndpoint { rt: self, id }
    }

    /// Adds a service task.
    pub fn add_service(&self, s: Box<dyn Service>) {
        self.services.borrow_mut().push(s);
    }

    /// Polls services until none has work left (every queued frame
    /// handled, every export delivered), at most `max_rounds` rounds.
    pub fn settle(&self, max_rounds: u32) {
        for _ in 0..max_rounds {
            if !self.run_services_once() {
                break;
            }
        }
    }

    /// Polls the services (the network among them) until `ready` holds
    /// or `timeout_ns` of guest time has passed; returns whether `ready`
    /// held. This is how the app waits for a socket, as it waits for IPC.
    pub fn wait_until(&self, timeout_ns: u64, mut ready: impl FnMut() -> bool) -> bool {
        let deadline = self.clock.now_ns().saturating_add(timeout_ns);
        loop {
            if ready() {
                return true;
            }
            self.run_services_once();
            if self.clock.now_ns() >= deadline {
                return ready();
            }
        }
    }

    /// Polls every service once. Re-entrant calls (a service waiting,
    /// which services must not do) do nothing.
    pub fn run_services_once(&self) -> bool {
        let Ok(mut services) = self.services.try_borrow_mut() else {
            return false;
        };
        let mut worked = false;
        for s in services.iter_mut() {
            worked |= s.poll(self);
        }
        worked
    }
}

/// A task's endpoint on the runtime's router.
pub struct KEndpoint<'a> {
    rt: &'a Runtime,
    id: ServiceId,
}

impl Endpoint for KEndpoint<'_> {
    fn id(&self) -> ServiceId {
        self.id
    }

    fn send(&mut self, to: ServiceId, frame: &[u8]) -> Result<(), SendError> {
        self.rt.router.borrow_mut().send(self.id, to, frame)
    }

    fn try_recv(&mut self) -> Option<Frame> {
        self.rt.router.borrow_mut().recv(self.id)
    }

    fn recv_timeout(&mut self, timeout_ns: u64) -> Option<Frame> {
        let deadline = self.rt.clock.now_ns().saturating_add(timeout_ns);
        loop {
            if let Some(f) = self.try_recv() {
                return Some(f);
            }
            let worked = self.rt.run_services_once();
            if !worked && self.rt.clock.now_ns() >= deadline {
                return self.try_recv();
            }
        }
    }
}
