//! Tracing for nexus-obs: the pieces every producer and collector of spans
//! shares.
//!
//! * [`ids`]: [`TraceId`] (128 bits) and [`SpanId`] (64 bits), never zero,
//!   printed and parsed as fixed-width lower-case hex and converted to
//!   big-endian bytes (W3C trace-context form); [`TraceFlags`];
//!   [`SpanContext`]; [`SpanStatus`].
//! * [`gen`]: [`IdGenerator`], which mints ids that do not repeat within a
//!   generator by construction and do not collide across nodes, boots and
//!   services except with a documented, negligible probability. Minting
//!   is lock-free (`&self`, atomics).
//! * [`wire`]: the span START and END entry bodies, encoded and decoded
//!   with `nexus-wire` — defined once here for clients and servers.
//! * [`finished`]: a finished span whole (times, status, attributes,
//!   events, tracestate), as services send it to traced and nodes forward
//!   it over `obs.traces`.
//! * [`tracer`]: [`Tracer`] and [`SpanGuard`]: spans timed by an injected
//!   [`Clock`](nexus_bounds::Clock) and delivered to a [`SpanSink`]; a
//!   guard ends exactly once, on [`SpanGuard::end`] or on drop.
//!
//! * [`tracestate`] and [`baggage`]: the W3C vendor list and baggage,
//!   bounded, with `private:` baggage that never leaves the node.
//! * [`sampler`]: parent-based sampling; roots by a ratio applied to the
//!   trace id's low 56 bits (every node agrees), a force list by name.
//! * [`propagation`]: the W3C text map on any [`Carrier`] (with the `std`
//!   feature also `http::HeaderMap`); [`binary`]: the compact form for mux
//!   OPEN metadata and IPC frames. Local and cross-node injection differ.
//! * [`recent`]: a ring of recently finished spans; [`redact`]: the secret
//!   key rule shared with metricsd.
//!
//! The id scheme, the entry layouts and the propagation forms are
//! described byte by byte in `docs/observability/tracing.md`.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod baggage;
pub mod binary;
pub mod finished;
pub mod gen;
pub mod ids;
pub mod propagation;
pub mod recent;
pub mod redact;
pub mod sampler;
pub mod tracer;
pub mod tracestate;
pub mod wire;

pub use baggage::{Baggage, BaggageEntry, BaggageError, BaggageLimits, BaggageReport, Scope};
pub use binary::BinaryError;
pub use gen::{IdGenerator, IdSeed};
pub use ids::{HexError, SpanContext, SpanId, SpanStatus, TraceFlags, TraceId};
pub use propagation::{
    Carrier, ExtractReport, Extracted, InjectReport, PropagationStats, Propagator, TraceContext,
    TraceparentError,
};
pub use recent::{RecentConfig, RecentSpans, SpanRecord};
pub use sampler::{Sampler, SamplerConfig};
pub use tracer::{
    FinishedSpan, SpanEvent, SpanGuard, SpanSink, Tee, Tracer, TracerConfig, TracerStats,
};
pub use tracestate::{TraceState, TraceStateError};

/// Compile-time proof that ids, contexts, the generator, and tracers and
/// guards over a thread-safe clock and sink may cross threads.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<SpanId>();
    send_sync::<TraceId>();
    send_sync::<TraceFlags>();
    send_sync::<SpanContext>();
    send_sync::<SpanStatus>();
    send_sync::<IdGenerator>();
    send_sync::<wire::SpanStart<'static>>();
    send_sync::<wire::SpanEnd<'static>>();
    send_sync::<Tracer<nexus_bounds::ManualClock, tracer::NullSink>>();
    send_sync::<SpanGuard<nexus_bounds::ManualClock, tracer::NullSink>>();
    send_sync::<TraceState>();
    send_sync::<Baggage>();
    send_sync::<Propagator>();
    send_sync::<RecentSpans>();
    send_sync::<Sampler>();
};
