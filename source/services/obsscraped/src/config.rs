//! obsscraped's configuration, mirrored by
//! `recipes/observability/obsscraped.toml` (built into the OS image; a test
//! keeps the two equal).

use alloc::string::String;
use alloc::vec::Vec;

use serde::Deserialize;

use crate::rotate::Budget;

/// The recipe built into the image.
pub const RECIPE: &str = include_str!("../../../../recipes/observability/obsscraped.toml");

/// A peer to collect from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// A name for people.
    pub name: String,
    /// Its device id, 16 lower-case hex digits (busd's id of its key).
    pub device: String,
    /// Collect its logs (`obs.logs`).
    pub logs: bool,
    /// Collect its metrics (`obs.metrics`).
    pub metrics: bool,
}

/// Log collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsConfig {
    /// Records kept, in parts per million (deterministic by peer and id).
    pub sample_ppm: u32,
    /// Warn and error records are kept whatever the sampling.
    pub keep_warn_error: bool,
    /// Records per second taken from one peer (sustained).
    pub events_per_sec: u32,
    /// Records in a burst.
    pub events_burst: u32,
    /// Bytes per second taken from one peer (sustained).
    pub bytes_per_sec: u32,
    /// Bytes in a burst.
    pub bytes_burst: u32,
    /// Records per chunk asked of the sender.
    pub records_per_chunk: u16,
    /// Recent records kept in memory for queries (all peers).
    pub recent: u32,
}

/// Metric collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Series accepted per peer (label-cardinality cap).
    pub max_series_per_peer: u32,
    /// Refused series per peer before the stream is dropped.
    pub max_refused_per_peer: u32,
    /// A full-resolution sample line per series at most this often (ms).
    pub sample_every_ms: u64,
}

/// Storage budgets per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Logs.
    pub logs: Budget,
    /// Metrics, full resolution.
    pub metrics: Budget,
    /// Metrics, downsampled to one line per series per minute.
    pub metrics_downsampled: Budget,
    /// Traces.
    pub traces: Budget,
}

/// obsscraped's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// A stream that failed is retried after this long (ms).
    pub retry_ms: u64,
    /// Log collection.
    pub logs: LogsConfig,
    /// Metric collection.
    pub metrics: MetricsConfig,
    /// Storage.
    pub storage: StorageConfig,
    /// The peers collected from (its ACL: no other peer is ever opened).
    #[serde(default, rename = "peer")]
    pub peers: Vec<PeerConfig>,
}

impl Config {
    /// Parses a recipe.
    pub fn parse(text: &str) -> Result<Config, String> {
        let cfg: Config = toml::from_str(text).map_err(|e| alloc::format!("{e}"))?;
        for p in &cfg.peers {
            if parse_device(&p.device).is_none() {
                return Err(alloc::format!(
                    "peer {}: device is not 16 hex digits",
                    p.name
                ));
            }
        }
        if cfg.logs.records_per_chunk == 0 || cfg.logs.recent == 0 {
            return Err(String::from(
                "logs.records_per_chunk and logs.recent must be > 0",
            ));
        }
        Ok(cfg)
    }

    /// The built-in recipe.
    pub fn builtin() -> Result<Config, String> {
        Config::parse(RECIPE)
    }
}

/// Parses a device id: 16 lower-case hex digits.
pub fn parse_device(s: &str) -> Option<[u8; 8]> {
    if s.len() != 16
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut out = [0u8; 8];
    for (o, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
        *o = u8::from_str_radix(core::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}
