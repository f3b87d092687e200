//! The in-process host backend: a [`Router`] behind a mutex, with a condvar
//! for blocking receives. Used by host tests, tools and the host demo.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::router::{RegisterError, Router, RouterConfig, RouterStats};
use crate::{Endpoint, Frame, SendError, ServiceId};

#[derive(Debug)]
struct Shared {
    router: Mutex<Router>,
    arrived: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Router> {
        // A panic in another thread while holding the lock leaves the router
        // consistent (every method keeps its invariants), so keep going.
        self.router.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A handle to one in-process bus. Cloning it shares the bus.
#[derive(Debug, Clone)]
pub struct HostBus {
    shared: Arc<Shared>,
}

impl HostBus {
    /// A bus with the given bounds.
    pub fn new(cfg: RouterConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                router: Mutex::new(Router::new(cfg)),
                arrived: Condvar::new(),
            }),
        }
    }

    /// Registers `name` and returns its endpoint. The bus assigns the id.
    pub fn endpoint(&self, name: &str) -> Result<HostEndpoint, RegisterError> {
        let id = self.shared.lock().register(name)?;
        Ok(HostEndpoint {
            id,
            shared: Arc::clone(&self.shared),
        })
    }

    /// The id registered under `name`.
    pub fn lookup(&self, name: &str) -> Option<ServiceId> {
        self.shared.lock().lookup(name)
    }

    /// The router's counters.
    pub fn stats(&self) -> RouterStats {
        self.shared.lock().stats()
    }
}

/// One registered endpoint on a [`HostBus`]. Dropping it unregisters it.
#[derive(Debug)]
pub struct HostEndpoint {
    id: ServiceId,
    shared: Arc<Shared>,
}

impl Drop for HostEndpoint {
    fn drop(&mut self) {
        self.shared.lock().unregister(self.id);
    }
}

impl Endpoint for HostEndpoint {
    fn id(&self) -> ServiceId {
        self.id
    }

    fn send(&mut self, to: ServiceId, frame: &[u8]) -> Result<(), SendError> {
        self.shared.lock().send(self.id, to, frame)?;
        self.shared.arrived.notify_all();
        Ok(())
    }

    fn try_recv(&mut self) -> Option<Frame> {
        self.shared.lock().recv(self.id)
    }

    fn recv_timeout(&mut self, timeout_ns: u64) -> Option<Frame> {
        let deadline = Instant::now().checked_add(Duration::from_nanos(timeout_ns));
        let mut router = self.shared.lock();
        loop {
            if let Some(f) = router.recv(self.id) {
                return Some(f);
            }
            let left = match deadline {
                Some(d) => d.checked_duration_since(Instant::now())?,
                None => Duration::from_secs(3600),
            };
            router = self
                .shared
                .arrived
                .wait_timeout(router, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_exchange_frames_with_stamped_ids() {
        let bus = HostBus::new(RouterConfig::default());
        let mut server = bus.endpoint("server").unwrap();
        let mut client = bus.endpoint("client").unwrap();
        let sid = server.id();
        let t = std::thread::spawn(move || {
            let f = server.recv_timeout(5_000_000_000).unwrap();
            server.send(f.meta.sender, &f.bytes).unwrap();
            f.meta.sender
        });
        client.send(sid, b"ping").unwrap();
        let reply = client.recv_timeout(5_000_000_000).unwrap();
        assert_eq!(reply.bytes, b"ping");
        assert_eq!(reply.meta.sender, sid);
        assert_eq!(t.join().unwrap(), client.id());
    }

    #[test]
    fn dropping_an_endpoint_frees_its_name() {
        let bus = HostBus::new(RouterConfig::default());
        let ep = bus.endpoint("x").unwrap();
        assert!(bus.endpoint("x").is_err());
        drop(ep);
        assert!(bus.endpoint("x").is_ok());
    }

    #[test]
    fn recv_timeout_returns_none_when_idle() {
        let bus = HostBus::new(RouterConfig::default());
        let mut ep = bus.endpoint("x").unwrap();
        assert!(ep.recv_timeout(1_000_000).is_none());
    }
}
