//! A node: one IPC router, one clock, and cooperative tasks.
//!
//! Services are [`Task`]s the node polls; the app (the selftest) is the
//! main flow, and whenever it waits for a frame the node polls the tasks,
//! so a request is served while its sender waits. Tasks never wait. The
//! router is `nexus_ipc::router::Router`: bounded queues, and the sender
//! of every frame is the endpoint it was sent from — a task gets exactly
//! one endpoint and has no way to send as another. The QEMU runtime runs
//! one node over its timer and UART; host tests run the same node over a
//! manual clock.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::cell::RefCell;

use nexus_bounds::Clock;
use nexus_ipc::router::{RegisterError, Router, RouterConfig};
use nexus_ipc::{Endpoint, Frame, SendError, ServiceId};

/// What a task gets for one poll.
pub struct TaskIo<'a> {
    /// The time of this poll.
    pub now_ns: u64,
    /// The task's own endpoint.
    pub ep: &'a mut dyn Endpoint,
    /// Whole console lines.
    pub console: &'a mut dyn FnMut(&str),
}

impl core::fmt::Debug for TaskIo<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TaskIo")
            .field("now_ns", &self.now_ns)
            .finish_non_exhaustive()
    }
}

/// A task with an IPC endpoint (a service shell).
pub trait Task {
    /// Its name, for diagnostics.
    fn name(&self) -> &str;
    /// Does the work that is ready; returns whether there was any.
    fn poll(&mut self, io: &mut TaskIo<'_>) -> bool;
}

/// Work without an endpoint the node also polls (the network stack).
pub trait Poller {
    /// Does the work that is ready at `now_ns`; whether there was any.
    fn poll(&mut self, now_ns: u64) -> bool;
}

/// How an endpoint's `recv_timeout` behaves when no task has work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    /// Keep polling until the deadline passes on the node's clock (a real
    /// clock: the network may deliver later).
    UntilDeadline,
    /// Return as soon as a whole round did nothing (a manual clock in
    /// tests: time only moves when the test moves it).
    ReturnWhenIdle,
}

type Console = Box<dyn Fn(&str)>;

/// The node.
pub struct Node<C: Clock> {
    router: RefCell<Router>,
    clock: C,
    tasks: RefCell<Vec<(ServiceId, Box<dyn Task>)>>,
    pollers: RefCell<Vec<Box<dyn Poller>>>,
    console: Console,
    idle: Idle,
}

impl<C: Clock> core::fmt::Debug for Node<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Node")
            .field("tasks", &self.tasks.try_borrow().map(|t| t.len()).ok())
            .field("idle", &self.idle)
            .finish_non_exhaustive()
    }
}

impl<C: Clock> Node<C> {
    /// A node with an empty router, printing through `console`.
    pub fn new(cfg: RouterConfig, clock: C, idle: Idle, console: Console) -> Self {
        Self {
            router: RefCell::new(Router::new(cfg)),
            clock,
            tasks: RefCell::new(Vec::new()),
            pollers: RefCell::new(Vec::new()),
            console,
            idle,
        }
    }

    /// The clock every task reads.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// The router's bounds.
    pub fn router_config(&self) -> RouterConfig {
        self.router.borrow().config()
    }

    /// Prints one console line.
    pub fn console(&self, line: &str) {
        (self.console)(line);
    }

    /// Registers a named endpoint; the router assigns its id.
    pub fn register(&self, name: &str) -> Result<ServiceId, RegisterError> {
        self.router.borrow_mut().register(name)
    }

    /// The id registered under `name`.
    pub fn lookup(&self, name: &str) -> Option<ServiceId> {
        self.router.borrow().lookup(name)
    }

    /// The endpoint of a registered id. Only the code composing the node
    /// hands endpoints out, one per task or app.
    pub fn endpoint(&self, id: ServiceId) -> NodeEndpoint<'_, C> {
        NodeEndpoint { node: self, id }
    }

    /// Adds a task serving endpoint `id`.
    pub fn add_task(&self, id: ServiceId, task: Box<dyn Task>) {
        self.tasks.borrow_mut().push((id, task));
    }

    /// Adds a poller (work without an endpoint).
    pub fn add_poller(&self, p: Box<dyn Poller>) {
        self.pollers.borrow_mut().push(p);
    }

    /// Polls every task and poller once. Re-entrant calls (a task waiting,
    /// which tasks must not do) do nothing.
    pub fn run_once(&self) -> bool {
        let now = self.clock.now_ns();
        let mut worked = false;
        if let Ok(mut pollers) = self.pollers.try_borrow_mut() {
            for p in pollers.iter_mut() {
                worked |= p.poll(now);
            }
        }
        let Ok(mut tasks) = self.tasks.try_borrow_mut() else {
            return worked;
        };
        for (id, task) in tasks.iter_mut() {
            let mut ep = self.endpoint(*id);
            let mut console = |l: &str| (self.console)(l);
            let mut io = TaskIo {
                now_ns: now,
                ep: &mut ep,
                console: &mut console,
            };
            worked |= task.poll(&mut io);
        }
        worked
    }

    /// Polls until no task has work left, at most `max_rounds` rounds.
    pub fn settle(&self, max_rounds: u32) {
        for _ in 0..max_rounds {
            if !self.run_once() {
                break;
            }
        }
    }
}

/// An endpoint on a node's router.
pub struct NodeEndpoint<'a, C: Clock> {
    node: &'a Node<C>,
    id: ServiceId,
}

impl<C: Clock> core::fmt::Debug for NodeEndpoint<'_, C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NodeEndpoint")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl<C: Clock> Endpoint for NodeEndpoint<'_, C> {
    fn id(&self) -> ServiceId {
        self.id
    }

    fn send(&mut self, to: ServiceId, frame: &[u8]) -> Result<(), SendError> {
        self.node.router.borrow_mut().send(self.id, to, frame)
    }

    fn try_recv(&mut self) -> Option<Frame> {
        self.node.router.borrow_mut().recv(self.id)
    }

    fn recv_timeout(&mut self, timeout_ns: u64) -> Option<Frame> {
        let deadline = self.node.clock.now_ns().saturating_add(timeout_ns);
        loop {
            if let Some(f) = self.try_recv() {
                return Some(f);
            }
            let worked = self.node.run_once();
            let give_up = match self.node.idle {
                Idle::UntilDeadline => !worked && self.node.clock.now_ns() >= deadline,
                Idle::ReturnWhenIdle => !worked,
            };
            if give_up {
                return self.try_recv();
            }
        }
    }
}
