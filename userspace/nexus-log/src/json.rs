//! JSON-lines rendering with the standard fields.
//!
//! One object per record, on one line, keys in this order:
//!
//! | key         | value                                              |
//! |-------------|----------------------------------------------------|
//! | `timestamp` | ISO-8601 UTC with microseconds, e.g. `1970-01-01T00:00:01.500000Z` |
//! | `level`     | `trace` `debug` `info` `warn` `error`              |
//! | `target`    | the record's scope                                 |
//! | `message`   | the message                                        |
//! | `trace_id`  | only if the record has a `trace_id` field          |
//! | `span_id`   | only if the record has a `span_id` field           |
//! | `sender`    | the transport-stamped sender id (number)           |
//! | `id`        | the journal record id (number)                     |
//! | *fields*    | every other field in key order: typed values (`:i`, `:f`, `:b`) as JSON numbers and booleans, strings as strings |
//!
//! Keys are unique by construction: fields can not use the reserved keys,
//! and `trace_id`/`span_id` are emitted once. Strings are escaped exactly
//! as `serde_json` escapes them (a test checks it byte for byte), so the
//! line is valid JSON for any input.

use alloc::string::String;

use crate::fields::{FieldType, Fields};
use crate::record::Record;
use crate::Level;

/// Renders a journal record as one JSON line (no trailing newline).
pub fn record_to_json(r: &Record) -> String {
    let mut out = String::with_capacity(96 + r.wire_len());
    write_record_json(&mut out, r);
    out
}

/// Appends a journal record as one JSON line (no trailing newline) to
/// `out`: the same bytes as [`record_to_json`], into a buffer the caller
/// reuses.
pub fn write_record_json(out: &mut String, r: &Record) {
    render(
        out,
        r.ts_ns,
        r.level,
        &r.target,
        &r.message,
        &r.fields,
        Some((r.sender.get(), r.id)),
    );
}

/// Renders an event that did not go through logd (no sender, no id).
pub fn event_to_json(
    ts_ns: u64,
    level: Level,
    target: &str,
    message: &str,
    fields: &Fields,
) -> String {
    let mut out = String::with_capacity(96 + target.len() + message.len() + fields.len());
    write_event_json(&mut out, ts_ns, level, target, message, fields);
    out
}

/// Appends an event as one JSON line (no trailing newline) to `out`: the
/// same bytes as [`event_to_json`], into a buffer the caller reuses.
pub fn write_event_json(
    out: &mut String,
    ts_ns: u64,
    level: Level,
    target: &str,
    message: &str,
    fields: &Fields,
) {
    render(out, ts_ns, level, target, message, fields, None);
}

fn render(
    out: &mut String,
    ts_ns: u64,
    level: Level,
    target: &str,
    message: &str,
    fields: &Fields,
    origin: Option<(u32, u64)>,
) {
    out.reserve(80 + target.len() + message.len() + fields.len() + fields.len() / 2);
    out.push_str("{\"timestamp\":\"");
    push_iso8601(out, ts_ns);
    out.push_str("\",\"level\":\"");
    out.push_str(level.as_str());
    out.push_str("\",\"target\":");
    push_str(out, target);
    out.push_str(",\"message\":");
    push_str(out, message);
    // The lifted ids, looked up in one pass (the text is validated, so
    // the lines split without re-checking).
    let (mut trace_id, mut span_id) = (None, None);
    for (k, _, v) in fields.iter_trusted() {
        match k {
            "trace_id" => trace_id = Some(v),
            "span_id" => span_id = Some(v),
            _ => {}
        }
    }
    for (key, v) in [("trace_id", trace_id), ("span_id", span_id)] {
        if let Some(v) = v {
            out.push_str(",\"");
            out.push_str(key);
            out.push_str("\":");
            push_str(out, v);
        }
    }
    if let Some((sender, id)) = origin {
        let mut buf = itoa::Buffer::new();
        out.push_str(",\"sender\":");
        out.push_str(buf.format(sender));
        out.push_str(",\"id\":");
        out.push_str(buf.format(id));
    }
    for (k, ty, v) in fields.iter_trusted() {
        if k == "trace_id" || k == "span_id" {
            continue;
        }
        // Keys match `[a-z0-9_.-]+`: nothing to escape.
        out.push_str(",\"");
        out.push_str(k);
        out.push_str("\":");
        match ty {
            // Validated by the fields grammar: an integer, a JSON number
            // (finite), `true` or `false` — each a JSON value as written.
            FieldType::Int | FieldType::Float | FieldType::Bool => out.push_str(v),
            FieldType::Str => push_str(out, v),
        }
    }
    out.push('}');
}

/// What a byte becomes inside a JSON string: 0 copied as is, `u` as
/// `\u00XX`, else `\` and that letter (`serde_json`'s escapes exactly).
const fn escape_of(b: u8) -> u8 {
    match b {
        0x08 => b'b',
        0x09 => b't',
        0x0a => b'n',
        0x0c => b'f',
        0x0d => b'r',
        0x00..=0x1f => b'u',
        b'"' => b'"',
        b'\\' => b'\\',
        _ => 0,
    }
}

/// Appends `s` as a quoted JSON string, escaped byte for byte as
/// `serde_json` does: runs of bytes that need no escape are copied at once.
fn push_str(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut start = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        let e = escape_of(b);
        if e == 0 {
            continue;
        }
        // `i` is an ASCII byte: a char boundary.
        out.push_str(s.get(start..i).unwrap_or(""));
        out.push('\\');
        if e == b'u' {
            out.push_str("u00");
            for nibble in [b >> 4, b & 0xf] {
                let h = HEX.get(usize::from(nibble)).copied().unwrap_or(b'0');
                out.push(char::from(h));
            }
        } else {
            out.push(char::from(e));
        }
        start = i + 1;
    }
    out.push_str(s.get(start..).unwrap_or(""));
    out.push('"');
}

/// Writes `ts_ns` (nanoseconds since the Unix epoch) as
/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub fn push_iso8601(out: &mut String, ts_ns: u64) {
    let secs = ts_ns / 1_000_000_000;
    let micros = (ts_ns % 1_000_000_000) / 1_000;
    let days = secs / 86_400;
    let sod = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    // u64::MAX ns is in 2554: the year always has four digits.
    let mut b = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            if let Some(c) = b.get_mut(i) {
                *c = b'0' + (v % 10) as u8;
            }
            v /= 10;
        }
    };
    put(0, 4, y);
    put(5, 2, m);
    put(8, 2, d);
    put(11, 2, sod / 3600);
    put(14, 2, (sod % 3600) / 60);
    put(17, 2, sod % 60);
    put(20, 6, micros);
    // Only ASCII digits were written into an ASCII template.
    out.push_str(core::str::from_utf8(&b).unwrap_or("1970-01-01T00:00:00.000000Z"));
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
/// Howard Hinnant's `civil_from_days`, for non-negative day counts.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::FieldsBuilder;
    use nexus_ipc::ServiceId;
    use proptest::prelude::*;

    fn iso(ns: u64) -> String {
        let mut s = String::new();
        push_iso8601(&mut s, ns);
        s
    }

    #[test]
    fn iso8601_fixed_vectors() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(iso(1_500_000_000), "1970-01-01T00:00:01.500000Z");
        // 2000-02-29 (leap day) 12:34:56.789012
        assert_eq!(iso(951_827_696_789_012_345), "2000-02-29T12:34:56.789012Z");
        // 2026-01-15T10:30:00.123Z
        assert_eq!(
            iso(1_768_473_000_123_000_000),
            "2026-01-15T10:30:00.123000Z"
        );
        assert_eq!(iso(u64::MAX), "2554-07-21T23:34:33.709551Z");
    }

    #[test]
    fn standard_fields_in_order_and_ids_lifted() {
        let mut b = FieldsBuilder::new();
        b.insert("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736")
            .unwrap();
        b.insert("span_id", "00f067aa0ba902b7").unwrap();
        b.insert("ms", "12").unwrap();
        let r = Record {
            id: 7,
            ts_ns: 1_768_473_000_123_000_000,
            sender: ServiceId::new(3),
            level: Level::Info,
            target: "bus.router".into(),
            message: "routed".into(),
            fields: b.build().unwrap(),
        };
        assert_eq!(
            record_to_json(&r),
            "{\"timestamp\":\"2026-01-15T10:30:00.123000Z\",\"level\":\"info\",\"target\":\"bus.router\",\
             \"message\":\"routed\",\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\",\
             \"span_id\":\"00f067aa0ba902b7\",\"sender\":3,\"id\":7,\"ms\":\"12\"}"
        );
    }

    #[test]
    fn typed_values_are_json_numbers_and_booleans() {
        use crate::{info, Event, Log};
        #[derive(Default)]
        struct V(alloc::vec::Vec<Event>);
        impl Log for V {
            fn log(&mut self, e: Event) {
                self.0.push(e)
            }
        }
        let mut log = V::default();
        let big = u64::MAX;
        let text = alloc::string::String::from("200");
        info!(log, "x"; status = 200, ok = true, celsius = 20.5, cold = -3i8, big = big,
              small = 0.1f32, nan = f64::NAN, inf = f64::INFINITY, code = "200", s = text,
              whole = 20.0);
        let fields = log.0[0].fields.clone().unwrap();
        assert_eq!(
            fields.as_str(),
            "big:i=18446744073709551615\ncelsius:f=20.5\ncode=200\ncold:i=-3\ninf=inf\nnan=NaN\n\
             ok:b=true\ns=200\nsmall:f=0.1\nstatus:i=200\nwhole:f=20.0\n"
        );
        assert_eq!(Fields::parse(fields.as_str()), Ok(fields.clone()));
        let line = event_to_json(0, Level::Info, "t", "x", &fields);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["status"], serde_json::json!(200));
        assert_eq!(v["ok"], serde_json::json!(true));
        assert_eq!(v["celsius"], serde_json::json!(20.5));
        assert_eq!(v["whole"], serde_json::json!(20.0));
        assert_eq!(v["cold"], serde_json::json!(-3));
        assert_eq!(v["big"], serde_json::json!(u64::MAX));
        assert_eq!(v["small"].as_f64(), Some(0.1));
        assert_eq!(v["nan"], serde_json::json!("NaN"));
        assert_eq!(v["inf"], serde_json::json!("inf"));
        // Strings stay strings, even when they look like numbers.
        assert_eq!(v["code"], serde_json::json!("200"));
        assert_eq!(v["s"], serde_json::json!("200"));
        assert!(line.contains("\"status\":200,"), "{line}");
        // The version 1 view of the same fields is all strings.
        let old = fields.untyped();
        assert!(!old.has_types());
        let v1: serde_json::Value =
            serde_json::from_str(&event_to_json(0, Level::Info, "t", "x", &old)).unwrap();
        assert_eq!(v1["status"], serde_json::json!("200"));
    }

    #[test]
    fn reserved_keys_are_refused() {
        for k in crate::fields::RESERVED_KEYS {
            assert_eq!(
                crate::fields::check_key(k),
                Err(crate::fields::FieldError::ReservedKey)
            );
        }
        assert_eq!(crate::fields::check_key("ids"), Ok(()));
    }

    proptest! {
        /// The escaper writes exactly what `serde_json` writes.
        #[test]
        fn strings_escape_like_serde_json(s in "\\PC*|[\x00-\x1f\"\\\\\u{2028}\u{7f}a-z]*") {
            let mut out = String::new();
            push_str(&mut out, &s);
            prop_assert_eq!(out, serde_json::to_string(&s).unwrap());
        }

        /// The unchecked iteration of validated fields is the checked one.
        #[test]
        fn trusted_iteration_matches_checked(vals in proptest::collection::vec(("[a-z_]{1,8}", "[^\n]{0,12}", 0u8..4), 0..6)) {
            let mut b = FieldsBuilder::new();
            for (k, v, t) in &vals {
                let _ = match t {
                    0 => b.insert_typed(k, FieldType::Int, "-12"),
                    1 => b.insert_typed(k, FieldType::Bool, "true"),
                    2 => b.insert_typed(k, FieldType::Float, "2.5e3"),
                    _ => b.insert(k, v),
                };
            }
            if let Ok(f) = b.build() {
                prop_assert_eq!(f.iter_trusted().collect::<alloc::vec::Vec<_>>(), f.iter_typed().collect::<alloc::vec::Vec<_>>());
            }
        }

        /// Any message, target and field value gives one line of valid JSON
        /// that decodes back to the same strings.
        #[test]
        fn any_input_is_valid_json(msg in "\\PC*|[\\x00-\\x1f\"\\\\\u{2028}\u{7f}]*", target in ".{0,20}", val in "[^\n]{0,30}") {
            let mut b = FieldsBuilder::new();
            b.insert("v", &val).unwrap();
            let line = event_to_json(42, Level::Warn, &target, &msg, &b.build().unwrap());
            prop_assert!(!line.contains('\n'));
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            prop_assert_eq!(v["message"].as_str(), Some(msg.as_str()));
            prop_assert_eq!(v["target"].as_str(), Some(target.as_str()));
            prop_assert_eq!(v["v"].as_str(), Some(val.as_str()));
            prop_assert_eq!(v["level"].as_str(), Some("warn"));
        }
    }
}
