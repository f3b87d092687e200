//! logd: the nexus-obs journal.
//!
//! * [`config`]: every bound, mirrored by `recipes/observability/logd.toml`.
//! * [`journal`]: records bounded by count and bytes, fair retention.
//! * [`server`]: decode → decide → encode for APPEND / QUERY / STATS.
//! * [`service`]: logd on the service contract (`nexus_svc`): handle,
//!   persistence hand-off, self-metrics for metricsd.
//! * [`persist`]: the journal on the state store (WAL-style append, compaction, restore).
//! * `host` (feature `std`): the TOML recipe loader and a system clock.
//!
//! The wire contract lives in `nexus_log::proto`, shared with clients.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod config;
#[cfg(feature = "std")]
pub mod host;
pub mod journal;
pub mod persist;
pub mod remote;
pub mod server;
pub mod service;

pub use config::Config;
pub use server::{Handled, Logd};
pub use service::LogdService;
