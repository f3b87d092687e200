//! traced: the trace collector's pure core (no I/O; the service shell and
//! the `obs.traces` stream come on top of it).
//!
//! * [`config`]: the collector's bounds.
//! * [`offset`]: a peer's clock offset from four-timestamp exchanges,
//!   filtered by minimum round trip, with its error bound.
//! * [`correlate`]: finished spans grouped by trace id in a bounded
//!   active-trace table (least recently touched evicted first); a trace is
//!   complete after an idle timeout; a span of a trace already completed
//!   becomes a counted continuation.
//! * [`jsonl`]: one JSON line per completed trace, spans ordered by their
//!   aligned start.
//! * [`proto`]: the IPC contract (SPANS one-way batches, TRACE, RECENT,
//!   STATS); [`server`]: [`Traced`], decode → decide → encode;
//!   [`service`]: it on the service contract (`nexus_svc::Service`);
//!   [`client`]: a tracer sink that packs finished spans into SPANS
//!   frames; `files` (feature `std`): completed traces as rotated JSONL
//!   files on the host; [`region`]: completed traces as JSON lines on a
//!   state-store region (the OS node's disk).
//! * [`link`]: the `obs.traces` frames; [`remote`]: a node's traced
//!   forwarding its spans to the collector node through busd, and the
//!   collector's side, which aligns them with each forwarder's measured
//!   clock offset.
//!   files on the host; `otlp` (feature `otlp`): completed traces
//!   exported to an OpenTelemetry collector over OTLP/HTTP (JSON).
//!   files on the host.
//! * [`from_logd`]: the logd fallback, a follower that pages through
//!   logd's journal and turns metricsd's span-end records into spans.
//!
//! Identity: a span's node and service ([`correlate::Origin`]) are given
//! by the caller from the transport (the IPC sender, the bus session's
//! device), never read from a span's payload.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod client;
pub mod config;
pub mod correlate;
#[cfg(feature = "std")]
pub mod files;
pub mod from_logd;
#[cfg(feature = "std")]
pub mod host;
pub mod jsonl;
pub mod link;
pub mod offset;
#[cfg(feature = "otlp")]
pub mod otlp;
pub mod proto;
pub mod region;
pub mod remote;
pub mod server;
pub mod service;

pub use config::Config;
pub use correlate::{Completed, Completion, Correlator, Ingest, Origin, TracedSpan};
pub use from_logd::LogdFollower;
pub use offset::{Estimate, Exchange, OffsetEstimator};
pub use server::Traced;
pub use service::TracedService;
