//! obsscraped: the remote observability collector.
//!
//! * [`config`]: peers (its ACL), sampling, rates, storage budgets;
//!   mirrored by `recipes/observability/obsscraped.toml`.
//! * [`collector`]: the service (streams through busd, resume, sampling,
//!   token buckets, metric reconstruction, storage, queries).
//! * [`query`]: the query contract (recent logs, latest metrics, STATS).
//! * [`rotate`]: segments per data kind, rotated on size and time, dropped
//!   by retention, decided by a pure rotator.
//! * [`region`]: segments on a state-store region (the OS disk);
//! * [`storage`]: in-memory segments; `files` (feature `std`): segments as
//!   files on the host.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod collector;
pub mod config;
#[cfg(feature = "std")]
pub mod files;
pub mod query;
pub mod region;
pub mod rotate;
pub mod storage;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use collector::Collector;
pub use config::Config;
