//! The default clock: wall time in nanoseconds since the Unix epoch, never
//! going back (a step back of the system clock holds the last reading).

use std::sync::atomic::{AtomicU64, Ordering};

use nexus_bounds::Clock;

/// Wall-clock nanoseconds since the Unix epoch, made monotonic. Span
/// times in traced and in OTLP exports are then real dates.
#[derive(Debug, Default)]
pub struct SystemClock {
    last: AtomicU64,
}

impl Clock for SystemClock {
    fn now_ns(&self) -> u64 {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let prev = self.last.fetch_max(wall, Ordering::Relaxed);
        prev.max(wall)
    }
}
