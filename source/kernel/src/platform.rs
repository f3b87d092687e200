//! The runtime as `nexus_svc::platform::Platform`: the guest clock, the
//! UART console, virtio-rng entropy and the scheduler. The two-node
//! phases (`selftest_client::pair`, `selftest_client::bus`) run on it; the
//! network half is `net::Net`.

use core::cell::RefCell;

use nexus_bounds::Clock;
use nexus_svc::platform::Platform;

use crate::console;
use crate::kprintln;
use crate::net::Net;
use crate::runtime::Runtime;
use crate::virtio::Rng;

/// The runtime and its entropy source, as the platform apps see.
pub struct KernelPlatform<'a> {
    rt: &'a Runtime,
    rng: RefCell<Option<Rng>>,
}

impl core::fmt::Debug for KernelPlatform<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KernelPlatform").finish_non_exhaustive()
    }
}

impl<'a> KernelPlatform<'a> {
    /// The platform of `rt`; without `rng` it has no entropy.
    pub fn new(rt: &'a Runtime, rng: Option<Rng>) -> Self {
        Self {
            rt,
            rng: RefCell::new(rng),
        }
    }
}

impl Platform for KernelPlatform<'_> {
    fn now_ns(&self) -> u64 {
        self.rt.clock().now_ns()
    }

    fn sleep(&self, ns: u64) {
        self.rt.clock().sleep(ns);
    }

    fn run_once(&self) -> bool {
        self.rt.run_once()
    }

    fn console(&self, line: &str) {
        console::line(line);
    }

    fn entropy(&self, out: &mut [u8; 32]) -> bool {
        self.rng
            .try_borrow_mut()
            .is_ok_and(|mut r| r.as_mut().is_some_and(|r| r.fill(out)))
    }
}

/// Prints the device's frame counters (after a two-node phase).
pub fn report(net: &Net) {
    let s = net.stats();
    kprintln!(
        "runtime: net frames rx {} tx {}, tx errors {}, rx recycle errors {}",
        s.rx_frames,
        s.tx_frames,
        s.tx_errors,
        s.rx_recycle_errors
    );
}
