//! The logd side shared by the layer and the `log` bridge: bound a draft,
//! send it one-way with [`LogdSink`], count everything.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use nexus_ipc::{Endpoint, ServiceId};
use nexus_log::limits::RecordBudget;
use nexus_log::{Level, Log, LogdSink, SinkStats};

use crate::record::{self, Draft};

/// What happened to the events (tracing events or `log` records) given to
/// a [`crate::NexusLayer`] or a [`crate::NexusLogger`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventStats {
    /// Events seen (filtered ones included).
    pub seen: u64,
    /// Events below the minimum level (not sent).
    pub filtered: u64,
    /// The logd sink's counters: APPENDs handed to the transport
    /// (`sent`), dropped because logd's queue was full
    /// (`dropped_queue_full`), for another transport error
    /// (`dropped_transport`), or as unencodable (`dropped_invalid`).
    pub logd: SinkStats,
    /// Records that had something cut (they carry `log.truncated`).
    pub records_truncated: u64,
    /// Values, messages and targets shortened to the budget.
    pub values_truncated: u64,
    /// Fields left out (past the field count or byte bound).
    pub fields_dropped: u64,
    /// Field names changed to fit logd's key grammar or to avoid a
    /// reserved or identity key.
    pub keys_renamed: u64,
    /// Field values replaced by `[redacted]` (secret-looking keys).
    pub redacted: u64,
}

#[derive(Debug, Default)]
struct Counters {
    seen: AtomicU64,
    filtered: AtomicU64,
    records_truncated: AtomicU64,
    values_truncated: AtomicU64,
    fields_dropped: AtomicU64,
    keys_renamed: AtomicU64,
    redacted: AtomicU64,
}

fn add(c: &AtomicU64, n: u64) {
    if n > 0 {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves the sink usable
    // (its counters are plain numbers): keep logging.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One-way APPENDs to logd within a budget.
#[derive(Debug)]
pub(crate) struct LogdOut<E> {
    sink: Mutex<LogdSink<E>>,
    budget: RecordBudget,
    secrets: &'static [&'static str],
    min_level: Level,
    c: Counters,
}

impl<E: Endpoint> LogdOut<E> {
    pub(crate) fn new(
        ep: E,
        logd: ServiceId,
        min_level: Level,
        budget: RecordBudget,
        secrets: &'static [&'static str],
    ) -> Self {
        Self {
            // The layer filters (and counts) itself; the sink takes all.
            sink: Mutex::new(LogdSink::new(ep, logd, Level::Trace)),
            budget,
            secrets,
            min_level,
            c: Counters::default(),
        }
    }

    pub(crate) fn budget(&self) -> &RecordBudget {
        &self.budget
    }

    pub(crate) fn min_level(&self) -> Level {
        self.min_level
    }

    /// Counts an event; false (and counted as filtered) below the minimum.
    pub(crate) fn admit(&self, level: Level) -> bool {
        add(&self.c.seen, 1);
        if level < self.min_level {
            add(&self.c.filtered, 1);
            return false;
        }
        true
    }

    /// Bounds and sends one record. Never waits for logd: the sink's send
    /// is one-way and the transport's send never blocks.
    pub(crate) fn send(&self, d: &Draft<'_>) {
        let (event, cuts) = record::build(d, &self.budget, self.secrets);
        add(&self.c.values_truncated, cuts.values);
        add(&self.c.fields_dropped, cuts.fields);
        add(&self.c.keys_renamed, cuts.renamed);
        add(&self.c.redacted, cuts.redacted);
        if cuts.values + cuts.fields > 0 {
            add(&self.c.records_truncated, 1);
        }
        lock(&self.sink).log(event);
    }

    pub(crate) fn stats(&self) -> EventStats {
        EventStats {
            seen: get(&self.c.seen),
            filtered: get(&self.c.filtered),
            logd: lock(&self.sink).stats(),
            records_truncated: get(&self.c.records_truncated),
            values_truncated: get(&self.c.values_truncated),
            fields_dropped: get(&self.c.fields_dropped),
            keys_renamed: get(&self.c.keys_renamed),
            redacted: get(&self.c.redacted),
        }
    }

    /// The id logd sees as the sender of these records.
    pub(crate) fn sender(&self) -> ServiceId {
        lock(&self.sink).endpoint().id()
    }
}
