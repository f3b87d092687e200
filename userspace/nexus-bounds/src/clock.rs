use core::sync::atomic::{AtomicU64, Ordering};

/// A monotonic source of time in nanoseconds.
///
/// Services never read time themselves: they are handed a `Clock`. On the host
/// this is either [`ManualClock`] (tests) or the system clock (tools); on the
/// OS it is the `rdtime` counter scaled to nanoseconds.
pub trait Clock {
    /// Nanoseconds since an arbitrary, fixed origin. Never decreases.
    fn now_ns(&self) -> u64;
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now_ns(&self) -> u64 {
        (**self).now_ns()
    }
}

impl<C: Clock + ?Sized> Clock for alloc::rc::Rc<C> {
    fn now_ns(&self) -> u64 {
        (**self).now_ns()
    }
}

impl<C: Clock + ?Sized> Clock for alloc::sync::Arc<C> {
    fn now_ns(&self) -> u64 {
        (**self).now_ns()
    }
}

/// A clock that only moves when told to. Shareable between threads.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicU64,
}

impl ManualClock {
    /// A clock reading `start_ns`.
    pub const fn new(start_ns: u64) -> Self {
        Self {
            now: AtomicU64::new(start_ns),
        }
    }

    /// Moves the clock forward by `delta_ns` (saturating).
    pub fn advance(&self, delta_ns: u64) {
        let cur = self.now.load(Ordering::Relaxed);
        self.now
            .store(cur.saturating_add(delta_ns), Ordering::Relaxed);
    }

    /// Sets the clock; a value in the past is ignored (the clock is monotonic).
    pub fn set(&self, now_ns: u64) {
        self.now.fetch_max(now_ns, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.now.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_is_monotonic() {
        let c = ManualClock::new(10);
        c.advance(5);
        assert_eq!(c.now_ns(), 15);
        c.set(3);
        assert_eq!(c.now_ns(), 15);
        c.set(100);
        assert_eq!(c.now_ns(), 100);
        c.advance(u64::MAX);
        assert_eq!(c.now_ns(), u64::MAX);
    }
}
