//! logd's bounds. Defaults equal `recipes/observability/logd.toml` (a test
//! checks that), and every field is documented in
//! `docs/observability/logd.md`.

use alloc::string::String;
use alloc::vec::Vec;

use nexus_log::limits::{self, GUARANTEED_FIELDS, GUARANTEED_KEY_LEN};
use serde::Deserialize;

/// Size of the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalLimits {
    /// Most records held.
    pub max_records: u32,
    /// Most bytes held (sum of record wire lengths).
    pub max_bytes: u32,
}

/// Per-record limits; breaking one is `over_limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordLimits {
    /// Largest record, as its wire length (header of 26 bytes included).
    pub max_record_bytes: u32,
    /// Longest target.
    pub max_target_len: u32,
    /// Longest message.
    pub max_message_len: u32,
    /// Longest fields text.
    pub max_fields_bytes: u32,
    /// Most fields.
    pub max_fields: u32,
    /// Longest field key.
    pub max_key_len: u32,
    /// Longest field value.
    pub max_value_len: u32,
}

/// Per-sender token buckets and the sender table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    /// APPENDs per second, sustained.
    pub events_per_sec: u32,
    /// APPENDs in a burst.
    pub events_burst: u32,
    /// APPEND frame bytes per second, sustained.
    pub bytes_per_sec: u32,
    /// APPEND frame bytes in a burst.
    pub bytes_burst: u32,
    /// Senders tracked at once; the least recently seen is evicted.
    pub max_senders: u32,
}

/// QUERY bounds and read policy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryLimits {
    /// Most records in one page.
    pub max_count: u16,
    /// Most record bytes in one page.
    pub max_bytes: u32,
    /// Most records examined for one page.
    pub max_scan: u32,
    /// Endpoint names that may read every sender's records (the runtime
    /// resolves them to ids; everyone else reads only their own).
    pub readers: Vec<String>,
}

/// STATS bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsLimits {
    /// Most per-sender entries in a STATS reply.
    pub max_senders: u16,
}

/// Everything logd is bounded by.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Journal size.
    pub journal: JournalLimits,
    /// Record limits.
    pub record: RecordLimits,
    /// Rate limits.
    pub rate: RateLimits,
    /// Query limits and policy.
    pub query: QueryLimits,
    /// Stats limits.
    pub stats: StatsLimits,
}

/// A config that can not work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// A bound is zero.
    Zero(&'static str),
    /// A record could never fit where it must.
    RecordTooLarge(&'static str),
    /// A limit exceeds what its wire field can carry.
    BeyondWire(&'static str),
    /// A record limit is below what the logd contract guarantees
    /// (`nexus_log::limits`); producers size their records by it.
    BelowGuaranteed(&'static str),
}

/// Largest reply frame logd produces must fit the transport's frame limit;
/// this is the page budget left after the reply header.
pub const PAGE_OVERHEAD: u32 = 12 + 1 + 8 + 8 + 1 + 2;

/// Size of a STATS reply without its per-sender entries (36 bytes each).
pub const STATS_OVERHEAD: u32 = 12 + 1 + 16 * 8 + 2;

impl Default for Config {
    fn default() -> Self {
        Self {
            journal: JournalLimits {
                max_records: 4096,
                max_bytes: 1024 * 1024,
            },
            record: RecordLimits {
                max_record_bytes: 4096,
                max_target_len: 64,
                max_message_len: 1024,
                max_fields_bytes: 2048,
                max_fields: GUARANTEED_FIELDS as u32,
                max_key_len: GUARANTEED_KEY_LEN as u32,
                max_value_len: 512,
            },
            rate: RateLimits {
                events_per_sec: 500,
                events_burst: 1000,
                bytes_per_sec: 256 * 1024,
                bytes_burst: 512 * 1024,
                max_senders: 64,
            },
            query: QueryLimits {
                max_count: 256,
                max_bytes: 48 * 1024,
                max_scan: 8192,
                readers: alloc::vec![
                    String::from("logd-reader"),
                    String::from("selftest"),
                    String::from("traced"),
                ],
            },
            stats: StatsLimits { max_senders: 32 },
        }
    }
}

impl Config {
    /// Checks that the bounds are consistent for a transport whose largest
    /// frame is `max_frame_bytes`.
    pub fn validate(&self, max_frame_bytes: usize) -> Result<(), ConfigError> {
        let nonzero = [
            ("journal.max_records", self.journal.max_records),
            ("journal.max_bytes", self.journal.max_bytes),
            ("record.max_record_bytes", self.record.max_record_bytes),
            ("rate.events_per_sec", self.rate.events_per_sec),
            ("rate.events_burst", self.rate.events_burst),
            ("rate.bytes_per_sec", self.rate.bytes_per_sec),
            ("rate.bytes_burst", self.rate.bytes_burst),
            ("rate.max_senders", self.rate.max_senders),
            ("query.max_count", u32::from(self.query.max_count)),
            ("query.max_bytes", self.query.max_bytes),
            ("query.max_scan", self.query.max_scan),
        ];
        for (name, v) in nonzero {
            if v == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        let r = &self.record;
        let guaranteed = [
            (
                "record.max_target_len",
                r.max_target_len,
                limits::GUARANTEED_TARGET_LEN,
            ),
            (
                "record.max_message_len",
                r.max_message_len,
                limits::GUARANTEED_MESSAGE_LEN,
            ),
            (
                "record.max_record_bytes",
                r.max_record_bytes,
                limits::GUARANTEED_RECORD_BYTES,
            ),
            (
                "record.max_fields_bytes",
                r.max_fields_bytes,
                limits::GUARANTEED_FIELDS_BYTES,
            ),
            ("record.max_fields", r.max_fields, limits::GUARANTEED_FIELDS),
            (
                "record.max_key_len",
                r.max_key_len,
                limits::GUARANTEED_KEY_LEN,
            ),
            (
                "record.max_value_len",
                r.max_value_len,
                limits::GUARANTEED_VALUE_LEN,
            ),
        ];
        for (name, v, min) in guaranteed {
            if (v as usize) < min {
                return Err(ConfigError::BelowGuaranteed(name));
            }
        }
        if r.max_target_len > u32::from(u8::MAX) {
            return Err(ConfigError::BeyondWire("record.max_target_len"));
        }
        if r.max_message_len > u32::from(u16::MAX) || r.max_fields_bytes > u32::from(u16::MAX) {
            return Err(ConfigError::BeyondWire(
                "record.max_message_len/max_fields_bytes",
            ));
        }
        if r.max_record_bytes > self.journal.max_bytes {
            return Err(ConfigError::RecordTooLarge("journal.max_bytes"));
        }
        if r.max_record_bytes > self.query.max_bytes {
            return Err(ConfigError::RecordTooLarge("query.max_bytes"));
        }
        let frame = u32::try_from(max_frame_bytes).unwrap_or(u32::MAX);
        if self.query.max_bytes.saturating_add(PAGE_OVERHEAD) > frame {
            return Err(ConfigError::RecordTooLarge("transport max_frame_bytes"));
        }
        // A reader's STATS reply must fit a frame too.
        let stats_reply =
            STATS_OVERHEAD.saturating_add(u32::from(self.stats.max_senders).saturating_mul(36));
        if stats_reply > frame {
            return Err(ConfigError::RecordTooLarge("stats.max_senders"));
        }
        // An APPEND frame of the largest record must itself fit the bucket.
        if r.max_record_bytes > self.rate.bytes_burst {
            return Err(ConfigError::RecordTooLarge("rate.bytes_burst"));
        }
        Ok(())
    }
}
