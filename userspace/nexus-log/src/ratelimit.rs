//! A rate-limited logger layer: at most `max_per_interval` events per
//! interval for each `(target, message key)`, then a `suppressed N` event
//! when that key's window reopens.
//!
//! The table of windows is an [`LruMap`] bounded by `max_keys`; a window
//! evicted while it holds suppressed events reports them at once, so a
//! suppression count is never lost.

use alloc::borrow::Cow;
use alloc::format;
use alloc::vec::Vec;

use nexus_bounds::{Clock, LruMap};

use crate::fields::FieldsBuilder;
use crate::record::Event;
use crate::{Level, Log};

/// Bounds of a [`RateLimited`] layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Events passed per key per interval.
    pub max_per_interval: u32,
    /// Window length in nanoseconds.
    pub interval_ns: u64,
    /// Keys tracked at once.
    pub max_keys: usize,
}

impl Default for RateLimitConfig {
    /// One event per second per key, 256 keys.
    fn default() -> Self {
        Self {
            max_per_interval: 1,
            interval_ns: 1_000_000_000,
            max_keys: 256,
        }
    }
}

type Key = (Cow<'static, str>, &'static str);

#[derive(Debug, Clone, Copy)]
struct Window {
    start_ns: u64,
    passed: u32,
    suppressed: u64,
    level: Level,
}

/// Wraps another [`Log`] and limits it per `(target, key)`.
#[derive(Debug)]
pub struct RateLimited<L, C> {
    inner: L,
    clock: C,
    cfg: RateLimitConfig,
    windows: LruMap<Key, Window>,
    suppressed_total: u64,
}

impl<L: Log, C: Clock> RateLimited<L, C> {
    /// A layer over `inner`, reading time from `clock`.
    pub fn new(inner: L, clock: C, cfg: RateLimitConfig) -> Self {
        Self {
            inner,
            clock,
            cfg,
            windows: LruMap::new(cfg.max_keys),
            suppressed_total: 0,
        }
    }

    /// Events suppressed since creation.
    pub fn suppressed_total(&self) -> u64 {
        self.suppressed_total
    }

    /// The wrapped logger.
    pub fn inner(&self) -> &L {
        &self.inner
    }

    /// The wrapped logger, mutably.
    pub fn inner_mut(&mut self) -> &mut L {
        &mut self.inner
    }

    /// Reports every window that has closed with suppressed events, without
    /// waiting for its key to log again.
    pub fn flush(&mut self) {
        let now = self.clock.now_ns();
        let due: Vec<Key> = self
            .windows
            .iter()
            .filter(|(_, w)| {
                w.suppressed > 0 && now.saturating_sub(w.start_ns) >= self.cfg.interval_ns
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            if let Some(w) = self.windows.remove(&k) {
                self.summary(&k, w);
            }
        }
    }

    fn summary(&mut self, key: &Key, w: Window) {
        if w.suppressed == 0 {
            return;
        }
        let mut f = FieldsBuilder::new();
        f.insert_display("key", &key.1);
        f.insert_display("suppressed", &w.suppressed);
        self.inner.log(Event {
            level: w.level,
            target: key.0.clone(),
            key: key.1,
            message: format!("suppressed {}", w.suppressed),
            fields: f.build(),
        });
    }
}

impl<L: Log, C: Clock> Log for RateLimited<L, C> {
    fn enabled(&self, level: Level) -> bool {
        self.inner.enabled(level)
    }

    fn log(&mut self, event: Event) {
        let now = self.clock.now_ns();
        let key: Key = (event.target.clone(), event.key);
        let (w, evicted) = self.windows.get_or_insert_with(key.clone(), || Window {
            start_ns: now,
            passed: 0,
            suppressed: 0,
            level: event.level,
        });
        let mut reopened = None;
        if now.saturating_sub(w.start_ns) >= self.cfg.interval_ns {
            reopened = Some(*w);
            *w = Window {
                start_ns: now,
                passed: 0,
                suppressed: 0,
                level: event.level,
            };
        }
        let pass = w.passed < self.cfg.max_per_interval;
        if pass {
            w.passed += 1;
        } else {
            w.suppressed += 1;
            w.level = w.level.max(event.level);
            self.suppressed_total += 1;
        }
        if let Some((k, old)) = evicted {
            self.summary(&k, old);
        }
        if let Some(old) = reopened {
            self.summary(&key, old);
        }
        if pass {
            self.inner.log(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use nexus_bounds::ManualClock;

    #[derive(Default)]
    struct Collect(Vec<Event>);
    impl Log for Collect {
        fn log(&mut self, e: Event) {
            self.0.push(e);
        }
    }

    fn ev(target: &'static str, key: &'static str, msg: &str) -> Event {
        Event {
            level: Level::Warn,
            target: Cow::Borrowed(target),
            key,
            message: String::from(msg),
            fields: Ok(crate::Fields::empty()),
        }
    }

    fn messages(l: &RateLimited<Collect, &ManualClock>) -> Vec<String> {
        l.inner().0.iter().map(|e| e.message.clone()).collect()
    }

    #[test]
    fn limits_per_key_and_reports_suppressed_when_window_reopens() {
        let clock = ManualClock::new(0);
        let cfg = RateLimitConfig {
            max_per_interval: 2,
            interval_ns: 1_000,
            max_keys: 8,
        };
        let mut l = RateLimited::new(Collect::default(), &clock, cfg);
        for i in 0..5 {
            l.log(ev("net", "retry {}", &format!("retry {i}")));
        }
        l.log(ev("net", "other", "other"));
        l.log(ev("disk", "retry {}", "disk retry"));
        assert_eq!(messages(&l), ["retry 0", "retry 1", "other", "disk retry"]);
        assert_eq!(l.suppressed_total(), 3);
        clock.advance(1_000);
        l.log(ev("net", "retry {}", "retry 5"));
        assert_eq!(
            messages(&l)[4..],
            [String::from("suppressed 3"), String::from("retry 5")]
        );
        let summary = &l.inner().0[4];
        let fields = summary.fields.clone().unwrap();
        assert_eq!(fields.get("suppressed"), Some("3"));
        assert_eq!(fields.get("key"), Some("retry {}"));
        assert_eq!(summary.target, "net");
    }

    #[test]
    fn flush_reports_closed_windows_and_eviction_never_loses_counts() {
        let clock = ManualClock::new(0);
        let cfg = RateLimitConfig {
            max_per_interval: 1,
            interval_ns: 10,
            max_keys: 1,
        };
        let mut l = RateLimited::new(Collect::default(), &clock, cfg);
        l.log(ev("a", "k", "a1"));
        l.log(ev("a", "k", "a2"));
        // A second key evicts the first window, which reports its count.
        l.log(ev("b", "k", "b1"));
        assert_eq!(messages(&l), ["a1", "suppressed 1", "b1"]);
        l.log(ev("b", "k", "b2"));
        l.flush();
        assert_eq!(messages(&l).len(), 3, "window still open");
        clock.advance(10);
        l.flush();
        assert_eq!(messages(&l)[3], "suppressed 1");
        l.flush();
        assert_eq!(messages(&l).len(), 4, "reported once");
    }
}
