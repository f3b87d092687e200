use alloc::borrow::Cow;
use alloc::string::String;

use nexus_ipc::ServiceId;

use crate::fields::{FieldError, Fields};
use crate::Level;

/// A record as logd keeps it and returns it from QUERY.
///
/// `id`, `ts_ns` and `sender` are assigned by logd (journal sequence, logd's
/// clock, and the transport's identity of the appender); nothing in an
/// APPEND payload can set them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Journal sequence number, strictly increasing, never reused.
    pub id: u64,
    /// logd's clock when the record was accepted, in nanoseconds.
    pub ts_ns: u64,
    /// The appender, as stamped by the transport.
    pub sender: ServiceId,
    /// Severity.
    pub level: Level,
    /// Scope of the event (module, subsystem).
    pub target: String,
    /// Human-readable message.
    pub message: String,
    /// Structured fields.
    pub fields: Fields,
}

impl Record {
    /// Fixed part of a record on the wire: id, ts, sender, level and the
    /// three length prefixes.
    pub const WIRE_OVERHEAD: usize = 8 + 8 + 4 + 1 + 1 + 2 + 2;

    /// Bytes this record takes on the wire; also what it costs in the
    /// journal's byte bound.
    pub fn wire_len(&self) -> usize {
        Self::WIRE_OVERHEAD + self.target.len() + self.message.len() + self.fields.len()
    }
}

/// An event as a client produces it, before logd stamps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Severity.
    pub level: Level,
    /// Scope (the macros use `module_path!()` unless `target:` is given).
    pub target: Cow<'static, str>,
    /// Stable key of the message for rate limiting: the macros use the
    /// format string, so `"retry {}"` is one key whatever the arguments.
    pub key: &'static str,
    /// The formatted message.
    pub message: String,
    /// Fields, or the error that made them invalid (sinks count such events
    /// and drop them).
    pub fields: Result<Fields, FieldError>,
}

impl Event {
    /// An event without fields whose rate-limit key is its target.
    pub fn new(level: Level, target: &'static str, message: impl Into<String>) -> Self {
        Self {
            level,
            target: Cow::Borrowed(target),
            key: target,
            message: message.into(),
            fields: Ok(Fields::empty()),
        }
    }
}
