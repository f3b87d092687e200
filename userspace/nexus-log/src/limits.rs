//! The record limits every logd guarantees.
//!
//! logd's `[record]` limits are configurable, but `logd::Config::validate`
//! refuses any value below these constants, so a record within all of them
//! is accepted by every valid logd (rate limits aside). Producers that
//! cannot ask logd for its config — metricsd exporting snapshots and
//! span-end records — derive their own bounds from these constants and
//! check each record with [`fits_guaranteed`] before sending it, so they
//! never send a record logd would refuse with `over_limit`.
//!
//! Key and value lengths are measured as logd measures them: a key without
//! its type marker (`status` of `status:i=200`), a value as its text.

use crate::fields::Fields;
use crate::record::Record;

/// Shortest `record.max_target_len` logd accepts.
pub const GUARANTEED_TARGET_LEN: usize = 32;
/// Shortest `record.max_message_len` logd accepts.
pub const GUARANTEED_MESSAGE_LEN: usize = 128;
/// Smallest `record.max_record_bytes` logd accepts (wire length, the
/// 26-byte record header included).
pub const GUARANTEED_RECORD_BYTES: usize = 2048;
/// Smallest `record.max_fields_bytes` logd accepts: what a record of the
/// guaranteed size leaves for fields after a target and a message of the
/// guaranteed lengths (2048 - 26 - 32 - 128 = 1862).
pub const GUARANTEED_FIELDS_BYTES: usize = GUARANTEED_RECORD_BYTES
    - Record::WIRE_OVERHEAD
    - GUARANTEED_TARGET_LEN
    - GUARANTEED_MESSAGE_LEN;
/// Smallest `record.max_fields` logd accepts.
pub const GUARANTEED_FIELDS: usize = 32;
/// Shortest `record.max_key_len` logd accepts.
pub const GUARANTEED_KEY_LEN: usize = 32;
/// Shortest `record.max_value_len` logd accepts.
pub const GUARANTEED_VALUE_LEN: usize = 128;

/// Per-record limits, as logd judges an APPEND (`over_limit` when broken).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordBudget {
    /// Longest target.
    pub target_len: usize,
    /// Longest message.
    pub message_len: usize,
    /// Largest record wire length.
    pub record_bytes: usize,
    /// Longest fields text.
    pub fields_bytes: usize,
    /// Most fields.
    pub fields: usize,
    /// Longest key (without its type marker).
    pub key_len: usize,
    /// Longest value.
    pub value_len: usize,
}

/// The limits every logd accepts.
pub const GUARANTEED: RecordBudget = RecordBudget {
    target_len: GUARANTEED_TARGET_LEN,
    message_len: GUARANTEED_MESSAGE_LEN,
    record_bytes: GUARANTEED_RECORD_BYTES,
    fields_bytes: GUARANTEED_FIELDS_BYTES,
    fields: GUARANTEED_FIELDS,
    key_len: GUARANTEED_KEY_LEN,
    value_len: GUARANTEED_VALUE_LEN,
};

impl RecordBudget {
    /// True if a record of `target`, `message` and `fields` is within every
    /// size limit of this budget.
    pub fn fits(&self, target: &str, message: &str, fields: &Fields) -> bool {
        let mut n = 0usize;
        let fields_ok = fields.iter().all(|(k, v)| {
            n += 1;
            k.len() <= self.key_len && v.len() <= self.value_len
        });
        fields_ok
            && n <= self.fields
            && target.len() <= self.target_len
            && message.len() <= self.message_len
            && fields.len() <= self.fields_bytes
            && Record::WIRE_OVERHEAD + target.len() + message.len() + fields.len()
                <= self.record_bytes
    }
}

/// True if every valid logd accepts a record of these parts (sizes only).
pub fn fits_guaranteed(target: &str, message: &str, fields: &Fields) -> bool {
    GUARANTEED.fits(target, message, fields)
}
