//! The guest clock, and the node the runtime runs.
//!
//! The node (`nexus_svc::node::Node`) is the scheduler and IPC router:
//! services are tasks it polls, the app (the selftest) is the main flow,
//! and whenever the app waits for a frame the node polls the tasks. The
//! runtime gives it the `rdtime` clock and the UART console; init decides
//! what runs on it.

use nexus_bounds::Clock;
use nexus_svc::node::Node;

/// The runtime's node.
pub type Runtime = Node<RdtimeClock>;

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
