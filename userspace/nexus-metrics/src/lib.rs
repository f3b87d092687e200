//! Metrics for nexus-obs.
//!
//! * [`types`]: validated newtypes — [`MetricName`], [`Labels`], [`Buckets`],
//!   [`SeriesId`] — at every boundary.
//! * [`proto`]: the metricsd wire contract, shared with the server (its
//!   span entries are `nexus_trace::wire`'s bodies).
//! * [`client`]: [`Metrics`], cached handles with lock-free updates,
//!   batched one-way flushes. Spans are `nexus_trace` guards
//!   ([`SpanGuard`]) whose ids come from a `nexus_trace::IdGenerator` and
//!   whose entries ride the same flushes ([`SpanQueue`]).
//! * [`reporter`]: registration and reporting for services that must
//!   never wait (logd reports its own counters this way).
//! * Macros [`counter!`], [`gauge!`], [`histogram!`], [`span!`].
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod client;
pub mod proto;
pub mod reporter;
pub mod types;

pub use client::{
    Counter, FlushStats, Gauge, Histogram, Metrics, MetricsConfig, MetricsError, SpanGuard,
    SpanQueue,
};
pub use types::{
    Buckets, Help, LabelKey, LabelValue, Labels, MetricKind, MetricName, SeriesId, TypeError,
};

/// Compile-time proof that handles and ids may cross threads.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Counter>();
    send_sync::<Gauge>();
    send_sync::<Histogram>();
    send_sync::<SeriesId>();
    send_sync::<MetricName>();
    send_sync::<Labels>();
    send_sync::<Buckets>();
    send_sync::<SpanGuard<nexus_bounds::ManualClock>>();
};

/// The counter `name{k = v, …}` of a [`Metrics`], resolved once and cached:
/// `counter!(m, "requests_total", "route" => "/a")?.inc()`.
#[macro_export]
macro_rules! counter {
    ($m:expr, $name:expr $(, $k:expr => $v:expr)* $(,)?) => {
        $m.counter($name, &[$(($k, $v)),*])
    };
}

/// The gauge `name{k = v, …}`: `gauge!(m, "queue_depth")?.set(3)`.
#[macro_export]
macro_rules! gauge {
    ($m:expr, $name:expr $(, $k:expr => $v:expr)* $(,)?) => {
        $m.gauge($name, &[$(($k, $v)),*])
    };
}

/// The histogram `name{k = v, …}` with bounds:
/// `histogram!(m, "latency_us", [10, 100, 1000], "op" => "read")?.observe(42)`.
#[macro_export]
macro_rules! histogram {
    ($m:expr, $name:expr, [$($b:expr),* $(,)?] $(, $k:expr => $v:expr)* $(,)?) => {
        $m.histogram($name, &[$(($k, $v)),*], &[$($b),+])
    };
}

/// A span guard: `let s = span!(m, "load_config");` (a root span) or
/// `span!(parent => "child")`. It ends when dropped.
#[macro_export]
macro_rules! span {
    ($parent:expr => $name:expr) => {
        $parent.child($name)
    };
    ($m:expr, $name:expr) => {
        $m.span($name)
    };
}
