//! The logd fallback (`traced::from_logd`) against the real cores: spans
//! are started and ended in metricsd, its span-end records go to logd as
//! metricsd's service sends them (one-way APPENDs from metricsd's id), and
//! the follower's QUERY frames are answered by logd. Time is injected.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use metricsd::Metricsd;
use nexus_ipc::ServiceId;
use nexus_log::proto::{self, AppendRequest, QueryPage, Reply as LogReply, Request as LogRequest};
use nexus_log::{Fields, Level, Record};
use nexus_metrics::proto::{self as mproto, Entry, Register};
use nexus_trace::{SpanContext, SpanId, SpanRecord, SpanStatus, TraceFlags, TraceId};
use nexus_wire::{Header, Status};
use proptest::prelude::*;
use traced::config::LogdFallback;
use traced::from_logd::{span_of_record, FollowError, FollowStats, LogdFollower, SpanReject};
use traced::{Config, Origin, Traced, TracedSpan};

const NODE: u64 = 0xa1;
const MS: u64 = 1_000_000;
const METRICSD: ServiceId = ServiceId::new(3);
const TRACED: ServiceId = ServiceId::new(5);
const APP: ServiceId = ServiceId::new(21);
const OTHER_APP: ServiceId = ServiceId::new(22);

const TRACE: u128 = 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736;
const TRACE2: u128 = 0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c;

fn enabled() -> LogdFallback {
    LogdFallback {
        enabled: true,
        ..LogdFallback::default()
    }
}

fn follower(cfg: LogdFallback) -> LogdFollower {
    LogdFollower::new(cfg, NODE, Some(METRICSD))
}

fn logd_with(mut cfg: logd::Config, readers: &[ServiceId]) -> logd::Logd {
    cfg.rate.events_per_sec = u32::MAX / 2;
    cfg.rate.events_burst = u32::MAX / 2;
    cfg.rate.bytes_per_sec = u32::MAX / 2;
    cfg.rate.bytes_burst = u32::MAX / 2;
    logd::Logd::new(cfg, 64 * 1024, readers.iter().copied()).unwrap()
}

/// logd with its defaults; traced has the reader role.
fn logd() -> logd::Logd {
    logd_with(logd::Config::default(), &[TRACED])
}

fn metricsd() -> Metricsd {
    let mut cfg = metricsd::Config::default();
    cfg.rate.events_per_sec = u32::MAX / 2;
    cfg.rate.events_burst = u32::MAX / 2;
    cfg.rate.bytes_per_sec = u32::MAX / 2;
    cfg.rate.bytes_burst = u32::MAX / 2;
    Metricsd::new(cfg).unwrap()
}

/// A BATCH from `app` to metricsd; every entry must be accepted.
fn batch(m: &mut Metricsd, now: u64, app: ServiceId, entries: &[Entry<'_>]) {
    let h = m.handle(now, app, &mproto::encode_batch(1, false, entries).unwrap());
    match mproto::decode_reply(&h.reply.unwrap()).unwrap().1 {
        mproto::Reply::Batch(b) => assert_eq!(b.rejected, 0, "{b:?}"),
        other => panic!("{other:?}"),
    }
}

fn start(span: u64, trace: u128, parent: u64, start_ns: u64, name: &str) -> Entry<'_> {
    Entry::SpanStart {
        span,
        trace,
        parent,
        start_ns,
        name,
    }
}

fn end<'a>(span: u64, end_ns: u64, status: u8, attrs: &[(&'a str, &'a str)]) -> Entry<'a> {
    Entry::SpanEnd {
        span,
        end_ns,
        status,
        attrs: attrs.to_vec(),
    }
}

/// What metricsd's service does with its outbox: one one-way APPEND per
/// record, from metricsd's id. Returns how many records logd took.
fn export(m: &mut Metricsd, l: &mut logd::Logd, now: u64) -> usize {
    let mut n = 0;
    for (i, e) in m.drain_exports().into_iter().enumerate() {
        let body = AppendRequest {
            level: e.level.as_u8(),
            target: e.target,
            message: &e.message,
            fields: e.fields.as_str(),
        };
        let frame = proto::encode_append(i as u64 + 1, true, &body).unwrap();
        let h = l.handle(now, METRICSD, &frame);
        assert!(h.reply.is_none(), "one-way");
        assert_eq!(h.status, Some(Status::Ok));
        n += 1;
    }
    n
}

/// A record appended straight to logd by `sender` (a request APPEND).
fn append(l: &mut logd::Logd, sender: ServiceId, target: &str, message: &str, fields: &str) {
    let body = AppendRequest {
        level: Level::Info.as_u8(),
        target,
        message,
        fields,
    };
    let h = l.handle(0, sender, &proto::encode_append(9, false, &body).unwrap());
    assert!(
        matches!(
            proto::decode_reply(&h.reply.unwrap()).unwrap().1,
            LogReply::Appended(_)
        ),
        "logd refused {target} {message} {fields:?}"
    );
}

/// One poll at `now` answered by `l`: `None` if no QUERY was due.
fn pump(
    f: &mut LogdFollower,
    l: &mut logd::Logd,
    now: u64,
    out: &mut Vec<TracedSpan>,
) -> Option<Result<usize, FollowError>> {
    let q = f.poll(now)?;
    let h = l.handle(now, TRACED, &q);
    Some(f.on_reply(&h.reply.expect("logd answers a QUERY"), out))
}

fn span(
    trace: u128,
    id: u64,
    parent: Option<u64>,
    name: &str,
    (start_ns, end_ns): (u64, u64),
    status: SpanStatus,
    attrs: &[(&str, &str)],
) -> SpanRecord {
    SpanRecord {
        context: SpanContext::new(
            TraceId::new(trace).unwrap(),
            SpanId::new(id).unwrap(),
            TraceFlags::SAMPLED,
        ),
        parent: parent.and_then(SpanId::new),
        remote_parent: false,
        name: name.into(),
        start_ns,
        end_ns,
        status,
        status_message: None,
        attrs: attrs
            .iter()
            .map(|(k, v)| (String::from(*k), String::from(*v)))
            .collect(),
        events: Vec::new(),
        tracestate: None,
        dropped_attrs: 0,
        dropped_events: 0,
    }
}

fn origin(service: ServiceId) -> Origin {
    Origin {
        node: NODE,
        service: service.get(),
    }
}

#[test]
fn targets_and_prefixes_are_metricsds() {
    assert_eq!(
        traced::from_logd::SPAN_TARGET,
        metricsd::server::SPAN_TARGET
    );
    assert_eq!(
        traced::from_logd::ATTR_PREFIX,
        metricsd::config::ATTR_FIELD_PREFIX
    );
}

#[test]
fn spans_ended_in_metricsd_come_back_exactly_with_their_owner() {
    let mut m = metricsd();
    let mut l = logd();
    // A metric too, so metricsd's snapshot records (not span ends) are in
    // the journal between the span ends.
    let reg = mproto::encode_register(
        1,
        &Register {
            kind: 0,
            name: "requests_total",
            labels: Vec::new(),
            bounds: Vec::new(),
            help: "",
        },
    )
    .unwrap();
    assert!(m.handle(0, APP, &reg).reply.is_some());
    m.tick(0);
    batch(
        &mut m,
        10,
        APP,
        &[
            start(0x11, TRACE, 0, 1_000, "handle"),
            start(0x12, TRACE, 0x11, 1_500, "db_query"),
        ],
    );
    batch(
        &mut m,
        20,
        OTHER_APP,
        &[start(0x21, TRACE2, 0, 5_000, "other")],
    );
    batch(
        &mut m,
        30,
        APP,
        &[
            end(
                0x12,
                2_000,
                2,
                &[("rows", "3"), ("password", "hunter2"), ("db.table", "t=1")],
            ),
            end(0x11, 3_000, 1, &[]),
        ],
    );
    batch(&mut m, 40, OTHER_APP, &[end(0x21, 5_000, 0, &[])]);
    let exported = export(&mut m, &mut l, 50);
    assert!(exported >= 4, "{exported}");

    let mut f = follower(enabled());
    let q = f.poll(100).unwrap();
    // The QUERY is nexus-log's own frame: version 2, metricsd's records
    // only, from the oldest retained, a bounded page.
    let (h, req) = proto::decode_request(&q).unwrap();
    assert_eq!(h.version, proto::VERSION_TYPED);
    assert_eq!(
        req,
        LogRequest::Query(proto::QueryRequest {
            since_ns: 0,
            until_ns: u64::MAX,
            min_level: Level::Trace.as_u8(),
            sender: Some(METRICSD),
            cursor: 0,
            max_count: 64,
            max_bytes: 32 * 1024,
        })
    );
    let mut out = Vec::new();
    let reply = l.handle(100, TRACED, &q).reply.unwrap();
    assert_eq!(f.on_reply(&reply, &mut out), Ok(3));
    assert_eq!(
        out,
        [
            TracedSpan::local(
                span(
                    TRACE,
                    0x12,
                    Some(0x11),
                    "db_query",
                    (1_500, 2_000),
                    SpanStatus::Error,
                    &[
                        ("db.table", "t=1"),
                        ("password", "[redacted]"),
                        ("rows", "3")
                    ],
                ),
                origin(APP),
            ),
            TracedSpan::local(
                span(
                    TRACE,
                    0x11,
                    None,
                    "handle",
                    (1_000, 3_000),
                    SpanStatus::Ok,
                    &[]
                ),
                origin(APP),
            ),
            TracedSpan::local(
                span(
                    TRACE2,
                    0x21,
                    None,
                    "other",
                    (5_000, 5_000),
                    SpanStatus::Unset,
                    &[]
                ),
                origin(OTHER_APP),
            ),
        ]
    );
    let s = f.stats();
    assert_eq!(
        s,
        FollowStats {
            queries: 1,
            pages: 1,
            records: exported as u64,
            spans: 3,
            skipped: exported as u64 - 3,
            ..FollowStats::default()
        }
    );
    assert!(s.skipped >= 1, "the snapshot record was read and skipped");
    assert_eq!(f.cursor(), l.journal().next_id());
}

#[test]
fn polling_is_off_when_disabled_paced_and_one_at_a_time() {
    // On by default (it acts only where traced is linked to logd).
    assert!(Config::default().logd_fallback.enabled);
    let mut l = logd();
    let mut off = follower(LogdFallback {
        enabled: false,
        ..Config::default().logd_fallback
    });
    assert_eq!(off.poll(0), None);
    assert_eq!(off.poll(u64::MAX), None);

    let mut f = follower(enabled());
    let mut out = Vec::new();
    let q1 = f.poll(1_000).unwrap();
    assert!(f.in_flight());
    // At most one in flight until the timeout (1 s).
    assert_eq!(f.poll(1_000 + 999 * MS), None);
    let q2 = f.poll(1_000 + 1_000 * MS).unwrap();
    assert_eq!(f.stats().timeouts, 1);
    // The reply to the given-up QUERY is not taken.
    let late = l.handle(0, TRACED, &q1).reply.unwrap();
    assert_eq!(f.on_reply(&late, &mut out), Err(FollowError::Unexpected));
    assert!(f.in_flight());
    let r2 = l.handle(0, TRACED, &q2).reply.unwrap();
    assert_eq!(f.on_reply(&r2, &mut out), Ok(0));
    assert!(!f.in_flight());
    // Twice is once.
    assert_eq!(f.on_reply(&r2, &mut out), Err(FollowError::Unexpected));
    // Next one a poll interval (200 ms) after the last QUERY was sent.
    let sent = 1_000 + 1_000 * MS;
    assert_eq!(f.poll(sent + 199 * MS), None);
    assert!(f.poll(sent + 200 * MS).is_some());
    // A clock that went back does not stall the follower.
    let mut g = follower(enabled());
    assert!(g.poll(10 * MS).is_some());
    assert!(g.poll(0).is_some(), "a reply that old is given up");
    assert_eq!(g.stats().timeouts, 1);
    assert_eq!(
        f.stats(),
        FollowStats {
            queries: 3,
            timeouts: 1,
            pages: 1,
            unexpected: 2,
            ..FollowStats::default()
        }
    );
    assert!(out.is_empty());
}

/// Ends `n` root spans of `trace` in metricsd (span ids 1..=n, from `app`)
/// and exports them to logd.
fn end_spans(m: &mut Metricsd, l: &mut logd::Logd, app: ServiceId, trace: u128, ids: &[u64]) {
    for &i in ids {
        let name = format!("op{i}");
        batch(m, 0, app, &[start(i, trace, 0, i * 100, &name)]);
        batch(m, 0, app, &[end(i, i * 100 + 50, 1, &[])]);
    }
    assert_eq!(export(m, l, 0), ids.len());
}

fn ids(out: &[TracedSpan]) -> Vec<u64> {
    out.iter().map(|s| s.record.context.span.get()).collect()
}

#[test]
fn paging_reads_every_span_once_across_replies() {
    let mut m = metricsd();
    let mut l = logd();
    end_spans(&mut m, &mut l, APP, TRACE, &[1, 2, 3, 4, 5]);
    let mut f = follower(LogdFallback {
        page_records: 2,
        ..enabled()
    });
    let mut out = Vec::new();
    // Pages cut at the bound are followed at once, without waiting.
    assert_eq!(pump(&mut f, &mut l, 0, &mut out), Some(Ok(2)));
    assert_eq!(pump(&mut f, &mut l, 0, &mut out), Some(Ok(2)));
    assert_eq!(pump(&mut f, &mut l, 0, &mut out), Some(Ok(1)));
    // The tail reached: the next QUERY waits for the interval.
    assert_eq!(pump(&mut f, &mut l, 1, &mut out), None);
    assert_eq!(ids(&out), [1, 2, 3, 4, 5]);
    // New span ends are read from where the follower stopped.
    end_spans(&mut m, &mut l, APP, TRACE, &[6]);
    assert_eq!(pump(&mut f, &mut l, 200 * MS, &mut out), Some(Ok(1)));
    assert_eq!(pump(&mut f, &mut l, 400 * MS, &mut out), Some(Ok(0)));
    assert_eq!(ids(&out), [1, 2, 3, 4, 5, 6]);
    assert!(out.iter().all(|s| s.origin == origin(APP)));
    let s = f.stats();
    assert_eq!((s.pages, s.records, s.spans, s.gap), (5, 6, 6, 0));
}

#[test]
fn a_gap_after_eviction_is_counted_and_the_cursor_continues() {
    let mut cfg = logd::Config::default();
    cfg.journal.max_records = 4;
    let mut l = logd_with(cfg, &[TRACED]);
    let mut m = metricsd();
    end_spans(&mut m, &mut l, APP, TRACE, &[1, 2]);
    let mut f = follower(enabled());
    let mut out = Vec::new();
    assert_eq!(pump(&mut f, &mut l, 0, &mut out), Some(Ok(2)));
    assert_eq!(f.cursor(), 3);
    // Six more ends: the journal holds 4 records, so ids 3 and 4 (never
    // read) are evicted before the next QUERY.
    end_spans(&mut m, &mut l, APP, TRACE, &[3, 4, 5, 6, 7, 8]);
    assert_eq!(pump(&mut f, &mut l, 200 * MS, &mut out), Some(Ok(4)));
    assert_eq!(ids(&out), [1, 2, 5, 6, 7, 8]);
    assert_eq!(f.stats().gap, 2);
    assert_eq!(f.cursor(), 9);
    assert_eq!(pump(&mut f, &mut l, 400 * MS, &mut out), Some(Ok(0)));
    assert_eq!(f.stats().gap, 2);
}

const GOOD: &str = "duration_ns:i=50\nend_ns:i=150\nowner:i=21\nspan_id=00000000000000aa\n\
                    start_ns:i=100\nstatus=ok\ntrace_id=4bf92f3577b34da6a3ce929d0e0e4736\n";

/// `GOOD` with `key`'s line replaced by `line` (or removed for `""`).
fn with(key: &str, line: &str) -> String {
    let mut lines: Vec<String> = GOOD
        .lines()
        .filter(|l| {
            let k = l.split(['=', ':']).next().unwrap();
            k != key
        })
        .map(String::from)
        .collect();
    if !line.is_empty() {
        lines.push(line.into());
    }
    lines.sort_by(|a, b| {
        let k = |s: &String| s.split(['=', ':']).next().unwrap().to_string();
        k(a).cmp(&k(b))
    });
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn record(sender: ServiceId, target: &str, message: &str, fields: &str) -> Record {
    Record {
        id: 1,
        ts_ns: 0,
        sender,
        level: Level::Info,
        target: target.into(),
        message: message.into(),
        fields: Fields::parse(fields).unwrap(),
    }
}

fn judge(fields: &str) -> Result<Option<TracedSpan>, SpanReject> {
    span_of_record(
        &record(METRICSD, "trace.span", "op", fields),
        NODE,
        Some(METRICSD),
    )
}

/// Appends each malformed span-end record as if metricsd wrote it,
/// between two good ones; the follower keeps the good ones, refuses the
/// bad one and counts it.
fn assert_rejected_through_logd(cases: &[(String, SpanReject)]) {
    for (fields, why) in cases {
        assert_eq!(judge(fields).map(|_| ()), Err(*why), "{fields}");
        let mut l = logd();
        append(&mut l, METRICSD, "trace.span", "op", GOOD);
        append(&mut l, METRICSD, "trace.span", "op", fields);
        append(&mut l, METRICSD, "trace.span", "op", GOOD);
        let mut f = follower(enabled());
        let mut out = Vec::new();
        assert_eq!(pump(&mut f, &mut l, 0, &mut out), Some(Ok(2)), "{fields}");
        let s = f.stats();
        assert_eq!((s.records, s.spans, s.rejected), (3, 2, 1), "{fields}");
        assert!(out.iter().all(|s| s.origin == origin(APP)));
    }
}

#[test]
fn the_good_record_is_a_span_of_its_owner() {
    let s = judge(GOOD).unwrap().unwrap();
    assert_eq!(
        s,
        TracedSpan::local(
            span(TRACE, 0xaa, None, "op", (100, 150), SpanStatus::Ok, &[]),
            origin(APP)
        )
    );
    // Version 1 text (values without type markers) reads the same.
    let untyped = Fields::parse(GOOD).unwrap().untyped();
    assert_eq!(judge(untyped.as_str()).unwrap().unwrap(), s);
    // Other targets are not span ends.
    assert_eq!(
        span_of_record(
            &record(METRICSD, "metrics.snapshot", "x", GOOD),
            NODE,
            Some(METRICSD)
        ),
        Ok(None)
    );
}

#[test]
fn test_reject_bad_hex_ids() {
    assert_rejected_through_logd(&[
        (
            with("trace_id", "trace_id=4BF92F3577B34DA6A3CE929D0E0E4736"),
            SpanReject::BadId("trace_id"),
        ),
        (
            with("trace_id", "trace_id=4bf92f3577b34da6"),
            SpanReject::BadId("trace_id"),
        ),
        (
            with("span_id", "span_id=00000000000000ag"),
            SpanReject::BadId("span_id"),
        ),
        (
            with("span_id", "span_id=0x000000000000aa"),
            SpanReject::BadId("span_id"),
        ),
        (
            with("parent_id", "parent_id=abc"),
            SpanReject::BadId("parent_id"),
        ),
    ]);
}

#[test]
fn test_reject_zero_ids() {
    assert_rejected_through_logd(&[
        (
            with("trace_id", &format!("trace_id={}", "0".repeat(32))),
            SpanReject::ZeroId("trace_id"),
        ),
        (
            with("span_id", "span_id=0000000000000000"),
            SpanReject::ZeroId("span_id"),
        ),
        (
            with("parent_id", "parent_id=0000000000000000"),
            SpanReject::ZeroId("parent_id"),
        ),
    ]);
}

#[test]
fn test_reject_end_before_start_and_inconsistent_times() {
    assert_rejected_through_logd(&[
        (
            with("end_ns", "end_ns:i=99").replace("duration_ns:i=50\n", ""),
            SpanReject::BadTimes,
        ),
        (
            with("duration_ns", "duration_ns:i=51"),
            SpanReject::BadTimes,
        ),
    ]);
}

#[test]
fn test_reject_missing_fields() {
    let mut cases: Vec<(String, SpanReject)> = [
        "trace_id", "span_id", "start_ns", "end_ns", "status", "owner",
    ]
    .into_iter()
    .map(|k| (with(k, ""), SpanReject::Missing(k)))
    .collect();
    cases.push((String::new(), SpanReject::Missing("owner")));
    assert_rejected_through_logd(&cases);
}

#[test]
fn test_reject_bad_values() {
    assert_rejected_through_logd(&[
        (
            with("start_ns", "start_ns=-1"),
            SpanReject::BadNumber("start_ns"),
        ),
        (
            with("start_ns", "start_ns=+100"),
            SpanReject::BadNumber("start_ns"),
        ),
        (
            with("end_ns", "end_ns:f=150.0"),
            SpanReject::BadNumber("end_ns"),
        ),
        (
            with("end_ns", "end_ns=184467440737095516150"),
            SpanReject::BadNumber("end_ns"),
        ),
        (
            with("owner", "owner:i=4294967296"),
            SpanReject::BadNumber("owner"),
        ),
        (
            with("owner", "owner:b=true"),
            SpanReject::BadNumber("owner"),
        ),
        (with("status", "status=fine"), SpanReject::BadStatus),
        (with("status", "status:i=1"), SpanReject::BadStatus),
        (with("attr.", "attr.=x"), SpanReject::BadAttr),
    ]);
    // An empty name (logd keeps empty messages).
    assert_eq!(
        span_of_record(
            &record(METRICSD, "trace.span", "", GOOD),
            NODE,
            Some(METRICSD)
        )
        .map(|_| ()),
        Err(SpanReject::EmptyName)
    );
}

/// The identity rule: a forwarder's record belongs to its `owner`; any
/// other sender's record to that sender, and an `owner` naming someone
/// else there is refused as an identity claim.
#[test]
fn test_reject_identity_claims() {
    let direct = |sender: ServiceId, fields: &str| {
        span_of_record(
            &record(sender, "trace.span", "op", fields),
            NODE,
            Some(METRICSD),
        )
    };
    // metricsd's record: the owner it names (21).
    assert_eq!(judge(GOOD).unwrap().unwrap().origin.service, 21);
    // APP writing its own span end: APP, with or without `owner`.
    assert_eq!(direct(APP, GOOD).unwrap().unwrap().origin, origin(APP));
    let no_owner = with("owner", "");
    assert_eq!(
        direct(OTHER_APP, &no_owner).unwrap().unwrap().origin,
        origin(OTHER_APP)
    );
    // OTHER_APP claiming to be APP.
    assert_eq!(direct(OTHER_APP, GOOD), Err(SpanReject::IdentityClaim));
    // Without a forwarder nobody's `owner` is trusted.
    assert_eq!(
        span_of_record(&record(METRICSD, "trace.span", "op", GOOD), NODE, None),
        Err(SpanReject::IdentityClaim)
    );

    // Through logd: a follower without a forwarder reads every sender
    // (traced being a reader); the claim is counted, the rest kept.
    let mut l = logd();
    append(&mut l, OTHER_APP, "trace.span", "op", GOOD);
    append(&mut l, OTHER_APP, "trace.span", "op", &no_owner);
    append(&mut l, APP, "trace.span", "op", GOOD);
    append(&mut l, APP, "app", "plain log line", "");
    let mut f = LogdFollower::new(enabled(), NODE, None);
    let q = f.poll(0).unwrap();
    assert!(
        matches!(proto::decode_request(&q).unwrap().1, LogRequest::Query(q) if q.sender.is_none())
    );
    let mut out = Vec::new();
    let reply = l.handle(0, TRACED, &q).reply.unwrap();
    assert_eq!(f.on_reply(&reply, &mut out), Ok(2));
    assert_eq!(
        out.iter().map(|s| s.origin).collect::<Vec<_>>(),
        [origin(OTHER_APP), origin(APP)]
    );
    let s = f.stats();
    assert_eq!(
        (s.records, s.spans, s.identity_claims, s.rejected, s.skipped),
        (4, 2, 1, 0, 1)
    );
}

#[test]
fn test_reject_logd_error_status() {
    let mut m = metricsd();
    // traced without logd's reader role: asking for metricsd's records is
    // `denied`; the cursor stays.
    let mut l = logd_with(logd::Config::default(), &[]);
    end_spans(&mut m, &mut l, APP, TRACE, &[1, 2]);
    let mut f = follower(enabled());
    let mut out = Vec::new();
    assert_eq!(
        pump(&mut f, &mut l, 0, &mut out),
        Some(Err(FollowError::Refused(Status::Denied)))
    );
    assert_eq!((f.cursor(), f.in_flight()), (0, false));
    assert_eq!(f.stats().refused, 1);
    l.add_reader(TRACED);
    assert_eq!(pump(&mut f, &mut l, 200 * MS, &mut out), Some(Ok(2)));

    // A cursor from another journal (beyond logd's next id) is
    // `invalid_args`: the follower starts again from the oldest record.
    let mut fresh = logd();
    end_spans(&mut metricsd(), &mut fresh, APP, TRACE, &[7]);
    assert_eq!(f.cursor(), 3);
    f.set_cursor(1_000);
    assert_eq!(
        pump(&mut f, &mut fresh, 400 * MS, &mut out),
        Some(Err(FollowError::Refused(Status::InvalidArgs)))
    );
    assert_eq!(f.cursor(), 0);
    assert_eq!(pump(&mut f, &mut fresh, 600 * MS, &mut out), Some(Ok(1)));
    assert_eq!(ids(&out), [1, 2, 7]);
    let s = f.stats();
    assert_eq!((s.refused, s.cursor_resets), (2, 1));
}

#[test]
fn test_reject_truncated_and_garbage_replies() {
    let mut m = metricsd();
    let mut l = logd();
    end_spans(&mut m, &mut l, APP, TRACE, &[1, 2, 3]);
    let mut out = Vec::new();
    // Every truncation of a real page (to a fresh follower, whose QUERY
    // it answers): refused, nothing taken, the cursor unchanged; a frame
    // too short for a header leaves the QUERY in flight, a page with a
    // header gives it up.
    let whole = {
        let mut f = follower(enabled());
        let q = f.poll(0).unwrap();
        l.handle(0, TRACED, &q).reply.unwrap()
    };
    for cut in 0..whole.len() {
        let mut f = follower(enabled());
        let q = f.poll(0).unwrap();
        assert_eq!(l.handle(0, TRACED, &q).reply.unwrap(), whole);
        assert_eq!(
            f.on_reply(&whole[..cut], &mut out),
            Err(FollowError::Malformed),
            "cut {cut}"
        );
        assert_eq!(f.in_flight(), cut < 12, "cut {cut}");
        assert_eq!(f.cursor(), 0);
        assert_eq!(f.stats().bad_replies, 1);
    }
    assert!(out.is_empty());
    // Garbage, another protocol, the request itself: refused, and the
    // QUERY in flight stays.
    let mut g = follower(enabled());
    let q = g.poll(0).unwrap();
    for junk in [
        b"".to_vec(),
        b"hello, world".to_vec(),
        vec![0xff; 64],
        traced::proto::encode_request(1, &traced::proto::Request::Stats).unwrap(),
        q.clone(),
    ] {
        assert!(g.on_reply(&junk, &mut out).is_err(), "{junk:?}");
        assert!(g.in_flight(), "{junk:?}");
    }
    // A reply of another op with the right nonce (a STATS reply).
    let h = Header::parse(&q, proto::MAGIC).unwrap().0;
    let stats_reply = proto::encode_reply(
        &Header {
            op: proto::op::STATS,
            ..h
        },
        &LogReply::Stats(Default::default()),
    );
    assert_eq!(
        g.on_reply(&stats_reply, &mut out),
        Err(FollowError::Unexpected)
    );
    assert!(out.is_empty());
    assert_eq!(g.cursor(), 0);
}

#[test]
fn test_reject_pages_logd_cannot_send() {
    let mut out = Vec::new();
    let page_of = |ids: &[u64], next: u64| QueryPage {
        next,
        gap: 0,
        more: false,
        records: ids
            .iter()
            .map(|&id| Record {
                id,
                ..record(METRICSD, "trace.span", "op", GOOD)
            })
            .collect(),
    };
    for (cursor, page) in [
        (5, page_of(&[], 4)),        // next behind the cursor
        (5, page_of(&[4], 9)),       // a record before the cursor
        (5, page_of(&[6, 6], 9)),    // not increasing
        (5, page_of(&[7, 6], 9)),    // not increasing
        (5, page_of(&[9], 9)),       // a record at or past next
        (0, page_of(&[1, 2, 3], 4)), // more than page_records (2)
    ] {
        let mut f = follower(LogdFallback {
            page_records: 2,
            ..enabled()
        });
        f.set_cursor(cursor);
        let q = f.poll(0).unwrap();
        let h = Header::parse(&q, proto::MAGIC).unwrap().0;
        let frame = proto::encode_reply(&h, &LogReply::Page(page.clone()));
        assert_eq!(
            f.on_reply(&frame, &mut out),
            Err(FollowError::BadPage),
            "{page:?}"
        );
        assert_eq!(f.cursor(), cursor);
        assert_eq!(f.stats().bad_replies, 1);
    }
    assert!(out.is_empty());
}

#[test]
fn the_same_span_over_ipc_and_from_logd_is_correlated_once() {
    let mut m = metricsd();
    let mut l = logd();
    let mut t = Traced::new(
        Config {
            idle_timeout_ns: 1_000 * MS,
            ..Config::default()
        },
        NODE,
    );
    // The app ends two spans in metricsd and sends the same two to traced
    // over IPC.
    end_spans(&mut m, &mut l, APP, TRACE, &[1, 2]);
    let ipc = vec![
        span(TRACE, 1, None, "op1", (100, 150), SpanStatus::Ok, &[]),
        span(TRACE, 2, None, "op2", (200, 250), SpanStatus::Ok, &[]),
    ];
    let frame =
        traced::proto::encode_request(0, &traced::proto::Request::Spans(ipc.clone())).unwrap();
    assert!(t.handle(0, APP.get(), &frame).frame.is_none());
    let mut f = follower(enabled());
    let mut out = Vec::new();
    assert_eq!(pump(&mut f, &mut l, 10 * MS, &mut out), Some(Ok(2)));
    // The copies from logd are the same spans, from the same service.
    assert_eq!(
        out,
        ipc.iter()
            .map(|r| TracedSpan::local(r.clone(), origin(APP)))
            .collect::<Vec<_>>()
    );
    for s in out.drain(..) {
        t.ingest(10 * MS, s);
    }
    t.tick(2_000 * MS);
    let done: Vec<_> = t.recent().collect();
    assert_eq!(done.len(), 1);
    assert_eq!(
        done[0]
            .spans
            .iter()
            .map(|s| s.record.context.span.get())
            .collect::<Vec<_>>(),
        [1, 2]
    );
    let c = t.stats().correlator;
    assert_eq!((c.spans_added, c.spans_dropped_duplicate), (2, 2));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any bytes as a reply, alone or behind the header of the QUERY in
    /// flight, never panic and never move the cursor unless they are a
    /// sound page.
    #[test]
    fn arbitrary_replies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256), raw in any::<bool>()) {
        let mut f = follower(enabled());
        f.set_cursor(7);
        let q = f.poll(0).unwrap();
        let frame = if raw {
            body.clone()
        } else {
            let mut h = Header::parse(&q, proto::MAGIC).unwrap().0;
            h.op |= nexus_wire::REPLY_BIT;
            let mut v = Vec::new();
            h.emit(&mut v);
            v.extend_from_slice(&body);
            v
        };
        let mut out = Vec::new();
        match f.on_reply(&frame, &mut out) {
            Ok(n) => {
                prop_assert_eq!(n, out.len());
                prop_assert!(n <= 64);
                prop_assert!(f.cursor() >= 7);
            }
            Err(_) => {
                prop_assert!(out.is_empty());
                prop_assert!(f.cursor() == 7 || f.cursor() == 0);
            }
        }
    }
}

fn real_page() -> &'static [u8] {
    use std::sync::OnceLock;
    static PAGE: OnceLock<Vec<u8>> = OnceLock::new();
    PAGE.get_or_init(|| {
        let mut m = metricsd();
        let mut l = logd();
        end_spans(&mut m, &mut l, APP, TRACE, &[1, 2, 3]);
        let mut f = follower(enabled());
        let q = f.poll(0).unwrap();
        l.handle(0, TRACED, &q).reply.unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A real page with bytes overwritten (its header kept, so it reaches
    /// the page and record checks): never a panic, never more spans than
    /// records asked.
    #[test]
    fn mutated_pages_never_panic(edits in proptest::collection::vec((12usize..400, any::<u8>()), 1..8)) {
        let mut frame = real_page().to_vec();
        for (at, b) in edits {
            let i = at % frame.len();
            if i >= 12 {
                frame[i] = b;
            }
        }
        let mut f = follower(enabled());
        let _ = f.poll(0).unwrap();
        let mut out = Vec::new();
        match f.on_reply(&frame, &mut out) {
            Ok(n) => prop_assert!(n == out.len() && n <= 3),
            Err(_) => prop_assert!(out.is_empty()),
        }
        prop_assert!(!f.in_flight());
    }
}
