//! nexus-obs: the host's view of nexus-obs nodes (see the binary's help
//! and `docs/observability/host.md`).
//!
//! * [`config`]: the cluster file (the host's device, the nodes, tokens).
//! * [`node`]: a node of the cluster run on the host (the same service
//!   cores as on the OS) — what the tool watches in tests and demos.
//! * [`viewer`]: the host's own device on the bus: busd, obsscraped's
//!   collector and traced, queried over their IPC contracts.
//! * [`render`]: log lines, the metrics table, the trace waterfall.
//! * [`http`]: `serve` (Prometheus/OpenMetrics, logs and traces as JSON).
//! * [`time`]: `--since` / `--until` values.
//! * [`otlp_logs`]: the nodes' records as OTLP/HTTP JSON (`serve`).

pub mod config;
pub mod http;
pub mod node;
pub mod otlp_logs;
pub mod render;
pub mod time;
pub mod viewer;
