//! From collected fields to one logd APPEND within a [`RecordBudget`]:
//! key sanitizing, typed values, redaction, truncation, and the counters
//! of everything cut.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use nexus_log::fields::{check_key, FieldType};
use nexus_log::limits::RecordBudget;
use nexus_log::{Event, Fields, FieldsBuilder, Level, Value};
use nexus_trace::redact;

/// The field a record carries when something in it was cut: how many cuts
/// (values, message or target shortened, fields dropped). Typed int.
pub const TRUNCATED_KEY: &str = "log.truncated";

/// A field value as `tracing` or `log` handed it over.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FieldValue {
    Str(String),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

impl FieldValue {
    fn as_value(&self) -> Value<'_> {
        match self {
            FieldValue::Str(s) => Value::Str(s),
            FieldValue::I64(v) => Value::I64(*v),
            FieldValue::U64(v) => Value::U64(*v),
            FieldValue::F64(v) => Value::F64(*v),
            FieldValue::Bool(v) => Value::Bool(*v),
        }
    }

    /// The value as text (what a span attribute carries).
    pub(crate) fn text(&self) -> String {
        self.as_value().to_text().1
    }

    /// An `i128`: typed when it fits logd's integer range, else a string.
    pub(crate) fn from_i128(v: i128) -> Self {
        if let Ok(v) = i64::try_from(v) {
            FieldValue::I64(v)
        } else if let Ok(v) = u64::try_from(v) {
            FieldValue::U64(v)
        } else {
            FieldValue::Str(v.to_string())
        }
    }

    /// A `u128`: typed when it fits logd's integer range, else a string.
    pub(crate) fn from_u128(v: u128) -> Self {
        match u64::try_from(v) {
            Ok(v) => FieldValue::U64(v),
            Err(_) => FieldValue::Str(v.to_string()),
        }
    }
}

/// A `fmt::Write` that keeps at most `cap` bytes (cut on a char
/// boundary) and remembers that it cut. Formatting stops early once full,
/// so a huge `Debug` value costs at most `cap` bytes.
#[derive(Debug)]
pub(crate) struct Bounded {
    pub(crate) out: String,
    cap: usize,
    pub(crate) cut: bool,
}

impl Bounded {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            out: String::new(),
            cap,
            cut: false,
        }
    }

    /// Formats `v` into a bounded string.
    pub(crate) fn display(cap: usize, v: &dyn fmt::Display) -> (String, bool) {
        let mut b = Self::new(cap);
        let _ = write!(b, "{v}");
        (b.out, b.cut)
    }

    /// Formats `v` with `Debug` into a bounded string.
    pub(crate) fn debug(cap: usize, v: &dyn fmt::Debug) -> (String, bool) {
        let mut b = Self::new(cap);
        let _ = write!(b, "{v:?}");
        (b.out, b.cut)
    }
}

impl fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.cap.saturating_sub(self.out.len());
        if s.len() <= room {
            self.out.push_str(s);
            return Ok(());
        }
        self.out.push_str(prefix(s, room));
        self.cut = true;
        Err(fmt::Error)
    }
}

/// The longest prefix of `s` of at most `max` bytes ending on a char
/// boundary.
pub(crate) fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

/// Fields collected from one event or span, in arrival order (a repeated
/// name replaces the earlier value). At most `cap` names; more are counted
/// in `dropped`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Collected {
    pub(crate) fields: Vec<(Cow<'static, str>, FieldValue)>,
    pub(crate) cap: usize,
    /// Names dropped past `cap`.
    pub(crate) dropped: u32,
}

impl Collected {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            cap,
            ..Self::default()
        }
    }

    pub(crate) fn put(&mut self, name: Cow<'static, str>, v: FieldValue) {
        if let Some(slot) = self.fields.iter_mut().find(|(n, _)| *n == name) {
            slot.1 = v;
        } else if self.fields.len() < self.cap {
            self.fields.push((name, v));
        } else {
            self.dropped = self.dropped.saturating_add(1);
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&FieldValue> {
        self.fields.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

/// What building one record cut or changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Cuts {
    /// Values, the message or the target shortened.
    pub(crate) values: u64,
    /// Fields left out (count or byte bound).
    pub(crate) fields: u64,
    /// Keys changed to fit the key grammar or to avoid a reserved key.
    pub(crate) renamed: u64,
    /// Secret values replaced.
    pub(crate) redacted: u64,
}

/// Maps a field name onto logd's key grammar `[a-z0-9_.-]+`: ASCII
/// upper case is lowered, `r#` is stripped, every other byte becomes `_`;
/// cut to `max_len`. A name logd would refuse or misread — a reserved key
/// (`message`, `level`, …), an identity claim (`pid`, `service`, …), or
/// `trace_id`/`span_id`, which only the layer sets — gets a `_` suffix.
/// Returns the key and whether it changed.
pub fn sanitize_key(name: &str, max_len: usize) -> (String, bool) {
    let raw = name.strip_prefix("r#").unwrap_or(name);
    let mut k: String = raw
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '_' | '.' | '-' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '_',
        })
        .collect();
    if k.is_empty() {
        k.push('_');
    }
    let max_len = max_len.max(1);
    if k.len() > max_len {
        k.truncate(max_len);
    }
    if check_key(&k).is_err()
        || nexus_ipc::is_identity_claim(&k)
        || k == "trace_id"
        || k == "span_id"
    {
        if k.len() >= max_len {
            k.truncate(max_len.saturating_sub(1));
        }
        k.push('_');
    }
    let changed = k != name;
    (k, changed)
}

/// The parts of one record before bounding.
#[derive(Debug)]
pub(crate) struct Draft<'a> {
    pub(crate) level: Level,
    pub(crate) target: &'a str,
    pub(crate) key: &'static str,
    pub(crate) message: &'a str,
    /// Set by the layer: `(trace_id hex, span_id hex)`.
    pub(crate) ids: Option<(String, String)>,
    /// In priority order: the event's own fields first, then its spans',
    /// innermost first. The first occurrence of a key wins.
    pub(crate) groups: Vec<&'a Collected>,
    /// Fields already dropped while collecting.
    pub(crate) pre_dropped: u64,
}

fn line_len(key: &str, ty: FieldType, value: &str) -> usize {
    key.len() + ty.marker().len() + 1 + value.len() + 1
}

/// Builds the event for `d` within `budget`, redacting keys that match
/// `secrets`. Never fails: what does not fit is cut or left out and
/// counted, and the record then carries [`TRUNCATED_KEY`].
pub(crate) fn build(d: &Draft<'_>, budget: &RecordBudget, secrets: &[&str]) -> (Event, Cuts) {
    let mut cuts = Cuts {
        fields: d.pre_dropped,
        ..Cuts::default()
    };
    // Target: non-empty, no control characters, bounded.
    let mut target: String = d
        .target
        .chars()
        .map(|c| if c.is_control() { '_' } else { c })
        .collect();
    if target.is_empty() {
        target.push('-');
    }
    if target.len() > budget.target_len {
        target = prefix(&target, budget.target_len).to_string();
        cuts.values += 1;
        if target.is_empty() {
            target.push('-');
        }
    }
    let message = if d.message.len() > budget.message_len {
        cuts.values += 1;
        prefix(d.message, budget.message_len)
    } else {
        d.message
    };
    // What the fields may take: their own bound, and what the record
    // bound leaves after target and message.
    let left = budget
        .record_bytes
        .saturating_sub(nexus_log::Record::WIRE_OVERHEAD + target.len() + message.len());
    let mut room = budget.fields_bytes.min(left);
    let mut slots = budget.fields;
    // Reserve the marker: `log.truncated:i=` + up to 20 digits + `\n`.
    let marker_len = line_len(TRUNCATED_KEY, FieldType::Int, "18446744073709551615");
    let reserve = marker_len.min(room);
    room -= reserve;
    let marker_slot = slots > 0;
    if marker_slot {
        slots -= 1;
    }

    let mut b = FieldsBuilder::new();
    let mut used: Vec<String> = Vec::new();
    let mut take = |key: &str, ty: FieldType, value: &str, b: &mut FieldsBuilder| -> bool {
        let n = line_len(key, ty, value);
        if slots == 0 || n > room || b.insert_typed(key, ty, value).is_err() {
            return false;
        }
        slots -= 1;
        room -= n;
        true
    };
    if let Some((t, s)) = &d.ids {
        for (k, v) in [("trace_id", t.as_str()), ("span_id", s.as_str())] {
            if take(k, FieldType::Str, v, &mut b) {
                used.push(k.to_string());
            } else {
                cuts.fields += 1;
            }
        }
    }
    for group in &d.groups {
        for (name, value) in &group.fields {
            let (key, renamed) = sanitize_key(name, budget.key_len);
            if used.contains(&key) {
                // An outer span's field under a key already set.
                continue;
            }
            if renamed {
                cuts.renamed += 1;
            }
            let (ty, mut text) = if redact::is_secret_key(name, secrets) {
                cuts.redacted += 1;
                (FieldType::Str, redact::REDACTED.to_string())
            } else {
                value.as_value().to_text()
            };
            if text.len() > budget.value_len {
                if ty != FieldType::Str {
                    cuts.fields += 1;
                    continue;
                }
                text = prefix(&text, budget.value_len).to_string();
                cuts.values += 1;
            }
            if take(&key, ty, &text, &mut b) {
                used.push(key);
            } else {
                cuts.fields += 1;
            }
        }
    }
    let total = cuts.values + cuts.fields;
    if total > 0 && marker_slot {
        // Fits the reserved room by construction.
        let _ = b.insert_typed(TRUNCATED_KEY, FieldType::Int, &total.to_string());
    }
    let fields: Result<Fields, _> = b.build();
    (
        Event {
            level: d.level,
            target: Cow::Owned(target),
            key: d.key,
            message: message.to_string(),
            fields,
        },
        cuts,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use nexus_log::limits::GUARANTEED;

    #[test]
    fn keys_are_mapped_onto_the_grammar_and_off_reserved_names() {
        assert_eq!(sanitize_key("user_id", 32), ("user_id".into(), false));
        assert_eq!(
            sanitize_key("http.Method", 32),
            ("http.method".into(), true)
        );
        assert_eq!(sanitize_key("r#type", 32), ("type".into(), true));
        assert_eq!(sanitize_key("a b/é", 32), ("a_b__".into(), true));
        assert_eq!(sanitize_key("level", 32), ("level_".into(), true));
        assert_eq!(sanitize_key("pid", 32), ("pid_".into(), true));
        assert_eq!(sanitize_key("trace_id", 32), ("trace_id_".into(), true));
        assert_eq!(sanitize_key("", 32), ("_".into(), true));
        let (k, _) = sanitize_key(&"x".repeat(40), 32);
        assert_eq!(k.len(), 32);
        let (k, _) = sanitize_key("service", 7);
        assert_eq!(k, "servic_");
    }

    #[test]
    fn bounded_writer_cuts_on_char_boundaries() {
        let (s, cut) = Bounded::display(4, &"aé€b");
        assert_eq!((s.as_str(), cut), ("aé", true));
        let (s, cut) = Bounded::display(10, &"abc");
        assert_eq!((s.as_str(), cut), ("abc", false));
    }

    #[test]
    fn a_record_is_bounded_and_says_so() {
        let mut c = Collected::new(64);
        c.put("big".into(), FieldValue::Str("v".repeat(300)));
        c.put("n".into(), FieldValue::I64(-3));
        c.put("api_key".into(), FieldValue::Str("hunter2".into()));
        let msg = "m".repeat(200);
        let d = Draft {
            level: Level::Info,
            target: "t",
            key: "k",
            message: &msg,
            ids: None,
            groups: vec![&c],
            pre_dropped: 0,
        };
        let (e, cuts) = build(&d, &GUARANTEED, &redact::DEFAULT_SECRET_SEGMENTS);
        assert_eq!(e.message.len(), 128);
        let f = e.fields.unwrap();
        assert_eq!(f.get("big").unwrap().len(), 128);
        assert_eq!(f.get_typed("n"), Some((FieldType::Int, "-3")));
        assert_eq!(f.get("api_key"), Some(redact::REDACTED));
        assert_eq!(f.get_typed(TRUNCATED_KEY), Some((FieldType::Int, "2")));
        assert_eq!((cuts.values, cuts.fields, cuts.redacted), (2, 0, 1));
        assert!(GUARANTEED.fits(&e.target, &e.message, &f));
    }

    #[test]
    fn too_many_fields_are_dropped_and_counted() {
        let mut c = Collected::new(64);
        for i in 0..40 {
            c.put(format!("f{i:02}").into(), FieldValue::Bool(true));
        }
        let d = Draft {
            level: Level::Warn,
            target: "t",
            key: "k",
            message: "",
            ids: Some(("a".repeat(32), "b".repeat(16))),
            groups: vec![&c],
            pre_dropped: 0,
        };
        let (e, cuts) = build(&d, &GUARANTEED, &[]);
        let f = e.fields.unwrap();
        assert_eq!(f.count(), 32);
        // 32 slots: the marker, the two ids, 29 fields; 11 left out.
        assert_eq!(cuts.fields, 11);
        assert_eq!(f.get(TRUNCATED_KEY), Some("11"));
        assert!(f.get("trace_id").is_some());
    }
}
