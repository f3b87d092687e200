//! What people read: log lines (colour by level on a terminal, plain or
//! JSON otherwise), a metrics table, a trace waterfall across nodes.

use std::fmt::Write as _;

use anstyle::{AnsiColor, Style};
use obsscraped::query::SeriesValue;
use serde_json::Value;

/// The keys of a logd JSON line that are not the record's own fields.
pub const STANDARD: &[&str] = &[
    "timestamp",
    "level",
    "target",
    "message",
    "sender",
    "id",
    "node",
    "trace_id",
    "span_id",
];

/// A collector log line with the node it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// The node's name.
    pub node: String,
    /// The record (logd's JSON object).
    pub record: Value,
}

impl LogLine {
    /// Parses a collector line (`None` when it is not a JSON object).
    pub fn parse(node: &str, line: &str) -> Option<LogLine> {
        let record: Value = serde_json::from_str(line).ok()?;
        record.is_object().then(|| LogLine {
            node: node.to_string(),
            record,
        })
    }

    fn str_field(&self, k: &str) -> &str {
        self.record.get(k).and_then(Value::as_str).unwrap_or("")
    }

    /// The sender (service id) logd stamped.
    pub fn sender(&self) -> u32 {
        self.record
            .get("sender")
            .and_then(Value::as_u64)
            .and_then(|s| u32::try_from(s).ok())
            .unwrap_or(0)
    }

    /// The record's level name.
    pub fn level(&self) -> &str {
        self.str_field("level")
    }

    /// The record id on its node.
    pub fn id(&self) -> u64 {
        self.record.get("id").and_then(Value::as_u64).unwrap_or(0)
    }

    /// The JSON line: logd's line (timestamp, level, target, message,
    /// trace_id, span_id, sender, id, then the record's own fields) plus
    /// `node`.
    pub fn json(&self) -> String {
        let mut v = self.record.clone();
        if let Some(o) = v.as_object_mut() {
            o.insert("node".into(), Value::String(self.node.clone()));
        }
        v.to_string()
    }

    /// One human line: time, level, node/service, target, message, fields.
    pub fn human(&self, color: bool) -> String {
        let level = self.level();
        let style = match level {
            "error" => AnsiColor::Red.on_default().bold(),
            "warn" => AnsiColor::Yellow.on_default().bold(),
            "info" => AnsiColor::Green.on_default(),
            _ => AnsiColor::BrightBlack.on_default(),
        };
        let dim = Style::new().dimmed();
        let (s, r, ds, dr) = if color {
            (
                style.render().to_string(),
                style.render_reset().to_string(),
                dim.render().to_string(),
                dim.render_reset().to_string(),
            )
        } else {
            Default::default()
        };
        let mut out = format!(
            "{ds}{}{dr} {s}{:<5}{r} {}/{} {}: {}",
            self.str_field("timestamp"),
            level.to_uppercase(),
            self.node,
            self.sender(),
            self.str_field("target"),
            self.str_field("message"),
        );
        for (k, v) in self.fields() {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let _ = write!(out, " {ds}{k}={dr}{v}");
        }
        out
    }

    /// The record's own fields (everything but the standard keys), in
    /// key order; `trace_id` and `span_id` come last when present.
    pub fn fields(&self) -> Vec<(&str, &Value)> {
        let Some(o) = self.record.as_object() else {
            return Vec::new();
        };
        let mut f: Vec<(&str, &Value)> = o
            .iter()
            .filter(|(k, _)| !STANDARD.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        for k in ["trace_id", "span_id"] {
            if let Some(v) = o.get(k) {
                f.push((k, v));
            }
        }
        f
    }

    /// True if `needle` occurs in the message, target or a field value.
    pub fn contains(&self, needle: &str) -> bool {
        self.str_field("message").contains(needle)
            || self.str_field("target").contains(needle)
            || self.fields().iter().any(|(_, v)| match v {
                Value::String(s) => s.contains(needle),
                other => other.to_string().contains(needle),
            })
    }
}

/// The metrics table: one row per series, sorted by name then node.
pub fn metrics_table(rows: &[(String, SeriesValue)]) -> String {
    let mut rows: Vec<&(String, SeriesValue)> = rows.iter().collect();
    rows.sort_by(|a, b| (&a.1.name, &a.0, &a.1.labels).cmp(&(&b.1.name, &b.0, &b.1.labels)));
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|(node, s)| {
            let series = if s.labels.is_empty() {
                s.name.clone()
            } else {
                format!("{}{{{}}}", s.name, s.labels)
            };
            [
                node.clone(),
                series,
                kind_name(s.kind).to_string(),
                value_text(s),
            ]
        })
        .collect();
    let head = [
        "NODE".to_string(),
        "SERIES".to_string(),
        "KIND".to_string(),
        "VALUE".to_string(),
    ];
    let mut w = [0usize; 4];
    for r in cells.iter().chain(std::iter::once(&head)) {
        for (i, c) in r.iter().enumerate() {
            if let Some(x) = w.get_mut(i) {
                *x = (*x).max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    for r in std::iter::once(&head).chain(cells.iter()) {
        let [a, b, c, d] = r;
        let _ = writeln!(
            out,
            "{a:<w0$}  {b:<w1$}  {c:<w2$}  {d:>w3$}",
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3]
        );
    }
    out
}

/// The kind byte's name.
pub fn kind_name(kind: u8) -> &'static str {
    match nexus_metrics::MetricKind::from_u8(kind) {
        Some(nexus_metrics::MetricKind::Counter) => "counter",
        Some(nexus_metrics::MetricKind::Gauge) => "gauge",
        Some(nexus_metrics::MetricKind::Histogram) => "histogram",
        _ => "unknown",
    }
}

fn value_text(s: &SeriesValue) -> String {
    match kind_name(s.kind) {
        "histogram" => format!("count={} sum={}", s.count, s.sum),
        _ => s.value.to_string(),
    }
}

/// A trace waterfall from its JSON line: one row per span in start
/// order, indented under its parent, a bar on the trace's time axis
/// (`width` columns), the node and the duration.
pub fn waterfall(line: &str, names: &dyn Fn(&str) -> String, width: usize) -> Option<String> {
    let v: Value = serde_json::from_str(line).ok()?;
    let spans = v.get("spans")?.as_array()?;
    let t = |s: &Value, k: &str| s.get(k).and_then(Value::as_u64).unwrap_or(0);
    let start = spans.iter().map(|s| t(s, "start_ns")).min()?;
    let end = spans.iter().map(|s| t(s, "end_ns")).max()?.max(start + 1);
    let span_ns = end - start;
    let id = |s: &Value, k: &str| s.get(k).and_then(Value::as_str).map(String::from);
    let depth = |s: &Value| {
        let mut d = 0;
        let mut cur = id(s, "parent_span_id");
        while let Some(p) = cur {
            d += 1;
            if d > spans.len() {
                break;
            }
            cur = spans
                .iter()
                .find(|x| id(x, "span_id").as_deref() == Some(&p))
                .and_then(|x| id(x, "parent_span_id"));
        }
        d
    };
    let mut out = format!(
        "trace {} ({} spans, {})\n",
        v.get("trace_id")?.as_str()?,
        spans.len(),
        human_ns(span_ns)
    );
    let label_w = spans
        .iter()
        .map(|s| 2 * depth(s) + id(s, "name").map_or(0, |n| n.len()))
        .max()
        .unwrap_or(0);
    for s in spans {
        let (a, b) = (
            t(s, "start_ns") - start,
            t(s, "end_ns").saturating_sub(start),
        );
        let from =
            usize::try_from(u128::from(a) * width as u128 / u128::from(span_ns)).unwrap_or(0);
        let to = usize::try_from(u128::from(b) * width as u128 / u128::from(span_ns))
            .unwrap_or(width)
            .clamp(from + 1, width.max(from + 1));
        let bar: String = (0..width)
            .map(|i| if i >= from && i < to { '█' } else { '·' })
            .collect();
        let label = format!(
            "{}{}",
            "  ".repeat(depth(s)),
            id(s, "name").unwrap_or_default()
        );
        let node = names(&id(s, "node").unwrap_or_default());
        let skew = match s.get("clock_error_ns").and_then(Value::as_u64) {
            Some(e) => format!(" (aligned ±{})", human_ns(e)),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "{label:<label_w$}  {bar}  {node}/{} {}{skew}",
            s.get("service").and_then(Value::as_u64).unwrap_or(0),
            human_ns(t(s, "end_ns").saturating_sub(t(s, "start_ns")))
        );
    }
    Some(out)
}

/// `1.25 ms` style.
pub fn human_ns(ns: u64) -> String {
    let f = ns as f64;
    if ns >= 1_000_000_000 {
        format!("{:.2} s", f / 1e9)
    } else if ns >= 1_000_000 {
        format!("{:.2} ms", f / 1e6)
    } else if ns >= 1_000 {
        format!("{:.1} µs", f / 1e3)
    } else {
        format!("{ns} ns")
    }
}
