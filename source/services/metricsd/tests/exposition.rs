//! The Prometheus text exposition (format 0.0.4): exact fixed vectors, then
//! the same text read back by an independent parser, `openmetrics-parser`
//! (a pest grammar of the Prometheus text format that unescapes label values
//! and help, and checks histograms: `le` buckets, `+Inf`, cumulative counts).
//!
//! One known limit of that parser: its grammar ends a line at a carriage
//! return too, while format 0.0.4 only escapes `\`, `"` and line feed and
//! leaves a carriage return as is. Generated strings leave `\r` out, and
//! `carriage_return_is_written_as_is` pins the exact bytes instead.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, BTreeSet};

use metricsd::expo::*;
use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::{MetricNumber, PrometheusType, PrometheusValue};
use proptest::prelude::*;

// ---------------------------------------------------------------------------
// helpers

fn one(fam: &Family<'_>) -> String {
    let mut out = String::new();
    write_family(&mut out, fam).unwrap();
    out
}

fn counter<'a>(labels: &'a [(&'a str, &'a str)], v: u64) -> Series<'a> {
    Series {
        labels,
        value: Value::Counter(v),
    }
}

fn gauge<'a>(labels: &'a [(&'a str, &'a str)], v: i64) -> Series<'a> {
    Series {
        labels,
        value: Value::Gauge(v),
    }
}

fn hist<'a>(
    labels: &'a [(&'a str, &'a str)],
    bounds: &'a [u64],
    counts: &'a [u64],
    sum: u64,
) -> Series<'a> {
    Series {
        labels,
        value: Value::Histogram {
            bounds,
            counts,
            sum,
            count: counts.iter().sum(),
        },
    }
}

/// A value as the parser gives it back: integers that fit `i64` stay
/// integers, larger ones become the nearest `f64`.
fn num_u64(v: u64) -> MetricNumber {
    match i64::try_from(v) {
        Ok(i) => MetricNumber::Int(i),
        Err(_) => MetricNumber::Float(v as f64),
    }
}

/// What one series reads as, in a form both sides can build.
#[derive(Debug, Clone, PartialEq)]
enum Read {
    Counter(MetricNumber),
    Gauge(MetricNumber),
    Histogram {
        /// `(upper bound, cumulative count)`, `+Inf` last.
        buckets: Vec<(f64, MetricNumber)>,
        sum: Option<MetricNumber>,
        count: Option<u64>,
    },
}

/// One family as read: type, help, and its series as (labels sorted by
/// name, value), in the order written.
#[derive(Debug, Clone, PartialEq)]
struct ReadFamily {
    kind: PrometheusType,
    help: String,
    series: Vec<(Vec<(String, String)>, Read)>,
}

/// Parses `text` with the real parser and flattens it.
fn parse(text: &str) -> BTreeMap<String, ReadFamily> {
    let expo = parse_prometheus(text)
        .unwrap_or_else(|e| panic!("parser refused the exposition: {e:?}\n---\n{text}---"));
    let mut out = BTreeMap::new();
    for (name, fam) in expo.families {
        let mut series = Vec::new();
        for s in fam.iter_samples() {
            let mut labels: Vec<(String, String)> = s
                .get_labelset()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            labels.sort();
            let read = match &s.value {
                PrometheusValue::Counter(c) => Read::Counter(c.value),
                PrometheusValue::Gauge(g) => Read::Gauge(*g),
                PrometheusValue::Histogram(h) => Read::Histogram {
                    buckets: h.buckets.iter().map(|b| (b.upper_bound, b.count)).collect(),
                    sum: h.sum,
                    count: h.count,
                },
                other => panic!("unexpected value {other:?}"),
            };
            series.push((labels, read));
        }
        let prev = out.insert(
            name.clone(),
            ReadFamily {
                kind: fam.family_type.clone(),
                help: fam.help.clone(),
                series,
            },
        );
        assert!(prev.is_none(), "family {name} twice");
    }
    out
}

/// What the parser should give back for `fam`.
fn expected(fam: &Family<'_>) -> ReadFamily {
    let kind = match fam.kind {
        Kind::Counter => PrometheusType::Counter,
        Kind::Gauge => PrometheusType::Gauge,
        Kind::Histogram => PrometheusType::Histogram,
    };
    let series = fam
        .series
        .iter()
        .map(|s| {
            let mut labels: Vec<(String, String)> = s
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            labels.sort();
            let read = match s.value {
                Value::Counter(v) => Read::Counter(num_u64(v)),
                Value::Gauge(v) => Read::Gauge(MetricNumber::Int(v)),
                Value::Histogram {
                    bounds,
                    counts,
                    sum,
                    count,
                } => {
                    let mut cum = 0u64;
                    let mut buckets: Vec<(f64, MetricNumber)> = bounds
                        .iter()
                        .zip(counts)
                        .map(|(&b, &c)| {
                            cum += c;
                            (b as f64, num_u64(cum))
                        })
                        .collect();
                    buckets.push((f64::INFINITY, num_u64(count)));
                    Read::Histogram {
                        buckets,
                        sum: Some(num_u64(sum)),
                        count: Some(count),
                    }
                }
            };
            (labels, read)
        })
        .collect();
    ReadFamily {
        kind,
        help: fam.help.to_string(),
        series,
    }
}

/// Renders `fams` (distinct, valid), parses the text, and checks that every
/// family comes back with the same type, help, labels and values.
fn assert_round_trip(fams: &[Family<'_>]) -> String {
    let text = render(fams);
    let read = parse(&text);
    assert_eq!(read.len(), fams.len(), "families read back\n{text}");
    for fam in fams {
        let got = read
            .get(fam.name)
            .unwrap_or_else(|| panic!("family {} missing\n{text}", fam.name));
        assert_eq!(got, &expected(fam), "family {}\n{text}", fam.name);
    }
    text
}

// ---------------------------------------------------------------------------
// fixed vectors, compared as strings

#[test]
fn counter_without_labels() {
    let s = [counter(&[], 7)];
    let fam = Family {
        name: "requests_total",
        help: "Requests served.",
        kind: Kind::Counter,
        series: &s,
    };
    assert_eq!(
        one(&fam),
        "# HELP requests_total Requests served.\n\
         # TYPE requests_total counter\n\
         requests_total 7\n"
    );
}

#[test]
fn counter_name_is_written_as_given() {
    // Format 0.0.4: a counter is `name{..} v`; no `_total` is appended.
    let s = [counter(&[], 3)];
    let fam = Family {
        name: "frames",
        help: "Frames.",
        kind: Kind::Counter,
        series: &s,
    };
    assert_eq!(
        one(&fam),
        "# HELP frames Frames.\n# TYPE frames counter\nframes 3\n"
    );
}

#[test]
fn counter_with_labels_in_given_order() {
    let a = [("service", "logd"), ("op", "append")];
    let b = [("service", "metricsd"), ("op", "scrape")];
    let s = [counter(&a, 12), counter(&b, u64::MAX)];
    let fam = Family {
        name: "ipc_requests_total",
        help: "IPC requests by service and op.",
        kind: Kind::Counter,
        series: &s,
    };
    assert_eq!(
        one(&fam),
        "# HELP ipc_requests_total IPC requests by service and op.\n\
         # TYPE ipc_requests_total counter\n\
         ipc_requests_total{service=\"logd\",op=\"append\"} 12\n\
         ipc_requests_total{service=\"metricsd\",op=\"scrape\"} 18446744073709551615\n"
    );
}

#[test]
fn gauge_without_labels() {
    let s = [gauge(&[], -5)];
    let fam = Family {
        name: "queue_depth",
        help: "Queued frames.",
        kind: Kind::Gauge,
        series: &s,
    };
    assert_eq!(
        one(&fam),
        "# HELP queue_depth Queued frames.\n# TYPE queue_depth gauge\nqueue_depth -5\n"
    );
}

#[test]
fn gauge_with_labels_and_extremes() {
    let a = [("hart", "0")];
    let b = [("hart", "1")];
    let s = [gauge(&a, i64::MIN), gauge(&b, i64::MAX)];
    let fam = Family {
        name: "hart:skew",
        help: "Skew.",
        kind: Kind::Gauge,
        series: &s,
    };
    assert_eq!(
        one(&fam),
        "# HELP hart:skew Skew.\n\
         # TYPE hart:skew gauge\n\
         hart:skew{hart=\"0\"} -9223372036854775808\n\
         hart:skew{hart=\"1\"} 9223372036854775807\n"
    );
}

#[test]
fn histogram_without_labels_is_cumulative_with_inf() {
    let s = [hist(&[], &[10, 100, 1000], &[1, 2, 0, 3], 5000)];
    let fam = Family {
        name: "rpc_latency_ns",
        help: "Latency.",
        kind: Kind::Histogram,
        series: &s,
    };
    assert_eq!(
        one(&fam),
        "# HELP rpc_latency_ns Latency.\n\
         # TYPE rpc_latency_ns histogram\n\
         rpc_latency_ns_bucket{le=\"10\"} 1\n\
         rpc_latency_ns_bucket{le=\"100\"} 3\n\
         rpc_latency_ns_bucket{le=\"1000\"} 3\n\
         rpc_latency_ns_bucket{le=\"+Inf\"} 6\n\
         rpc_latency_ns_sum 5000\n\
         rpc_latency_ns_count 6\n"
    );
}

#[test]
fn histogram_with_labels() {
    let a = [("method", "query"), ("svc", "logd")];
    let b = [("method", "append"), ("svc", "logd")];
    let s = [
        hist(&a, &[1, 5], &[0, 4, 1], 17),
        hist(&b, &[1, 5], &[0, 0, 0], 0),
    ];
    let fam = Family {
        name: "op_ns",
        help: "Op time.",
        kind: Kind::Histogram,
        series: &s,
    };
    assert_eq!(
        one(&fam),
        "# HELP op_ns Op time.\n\
         # TYPE op_ns histogram\n\
         op_ns_bucket{method=\"query\",svc=\"logd\",le=\"1\"} 0\n\
         op_ns_bucket{method=\"query\",svc=\"logd\",le=\"5\"} 4\n\
         op_ns_bucket{method=\"query\",svc=\"logd\",le=\"+Inf\"} 5\n\
         op_ns_sum{method=\"query\",svc=\"logd\"} 17\n\
         op_ns_count{method=\"query\",svc=\"logd\"} 5\n\
         op_ns_bucket{method=\"append\",svc=\"logd\",le=\"1\"} 0\n\
         op_ns_bucket{method=\"append\",svc=\"logd\",le=\"5\"} 0\n\
         op_ns_bucket{method=\"append\",svc=\"logd\",le=\"+Inf\"} 0\n\
         op_ns_sum{method=\"append\",svc=\"logd\"} 0\n\
         op_ns_count{method=\"append\",svc=\"logd\"} 0\n"
    );
}

#[test]
fn histogram_without_bounds_has_only_inf() {
    let s = [hist(&[], &[], &[4], 9)];
    let fam = Family {
        name: "h",
        help: "H.",
        kind: Kind::Histogram,
        series: &s,
    };
    assert_eq!(
        one(&fam),
        "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 4\nh_sum 9\nh_count 4\n"
    );
}

#[test]
fn histogram_extreme_bounds() {
    let s = [hist(&[], &[0, u64::MAX], &[1, 0, 0], u64::MAX)];
    let fam = Family {
        name: "h",
        help: "",
        kind: Kind::Histogram,
        series: &s,
    };
    assert_eq!(
        one(&fam),
        "# HELP h \n# TYPE h histogram\n\
         h_bucket{le=\"0\"} 1\n\
         h_bucket{le=\"18446744073709551615\"} 1\n\
         h_bucket{le=\"+Inf\"} 1\n\
         h_sum 18446744073709551615\n\
         h_count 1\n"
    );
}

#[test]
fn escaping_label_values_and_help() {
    let l = [("path", "C:\\dir \"x\"\nnext")];
    let s = [gauge(&l, 1)];
    let fam = Family {
        name: "esc",
        help: "Line one\nLine \"two\" \\ end",
        kind: Kind::Gauge,
        series: &s,
    };
    assert_eq!(
        one(&fam),
        "# HELP esc Line one\\nLine \"two\" \\\\ end\n\
         # TYPE esc gauge\n\
         esc{path=\"C:\\\\dir \\\"x\\\"\\nnext\"} 1\n"
    );
}

#[test]
fn carriage_return_is_written_as_is() {
    // 0.0.4 escapes only `\`, `"` and line feed; `\r` has no escape.
    let l = [("v", "a\rb")];
    let s = [gauge(&l, 1)];
    let fam = Family {
        name: "cr",
        help: "x\ry",
        kind: Kind::Gauge,
        series: &s,
    };
    assert_eq!(
        one(&fam),
        "# HELP cr x\ry\n# TYPE cr gauge\ncr{v=\"a\rb\"} 1\n"
    );
}

#[test]
fn family_without_series_has_only_metadata() {
    let fam = Family {
        name: "idle",
        help: "Nothing yet.",
        kind: Kind::Counter,
        series: &[],
    };
    assert_eq!(one(&fam), "# HELP idle Nothing yet.\n# TYPE idle counter\n");
}

#[test]
fn write_family_appends() {
    let s = [gauge(&[], 2)];
    let fam = Family {
        name: "g",
        help: "G.",
        kind: Kind::Gauge,
        series: &s,
    };
    let mut out = String::from("# existing\n");
    write_family(&mut out, &fam).unwrap();
    assert_eq!(out, "# existing\n# HELP g G.\n# TYPE g gauge\ng 2\n");
}

#[test]
fn render_in_order() {
    let c = [counter(&[], 1)];
    let g = [gauge(&[], 2)];
    let fams = [
        Family {
            name: "b_total",
            help: "B.",
            kind: Kind::Counter,
            series: &c,
        },
        Family {
            name: "a",
            help: "A.",
            kind: Kind::Gauge,
            series: &g,
        },
    ];
    assert_eq!(
        render(&fams),
        "# HELP b_total B.\n# TYPE b_total counter\nb_total 1\n\
         # HELP a A.\n# TYPE a gauge\na 2\n"
    );
    assert_eq!(render(&[]), "");
}

#[test]
fn render_skips_invalid_and_repeated_families() {
    let g = [gauge(&[], 2)];
    let bad = [hist(&[], &[1], &[1], 1)];
    let fams = [
        Family {
            name: "bad",
            help: "",
            kind: Kind::Histogram,
            series: &bad,
        },
        Family {
            name: "a",
            help: "A.",
            kind: Kind::Gauge,
            series: &g,
        },
        Family {
            name: "a",
            help: "again",
            kind: Kind::Gauge,
            series: &g,
        },
    ];
    assert_eq!(render(&fams), "# HELP a A.\n# TYPE a gauge\na 2\n");
}

// ---------------------------------------------------------------------------
// errors: nothing is written

fn refused(fam: &Family<'_>) -> ExpoError {
    let mut out = String::from("keep\n");
    let err = write_family(&mut out, fam).unwrap_err();
    assert_eq!(out, "keep\n", "{err:?} wrote something");
    assert_eq!(check_family(fam), Err(err));
    assert_eq!(render(core::slice::from_ref(fam)), "");
    err
}

#[test]
fn inconsistent_histograms_are_refused() {
    let cases: [(&[u64], &[u64], u64, ExpoError); 6] = [
        (&[1, 2], &[1, 1], 2, ExpoError::HistogramShape),
        (&[1], &[1, 1, 1], 3, ExpoError::HistogramShape),
        (&[2, 1], &[0, 0, 0], 0, ExpoError::HistogramBounds),
        (&[1, 1], &[0, 0, 0], 0, ExpoError::HistogramBounds),
        (&[1], &[1, 1], 3, ExpoError::HistogramCount),
        (&[1], &[u64::MAX, 1], 0, ExpoError::HistogramCount),
    ];
    for (bounds, counts, count, want) in cases {
        let ok = [hist(&[], &[5], &[1, 1], 3)];
        let s = [
            ok[0],
            Series {
                labels: &[("k", "v")],
                value: Value::Histogram {
                    bounds,
                    counts,
                    sum: 0,
                    count,
                },
            },
        ];
        let fam = Family {
            name: "h",
            help: "",
            kind: Kind::Histogram,
            series: &s,
        };
        assert_eq!(refused(&fam), want, "{bounds:?} {counts:?} {count}");
    }
}

#[test]
fn invalid_names_and_labels_are_refused() {
    let g = [gauge(&[], 1)];
    for name in ["", "9lives", "a-b", "a.b", "a b", "é", "a{b}"] {
        let fam = Family {
            name,
            help: "",
            kind: Kind::Gauge,
            series: &g,
        };
        assert_eq!(refused(&fam), ExpoError::InvalidMetricName, "{name:?}");
    }
    for label in ["", "9", "a:b", "a-b", "__name__", "ü"] {
        let l = [(label, "v")];
        let s = [gauge(&l, 1)];
        let fam = Family {
            name: "g",
            help: "",
            kind: Kind::Gauge,
            series: &s,
        };
        assert_eq!(refused(&fam), ExpoError::InvalidLabelName, "{label:?}");
    }
    let l = [("a", "1"), ("b", "2"), ("a", "3")];
    let s = [gauge(&l, 1)];
    let fam = Family {
        name: "g",
        help: "",
        kind: Kind::Gauge,
        series: &s,
    };
    assert_eq!(refused(&fam), ExpoError::DuplicateLabel);

    let l = [("le", "1")];
    let s = [hist(&l, &[], &[0], 0)];
    let fam = Family {
        name: "h",
        help: "",
        kind: Kind::Histogram,
        series: &s,
    };
    assert_eq!(refused(&fam), ExpoError::ReservedLabel);
    // `le` is an ordinary label outside histograms.
    let s = [gauge(&l, 1)];
    let fam = Family {
        name: "g",
        help: "",
        kind: Kind::Gauge,
        series: &s,
    };
    assert_eq!(one(&fam), "# HELP g \n# TYPE g gauge\ng{le=\"1\"} 1\n");
}

#[test]
fn kind_mismatch_is_refused() {
    let c = [counter(&[], 1)];
    let g = [gauge(&[], 1)];
    let h = [hist(&[], &[], &[0], 0)];
    for (kind, series) in [
        (Kind::Gauge, &c[..]),
        (Kind::Histogram, &c[..]),
        (Kind::Counter, &g[..]),
        (Kind::Histogram, &g[..]),
        (Kind::Counter, &h[..]),
        (Kind::Gauge, &h[..]),
    ] {
        let fam = Family {
            name: "m",
            help: "",
            kind,
            series,
        };
        assert_eq!(refused(&fam), ExpoError::KindMismatch, "{kind:?}");
    }
}

#[test]
fn error_display() {
    assert_eq!(
        ExpoError::HistogramCount.to_string(),
        "histogram counts do not add up to count"
    );
    assert_eq!(Kind::Histogram.as_str(), "histogram");
    assert!(CONTENT_TYPE.contains("version=0.0.4"));
}

// ---------------------------------------------------------------------------
// read back with the real parser

#[test]
fn fixed_vectors_parse_back() {
    let ca = [("service", "logd"), ("op", "append")];
    let cb = [("service", "metricsd"), ("op", "scrape")];
    let counters = [counter(&ca, 12), counter(&cb, u64::MAX)];
    let c0 = [counter(&[], 0)];
    let ga = [("hart", "0")];
    let gauges = [gauge(&ga, i64::MIN)];
    let gn = [gauge(&[], 42)];
    let ha = [("method", "query"), ("svc", "logd")];
    let hb = [("method", "append"), ("svc", "logd")];
    let hists = [
        hist(&ha, &[10, 100, 1000], &[1, 2, 0, 3], 5000),
        hist(&hb, &[10, 100, 1000], &[0, 0, 0, 0], 0),
    ];
    let hn = [hist(&[], &[], &[4], 9)];
    let fams = [
        Family {
            name: "ipc_requests_total",
            help: "IPC requests.",
            kind: Kind::Counter,
            series: &counters,
        },
        Family {
            name: "boots_total",
            help: "Boots.",
            kind: Kind::Counter,
            series: &c0,
        },
        Family {
            name: "idle_total",
            help: "No series yet.",
            kind: Kind::Counter,
            series: &[],
        },
        Family {
            name: "hart:skew",
            help: "Skew.",
            kind: Kind::Gauge,
            series: &gauges,
        },
        Family {
            name: "up",
            help: "",
            kind: Kind::Gauge,
            series: &gn,
        },
        Family {
            name: "rpc_latency_ns",
            help: "Latency.",
            kind: Kind::Histogram,
            series: &hists,
        },
        Family {
            name: "h",
            help: "H.",
            kind: Kind::Histogram,
            series: &hn,
        },
    ];
    let text = assert_round_trip(&fams);

    // The same, spelled out for one family of each kind.
    let read = parse(&text);
    let c = &read["ipc_requests_total"];
    assert_eq!(c.kind, PrometheusType::Counter);
    assert_eq!(c.help, "IPC requests.");
    assert_eq!(
        c.series[0],
        (
            vec![
                ("op".to_string(), "append".to_string()),
                ("service".to_string(), "logd".to_string())
            ],
            Read::Counter(MetricNumber::Int(12))
        )
    );
    assert_eq!(
        c.series[1].1,
        Read::Counter(MetricNumber::Float(u64::MAX as f64))
    );
    assert_eq!(
        read["hart:skew"].series[0].1,
        Read::Gauge(MetricNumber::Int(i64::MIN))
    );
    let h = &read["rpc_latency_ns"];
    assert_eq!(h.kind, PrometheusType::Histogram);
    let Read::Histogram {
        buckets,
        sum,
        count,
    } = &h.series[0].1
    else {
        panic!("not a histogram: {:?}", h.series[0]);
    };
    let bounds: Vec<f64> = buckets.iter().map(|b| b.0).collect();
    let counts: Vec<i64> = buckets.iter().map(|b| b.1.as_i64().unwrap()).collect();
    assert_eq!(bounds, [10.0, 100.0, 1000.0, f64::INFINITY]);
    assert_eq!(counts, [1, 3, 3, 6]);
    assert_eq!(*sum, Some(MetricNumber::Int(5000)));
    assert_eq!(*count, Some(6));
}

#[test]
fn escaped_values_parse_back_to_the_original() {
    let nasty = "C:\\dir \"x\"\nnext } , = \\n \\\" {le=\"1\"}";
    let l = [("path", nasty), ("empty", "")];
    let s = [gauge(&l, 1)];
    let hl = [("path", nasty)];
    let hs = [hist(&hl, &[3], &[1, 1], 4)];
    let help = "Line one\nLine \"two\" \\ end \\n";
    let fams = [
        Family {
            name: "esc",
            help,
            kind: Kind::Gauge,
            series: &s,
        },
        Family {
            name: "esc_h",
            help,
            kind: Kind::Histogram,
            series: &hs,
        },
    ];
    let text = assert_round_trip(&fams);
    let read = parse(&text);
    assert_eq!(read["esc"].help, help);
    assert_eq!(
        read["esc"].series[0].0,
        vec![
            ("empty".to_string(), String::new()),
            ("path".to_string(), nasty.to_string())
        ]
    );
    assert_eq!(read["esc_h"].series[0].0[0].1, nasty);
}

#[test]
fn thousand_series_render_and_parse() {
    let values: Vec<(String, String)> = (0..1000)
        .map(|i| (format!("{i}"), format!("/p\"{i}\"\\\n")))
        .collect();
    let labels: Vec<[(&str, &str); 2]> = values
        .iter()
        .map(|(id, path)| [("id", id.as_str()), ("path", path.as_str())])
        .collect();
    let counters: Vec<Series<'_>> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| counter(l, i as u64 * 1_000_003))
        .collect();
    let bounds = [1u64, 10, 100, 1000];
    let counts: Vec<[u64; 5]> = (0..1000u64).map(|i| [i, 1, 0, i % 7, 2]).collect();
    let hists: Vec<Series<'_>> = labels
        .iter()
        .zip(&counts)
        .enumerate()
        .map(|(i, (l, c))| hist(l, &bounds, c, i as u64))
        .collect();
    let fams = [
        Family {
            name: "req_total",
            help: "Requests.",
            kind: Kind::Counter,
            series: &counters,
        },
        Family {
            name: "req_ns",
            help: "Request time.",
            kind: Kind::Histogram,
            series: &hists,
        },
    ];
    let text = assert_round_trip(&fams);
    assert_eq!(text.lines().count(), 2 + 1000 + 2 + 1000 * (5 + 2));
    let read = parse(&text);
    assert_eq!(read["req_total"].series.len(), 1000);
    assert_eq!(read["req_ns"].series.len(), 1000);
}

// ---------------------------------------------------------------------------
// properties

/// Any text except `\r` (see the file comment), with the characters that
/// need escaping, or could confuse a parser, drawn often.
fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            3 => any::<char>(),
            2 => prop::sample::select(vec!['\\', '"', '\n', '{', '}', ',', '=', ' ', '#', 'n']),
        ],
        0..24,
    )
    .prop_map(|cs| cs.into_iter().filter(|&c| c != '\r').collect())
}

#[derive(Debug, Clone)]
enum GenValue {
    Counter(u64),
    Gauge(i64),
    Histogram {
        bounds: Vec<u64>,
        counts: Vec<u64>,
        sum: u64,
    },
}

#[derive(Debug, Clone)]
struct GenFamily {
    name: String,
    help: String,
    kind: Kind,
    label_names: Vec<String>,
    series: Vec<(Vec<String>, GenValue)>,
}

/// Bounds stay below 2^53 so that the parser's `f64` bounds are exact.
fn histogram() -> impl Strategy<Value = GenValue> {
    prop::collection::btree_set(0u64..(1 << 53), 0..8)
        .prop_flat_map(|bounds| {
            let n = bounds.len() + 1;
            (
                Just(bounds.into_iter().collect::<Vec<_>>()),
                prop::collection::vec(0u64..(1 << 32), n),
                any::<u64>(),
            )
        })
        .prop_map(|(bounds, counts, sum)| GenValue::Histogram {
            bounds,
            counts,
            sum,
        })
}

fn family(index: usize) -> impl Strategy<Value = GenFamily> {
    let kind = prop_oneof![
        Just(Kind::Counter),
        Just(Kind::Gauge),
        Just(Kind::Histogram)
    ];
    (
        "[a-zA-Z_:][a-zA-Z0-9_:]{0,10}",
        text(),
        kind,
        prop::collection::btree_set("[a-zA-Z_][a-zA-Z0-9_]{0,6}", 0..4),
    )
        .prop_flat_map(move |(base, help, kind, names)| {
            // The index keeps names distinct and away from the `_sum`,
            // `_count`, `_bucket` endings the parser strips.
            let name = format!("{base}_{index}");
            let names: Vec<String> = names
                .into_iter()
                .filter(|n| {
                    let reserved = n.starts_with("__") || (kind == Kind::Histogram && n == "le");
                    !reserved
                })
                .collect();
            let value = match kind {
                Kind::Counter => any::<u64>().prop_map(GenValue::Counter).boxed(),
                Kind::Gauge => any::<i64>().prop_map(GenValue::Gauge).boxed(),
                Kind::Histogram => histogram().boxed(),
            };
            let series =
                prop::collection::vec((prop::collection::vec(text(), names.len()), value), 0..5);
            (
                Just(name),
                Just(help),
                Just(kind),
                Just(names.clone()).prop_shuffle(),
                series,
            )
        })
        .prop_map(|(name, help, kind, label_names, series)| {
            // One series per label set (and so one at most without labels).
            let mut seen = BTreeSet::new();
            let series = series
                .into_iter()
                .filter(|(values, _)| seen.insert(values.clone()))
                .collect();
            GenFamily {
                name,
                help,
                kind,
                label_names,
                series,
            }
        })
}

/// Builds the borrowed views over generated families and runs `f` on them.
fn with_views<R>(gen: &[GenFamily], f: impl FnOnce(&[Family<'_>]) -> R) -> R {
    let labels: Vec<Vec<Vec<(&str, &str)>>> = gen
        .iter()
        .map(|g| {
            g.series
                .iter()
                .map(|(values, _)| {
                    g.label_names
                        .iter()
                        .map(String::as_str)
                        .zip(values.iter().map(String::as_str))
                        .collect()
                })
                .collect()
        })
        .collect();
    let series: Vec<Vec<Series<'_>>> = gen
        .iter()
        .zip(&labels)
        .map(|(g, ls)| {
            g.series
                .iter()
                .zip(ls)
                .map(|((_, v), l)| Series {
                    labels: l,
                    value: match v {
                        GenValue::Counter(c) => Value::Counter(*c),
                        GenValue::Gauge(x) => Value::Gauge(*x),
                        GenValue::Histogram {
                            bounds,
                            counts,
                            sum,
                        } => Value::Histogram {
                            bounds,
                            counts,
                            sum: *sum,
                            count: counts.iter().sum(),
                        },
                    },
                })
                .collect()
        })
        .collect();
    let fams: Vec<Family<'_>> = gen
        .iter()
        .zip(&series)
        .map(|(g, s)| Family {
            name: &g.name,
            help: &g.help,
            kind: g.kind,
            series: s,
        })
        .collect();
    f(&fams)
}

fn families() -> impl Strategy<Value = Vec<GenFamily>> {
    (1usize..5).prop_flat_map(|n| (0..n).map(family).collect::<Vec<_>>())
}

// 256 cases each by default; `PROPTEST_CASES` raises it.
proptest! {
    /// Random label values (any UTF-8 but `\r`), help texts and histograms:
    /// the parser accepts the text and gives back the same values.
    #[test]
    fn parser_reads_back_what_was_written(gen in families()) {
        with_views(&gen, |fams| {
            for fam in fams {
                prop_assert_eq!(check_family(fam), Ok(()));
            }
            assert_round_trip(fams);
            Ok(())
        })?;
    }

    /// A single label value and help, of any text: exact escaping and
    /// round trip.
    #[test]
    fn label_value_round_trips(v in text(), help in text()) {
        let l = [("v", v.as_str())];
        let s = [gauge(&l, 1)];
        let fam = Family { name: "g", help: &help, kind: Kind::Gauge, series: &s };
        let out = one(&fam);
        let line = out.lines().nth(2).unwrap();
        prop_assert!(line.starts_with("g{v=\"") && line.ends_with("\"} 1"), "{}", line);
        prop_assert_eq!(out.lines().count(), 3);
        let read = parse(&out);
        prop_assert_eq!(&read["g"].help, &help);
        prop_assert_eq!(&read["g"].series[0].0[0].1, &v);
    }

    /// Any histogram arrays, consistent or not: either refused with nothing
    /// written, or written as text the parser accepts with the same values.
    #[test]
    fn any_histogram_is_refused_or_valid(
        bounds in prop::collection::vec(0u64..50, 0..6),
        counts in prop::collection::vec(0u64..50, 0..8),
        sum in any::<u64>(),
        count in 0u64..200,
    ) {
        let s = [Series {
            labels: &[("k", "v")],
            value: Value::Histogram { bounds: &bounds, counts: &counts, sum, count },
        }];
        let fam = Family { name: "h", help: "", kind: Kind::Histogram, series: &s };
        let consistent = counts.len() == bounds.len() + 1
            && bounds.windows(2).all(|w| w[0] < w[1])
            && counts.iter().sum::<u64>() == count;
        let mut out = String::from("keep\n");
        match write_family(&mut out, &fam) {
            Ok(()) => {
                prop_assert!(consistent);
                let text = out.strip_prefix("keep\n").unwrap();
                prop_assert_eq!(&parse(text)["h"], &expected(&fam));
            }
            Err(_) => {
                prop_assert!(!consistent);
                prop_assert_eq!(out, "keep\n");
            }
        }
    }

    /// Any metric and label names: either refused with nothing written, or
    /// accepted by the parser.
    #[test]
    fn any_names_are_refused_or_valid(
        name in "[a-zA-Z0-9_:. {}\"-]{0,6}",
        label in "[a-zA-Z0-9_:. =\"-]{0,4}",
        counter_kind in any::<bool>(),
    ) {
        let l = [(label.as_str(), "v")];
        let s = [if counter_kind { counter(&l, 1) } else { gauge(&l, 1) }];
        let kind = if counter_kind { Kind::Counter } else { Kind::Gauge };
        let fam = Family { name: &name, help: "", kind, series: &s };
        let mut out = String::new();
        match write_family(&mut out, &fam) {
            Ok(()) => prop_assert_eq!(&parse(&out)[name.as_str()], &expected(&fam)),
            Err(_) => prop_assert_eq!(out, ""),
        }
    }
}
