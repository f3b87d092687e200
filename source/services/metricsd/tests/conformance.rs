//! Prometheus conformance of metricsd's scrape, end to end at the frame
//! level: one `# HELP`/`# TYPE` per name (kind and layout conflicts, the
//! service's own names and histogram sample names refused and counted), the
//! Prometheus name grammars, secret keys by segment, HELP text, `+Inf`-only
//! histograms, and paging by series (no family ever skipped; pages parse
//! and concatenate to the whole exposition). When `promtool` is installed,
//! it checks a rendered scrape too (otherwise a note is printed).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::*;

use metricsd::{Config, Metricsd};
use nexus_ipc::ServiceId;
use nexus_metrics::proto::{self, Entry, Register, Reply, Status};
use openmetrics_parser::prometheus::parse_prometheus;

const COUNTER: u8 = 0;
const GAUGE: u8 = 1;
const HIST: u8 = 2;

fn register_help(
    m: &mut Metricsd,
    s: ServiceId,
    kind: u8,
    name: &str,
    bounds: &[u64],
    help: &str,
) -> Result<u32, Status> {
    let frame = proto::encode_register(
        1,
        &Register {
            kind,
            name,
            labels: vec![],
            bounds: bounds.to_vec(),
            help,
        },
    )
    .unwrap();
    match call(m, 0, s, &frame) {
        Reply::Registered(id) => Ok(id),
        Reply::Rejected(st) => Err(st),
        other => panic!("{other:?}"),
    }
}

/// Every page with `max_bytes`, checking that each parses on its own.
fn pages(m: &mut Metricsd, max_bytes: u32) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor = 0;
    loop {
        let page = match call(m, 0, sid(999), &proto::encode_scrape(7, cursor, max_bytes)) {
            Reply::Scrape(p) => p,
            other => panic!("{other:?}"),
        };
        parse_prometheus(&page.text)
            .unwrap_or_else(|e| panic!("page {} refused: {e:?}\n{}", out.len(), page.text));
        assert!(page.text.len() <= metricsd::server::MAX_SCRAPE_BYTES);
        out.push(page.text);
        if !page.more {
            return out;
        }
        assert!(out.len() < 100_000, "paging does not end");
        cursor = page.next;
    }
}

/// The whole scrape, paged, checked against the single render and parsed.
fn scrape_text(m: &mut Metricsd, max_bytes: u32) -> String {
    let text = pages(m, max_bytes).concat();
    assert_eq!(text, m.exposition(), "pages concatenate to the whole");
    parse_prometheus(&text).unwrap_or_else(|e| panic!("scrape refused: {e:?}\n{text}"));
    assert_one_block_per_name(&text);
    text
}

/// promtool's rule: one `# HELP` and one `# TYPE` per name.
fn assert_one_block_per_name(text: &str) {
    let mut seen = std::collections::BTreeSet::new();
    for l in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = l.split(' ').nth(2).unwrap();
        assert!(seen.insert(name.to_string()), "second TYPE for {name}");
    }
    let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
    assert_eq!(helps, seen.len());
}

fn conflicts(text: &str, reason: &str) -> u64 {
    let want = format!("metricsd_register_conflicts_total{{reason=\"{reason}\"}} ");
    let line = text.lines().find(|l| l.starts_with(&want)).unwrap();
    line[want.len()..].parse().unwrap()
}

#[test]
fn one_kind_and_layout_per_name_across_owners() {
    let mut m = md(unlimited(Config::default()));
    let a = sid(1);
    let b = sid(2);
    register(&mut m, 0, a, COUNTER, "jobs_total", &[], &[]).unwrap();
    // Another owner, another kind: refused, not a second block.
    assert_eq!(
        register(&mut m, 0, b, GAUGE, "jobs_total", &[], &[]),
        Err(Status::InvalidArgs)
    );
    register(&mut m, 0, a, HIST, "lat", &[], &[1, 10]).unwrap();
    assert_eq!(
        register(&mut m, 0, b, HIST, "lat", &[], &[1, 100]),
        Err(Status::InvalidArgs),
        "other layout"
    );
    // Same kind and layout: another owner's series of the same family.
    register(&mut m, 0, b, COUNTER, "jobs_total", &[], &[]).unwrap();
    register(&mut m, 0, b, HIST, "lat", &[], &[1, 10]).unwrap();
    let text = scrape_text(&mut m, 60 * 1024);
    assert_eq!(conflicts(&text, "kind"), 1);
    assert_eq!(conflicts(&text, "layout"), 1);
    assert!(text.contains("jobs_total{owner=\"1\"} 0\njobs_total{owner=\"2\"} 0\n"));
    assert_eq!(stats(&mut m, a).rejected(Status::InvalidArgs), 2);
}

#[test]
fn metricsd_names_are_reserved() {
    let mut m = md(unlimited(Config::default()));
    for (kind, name) in [
        (GAUGE, "metricsd_series"),
        (COUNTER, "metricsd_rejects_total"),
        (COUNTER, "metricsd_series_overflow_total"),
        (COUNTER, "metricsd_register_conflicts_total"),
        (GAUGE, "metricsd_spans_live"),
        (HIST, "metricsd_anything_new"),
    ] {
        let bounds: &[u64] = if kind == HIST { &[1] } else { &[] };
        assert_eq!(
            register(&mut m, 0, sid(1), kind, name, &[], bounds),
            Err(Status::Denied),
            "{name}"
        );
    }
    let text = scrape_text(&mut m, 60 * 1024);
    assert_eq!(conflicts(&text, "reserved_name"), 6);
    assert_eq!(stats(&mut m, sid(1)).rejected(Status::Denied), 6);
}

#[test]
fn histogram_sample_names_collide_both_ways() {
    let mut m = md(unlimited(Config::default()));
    let me = sid(1);
    register(&mut m, 0, me, HIST, "lat", &[], &[5]).unwrap();
    for name in ["lat_sum", "lat_count", "lat_bucket"] {
        for kind in [COUNTER, GAUGE] {
            assert_eq!(
                register(&mut m, 0, sid(2), kind, name, &[], &[]),
                Err(Status::InvalidArgs),
                "{name} next to histogram lat"
            );
        }
        assert_eq!(
            register(&mut m, 0, me, HIST, name, &[], &[5]),
            Err(Status::InvalidArgs)
        );
    }
    // And the other way: a histogram whose samples would shadow a name.
    register(&mut m, 0, me, GAUGE, "rtt_sum", &[], &[]).unwrap();
    assert_eq!(
        register(&mut m, 0, sid(2), HIST, "rtt", &[], &[5]),
        Err(Status::InvalidArgs)
    );
    register(&mut m, 0, me, COUNTER, "q_count", &[], &[]).unwrap();
    assert_eq!(
        register(&mut m, 0, me, HIST, "q", &[], &[]),
        Err(Status::InvalidArgs)
    );
    // Non-histograms never collide by suffix.
    register(&mut m, 0, me, GAUGE, "rtt", &[], &[]).unwrap();
    let text = scrape_text(&mut m, 60 * 1024);
    assert_eq!(conflicts(&text, "sample_name"), 11);
}

#[test]
fn le_label_on_a_histogram_is_refused_at_registration() {
    let mut m = md(unlimited(Config::default()));
    assert_eq!(
        register(&mut m, 0, sid(1), HIST, "h", &[("le", "1")], &[1]),
        Err(Status::InvalidArgs)
    );
    // An ordinary label elsewhere.
    register(&mut m, 0, sid(1), GAUGE, "g", &[("le", "1")], &[]).unwrap();
    let text = scrape_text(&mut m, 60 * 1024);
    assert_eq!(conflicts(&text, "le_label"), 1);
    assert!(text.contains("g{owner=\"1\",le=\"1\"} 0\n"));
}

#[test]
fn prometheus_name_grammar_is_accepted() {
    let mut m = md(unlimited(Config::default()));
    let me = sid(1);
    let id = register(
        &mut m,
        0,
        me,
        COUNTER,
        "ns:sub:metric_total",
        &[("Route", "/a"), ("Method_ID", "GET")],
        &[],
    )
    .unwrap();
    batch(
        &mut m,
        0,
        me,
        &[Entry::Inc {
            series: id,
            delta: 3,
        }],
    )
    .unwrap();
    register(&mut m, 0, me, GAUGE, "HTTP_Inflight", &[], &[]).unwrap();
    register(&mut m, 0, me, GAUGE, ":leading_colon", &[], &[]).unwrap();
    for bad in ["__internal", "9lives", "a-b", "a.b"] {
        assert_eq!(
            register(&mut m, 0, me, GAUGE, bad, &[], &[]),
            Err(Status::InvalidArgs),
            "{bad}"
        );
    }
    for bad in ["__k", "a:b", "a-b"] {
        assert_eq!(
            register(&mut m, 0, me, GAUGE, "g", &[(bad, "v")], &[]),
            Err(Status::InvalidArgs),
            "{bad}"
        );
    }
    let text = scrape_text(&mut m, 60 * 1024);
    assert!(
        text.contains("ns:sub:metric_total{owner=\"1\",Method_ID=\"GET\",Route=\"/a\"} 3\n"),
        "{text}"
    );
    assert!(text.contains("# TYPE HTTP_Inflight gauge\n"));
    // Snapshots carry upper-case label keys in logd's key grammar.
    m.snapshot(0);
    let rec = m
        .drain_exports()
        .into_iter()
        .find(|e| e.message == "ns:sub:metric_total")
        .unwrap();
    assert_eq!(rec.fields.get("label.-route"), Some("/a"));
    assert_eq!(rec.fields.get("label.-method_-i-d"), Some("GET"));
    assert_eq!(rec.fields.get("value"), Some("3"));
}

#[test]
fn secret_keys_match_segments_not_substrings() {
    let mut m = md(unlimited(Config::default()));
    let me = sid(1);
    for innocent in ["author", "keyspace", "monkey", "tokenizer", "authority"] {
        register(&mut m, 0, me, GAUGE, "g", &[(innocent, "x")], &[])
            .unwrap_or_else(|s| panic!("{innocent} refused: {s:?}"));
    }
    for secret in [
        "api_key",
        "token",
        "password",
        "secret",
        "auth",
        "authorization",
        "cookie",
        "authToken",
        "API_KEY",
        "session_id",
    ] {
        assert_eq!(
            register(&mut m, 0, me, GAUGE, "g", &[(secret, "x")], &[]),
            Err(Status::InvalidArgs),
            "{secret}"
        );
    }
    // Configurable.
    let mut cfg = unlimited(Config::default());
    cfg.redact.deny_key_segments = vec!["tenant".into()];
    let mut m = md(cfg);
    assert_eq!(
        register(&mut m, 0, me, GAUGE, "g", &[("tenant_name", "x")], &[]),
        Err(Status::InvalidArgs)
    );
    register(&mut m, 0, me, GAUGE, "g", &[("token", "x")], &[]).unwrap();
}

#[test]
fn help_text_is_set_at_registration_and_escaped() {
    let mut m = md(unlimited(Config::default()));
    let help = "Jobs done.\nSecond line with \\ and \"quotes\".";
    register_help(&mut m, sid(1), COUNTER, "jobs_total", &[], help).unwrap();
    // Another owner's different help does not replace the first.
    register_help(&mut m, sid(2), COUNTER, "jobs_total", &[], "Other.").unwrap();
    // No help: the name stands in.
    register(&mut m, 0, sid(1), GAUGE, "depth", &[], &[]).unwrap();
    let text = scrape_text(&mut m, 60 * 1024);
    assert!(
        text.contains(
            "# HELP jobs_total Jobs done.\\nSecond line with \\\\ and \"quotes\".\n# TYPE jobs_total counter\n"
        ),
        "{text}"
    );
    assert!(text.contains("# HELP depth depth\n"));
    let parsed = parse_prometheus(&text).unwrap();
    assert_eq!(parsed.families["jobs_total"].help, help);
    // Bounded by its u8 prefix, and no control characters but line feed.
    register_help(&mut m, sid(1), GAUGE, "x", &[], &"h".repeat(255)).unwrap();
    assert_eq!(
        register_help(&mut m, sid(1), GAUGE, "x", &[], "a\rb"),
        Err(Status::InvalidArgs)
    );
}

#[test]
fn help_travels_only_in_version_2_and_old_frames_are_unchanged() {
    let r = Register {
        kind: COUNTER,
        name: "a",
        labels: vec![],
        bounds: vec![],
        help: "",
    };
    let v1 = proto::encode_register(5, &r).unwrap();
    assert_eq!(v1[2], 1, "no help: version 1");
    let v2 = proto::encode_register(
        5,
        &Register {
            help: "H.",
            ..r.clone()
        },
    )
    .unwrap();
    assert_eq!(v2[2], 2);
    assert_eq!(&v2[..2], &v1[..2]);
    assert_eq!(&v2[3..v1.len()], &v1[3..], "the version 1 body, then help");
    assert_eq!(&v2[v1.len()..], &[2, b'H', b'.']);
    // Version 2 is REGISTER only.
    let mut stats2 = proto::encode_stats(9);
    stats2[2] = 2;
    let mut m = md(Config::default());
    let h = m.handle(0, sid(1), &stats2);
    assert_eq!(h.status, Some(Status::Unsupported));
}

#[test]
fn histogram_with_only_the_inf_bucket() {
    let mut m = md(unlimited(Config::default()));
    let me = sid(1);
    let id = register(&mut m, 0, me, HIST, "wait_ns", &[], &[]).unwrap();
    batch(
        &mut m,
        0,
        me,
        &[Entry::Hist {
            series: id,
            counts: vec![4],
            sum: 90,
        }],
    )
    .unwrap();
    // Its layout is one bucket: a delta for two is refused.
    let two = batch(
        &mut m,
        SEC,
        me,
        &[Entry::Hist {
            series: id,
            counts: vec![1, 1],
            sum: 2,
        }],
    );
    assert_eq!(one_reject(two), Status::InvalidArgs);
    let text = scrape_text(&mut m, 60 * 1024);
    assert!(
        text.contains(
            "# TYPE wait_ns histogram\n\
             wait_ns_bucket{owner=\"1\",le=\"+Inf\"} 4\n\
             wait_ns_sum{owner=\"1\"} 90\n\
             wait_ns_count{owner=\"1\"} 4\n"
        ),
        "{text}"
    );
}

#[test]
fn a_family_of_2000_series_is_paged_by_series() {
    let mut cfg = unlimited(Config::default());
    cfg.cardinality.max_series_per_metric = 4096;
    cfg.cardinality.max_series_per_sender = 4096;
    cfg.cardinality.max_series_global = 8192;
    let mut m = md(cfg);
    let me = sid(3);
    let long = "x".repeat(48);
    for i in 0..2000u64 {
        let id = register(
            &mut m,
            0,
            me,
            COUNTER,
            "requests_total",
            &[("path", &format!("/{long}/{i}")), ("code", "200")],
            &[],
        )
        .unwrap();
        batch(
            &mut m,
            0,
            me,
            &[Entry::Inc {
                series: id,
                delta: i,
            }],
        )
        .unwrap();
    }
    let h = register(
        &mut m,
        0,
        me,
        HIST,
        "lat",
        &[("path", &long)],
        &[1, 2, 4, 8],
    )
    .unwrap();
    batch(
        &mut m,
        0,
        me,
        &[Entry::Hist {
            series: h,
            counts: vec![1, 0, 2, 0, 1],
            sum: 20,
        }],
    )
    .unwrap();
    let whole = m.exposition();
    assert!(whole.len() > 3 * 60 * 1024, "{} bytes", whole.len());
    for max in [u32::MAX, 4096, 700] {
        let p = pages(&mut m, max);
        assert!(p.len() > 1);
        let text = p.concat();
        assert_eq!(text, whole, "max_bytes {max}");
        let parsed = parse_prometheus(&text).unwrap();
        let fam = &parsed.families["requests_total"];
        assert_eq!(fam.iter_samples().count(), 2000, "max_bytes {max}");
        assert!(parsed.families.contains_key("lat"));
        assert!(parsed
            .families
            .contains_key("metricsd_series_overflow_total"));
        // One header for the family, on the page of its first series.
        assert_eq!(text.matches("# TYPE requests_total counter").count(), 1);
    }
}

#[test]
fn default_caps_sixteen_owners_of_one_counter_come_back_whole() {
    let mut m = md(unlimited(Config::default()));
    for owner in 1..=16 {
        for i in 0..64 {
            register(
                &mut m,
                0,
                sid(owner),
                COUNTER,
                "ipc_frames_routed_total",
                &[
                    ("destination_service", &format!("service-number-{i:02}")),
                    ("path", "/nexus/obs/metrics/frames"),
                ],
                &[],
            )
            .unwrap();
        }
    }
    let family_bytes: usize = m
        .exposition()
        .lines()
        .filter(|l| l.starts_with("ipc_frames_routed_total"))
        .map(|l| l.len() + 1)
        .sum();
    assert!(family_bytes > 70_000, "{family_bytes}");
    let text = scrape_text(&mut m, u32::MAX);
    let parsed = parse_prometheus(&text).unwrap();
    assert_eq!(
        parsed.families["ipc_frames_routed_total"]
            .iter_samples()
            .count(),
        16 * 64
    );
}

#[test]
fn promtool_accepts_the_scrape_when_installed() {
    let Ok(out) = std::process::Command::new("promtool")
        .arg("--version")
        .output()
    else {
        println!("note: promtool not installed; skipping `promtool check metrics`");
        return;
    };
    assert!(out.status.success());
    let mut m = md(unlimited(Config::default()));
    let me = sid(1);
    register_help(&mut m, me, COUNTER, "jobs_total", &[], "Jobs.\nDone.").unwrap();
    register(&mut m, 0, sid(2), COUNTER, "jobs_total", &[], &[]).unwrap();
    let _ = register(&mut m, 0, sid(2), GAUGE, "jobs_total", &[], &[]);
    let _ = register(&mut m, 0, me, COUNTER, "metricsd_series", &[], &[]);
    register(&mut m, 0, me, HIST, "lat", &[("path", "/a")], &[1, 10]).unwrap();
    let _ = register(&mut m, 0, me, GAUGE, "lat_sum", &[], &[]);
    register(&mut m, 0, me, HIST, "wait", &[], &[]).unwrap();
    register(&mut m, 0, me, GAUGE, "ns:sub:Depth", &[("Shard", "0")], &[]).unwrap();
    let text = scrape_text(&mut m, 512);
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // promtool exits 1 when the text does not parse ("error while
    // linting: ... second HELP line ..."), 3 for lint advice only (here:
    // colons in a name are legal but meant for recording rules).
    assert_ne!(out.status.code(), Some(1), "promtool: {report}\n{text}");
    assert!(!report.contains("error"), "promtool: {report}\n{text}");
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "promtool: {report}"
    );
}
