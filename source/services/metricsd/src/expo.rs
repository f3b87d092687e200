//! Prometheus text exposition, format 0.0.4.
//!
//! The scrape answer is plain text, one family after the other:
//!
//! ```text
//! # HELP ipc_frames_total Frames routed.
//! # TYPE ipc_frames_total counter
//! ipc_frames_total{service="logd"} 12
//! # HELP rpc_latency_ns Request latency.
//! # TYPE rpc_latency_ns histogram
//! rpc_latency_ns_bucket{method="query",le="100"} 3
//! rpc_latency_ns_bucket{method="query",le="1000"} 5
//! rpc_latency_ns_bucket{method="query",le="+Inf"} 6
//! rpc_latency_ns_sum{method="query"} 4321
//! rpc_latency_ns_count{method="query"} 6
//! ```
//!
//! * `# HELP name text`: the help text with `\` written `\\` and a line feed
//!   written `\n` (quotes stay as they are). An empty help still gets its
//!   line, `# HELP name ` (as the Go client writes it).
//! * `# TYPE name counter|gauge|histogram`.
//! * One line per series, `name{labels} value`, no timestamp. Labels appear
//!   in the order given; a series without labels has no braces. A label
//!   value has `\` written `\\`, `"` written `\"` and a line feed written
//!   `\n`; every other character (a carriage return too) is written as is.
//! * Counters and gauges are written under the family name exactly as
//!   given. Format 0.0.4 adds no suffix: a counter is `name{..} v`, so a
//!   counter that should read `foo_total` must be named `foo_total` (the
//!   convention); nothing is appended and nothing is stripped.
//! * Histograms: one `name_bucket{labels,le="b"}` line per finite bound in
//!   increasing order with the *cumulative* count (observations `<= b`),
//!   then `le="+Inf"` (all observations, equal to the count), then
//!   `name_sum{labels}` and `name_count{labels}`.
//! * Every line ends with `\n`, the last one too.
//!
//! Nothing invalid is written: [`write_family`] checks the family first
//! ([`check_family`]) and on an [`ExpoError`] leaves `out` as it was.
//! [`render`] writes the families that pass and skips the others, so one bad
//! family does not cost the whole scrape.
//!
//! What is not checked, and is the caller's to keep (metricsd's registry
//! keeps both): two series of one family with the same label set, and a
//! family name that equals another family's derived sample name (a gauge
//! `foo_sum` next to a histogram `foo`).

use alloc::collections::BTreeSet;
use alloc::string::String;
use core::fmt;

/// The `Content-Type` of a format 0.0.4 scrape answer.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The value of one series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// A monotonic total.
    Counter(u64),
    /// A value that goes up and down.
    Gauge(i64),
    /// `bounds` are the finite upper bounds, strictly increasing; `counts[i]` is the NON-cumulative
    /// count of observations `v` with `bounds[i-1] < v <= bounds[i]`; `counts.len() == bounds.len() + 1`
    /// (last = above the largest bound). sum and count over all observations.
    Histogram {
        /// Finite upper bounds, strictly increasing.
        bounds: &'a [u64],
        /// Per-bucket (non-cumulative) counts, one more than `bounds`.
        counts: &'a [u64],
        /// Sum of all observed values.
        sum: u64,
        /// Number of observations; equals the sum of `counts`.
        count: u64,
    },
}

/// One series of a family: its labels and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Series<'a> {
    /// `(name, value)` pairs, written in this order.
    pub labels: &'a [(&'a str, &'a str)],
    /// The value; its variant must match the family's [`Kind`].
    pub value: Value<'a>,
}

/// A metric family: name, help, type and its series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family<'a> {
    /// The metric name, `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    pub name: &'a str,
    /// Free text; any UTF-8.
    pub help: &'a str,
    /// The `# TYPE` of the family.
    pub kind: Kind,
    /// The series, written in this order.
    pub series: &'a [Series<'a>],
}

/// The type of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `counter`: every series is a [`Value::Counter`].
    Counter,
    /// `gauge`: every series is a [`Value::Gauge`].
    Gauge,
    /// `histogram`: every series is a [`Value::Histogram`].
    Histogram,
}

impl Kind {
    /// The word on the `# TYPE` line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Why a family was not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpoError {
    /// The family name is not `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    InvalidMetricName,
    /// A label name is not `[a-zA-Z_][a-zA-Z0-9_]*`, or starts with `__`
    /// (reserved for Prometheus itself).
    InvalidLabelName,
    /// A series has the same label name twice.
    DuplicateLabel,
    /// A histogram series has a label `le`, which the buckets use.
    ReservedLabel,
    /// A series' value does not match the family's kind.
    KindMismatch,
    /// `counts.len() != bounds.len() + 1`.
    HistogramShape,
    /// The bounds are not strictly increasing.
    HistogramBounds,
    /// The counts do not add up to `count` (or their sum overflows).
    HistogramCount,
}

impl fmt::Display for ExpoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExpoError::InvalidMetricName => "metric name must match [a-zA-Z_:][a-zA-Z0-9_:]*",
            ExpoError::InvalidLabelName => {
                "label name must match [a-zA-Z_][a-zA-Z0-9_]* and not start with __"
            }
            ExpoError::DuplicateLabel => "label name repeated in one series",
            ExpoError::ReservedLabel => "label le is reserved in histograms",
            ExpoError::KindMismatch => "series value does not match the family type",
            ExpoError::HistogramShape => "histogram needs one more count than bounds",
            ExpoError::HistogramBounds => "histogram bounds not strictly increasing",
            ExpoError::HistogramCount => "histogram counts do not add up to count",
        })
    }
}

/// Checks everything [`write_family`] needs for a valid exposition.
pub fn check_family(fam: &Family<'_>) -> Result<(), ExpoError> {
    if !is_metric_name(fam.name) {
        return Err(ExpoError::InvalidMetricName);
    }
    for s in fam.series {
        check_series(fam.kind, s)?;
    }
    Ok(())
}

fn check_series(kind: Kind, s: &Series<'_>) -> Result<(), ExpoError> {
    for (i, (name, _)) in s.labels.iter().enumerate() {
        if !is_label_name(name) {
            return Err(ExpoError::InvalidLabelName);
        }
        if kind == Kind::Histogram && *name == "le" {
            return Err(ExpoError::ReservedLabel);
        }
        if s.labels.iter().take(i).any(|(prev, _)| prev == name) {
            return Err(ExpoError::DuplicateLabel);
        }
    }
    match (kind, s.value) {
        (Kind::Counter, Value::Counter(_)) | (Kind::Gauge, Value::Gauge(_)) => Ok(()),
        (
            Kind::Histogram,
            Value::Histogram {
                bounds,
                counts,
                count,
                ..
            },
        ) => check_histogram(bounds, counts, count),
        _ => Err(ExpoError::KindMismatch),
    }
}

fn check_histogram(bounds: &[u64], counts: &[u64], count: u64) -> Result<(), ExpoError> {
    if bounds.len().checked_add(1) != Some(counts.len()) {
        return Err(ExpoError::HistogramShape);
    }
    if !bounds.windows(2).all(|w| matches!(w, [a, b] if a < b)) {
        return Err(ExpoError::HistogramBounds);
    }
    let total = counts
        .iter()
        .try_fold(0u64, |acc, &c| acc.checked_add(c))
        .ok_or(ExpoError::HistogramCount)?;
    if total != count {
        return Err(ExpoError::HistogramCount);
    }
    Ok(())
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
fn is_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`.
fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.starts_with("__")
}

/// Appends the exposition of one family: `# HELP`, `# TYPE`, then its
/// series (see the module documentation for the exact lines).
///
/// On error nothing is appended: `out` is left exactly as it was.
pub fn write_family(out: &mut String, fam: &Family<'_>) -> Result<(), ExpoError> {
    check_family(fam)?;
    push_header(out, fam.name, fam.help, fam.kind);
    for s in fam.series {
        write_series(out, fam.name, s);
    }
    Ok(())
}

/// Appends a family's `# HELP` and `# TYPE` lines only: the start of a
/// family written series by series with [`write_one`] (a scrape page).
/// On error nothing is appended.
pub fn write_header(out: &mut String, name: &str, help: &str, kind: Kind) -> Result<(), ExpoError> {
    if !is_metric_name(name) {
        return Err(ExpoError::InvalidMetricName);
    }
    push_header(out, name, help, kind);
    Ok(())
}

/// Appends the lines of one series of family `name` (checked as
/// [`check_family`] checks each series). On error nothing is appended.
/// `write_header` then `write_one` for each series writes exactly what
/// [`write_family`] writes.
pub fn write_one(
    out: &mut String,
    name: &str,
    kind: Kind,
    s: &Series<'_>,
) -> Result<(), ExpoError> {
    if !is_metric_name(name) {
        return Err(ExpoError::InvalidMetricName);
    }
    check_series(kind, s)?;
    write_series(out, name, s);
    Ok(())
}

/// Appends the lines of one series whose name, labels and value were
/// validated when it was registered and updated (metricsd's registry
/// refuses every series [`check_family`] would refuse): the scrape's hot
/// path, without checking again. Anything else goes through [`write_one`].
pub fn write_registered(out: &mut String, name: &str, s: &Series<'_>) {
    write_series(out, name, s);
}

fn push_header(out: &mut String, name: &str, help: &str, kind: Kind) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    push_escaped(out, help, false);
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind.as_str());
    out.push('\n');
}

/// Renders many families in order.
///
/// A family that [`check_family`] refuses, or whose name was already
/// written (a second `# TYPE` for one name makes the whole scrape
/// invalid), is skipped; the others are written as [`write_family`] does.
pub fn render(families: &[Family<'_>]) -> String {
    let mut out = String::new();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for fam in families {
        if seen.contains(fam.name) {
            continue;
        }
        if write_family(&mut out, fam).is_ok() {
            seen.insert(fam.name);
        }
    }
    out
}

/// The `le` label of a bucket line.
#[derive(Clone, Copy)]
enum Le {
    Bound(u64),
    Inf,
}

fn write_series(out: &mut String, name: &str, s: &Series<'_>) {
    match s.value {
        Value::Counter(v) => push_sample(out, name, "", s.labels, None, v),
        Value::Gauge(v) => push_sample(out, name, "", s.labels, None, v),
        Value::Histogram {
            bounds,
            counts,
            sum,
            count,
        } => {
            let mut cumulative = 0u64;
            for (&b, &c) in bounds.iter().zip(counts) {
                // Checked by `check_histogram`: the counts add up to `count`.
                cumulative = cumulative.saturating_add(c);
                push_sample(
                    out,
                    name,
                    "_bucket",
                    s.labels,
                    Some(Le::Bound(b)),
                    cumulative,
                );
            }
            push_sample(out, name, "_bucket", s.labels, Some(Le::Inf), count);
            push_sample(out, name, "_sum", s.labels, None, sum);
            push_sample(out, name, "_count", s.labels, None, count);
        }
    }
}

/// A sample value, formatted without `core::fmt` (the hot path of a
/// scrape).
trait SampleValue: Copy {
    fn push(self, out: &mut String);
}

impl SampleValue for u64 {
    fn push(self, out: &mut String) {
        out.push_str(itoa::Buffer::new().format(self));
    }
}

impl SampleValue for i64 {
    fn push(self, out: &mut String) {
        out.push_str(itoa::Buffer::new().format(self));
    }
}

/// Writes `name suffix{labels[,le="..."]} value\n`.
fn push_sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(&str, &str)],
    le: Option<Le>,
    value: impl SampleValue,
) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || le.is_some() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            push_escaped(out, v, true);
            out.push('"');
        }
        if let Some(le) = le {
            if !labels.is_empty() {
                out.push(',');
            }
            match le {
                Le::Bound(b) => {
                    out.push_str("le=\"");
                    b.push(out);
                    out.push('"');
                }
                Le::Inf => out.push_str("le=\"+Inf\""),
            }
        }
        out.push('}');
    }
    out.push(' ');
    value.push(out);
    out.push('\n');
}

/// Escapes `\` and line feed, and `"` too when `quote` (label values; help
/// text keeps its quotes).
fn push_escaped(out: &mut String, s: &str, quote: bool) {
    // Most values need no escape: copy them whole.
    if !s
        .bytes()
        .any(|b| b == b'\\' || b == b'\n' || (quote && b == b'"'))
    {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "_", ":", "a:b_c9", "Z"] {
            assert!(is_metric_name(ok), "{ok}");
        }
        for bad in ["", "9a", "a-b", "a b", "é", "a.b"] {
            assert!(!is_metric_name(bad), "{bad}");
        }
        for ok in ["a", "_a", "a_b9", "le"] {
            assert!(is_label_name(ok), "{ok}");
        }
        for bad in ["", "9", "a:b", "__name__", "__", "a-b", "ü"] {
            assert!(!is_label_name(bad), "{bad}");
        }
    }

    #[test]
    fn escaping() {
        let mut s = String::new();
        push_escaped(&mut s, "a\\b\"c\nd\re", true);
        assert_eq!(s, "a\\\\b\\\"c\\nd\re");
        s.clear();
        push_escaped(&mut s, "a\\b\"c\nd", false);
        assert_eq!(s, "a\\\\b\"c\\nd");
    }

    #[test]
    fn histogram_checks() {
        assert_eq!(check_histogram(&[], &[3], 3), Ok(()));
        assert_eq!(
            check_histogram(&[1], &[3], 3),
            Err(ExpoError::HistogramShape)
        );
        assert_eq!(
            check_histogram(&[2, 2], &[0, 0, 0], 0),
            Err(ExpoError::HistogramBounds)
        );
        assert_eq!(
            check_histogram(&[1], &[1, 1], 3),
            Err(ExpoError::HistogramCount)
        );
        assert_eq!(
            check_histogram(&[1], &[u64::MAX, 1], 0),
            Err(ExpoError::HistogramCount)
        );
    }
}
