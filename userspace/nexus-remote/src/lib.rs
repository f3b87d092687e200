//! The remote observability wire: what `obs.logs` (logd) and `obs.metrics`
//! (metricsd) speak to a collector (obsscraped) over busd streams.
//!
//! Sans-I/O and shared by both ends, so a frame is defined once:
//!
//! * [`frame`]: `len u32 | body` framing of a byte stream, bounded by
//!   [`frame::MAX_FRAME`], reassembled from arbitrary chunks.
//! * [`logs`]: OPEN / HEADER / CHUNK / GAP frames, the deterministic
//!   sampling rule [`logs::keep`], and the collector's [`logs::Resume`]
//!   bookkeeping (order checks, exact gap counts across reconnects).
//! * [`metrics`]: DEFINE and INTERVAL delta frames with LEB128 varints, the
//!   sender's [`metrics::DeltaEncoder`] and the collector's
//!   [`metrics::Reconstructor`] (cardinality cap, order and kind checks).
//! * [`varint`]: LEB128 / zigzag in the `nexus_wire` Reader/Writer style.
//!
//! Every decoder returns a [`RemoteError`] for malformed input and never
//! panics; every error means "disconnect the peer with
//! [`RemoteError::reason`]". Layouts byte by byte are in the module docs
//! and in `docs/observability/remote.md`.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod error;
pub mod frame;
pub mod logs;
pub mod metrics;
pub mod varint;

pub use error::RemoteError;

/// Service name of the log stream.
pub const LOGS_STREAM: &str = "obs.logs";
/// Service name of the metrics stream.
pub const METRICS_STREAM: &str = "obs.metrics";
