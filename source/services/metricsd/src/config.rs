//! metricsd's bounds and policy. Defaults equal
//! `recipes/observability/metrics.toml` (a test checks that), so the OS
//! image, which has no TOML parser, carries the same values; the host reads
//! the file. Every key is explained in `docs/observability/metrics.md`.

use alloc::string::String;
use alloc::vec::Vec;

use nexus_log::limits::{
    GUARANTEED_FIELDS, GUARANTEED_KEY_LEN, GUARANTEED_MESSAGE_LEN, GUARANTEED_VALUE_LEN,
};
use serde::Deserialize;

/// The prefix of an attribute's field key in a span-end record.
pub const ATTR_FIELD_PREFIX: &str = "attr.";
/// Fields of a span-end record besides attributes: `trace_id`, `span_id`,
/// `parent_id`, `start_ns`, `end_ns`, `duration_ns`, `status`, `owner`.
pub const SPAN_FIXED_FIELDS: usize = 8;
/// Largest `spans.max_attr_key_len`: `attr.<key>` must fit logd's
/// guaranteed key length (32 - 5 = 27).
pub const MAX_ATTR_KEY_LEN: u32 = (GUARANTEED_KEY_LEN - ATTR_FIELD_PREFIX.len()) as u32;
/// Largest `spans.max_attr_value_len`: logd's guaranteed value length (128).
pub const MAX_ATTR_VALUE_LEN: u32 = GUARANTEED_VALUE_LEN as u32;
/// Largest `spans.max_name_len`: the name is the record's message (128).
pub const MAX_SPAN_NAME_LEN: u32 = GUARANTEED_MESSAGE_LEN as u32;
/// Largest `spans.max_attrs`: the record's fields must fit logd's
/// guaranteed count (32 - 8 = 24). Their bytes may still not fit: then
/// attributes are trimmed (see `EndedSpan::fields`).
pub const MAX_ATTRS: u32 = (GUARANTEED_FIELDS - SPAN_FIXED_FIELDS) as u32;

/// Series caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cardinality {
    /// Series of one metric of one sender.
    pub max_series_per_metric: u32,
    /// Series of one sender, all metrics.
    pub max_series_per_sender: u32,
    /// Series in total.
    pub max_series_global: u32,
}

/// Per-sender budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Entries (updates, span events, registrations) per second, sustained.
    pub events_per_sec: u32,
    /// Entries in a burst.
    pub events_burst: u32,
    /// Frame bytes per second, sustained.
    pub bytes_per_sec: u32,
    /// Frame bytes in a burst.
    pub bytes_burst: u32,
    /// Senders tracked; the least recently seen is evicted.
    pub max_senders: u32,
}

/// Span table and span fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spans {
    /// Spans started and not ended, all senders.
    pub max_live: u32,
    /// Spans started and not ended, one sender.
    pub max_live_per_sender: u32,
    /// A span not ended after this long (metricsd's clock) is dropped and
    /// counted, so a sender that never ends spans cannot hold the table.
    pub max_age_secs: u64,
    /// Longest span name.
    pub max_name_len: u32,
    /// Most attributes on a span end.
    pub max_attrs: u32,
    /// Longest attribute key.
    pub max_attr_key_len: u32,
    /// Longest attribute value.
    pub max_attr_value_len: u32,
}

/// Batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// Entries in one BATCH frame.
    pub max_entries: u32,
}

/// Rollups and retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Open (series, window) accumulators.
    pub max_open_windows: u32,
    /// How long 10 s segments are kept.
    pub ttl_10s_secs: u64,
    /// How long 60 s segments are kept.
    pub ttl_60s_secs: u64,
    /// Segments kept in total (oldest 10 s first beyond it).
    pub max_segments: u32,
    /// Raw samples of open windows kept for the next compaction of the WAL.
    pub wal_max_samples: u32,
}

/// Export to logd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Export {
    /// Snapshot cadence.
    pub snapshot_interval_ms: u64,
    /// Series per snapshot (the rest is counted as skipped).
    pub max_records_per_snapshot: u32,
    /// Records waiting to be sent to logd.
    pub max_outbox: u32,
}

/// Secret policy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redact {
    /// Secret-looking words. A label or attribute key is secret-looking when
    /// one of these equals the whole key or a run of its segments: the key
    /// is cut at `_`, `.`, `-` and at a lower-to-upper case change, and
    /// compared case-insensitively (`api_key` matches `x_api_key`,
    /// `apiKey`, `API_KEY`, never `monkey`). Such labels are refused, such
    /// attribute values never exported.
    pub deny_key_segments: Vec<String>,
}

/// Everything metricsd is bounded by.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Series caps.
    pub cardinality: Cardinality,
    /// Budgets.
    pub rate: Rate,
    /// Spans.
    pub spans: Spans,
    /// Batches.
    pub batch: Batch,
    /// Rollups and retention.
    pub retention: Retention,
    /// Export.
    pub export: Export,
    /// Secret policy.
    pub redact: Redact,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            cardinality: Cardinality {
                max_series_per_metric: 64,
                max_series_per_sender: 256,
                max_series_global: 1024,
            },
            rate: Rate {
                events_per_sec: 2000,
                events_burst: 4000,
                bytes_per_sec: 262_144,
                bytes_burst: 524_288,
                max_senders: 64,
            },
            spans: Spans {
                max_live: 256,
                max_live_per_sender: 64,
                max_age_secs: 600,
                max_name_len: 64,
                max_attrs: 16,
                max_attr_key_len: MAX_ATTR_KEY_LEN,
                max_attr_value_len: MAX_ATTR_VALUE_LEN,
            },
            batch: Batch { max_entries: 512 },
            retention: Retention {
                max_open_windows: 4096,
                ttl_10s_secs: 3600,
                ttl_60s_secs: 86_400,
                max_segments: 8192,
                wal_max_samples: 8192,
            },
            export: Export {
                snapshot_interval_ms: 10_000,
                max_records_per_snapshot: 1024,
                max_outbox: 4096,
            },
            redact: Redact {
                deny_key_segments: DEFAULT_SECRET_SEGMENTS
                    .into_iter()
                    .map(String::from)
                    .collect(),
            },
        }
    }
}

/// The default `redact.deny_key_segments` (owned by `nexus_trace::redact`,
/// whose matching rule metricsd uses, so span attributes are redacted by
/// the tracer and here alike).
pub use nexus_trace::redact::DEFAULT_SECRET_SEGMENTS;

/// A config that cannot work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigError(pub &'static str);

impl Config {
    /// Checks that every bound is usable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let nonzero = [
            (
                "cardinality.max_series_per_metric",
                u64::from(self.cardinality.max_series_per_metric),
            ),
            (
                "cardinality.max_series_per_sender",
                u64::from(self.cardinality.max_series_per_sender),
            ),
            (
                "cardinality.max_series_global",
                u64::from(self.cardinality.max_series_global),
            ),
            ("rate.events_per_sec", u64::from(self.rate.events_per_sec)),
            ("rate.events_burst", u64::from(self.rate.events_burst)),
            ("rate.bytes_per_sec", u64::from(self.rate.bytes_per_sec)),
            ("rate.bytes_burst", u64::from(self.rate.bytes_burst)),
            ("rate.max_senders", u64::from(self.rate.max_senders)),
            ("spans.max_live", u64::from(self.spans.max_live)),
            (
                "spans.max_live_per_sender",
                u64::from(self.spans.max_live_per_sender),
            ),
            ("spans.max_age_secs", self.spans.max_age_secs),
            ("batch.max_entries", u64::from(self.batch.max_entries)),
            (
                "retention.max_open_windows",
                u64::from(self.retention.max_open_windows),
            ),
            (
                "retention.max_segments",
                u64::from(self.retention.max_segments),
            ),
            (
                "export.snapshot_interval_ms",
                self.export.snapshot_interval_ms,
            ),
            ("export.max_outbox", u64::from(self.export.max_outbox)),
        ];
        for (name, v) in nonzero {
            if v == 0 {
                return Err(ConfigError(name));
            }
        }
        if self.cardinality.max_series_per_metric > self.cardinality.max_series_per_sender
            || self.cardinality.max_series_per_sender > self.cardinality.max_series_global
        {
            return Err(ConfigError(
                "cardinality caps must nest: per_metric <= per_sender <= global",
            ));
        }
        if self.spans.max_live_per_sender > self.spans.max_live {
            return Err(ConfigError(
                "spans.max_live_per_sender must not exceed spans.max_live",
            ));
        }
        if self.batch.max_entries > self.rate.events_burst {
            return Err(ConfigError("a full batch must fit rate.events_burst"));
        }
        if self.spans.max_name_len > 255
            || self.spans.max_attr_key_len > 255
            || self.spans.max_attr_value_len > 255
        {
            return Err(ConfigError("span strings travel with u8 lengths"));
        }
        // Span-end records go to logd: what logd guarantees bounds them.
        let logd_bounds = [
            (
                self.spans.max_name_len,
                MAX_SPAN_NAME_LEN,
                "spans.max_name_len over logd's guaranteed message length",
            ),
            (
                self.spans.max_attr_key_len,
                MAX_ATTR_KEY_LEN,
                "spans.max_attr_key_len: attr.<key> over logd's guaranteed key length",
            ),
            (
                self.spans.max_attr_value_len,
                MAX_ATTR_VALUE_LEN,
                "spans.max_attr_value_len over logd's guaranteed value length",
            ),
            (
                self.spans.max_attrs,
                MAX_ATTRS,
                "spans.max_attrs over logd's guaranteed field count",
            ),
        ];
        for (v, max, why) in logd_bounds {
            if v > max {
                return Err(ConfigError(why));
            }
        }
        Ok(())
    }

    /// True if `key` looks like it names a secret: a
    /// `redact.deny_key_segments` word is the whole key or a run of its
    /// segments (see [`Redact`]).
    pub fn is_secret_key(&self, key: &str) -> bool {
        nexus_trace::redact::is_secret_key(key, &self.redact.deny_key_segments)
    }
}

/// Parses a metrics recipe (the format of `recipes/observability/metrics.toml`).
#[cfg(feature = "std")]
pub fn parse_recipe(text: &str) -> Result<Config, std::string::String> {
    use std::string::ToString;
    toml::from_str(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_match_whole_segments_only() {
        let c = Config::default();
        for secret in [
            "token",
            "api_key",
            "x_api_key",
            "apiKey",
            "API_KEY",
            "authToken",
            "auth",
            "authorization",
            "password",
            "db.password",
            "session_id",
            "client_secret",
            "set-cookie",
            "private_key_path",
        ] {
            assert!(c.is_secret_key(secret), "{secret}");
        }
        for innocent in [
            "author",
            "keyspace",
            "monkey",
            "tokenizer",
            "key",
            "route",
            "authority",
            "sessions_total_kind",
            "turkey_api",
        ] {
            assert!(!c.is_secret_key(innocent), "{innocent}");
        }
    }

    #[test]
    fn segments_cut_at_separators_and_case_changes() {
        let s: Vec<&str> = nexus_trace::redact::segments("a_bC.d-eF9Gh__").collect();
        assert_eq!(s, ["a", "b", "C", "d", "e", "F9", "Gh"]);
        assert_eq!(nexus_trace::redact::segments("").count(), 0);
    }
}
