//! Any std Rust program's `tracing` events and spans, and `log` records,
//! into nexus-obs: events become logd records, spans become traced spans.
//!
//! * [`NexusLayer`]: a `tracing_subscriber` [`Layer`](tracing_subscriber::Layer).
//!   Each event is one one-way logd APPEND (level, target, message,
//!   fields with types, `trace_id`/`span_id` of the current span, and the
//!   fields of its spans); each span is a `nexus_trace` span, sent to
//!   traced in one-way SPANS batches when it closes.
//! * [`NexusLogger`]: a `log::Log` sending `log` records (with their
//!   key-values) the same way.
//!
//! Nothing here waits for logd or traced: every frame is one-way and the
//! transport's send never blocks; a full queue drops and counts. Every
//! bound is in [`Bounds`] and every loss in [`LayerStats`] /
//! [`EventStats`]. The mapping, bounds and counters are described in
//! `docs/observability/tracing-layer.md`.
//!
//! ```no_run
//! use nexus_ipc::host::HostBus;
//! use nexus_ipc::router::RouterConfig;
//! use nexus_tracing::NexusLayer;
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! let bus = HostBus::new(RouterConfig::default());
//! let (logd, traced) = (bus.lookup("logd").unwrap(), bus.lookup("traced").unwrap());
//! let layer = NexusLayer::builder(bus.endpoint("app.log").unwrap(), logd)
//!     .traced(bus.endpoint("app.spans").unwrap(), traced)
//!     .min_level(nexus_log::Level::Info)
//!     .build();
//! let handle = layer.handle();
//! let subscriber = tracing_subscriber::registry().with(layer);
//! tracing::subscriber::with_default(subscriber, || {
//!     let _s = tracing::info_span!("request", user_id = 7).entered();
//!     tracing::info!(status = 200, "served");
//! });
//! println!("{:?}", handle.stats());
//! ```

mod clock;
mod events;
mod layer;
mod logger;
mod record;

pub use clock::SystemClock;
pub use events::EventStats;
pub use layer::{level_of, Bounds, Builder, LayerStats, NexusHandle, NexusLayer};
pub use logger::NexusLogger;
pub use record::{sanitize_key, TRUNCATED_KEY};
