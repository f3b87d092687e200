//! The routing core: named endpoints, bounded queues, sender stamping.
//!
//! The router is plain data with `&mut self` methods; whoever owns it (the
//! OS runtime, or the host backend behind a mutex) supplies the trusted
//! sender id of every send. That is the only place a [`ServiceId`] enters a
//! frame's metadata.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;

use crate::{Frame, FrameMeta, SendError, ServiceId};

/// Bounds of a router (documented in `docs/observability/ipc.md`, "Bounds").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouterConfig {
    /// Frames queued per endpoint before sends to it fail with `QueueFull`.
    pub queue_depth: usize,
    /// Largest frame in bytes.
    pub max_frame_bytes: usize,
    /// Most endpoints that can be registered.
    pub max_endpoints: usize,
    /// Longest endpoint name in bytes.
    pub max_name_len: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            queue_depth: 256,
            max_frame_bytes: 64 * 1024,
            max_endpoints: 1024,
            max_name_len: 64,
        }
    }
}

/// Why an endpoint could not be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterError {
    /// The name is taken.
    NameTaken,
    /// The name is empty or longer than `max_name_len`.
    BadName,
    /// `max_endpoints` reached.
    Full,
}

/// Counters kept by the router.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouterStats {
    /// Frames queued for a receiver.
    pub delivered: u64,
    /// Sends refused because the receiver's queue was full.
    pub queue_full: u64,
    /// Sends refused for size.
    pub too_large: u64,
    /// Sends to an unknown endpoint.
    pub no_endpoint: u64,
}

#[derive(Debug)]
struct Mailbox {
    queue: VecDeque<Frame>,
}

/// The no_std routing core.
#[derive(Debug)]
pub struct Router {
    cfg: RouterConfig,
    next_id: u32,
    names: BTreeMap<String, ServiceId>,
    boxes: BTreeMap<ServiceId, Mailbox>,
    stats: RouterStats,
}

impl Router {
    /// An empty router.
    pub fn new(cfg: RouterConfig) -> Self {
        Self {
            cfg,
            next_id: 1,
            names: BTreeMap::new(),
            boxes: BTreeMap::new(),
            stats: RouterStats::default(),
        }
    }

    /// The router's bounds.
    pub fn config(&self) -> RouterConfig {
        self.cfg
    }

    /// Registers a named endpoint and assigns it the next [`ServiceId`]
    /// (1, 2, 3, … in registration order, so tests are deterministic).
    pub fn register(&mut self, name: &str) -> Result<ServiceId, RegisterError> {
        if name.is_empty() || name.len() > self.cfg.max_name_len {
            return Err(RegisterError::BadName);
        }
        if self.names.contains_key(name) {
            return Err(RegisterError::NameTaken);
        }
        if self.boxes.len() >= self.cfg.max_endpoints {
            return Err(RegisterError::Full);
        }
        let id = ServiceId::new(self.next_id);
        self.next_id = self.next_id.checked_add(1).ok_or(RegisterError::Full)?;
        self.names.insert(String::from(name), id);
        self.boxes.insert(
            id,
            Mailbox {
                queue: VecDeque::new(),
            },
        );
        Ok(id)
    }

    /// Removes an endpoint; its queued frames are dropped and its name freed.
    pub fn unregister(&mut self, id: ServiceId) {
        self.boxes.remove(&id);
        self.names.retain(|_, v| *v != id);
    }

    /// The id registered under `name`.
    pub fn lookup(&self, name: &str) -> Option<ServiceId> {
        self.names.get(name).copied()
    }

    /// Queues `bytes` for `to`, stamped with `from`. The caller is the
    /// transport, which knows `from` for certain.
    pub fn send(&mut self, from: ServiceId, to: ServiceId, bytes: &[u8]) -> Result<(), SendError> {
        if bytes.len() > self.cfg.max_frame_bytes {
            self.stats.too_large += 1;
            return Err(SendError::TooLarge);
        }
        let Some(mb) = self.boxes.get_mut(&to) else {
            self.stats.no_endpoint += 1;
            return Err(SendError::NoSuchEndpoint);
        };
        if mb.queue.len() >= self.cfg.queue_depth {
            self.stats.queue_full += 1;
            return Err(SendError::QueueFull);
        }
        mb.queue.push_back(Frame {
            meta: FrameMeta { sender: from },
            bytes: Vec::from(bytes),
        });
        self.stats.delivered += 1;
        Ok(())
    }

    /// Takes the oldest frame queued for `id`.
    pub fn recv(&mut self, id: ServiceId) -> Option<Frame> {
        self.boxes.get_mut(&id)?.queue.pop_front()
    }

    /// Frames waiting for `id`.
    pub fn queued(&self, id: ServiceId) -> usize {
        self.boxes.get(&id).map_or(0, |m| m.queue.len())
    }

    /// The router's counters.
    pub fn stats(&self) -> RouterStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Router {
        Router::new(RouterConfig {
            queue_depth: 2,
            max_frame_bytes: 8,
            max_endpoints: 3,
            max_name_len: 8,
        })
    }

    #[test]
    fn stamps_the_sender_chosen_by_the_transport() {
        let mut r = small();
        let a = r.register("a").unwrap();
        let b = r.register("b").unwrap();
        assert_eq!((a.get(), b.get()), (1, 2));
        r.send(a, b, b"hi").unwrap();
        let f = r.recv(b).unwrap();
        assert_eq!(f.meta.sender, a);
        assert_eq!(f.bytes, b"hi");
        assert_eq!(r.recv(b), None);
    }

    #[test]
    fn bounds_are_errors_not_hangs() {
        let mut r = small();
        let a = r.register("a").unwrap();
        let b = r.register("b").unwrap();
        r.send(a, b, b"1").unwrap();
        r.send(a, b, b"2").unwrap();
        assert_eq!(r.send(a, b, b"3"), Err(SendError::QueueFull));
        assert_eq!(r.send(a, b, b"123456789"), Err(SendError::TooLarge));
        assert_eq!(
            r.send(a, ServiceId::new(99), b"x"),
            Err(SendError::NoSuchEndpoint)
        );
        let s = r.stats();
        assert_eq!(
            (s.delivered, s.queue_full, s.too_large, s.no_endpoint),
            (2, 1, 1, 1)
        );
        // Draining frees the queue for good.
        r.recv(b).unwrap();
        r.send(a, b, b"3").unwrap();
    }

    #[test]
    fn registration_bounds() {
        let mut r = small();
        assert_eq!(r.register(""), Err(RegisterError::BadName));
        assert_eq!(r.register("123456789"), Err(RegisterError::BadName));
        let a = r.register("a").unwrap();
        assert_eq!(r.register("a"), Err(RegisterError::NameTaken));
        r.register("b").unwrap();
        r.register("c").unwrap();
        assert_eq!(r.register("d"), Err(RegisterError::Full));
        r.unregister(a);
        assert_eq!(r.lookup("a"), None);
        let d = r.register("d").unwrap();
        assert_eq!(d.get(), 4, "ids are never reused");
    }
}
