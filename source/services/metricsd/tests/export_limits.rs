//! metricsd's records fit every logd: the worst-case snapshot and span-end
//! records metricsd can produce under its config are accepted by logd with
//! its default config and with the guaranteed minimum record limits
//! (`nexus_log::limits`). Span attributes beyond the budget are trimmed
//! deterministically and counted.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::*;

use metricsd::config::{MAX_ATTRS, MAX_ATTR_KEY_LEN, MAX_ATTR_VALUE_LEN, MAX_SPAN_NAME_LEN};
use metricsd::server::Export;
use metricsd::{Config, Metricsd};
use nexus_log::limits;
use nexus_log::proto::{self, AppendRequest, Reply};
use nexus_metrics::proto::{Entry, Status};
use nexus_metrics::types::{
    MAX_BUCKETS, MAX_LABELS, MAX_LABEL_KEY_LEN, MAX_LABEL_VALUE_LEN, MAX_NAME_LEN,
};

/// logd with its defaults, and logd at the guaranteed minimum limits.
fn logds() -> Vec<(&'static str, logd::Logd)> {
    let unlimited_rate = |mut c: logd::Config| {
        c.rate.events_per_sec = u32::MAX / 2;
        c.rate.events_burst = u32::MAX / 2;
        c.rate.bytes_per_sec = u32::MAX / 2;
        c.rate.bytes_burst = u32::MAX / 2;
        c
    };
    let mut min = logd::Config::default();
    min.record.max_record_bytes = limits::GUARANTEED_RECORD_BYTES as u32;
    min.record.max_target_len = limits::GUARANTEED_TARGET_LEN as u32;
    min.record.max_message_len = limits::GUARANTEED_MESSAGE_LEN as u32;
    min.record.max_fields_bytes = limits::GUARANTEED_FIELDS_BYTES as u32;
    min.record.max_fields = limits::GUARANTEED_FIELDS as u32;
    min.record.max_key_len = limits::GUARANTEED_KEY_LEN as u32;
    min.record.max_value_len = limits::GUARANTEED_VALUE_LEN as u32;
    [
        ("default", logd::Config::default()),
        ("guaranteed minimum", min),
    ]
    .into_iter()
    .map(|(n, c)| {
        (
            n,
            logd::Logd::new(unlimited_rate(c), 64 * 1024, []).unwrap(),
        )
    })
    .collect()
}

/// Sends `e` to every logd as metricsd's service does; all must accept it.
fn assert_logd_accepts(e: &Export) {
    let body = AppendRequest {
        level: e.level.as_u8(),
        target: e.target,
        message: &e.message,
        fields: e.fields.as_str(),
    };
    let frame = proto::encode_append(1, false, &body).unwrap();
    for (name, mut l) in logds() {
        let h = l.handle(0, sid(77), &frame);
        let r = proto::decode_reply(&h.reply.unwrap()).unwrap().1;
        assert!(
            matches!(r, Reply::Appended(_)),
            "logd ({name}) refused {r:?}: {} {} ({} field bytes)\n{}",
            e.target,
            e.message,
            e.fields.len(),
            e.fields.as_str()
        );
    }
}

/// Label keys of the most export bytes: 13 upper-case letters (each is
/// exported as `-` and its lower case) = 26.
fn worst_label_keys() -> Vec<String> {
    (0..MAX_LABELS)
        .map(|i| {
            let k: String = (0..MAX_LABEL_KEY_LEN / 2)
                .map(|j| char::from(b'A' + ((i + j) % 26) as u8))
                .collect();
            k
        })
        .collect()
}

/// A metricsd at the largest span bounds its validation allows.
fn max_cfg() -> Config {
    let mut c = unlimited(Config::default());
    c.spans.max_attrs = MAX_ATTRS;
    c.spans.max_attr_key_len = MAX_ATTR_KEY_LEN;
    c.spans.max_attr_value_len = MAX_ATTR_VALUE_LEN;
    c.spans.max_name_len = MAX_SPAN_NAME_LEN;
    c
}

fn worst_snapshots(m: &mut Metricsd) -> Vec<Export> {
    let owner = sid(u32::MAX);
    let keys = worst_label_keys();
    let value = "é".repeat(MAX_LABEL_VALUE_LEN / 2); // 64 bytes, multi-byte
    let labels: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), value.as_str())).collect();
    let name_h = format!("h{}", "x".repeat(MAX_NAME_LEN - 1));
    let name_g = format!("g{}", "x".repeat(MAX_NAME_LEN - 1));
    let bounds: Vec<u64> = (0..MAX_BUCKETS as u64).map(|i| u64::MAX - 16 + i).collect();
    let h = register(m, 0, owner, 2, &name_h, &labels, &bounds).unwrap();
    let g = register(m, 0, owner, 1, &name_g, &labels, &[]).unwrap();
    let per = u64::MAX / (MAX_BUCKETS as u64 + 1);
    let counts = vec![per; MAX_BUCKETS + 1];
    let r = batch(
        m,
        SEC,
        owner,
        &[
            Entry::Hist {
                series: h,
                counts,
                sum: u64::MAX,
            },
            Entry::Set {
                series: g,
                value: i64::MIN,
            },
        ],
    )
    .unwrap();
    assert_eq!(r.rejected, 0);
    m.snapshot(2 * SEC);
    m.drain_exports()
}

#[test]
fn worst_case_snapshots_fit_every_logd() {
    for cfg in [unlimited(Config::default()), max_cfg()] {
        let mut m = md(cfg);
        let out = worst_snapshots(&mut m);
        assert_eq!(out.len(), 2);
        for e in &out {
            // Series ids reach 10 digits (the test's are 1 digit): the
            // budget has room for the 2 × 9 more bytes.
            assert!(
                e.fields.len() + 18 <= limits::GUARANTEED_FIELDS_BYTES,
                "{} bytes",
                e.fields.len()
            );
            assert_eq!(
                e.fields.count(),
                3 + MAX_LABELS
                    + if e.message.starts_with('h') {
                        MAX_BUCKETS + 3
                    } else {
                        1
                    }
            );
            assert_logd_accepts(e);
        }
        assert!(m
            .exposition()
            .contains("metricsd_export_trimmed_total{kind=\"record\"} 0\n"));
    }
}

#[test]
fn label_keys_are_bounded_by_logds_key_length() {
    let mut m = md(unlimited(Config::default()));
    // 26 bytes: `label.` + 26 = 32, logd's guaranteed key length.
    let ok = "k".repeat(MAX_LABEL_KEY_LEN);
    assert_eq!(MAX_LABEL_KEY_LEN, 26);
    assert!(register(&mut m, 0, sid(1), 0, "c", &[(&ok, "v")], &[]).is_ok());
    // 27 bytes used to be legal here and refused by logd (`over_limit` to
    // a one-way APPEND: the record was lost silently).
    let long = "k".repeat(MAX_LABEL_KEY_LEN + 1);
    assert_eq!(
        register(&mut m, 0, sid(1), 0, "c", &[(&long, "v")], &[]),
        Err(Status::OverLimit)
    );
    // Upper-case letters are exported as two bytes (`-` and lower case).
    let upper = format!("A{}", "k".repeat(MAX_LABEL_KEY_LEN - 1));
    assert_eq!(
        register(&mut m, 0, sid(1), 0, "c", &[(&upper, "v")], &[]),
        Err(Status::OverLimit)
    );
    m.snapshot(0);
    for e in m.drain_exports() {
        assert_logd_accepts(&e);
    }
}

#[test]
fn span_attribute_limits_follow_logd_and_configs_beyond_are_refused() {
    assert_eq!(MAX_ATTR_KEY_LEN, 27, "attr. + 27 = 32");
    assert_eq!(Config::default().spans.max_attr_key_len, MAX_ATTR_KEY_LEN);
    for (what, f) in [
        (
            "key",
            (|c: &mut Config| c.spans.max_attr_key_len += 1) as fn(&mut Config),
        ),
        ("value", |c| c.spans.max_attr_value_len += 1),
        ("name", |c| c.spans.max_name_len += 1),
        ("attrs", |c| c.spans.max_attrs += 1),
    ] {
        let mut c = max_cfg();
        assert_eq!(c.validate(), Ok(()));
        f(&mut c);
        assert!(c.validate().is_err(), "{what} beyond logd's guarantee");
    }
    // A 28-byte attribute key is refused by metricsd; the span still ends.
    let mut m = md(unlimited(Config::default()));
    let me = sid(3);
    let key = "a".repeat(28);
    batch(
        &mut m,
        0,
        me,
        &[Entry::SpanStart {
            span: 1,
            trace: 1,
            parent: 0,
            start_ns: 0,
            name: "s",
        }],
    )
    .unwrap();
    let r = one_reject(batch(
        &mut m,
        0,
        me,
        &[Entry::SpanEnd {
            span: 1,
            end_ns: 1,
            status: 1,
            attrs: vec![(&key, "v")],
        }],
    ));
    assert_eq!(r, Status::OverLimit);
    assert_eq!(stats(&mut m, me).live_spans, 0, "the span ended anyway");
    for e in m.drain_exports() {
        assert_logd_accepts(&e);
    }
}

fn worst_span(m: &mut Metricsd, nattrs: usize, key_len: usize, name_len: usize) -> Vec<Export> {
    let me = sid(u32::MAX);
    let keys: Vec<String> = (0..nattrs)
        .map(|i| format!("{i:02}{}", "k".repeat(key_len - 2)))
        .collect();
    let value = "v".repeat(MAX_ATTR_VALUE_LEN as usize);
    let attrs: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), value.as_str())).collect();
    let name = "n".repeat(name_len);
    let r = batch(
        m,
        0,
        me,
        &[
            Entry::SpanStart {
                span: 1,
                trace: u128::MAX,
                parent: 0,
                start_ns: 0,
                name: &name,
            },
            Entry::SpanStart {
                span: 2,
                trace: u128::MAX,
                parent: 1,
                start_ns: 0,
                name: &name,
            },
            Entry::SpanEnd {
                span: 2,
                end_ns: u64::MAX,
                status: 2,
                attrs,
            },
            Entry::SpanEnd {
                span: 1,
                end_ns: 1,
                status: 1,
                attrs: vec![],
            },
        ],
    )
    .unwrap();
    assert_eq!(r.rejected, 0);
    m.drain_exports()
}

#[test]
fn worst_case_span_records_are_trimmed_to_fit_and_counted() {
    for (cfg, nattrs) in [
        (unlimited(Config::default()), 16),
        (max_cfg(), MAX_ATTRS as usize),
    ] {
        let name_len = cfg.spans.max_name_len as usize;
        let mut m = md(cfg);
        let out = worst_span(&mut m, nattrs, MAX_ATTR_KEY_LEN as usize, name_len);
        assert_eq!(out.len(), 2, "the child, then its parent");
        assert_logd_accepts(&out[1]);
        let e = &out[0];
        assert_logd_accepts(e);
        let kept: Vec<&str> = e
            .fields
            .iter()
            .filter_map(|(k, _)| k.strip_prefix("attr."))
            .collect();
        // 8 fixed fields (243 bytes here) + 162 bytes per attribute
        // within 1862: 10 attributes, the first 10 in key order.
        assert_eq!(kept.len(), 10, "{}", e.fields.as_str());
        assert!(kept
            .iter()
            .enumerate()
            .all(|(i, k)| k.starts_with(&format!("{i:02}"))));
        let dropped = nattrs - kept.len();
        assert!(
            m.exposition().contains(&format!(
                "metricsd_export_trimmed_total{{kind=\"span_attr\"}} {dropped}\n"
            )),
            "{}",
            m.exposition()
        );
        // Deterministic: the same span gives the same record.
        let again = worst_span(&mut m, nattrs, MAX_ATTR_KEY_LEN as usize, name_len);
        assert_eq!(again[0].fields, e.fields);
    }
    // Spans within the budget are exported whole.
    let mut m = md(unlimited(Config::default()));
    let out = worst_span(&mut m, 4, 10, 8);
    assert_eq!(
        out[0]
            .fields
            .iter()
            .filter(|(k, _)| k.starts_with("attr."))
            .count(),
        4
    );
    assert!(m
        .exposition()
        .contains("metricsd_export_trimmed_total{kind=\"span_attr\"} 0\n"));
}

#[test]
fn exported_numbers_are_typed_in_json() {
    let mut m = md(unlimited(Config::default()));
    let out = worst_span(&mut m, 1, 4, 4);
    let rec = nexus_log::Record {
        id: 1,
        ts_ns: 0,
        sender: sid(9),
        level: out[0].level,
        target: out[0].target.into(),
        message: out[0].message.clone(),
        fields: out[0].fields.clone(),
    };
    let v: serde_json::Value =
        serde_json::from_str(&nexus_log::json::record_to_json(&rec)).unwrap();
    assert_eq!(v["duration_ns"], serde_json::json!(u64::MAX));
    assert_eq!(v["end_ns"], serde_json::json!(u64::MAX));
    assert_eq!(v["start_ns"], serde_json::json!(0));
    assert_eq!(v["owner"], serde_json::json!(u32::MAX));
    assert_eq!(v["status"], serde_json::json!("error"));
    assert_eq!(
        v["trace_id"],
        serde_json::json!("ffffffffffffffffffffffffffffffff")
    );
    assert_eq!(v["attr.00kk"], serde_json::json!("v".repeat(128)));

    let snaps = worst_snapshots(&mut m);
    let g = snaps.iter().find(|e| e.message.starts_with('g')).unwrap();
    let rec = nexus_log::Record {
        fields: g.fields.clone(),
        message: g.message.clone(),
        target: g.target.into(),
        ..rec
    };
    let v: serde_json::Value =
        serde_json::from_str(&nexus_log::json::record_to_json(&rec)).unwrap();
    assert_eq!(v["value"], serde_json::json!(i64::MIN));
    assert_eq!(v["kind"], serde_json::json!("gauge"));
    assert!(v["series"].is_u64() && v["owner"].is_u64());
}
