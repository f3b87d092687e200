//! [`NexusLogger`]: the `log` facade to logd.

use std::borrow::Cow;
use std::fmt;

use log::kv::{self, VisitSource};
use nexus_ipc::{Endpoint, ServiceId};
use nexus_log::limits::{RecordBudget, GUARANTEED};
use nexus_log::Level;
use nexus_trace::redact::DEFAULT_SECRET_SEGMENTS;

use crate::events::{EventStats, LogdOut};
use crate::record::{Bounded, Collected, Draft, FieldValue};

/// A `log::Log` sending each record as a one-way logd APPEND: level,
/// target, message and key-values (typed where the value is a number or a
/// boolean), bounded like the layer's events. `log` has no spans, so
/// records carry no `trace_id`/`span_id`; a program using both `tracing`
/// and `log` gets them by routing `log` into `tracing` instead
/// (`tracing-log`'s `LogTracer`) and using [`crate::NexusLayer`].
pub struct NexusLogger<E: Endpoint> {
    out: LogdOut<E>,
}

impl<E: Endpoint + fmt::Debug> fmt::Debug for NexusLogger<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NexusLogger")
            .field("out", &self.out)
            .finish()
    }
}

/// `log`'s level as logd's (one to one).
fn level_of(l: log::Level) -> Level {
    match l {
        log::Level::Error => Level::Error,
        log::Level::Warn => Level::Warn,
        log::Level::Info => Level::Info,
        log::Level::Debug => Level::Debug,
        log::Level::Trace => Level::Trace,
    }
}

fn filter_of(l: Level) -> log::LevelFilter {
    match l {
        Level::Error => log::LevelFilter::Error,
        Level::Warn => log::LevelFilter::Warn,
        Level::Info => log::LevelFilter::Info,
        Level::Debug => log::LevelFilter::Debug,
        Level::Trace => log::LevelFilter::Trace,
    }
}

impl<E: Endpoint> NexusLogger<E> {
    /// A logger sending from `ep` to the logd endpoint `logd`, records
    /// below `min_level` filtered, within
    /// [`nexus_log::limits::GUARANTEED`].
    pub fn new(ep: E, logd: ServiceId, min_level: Level) -> Self {
        Self::with_budget(ep, logd, min_level, GUARANTEED)
    }

    /// The same within `budget` (e.g. logd's own `[record]` limits).
    pub fn with_budget(ep: E, logd: ServiceId, min_level: Level, budget: RecordBudget) -> Self {
        Self {
            out: LogdOut::new(ep, logd, min_level, budget, &DEFAULT_SECRET_SEGMENTS),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> EventStats {
        self.out.stats()
    }

    /// The id logd sees as the sender of these records.
    pub fn sender(&self) -> ServiceId {
        self.out.sender()
    }
}

impl<E: Endpoint + Send + 'static> NexusLogger<E> {
    /// Installs the logger as `log`'s global logger (once per process; it
    /// lives until the process ends) and sets `log`'s maximum level to
    /// its minimum. Returns it, for its counters.
    pub fn init(self) -> Result<&'static Self, log::SetLoggerError> {
        let max = filter_of(self.out.min_level());
        let me: &'static Self = Box::leak(Box::new(self));
        log::set_logger(me)?;
        log::set_max_level(max);
        Ok(me)
    }
}

struct KvVisitor<'a> {
    fields: &'a mut Collected,
    cap: usize,
}

impl<'kvs> VisitSource<'kvs> for KvVisitor<'_> {
    fn visit_pair(&mut self, key: kv::Key<'kvs>, value: kv::Value<'kvs>) -> Result<(), kv::Error> {
        let v = if let Some(b) = value.to_bool() {
            FieldValue::Bool(b)
        } else if let Some(i) = value.to_i64() {
            FieldValue::I64(i)
        } else if let Some(u) = value.to_u64() {
            FieldValue::U64(u)
        } else if let Some(f) = value.to_f64() {
            FieldValue::F64(f)
        } else {
            FieldValue::Str(Bounded::display(self.cap, &value).0)
        };
        let (name, _) = Bounded::display(self.cap, &key);
        self.fields.put(Cow::Owned(name), v);
        Ok(())
    }
}

impl<E: Endpoint + Send> log::Log for NexusLogger<E> {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        level_of(metadata.level()) >= self.out.min_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        let level = level_of(record.level());
        if !self.out.admit(level) {
            return;
        }
        let budget = *self.out.budget();
        let cap = budget.value_len.max(budget.message_len);
        let cap = cap.saturating_mul(2).saturating_add(8);
        let (message, _) = Bounded::display(cap, record.args());
        let mut own = Collected::new(budget.fields);
        let _ = record.key_values().visit(&mut KvVisitor {
            fields: &mut own,
            cap,
        });
        self.out.send(&Draft {
            level,
            target: record.target(),
            key: "log",
            message: &message,
            ids: None,
            groups: vec![&own],
            pre_dropped: u64::from(own.dropped),
        });
    }

    fn flush(&self) {}
}
