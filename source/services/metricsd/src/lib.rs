//! metricsd: the nexus-obs metrics service.
//!
//! * [`config`]: bounds and policy, mirrored by `recipes/observability/metrics.toml`.
//! * [`registry`]: series deduplicated by (owner, name, labels), capped.
//! * [`spans`]: the live span table.
//! * [`rollup`] and [`retention`]: raw → 10 s → 60 s segments, by time, and their TTL.
//! * [`expo`]: Prometheus text exposition.
//! * [`server`]: decode → decide → encode, and the periodic tick.
//! * [`service`]: metricsd on the service contract (`nexus_svc`), exporting to logd.
//! * [`persist`]: WAL, segments and registrations on the state store.
//!
//! The wire contract is `nexus_metrics::proto`, shared with clients.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod config;
pub mod expo;
pub mod persist;
pub mod registry;
pub mod remote;
pub mod retention;
pub mod rollup;
pub mod server;
pub mod service;
pub mod spans;

pub use config::Config;
pub use server::{Export, Handled, Metricsd, Persisted};
pub use service::MetricsdService;
