//! The metrics and tracing part of the selftest.
//!
//! | marker | evidence |
//! |--------|----------|
//! | `SELFTEST: metrics security rejects ok` | metricsd answered `invalid_args` (bad name, identity label), `over_limit` (oversized name) and `rate_limited` (a flood of full batches), and its STATS moved by exactly that |
//! | `SELFTEST: metrics counters ok` | a snapshot record for the counter, appended to **logd** in this boot and queried back, carries its labels, owner and value 15; and logd's own `logd_appended_total` is in the scrape under logd's identity |
//! | `SELFTEST: metrics histograms ok` | the histogram's snapshot record of this boot in logd has the exact cumulative buckets (two observations sit exactly on bounds, so `<` instead of `<=` fails), sum and count |
//! | `SELFTEST: tracing spans ok` | both span-end records of this boot are in logd with the guards' span ids (unique per boot), the parent link, one trace id, each span's own status (root error, child ok) and the redacted secret attribute |
//! | `SELFTEST: metrics retention pending` | first boot: 10 s and 60 s segments of a gauge were closed and stored |
//! | `SELFTEST: metrics retention ok` | later boot: the previous boot's segments came back from the state store under the same series |

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use nexus_bounds::Clock;
use nexus_ipc::Endpoint;
use nexus_log::proto::QueryRequest;
use nexus_log::{LogdClient, Record};
use nexus_metrics::proto::{self, Entry, Register, Reply, Status, WireSegment};
use nexus_metrics::{Metrics, MetricsError};
use nexus_trace::SpanStatus;

use crate::Failure;

fn fail<T>(what: impl Into<String>) -> Result<T, Failure> {
    Err(Failure(what.into()))
}

fn merr(what: &str) -> impl Fn(MetricsError) -> Failure + '_ {
    move |e| Failure(format!("{what}: {e}"))
}

/// The gauge whose rollups must survive a reboot, and its three samples
/// (sent in one batch, so they share one window).
const RETAINED: &str = "selftest_retained";
const RETAINED_SAMPLES: [i64; 3] = [3, 7, 5];

fn expected_segment(s: &WireSegment) -> bool {
    (s.count, s.sum, s.min, s.max) == (3, 15, 3, 7)
}

/// Raw REGISTER, so the selftest can send what the library would refuse.
fn raw_register<E: Endpoint, C: Clock>(
    m: &mut Metrics<E, C>,
    name: &str,
    labels: &[(&str, &str)],
) -> Result<Reply, Failure> {
    let nonce = m.next_nonce();
    let frame = proto::encode_register(
        nonce,
        &Register {
            kind: 0,
            name,
            labels: labels.to_vec(),
            bounds: Vec::new(),
            help: "",
        },
    )
    .map_err(|e| Failure(format!("encode: {e}")))?;
    m.call_raw(nonce, &frame).map_err(merr("register"))
}

fn expect(r: Reply, want: Status, what: &str) -> Result<(), Failure> {
    match r {
        Reply::Rejected(s) if s == want => Ok(()),
        other => fail(format!("{what}: expected {want}, got {other:?}")),
    }
}

/// The id the next record appended to logd will get: records from here on
/// are this boot's (earlier ones may be restored from the previous boot).
fn next_record_id<E: Endpoint>(logd: &mut LogdClient<E>) -> Result<u64, Failure> {
    let all = logd
        .query_all(&QueryRequest::all(256), 100_000)
        .map_err(|e| Failure(format!("logd query: {e}")))?;
    Ok(all.records.last().map_or(0, |r| r.id.saturating_add(1)))
}

/// Records in logd from id `from` on (the caller must have the reader
/// role) matching `pred`, retried after letting the services run, so
/// one-way exports have landed.
fn find<E: Endpoint>(
    logd: &mut LogdClient<E>,
    from: u64,
    settle: &mut dyn FnMut(u64),
    pred: &dyn Fn(&Record) -> bool,
    want: usize,
) -> Result<Vec<Record>, Failure> {
    let mut found = Vec::new();
    let q = QueryRequest {
        cursor: from,
        ..QueryRequest::all(256)
    };
    for _ in 0..5 {
        let all = logd
            .query_all(&q, 100_000)
            .map_err(|e| Failure(format!("logd query: {e}")))?;
        found = all.records.into_iter().filter(|r| pred(r)).collect();
        if found.len() >= want {
            return Ok(found);
        }
        settle(0);
    }
    Ok(found)
}

/// Runs the metrics checks. `m` speaks for `selftest-metrics`; `flood` is a
/// second identity that spends its budget; `logd` has the reader role;
/// `settle(ns)` lets `ns` of guest time pass and the services drain.
pub fn run<E: Endpoint, C: Clock>(
    logd: &mut LogdClient<E>,
    m: &mut Metrics<E, C>,
    flood: &mut Metrics<E, C>,
    boot: u32,
    out: &mut dyn FnMut(&str),
    settle: &mut dyn FnMut(u64),
) -> Result<(), Failure> {
    let owner = m.endpoint().id().get();
    // Only records appended from here on count as this boot's evidence.
    let this_boot = next_record_id(logd)?;
    // Retention evidence first, before this boot adds samples: the
    // previous boot's segments, restored under the same series.
    let retained = m.gauge(RETAINED, &[]).map_err(merr("retained gauge"))?;
    let restored_10s = m.segments(retained.series(), 1).map_err(merr("segments"))?;
    let restored_60s = m.segments(retained.series(), 2).map_err(merr("segments"))?;

    // --- security rejects ---------------------------------------------
    let before = m.server_stats().map_err(merr("stats"))?;
    expect(
        raw_register(m, "Bad-Name", &[])?,
        Status::InvalidArgs,
        "bad name",
    )?;
    expect(
        raw_register(m, "spoofed", &[("service_id", "1")])?,
        Status::InvalidArgs,
        "identity label",
    )?;
    let long = "n".repeat(65);
    expect(
        raw_register(m, &long, &[])?,
        Status::OverLimit,
        "oversized name",
    )?;
    let target = flood
        .counter("selftest_flood_total", &[])
        .map_err(merr("flood counter"))?;
    let entries: Vec<Entry<'_>> = (0..512)
        .map(|_| Entry::Inc {
            series: target.series().0,
            delta: 1,
        })
        .collect();
    let mut limited = false;
    for _ in 0..64 {
        let nonce = flood.next_nonce();
        let frame = proto::encode_batch(nonce, false, &entries)
            .map_err(|e| Failure(format!("encode: {e}")))?;
        match flood.call_raw(nonce, &frame).map_err(merr("flood"))? {
            Reply::Batch(b) if b.rejected == 0 => {}
            Reply::Rejected(Status::RateLimited) => {
                limited = true;
                break;
            }
            other => return fail(format!("flood: unexpected {other:?}")),
        }
    }
    if !limited {
        return fail("flood: never rate limited");
    }
    let after = m.server_stats().map_err(merr("stats"))?;
    let d = |s: Status| after.rejected(s).saturating_sub(before.rejected(s));
    let seen = (
        d(Status::InvalidArgs),
        d(Status::OverLimit),
        d(Status::RateLimited),
        after.identity_spoofs.saturating_sub(before.identity_spoofs),
    );
    if seen != (2, 1, 1, 1) {
        return fail(format!(
            "metricsd STATS moved by {seen:?}, expected (2, 1, 1, 1)"
        ));
    }
    out("SELFTEST: metrics security rejects ok");

    // --- counters, histograms, spans ------------------------------------
    let c = m
        .counter("selftest_requests_total", &[("route", "/boot")])
        .map_err(merr("counter"))?;
    for _ in 0..5 {
        c.inc();
    }
    c.add(10);
    let h = m
        .histogram("selftest_latency_us", &[], &[10, 100, 1000])
        .map_err(merr("histogram"))?;
    // 10 and 100 sit exactly on bounds: buckets are `<=` (cumulative `le`).
    for v in [5, 10, 100, 500, 5000] {
        h.observe(v);
    }
    let (root_id, child_id, trace) = {
        let mut root = m.span("selftest.request");
        let mut child = root.child("selftest.db");
        child.attr("rows", 3);
        child.attr("auth_token", "hunter2");
        child.set_status(SpanStatus::Ok);
        root.set_status(SpanStatus::Error);
        (root.id(), child.id(), root.trace())
    };
    let res = m.flush_sync().map_err(merr("flush"))?;
    if res.rejected != 0 || res.accepted < 6 {
        return fail(format!("flush: {res:?}"));
    }
    // One snapshot interval of guest time: the next snapshot carries them.
    settle(11_000_000_000);

    let owner_s = format!("{owner}");
    let snap = |name: &'static str| {
        let owner_s = owner_s.clone();
        move |r: &Record| {
            r.target == "metrics.snapshot"
                && r.message == name
                && r.fields.get("owner") == Some(owner_s.as_str())
        }
    };
    let counters = find(logd, this_boot, settle, &snap("selftest_requests_total"), 1)?;
    match counters.last() {
        Some(r)
            if r.fields.get("value") == Some("15")
                && r.fields.get("kind") == Some("counter")
                && r.fields.get("label.route") == Some("/boot") => {}
        other => return fail(format!("counter snapshot in logd: {other:?}")),
    }
    // Our own services report through the same path: logd's counters are
    // in the exposition, owned by logd's transport identity.
    let text = m.scrape(64).map_err(merr("scrape"))?;
    let logd_owner = format!("logd_appended_total{{owner=\"{}\"}} ", logd.peer_id().get());
    let appended = text
        .lines()
        .find_map(|l| l.strip_prefix(logd_owner.as_str()))
        .and_then(|v| v.parse::<u64>().ok());
    if appended.is_none_or(|n| n == 0) {
        return fail(format!(
            "logd's own counter missing from the scrape: {appended:?}"
        ));
    }
    out("SELFTEST: metrics counters ok");

    let hists = find(logd, this_boot, settle, &snap("selftest_latency_us"), 1)?;
    let want = [
        ("bucket.le_10", "2"),
        ("bucket.le_100", "3"),
        ("bucket.le_1000", "4"),
        ("bucket.le_inf", "5"),
        ("sum", "5615"),
        ("count", "5"),
        ("kind", "histogram"),
    ];
    match hists.last() {
        Some(r) if want.iter().all(|(k, v)| r.fields.get(k) == Some(*v)) => {}
        other => return fail(format!("histogram snapshot in logd: {other:?}")),
    }
    out("SELFTEST: metrics histograms ok");

    let trace_s = format!("{trace}");
    let spans = find(
        logd,
        this_boot,
        settle,
        &|r: &Record| {
            r.target == "trace.span" && r.fields.get("trace_id") == Some(trace_s.as_str())
        },
        2,
    )?;
    let child = spans
        .iter()
        .find(|r| r.fields.get("span_id") == Some(&*format!("{child_id}")));
    let root = spans
        .iter()
        .find(|r| r.fields.get("span_id") == Some(&*format!("{root_id}")));
    match (child, root) {
        (Some(c), Some(r))
            if c.message == "selftest.db"
                && r.message == "selftest.request"
                && c.fields.get("parent_id") == Some(&*format!("{root_id}"))
                && r.fields.get("parent_id").is_none()
                && c.fields.get("status") == Some("ok")
                && r.fields.get("status") == Some("error")
                && c.fields.get("attr.rows") == Some("3")
                && c.fields.get("attr.auth_token") == Some("[redacted]")
                && c.fields.get("duration_ns").is_some() => {}
        other => return fail(format!("span records in logd: {other:?}")),
    }
    out("SELFTEST: tracing spans ok");

    // --- retention ----------------------------------------------------
    let nonce = m.next_nonce();
    let sets: Vec<Entry<'_>> = RETAINED_SAMPLES
        .iter()
        .map(|v| Entry::Set {
            series: retained.series().0,
            value: *v,
        })
        .collect();
    let frame =
        proto::encode_batch(nonce, false, &sets).map_err(|e| Failure(format!("encode: {e}")))?;
    match m
        .call_raw(nonce, &frame)
        .map_err(merr("retained samples"))?
    {
        Reply::Batch(b) if b.accepted == 3 => {}
        other => return fail(format!("retained samples: {other:?}")),
    }
    // Past the end of the 60 s window: both tiers close and are stored.
    settle(70_000_000_000);
    let now_10s = m.segments(retained.series(), 1).map_err(merr("segments"))?;
    let now_60s = m.segments(retained.series(), 2).map_err(merr("segments"))?;
    if !now_10s.iter().any(expected_segment) || !now_60s.iter().any(expected_segment) {
        return fail(format!(
            "segments after 70 s: 10 s {now_10s:?}, 60 s {now_60s:?}"
        ));
    }
    if boot <= 1 {
        out("SELFTEST: metrics retention pending");
        return Ok(());
    }
    if !restored_10s.iter().any(expected_segment) || !restored_60s.iter().any(expected_segment) {
        return fail(format!(
            "retention: the previous boot's segments did not come back (10 s {restored_10s:?}, 60 s {restored_60s:?})"
        ));
    }
    out("SELFTEST: metrics retention ok");
    Ok(())
}
