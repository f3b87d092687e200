//! Newtypes at every boundary. Each is validated when it is built (by the
//! client) and again when it is decoded (by metricsd); nothing downstream
//! handles a raw string or integer where one of these belongs.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use nexus_log::limits::{
    GUARANTEED_FIELDS, GUARANTEED_KEY_LEN, GUARANTEED_MESSAGE_LEN, GUARANTEED_VALUE_LEN,
};

/// Longest metric name, in bytes. It is the message of the metric's
/// snapshot records in logd, so it must fit logd's guaranteed message length.
pub const MAX_NAME_LEN: usize = 64;
/// The prefix of a label's field key in a snapshot record (`label.route`).
pub const LABEL_FIELD_PREFIX: &str = "label.";
/// Longest label key, in export bytes: its bytes plus one per upper-case
/// letter (exported as `-` and its lower case, since logd keys are lower
/// case). Derived from logd's guaranteed key length, so that
/// `label.<key>` always fits: 32 - 6 = 26.
pub const MAX_LABEL_KEY_LEN: usize = GUARANTEED_KEY_LEN - LABEL_FIELD_PREFIX.len();
/// Longest label value, in bytes (a field value of the snapshot record).
pub const MAX_LABEL_VALUE_LEN: usize = 64;
/// Most labels on one series.
pub const MAX_LABELS: usize = 8;
/// Most finite histogram bounds.
pub const MAX_BUCKETS: usize = 16;
/// Fields of a snapshot record besides labels and values: `series`,
/// `owner`, `kind`.
pub const SNAPSHOT_FIXED_FIELDS: usize = 3;
/// Most value fields of a snapshot record: a histogram's buckets, `+Inf`,
/// `sum` and `count`.
pub const SNAPSHOT_MAX_VALUE_FIELDS: usize = MAX_BUCKETS + 3;

// The snapshot record of any series fits every logd (the byte total is
// proved by metricsd's worst-case export test).
const _: () = assert!(MAX_NAME_LEN <= GUARANTEED_MESSAGE_LEN);
const _: () = assert!(MAX_LABEL_VALUE_LEN <= GUARANTEED_VALUE_LEN);
const _: () =
    assert!(SNAPSHOT_FIXED_FIELDS + MAX_LABELS + SNAPSHOT_MAX_VALUE_FIELDS <= GUARANTEED_FIELDS);

/// Why a value was refused at the boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeError {
    /// Breaks the grammar (characters, emptiness, ordering).
    Invalid,
    /// Longer or more numerous than the bound.
    TooLong,
}

impl fmt::Display for TypeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TypeError::Invalid => "invalid",
            TypeError::TooLong => "too long",
        })
    }
}

/// Longest help text, in bytes (it travels with a `u8` length).
pub const MAX_HELP_LEN: usize = 255;

/// `[a-zA-Z_:][a-zA-Z0-9_:]*` when `colon`, else `[a-zA-Z_][a-zA-Z0-9_]*`
/// (the Prometheus grammars of metric and label names); never `__…`
/// (reserved by Prometheus).
fn check_ident(s: &str, max: usize, colon: bool) -> Result<(), TypeError> {
    if s.len() > max {
        return Err(TypeError::TooLong);
    }
    let ok_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || (colon && b == b':');
    let mut bytes = s.bytes();
    match bytes.next() {
        Some(b) if ok_byte(b) && !b.is_ascii_digit() => {}
        _ => return Err(TypeError::Invalid),
    }
    if bytes.all(ok_byte) && !s.starts_with("__") {
        Ok(())
    } else {
        Err(TypeError::Invalid)
    }
}

/// A metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*` (the Prometheus grammar), not
/// starting with `__`, at most [`MAX_NAME_LEN`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MetricName(String);

impl MetricName {
    /// Validates `s`.
    pub fn new(s: &str) -> Result<Self, TypeError> {
        check_ident(s, MAX_NAME_LEN, true)?;
        Ok(Self(String::from(s)))
    }
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// Ordered as its string, so maps keyed by names can be searched by `&str`.
impl core::borrow::Borrow<str> for MetricName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// A label key: `[a-zA-Z_][a-zA-Z0-9_]*` (the Prometheus grammar), at most
/// [`MAX_LABEL_KEY_LEN`] export bytes (upper-case letters count twice),
/// not starting with `__` (reserved by Prometheus).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LabelKey(String);

impl LabelKey {
    /// Validates `s`.
    pub fn new(s: &str) -> Result<Self, TypeError> {
        check_ident(s, MAX_LABEL_KEY_LEN, false)?;
        if Self::export_len(s) > MAX_LABEL_KEY_LEN {
            return Err(TypeError::TooLong);
        }
        Ok(Self(String::from(s)))
    }

    /// Bytes of `s` in a logd field key: one per byte, one more per
    /// upper-case letter.
    pub fn export_len(s: &str) -> usize {
        s.len() + s.bytes().filter(u8::is_ascii_uppercase).count()
    }
    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A label value: UTF-8 without control characters, at most
/// [`MAX_LABEL_VALUE_LEN`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LabelValue(String);

impl LabelValue {
    /// Validates `s`.
    pub fn new(s: &str) -> Result<Self, TypeError> {
        if s.len() > MAX_LABEL_VALUE_LEN {
            return Err(TypeError::TooLong);
        }
        if s.chars().any(char::is_control) {
            return Err(TypeError::Invalid);
        }
        Ok(Self(String::from(s)))
    }
    /// The value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A metric's help text: UTF-8, at most [`MAX_HELP_LEN`] bytes, no control
/// character but line feed (the exposition escapes `\\` and line feed).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Help(String);

impl Help {
    /// Validates `s`.
    pub fn new(s: &str) -> Result<Self, TypeError> {
        if s.len() > MAX_HELP_LEN {
            return Err(TypeError::TooLong);
        }
        if s.chars().any(|c| c.is_control() && c != '\n') {
            return Err(TypeError::Invalid);
        }
        Ok(Self(String::from(s)))
    }
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// True if there is no text.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A series' labels: unique keys, sorted, at most [`MAX_LABELS`].
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels(Vec<(LabelKey, LabelValue)>);

impl Labels {
    /// No labels.
    pub const fn empty() -> Self {
        Labels(Vec::new())
    }

    /// Validates and sorts `pairs`; duplicate keys are invalid.
    pub fn new(pairs: &[(&str, &str)]) -> Result<Self, TypeError> {
        if pairs.len() > MAX_LABELS {
            return Err(TypeError::TooLong);
        }
        let mut v = Vec::with_capacity(pairs.len());
        for (k, val) in pairs {
            v.push((LabelKey::new(k)?, LabelValue::new(val)?));
        }
        v.sort();
        if v.windows(2).any(|w| matches!(w, [a, b] if a.0 == b.0)) {
            return Err(TypeError::Invalid);
        }
        Ok(Labels(v))
    }

    /// `(key, value)` pairs in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Fixed histogram bounds: finite, strictly increasing, 0 to
/// [`MAX_BUCKETS`] of them. Observations above the last bound land in the
/// implicit `+Inf` bucket (with no bound, every observation does).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Buckets(Vec<u64>);

impl Buckets {
    /// Validates `bounds`.
    pub fn new(bounds: &[u64]) -> Result<Self, TypeError> {
        if bounds.len() > MAX_BUCKETS {
            return Err(TypeError::TooLong);
        }
        if bounds.windows(2).any(|w| matches!(w, [a, b] if a >= b)) {
            return Err(TypeError::Invalid);
        }
        Ok(Buckets(Vec::from(bounds)))
    }

    /// The finite bounds.
    pub fn bounds(&self) -> &[u64] {
        &self.0
    }

    /// Index of the bucket `v` falls in: the first bound `>= v`, or
    /// `bounds().len()` for `+Inf`.
    pub fn index(&self, v: u64) -> usize {
        self.0.partition_point(|b| *b < v)
    }
}

nexus_wire::byte_enum! {
    /// The kind of a metric family; its name is the Prometheus type name.
    pub enum MetricKind {
        /// Monotonic `u64`.
        Counter = 0 => "counter",
        /// `i64`, set or added to.
        Gauge = 1 => "gauge",
        /// Fixed-bucket histogram of `u64` observations.
        Histogram = 2 => "histogram",
    }
}

/// A series, as assigned by metricsd at registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesId(pub u32);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels_are_validated() {
        assert!(MetricName::new("logd_appends_total").is_ok());
        // The Prometheus grammars: colons in names, upper case in both.
        assert!(MetricName::new("ns:sub:metric_total").is_ok());
        assert!(MetricName::new("Upper_Case").is_ok());
        assert!(MetricName::new(":a").is_ok());
        assert!(LabelKey::new("Route_ID").is_ok());
        assert_eq!(LabelKey::new("a:b"), Err(TypeError::Invalid));
        assert_eq!(MetricName::new("__x"), Err(TypeError::Invalid));
        assert_eq!(MetricName::new("a-b"), Err(TypeError::Invalid));
        assert!(Help::new("Requests \"served\".\nSecond line \\").is_ok());
        assert_eq!(Help::new("a\rb"), Err(TypeError::Invalid));
        assert_eq!(Help::new(&"h".repeat(256)), Err(TypeError::TooLong));
        assert_eq!(MetricName::new("9x"), Err(TypeError::Invalid));
        assert_eq!(MetricName::new(""), Err(TypeError::Invalid));
        assert_eq!(MetricName::new(&"a".repeat(65)), Err(TypeError::TooLong));
        assert_eq!(LabelKey::new("__name"), Err(TypeError::Invalid));
        assert_eq!(LabelValue::new("a\nb"), Err(TypeError::Invalid));
        let l = Labels::new(&[("z", "1"), ("a", "2")]).unwrap();
        assert_eq!(l.iter().collect::<Vec<_>>(), [("a", "2"), ("z", "1")]);
        assert_eq!(
            Labels::new(&[("a", "1"), ("a", "2")]),
            Err(TypeError::Invalid)
        );
        assert_eq!(Labels::new(&[("a", ""); 9]), Err(TypeError::TooLong));
    }

    #[test]
    fn bucket_boundaries_are_inclusive_upper_bounds() {
        let b = Buckets::new(&[10, 100, 1000]).unwrap();
        let cases = [
            (0, 0),
            (10, 0),
            (11, 1),
            (100, 1),
            (101, 2),
            (1000, 2),
            (1001, 3),
            (u64::MAX, 3),
        ];
        for (v, i) in cases {
            assert_eq!(b.index(v), i, "value {v}");
        }
        // Only the `+Inf` bucket: every observation lands in it.
        assert_eq!(Buckets::new(&[]).map(|b| b.index(7)), Ok(0));
        assert_eq!(Buckets::new(&[5, 5]), Err(TypeError::Invalid));
        assert_eq!(Buckets::new(&[1; 17]), Err(TypeError::TooLong));
    }
}
