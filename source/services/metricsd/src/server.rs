//! metricsd's pure logic: decode → decide → encode, plus the periodic
//! work ([`Metricsd::tick`]): closing rollup windows, retention GC, and
//! snapshot export. No I/O and no clock reads: the I/O loop passes the time
//! and the transport-stamped sender, sends replies, forwards
//! [`Metricsd::drain_exports`] to logd and [`Metricsd::drain_persisted`] to
//! the state store.

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use nexus_bounds::{BucketConfig, LimiterConfig, RateLimiter};
use nexus_ipc::ServiceId;
use nexus_log::{limits, Fields, FieldsBuilder, Level, Value as FieldValue};
use nexus_metrics::proto::{
    self, BatchResult, Entry, MetricsStats, Register, Reply, Request, RequestError, ScrapePage,
    Status, WireSegment,
};
use nexus_metrics::{Buckets, Help, Labels, MetricKind, MetricName, TypeError};
use nexus_wire::Header;

use crate::config::Config;
use crate::expo;
use crate::registry::{Registered, Registration, Registry, Value, Walked};
use crate::retention::{Retention, RetentionConfig};
use crate::rollup::{Rollup, Segment, Tier};
use crate::spans::{EndedSpan, SpanTable};

/// The label every exposed series carries: the owner's transport id. It is
/// reserved, so a client cannot set it.
pub const OWNER_LABEL: &str = "owner";

/// Target of span-end records in logd.
pub const SPAN_TARGET: &str = "trace.span";
/// Target of snapshot records in logd.
pub const SNAPSHOT_TARGET: &str = "metrics.snapshot";

/// Largest scrape page (text bytes), so a page fits a 64 KiB frame.
pub const MAX_SCRAPE_BYTES: usize = 60 * 1024;

/// A record for logd, produced by metricsd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// Level.
    pub level: Level,
    /// `metrics.snapshot` or `trace.span`.
    pub target: &'static str,
    /// Metric or span name.
    pub message: String,
    /// Structured fields.
    pub fields: Fields,
}

/// Something the state store must keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Persisted {
    /// A new series.
    Register(u32, Registration),
    /// A raw sample (the WAL).
    Sample {
        /// Series.
        series: u32,
        /// metricsd's clock.
        ts_ns: u64,
        /// Sample value.
        value: i64,
    },
    /// A closed rollup window.
    Segment(Segment),
}

/// What handling one frame produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    /// Reply to send to the sender.
    pub reply: Option<Vec<u8>>,
    /// Frame-level outcome (`None` without a readable header).
    pub status: Option<Status>,
    /// Statuses of refused batch entries, in order.
    pub entry_rejects: Vec<Status>,
}

/// The metricsd core.
#[derive(Debug)]
pub struct Metricsd {
    cfg: Config,
    registry: Registry,
    spans: SpanTable,
    limiter: RateLimiter<ServiceId>,
    rollup: Rollup,
    retention: Retention,
    outbox: VecDeque<Export>,
    persisted: Vec<Persisted>,
    last_snapshot_ns: Option<u64>,
    stats: MetricsStats,
    exports_dropped: u64,
    trimmed_attrs: u64,
    unfit_records: u64,
    snapshot_skipped: u64,
    redacted: u64,
    resume_ns: u64,
}

fn type_status(e: TypeError) -> Status {
    match e {
        TypeError::Invalid => Status::InvalidArgs,
        TypeError::TooLong => Status::OverLimit,
    }
}

/// Attribute and span-name grammar shared with logd fields.
fn is_field_key(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-'))
}

impl Metricsd {
    /// A metricsd with `cfg` (validated).
    pub fn new(cfg: Config) -> Result<Self, crate::config::ConfigError> {
        cfg.validate()?;
        Ok(Self {
            registry: Registry::new(cfg.cardinality),
            spans: SpanTable::new(
                cfg.spans.max_live as usize,
                cfg.spans.max_live_per_sender as usize,
            ),
            limiter: RateLimiter::new(LimiterConfig {
                events: BucketConfig {
                    rate_per_sec: cfg.rate.events_per_sec,
                    burst: cfg.rate.events_burst,
                },
                bytes: BucketConfig {
                    rate_per_sec: cfg.rate.bytes_per_sec,
                    burst: cfg.rate.bytes_burst,
                },
                max_keys: cfg.rate.max_senders as usize,
            }),
            rollup: Rollup::new(cfg.retention.max_open_windows as usize),
            retention: Retention::new(RetentionConfig {
                ttl_10s_ns: cfg.retention.ttl_10s_secs.saturating_mul(1_000_000_000),
                ttl_60s_ns: cfg.retention.ttl_60s_secs.saturating_mul(1_000_000_000),
                max_segments: cfg.retention.max_segments as usize,
            }),
            outbox: VecDeque::new(),
            persisted: Vec::new(),
            last_snapshot_ns: None,
            stats: MetricsStats::default(),
            exports_dropped: 0,
            trimmed_attrs: 0,
            unfit_records: 0,
            snapshot_skipped: 0,
            redacted: 0,
            resume_ns: 0,
            cfg,
        })
    }

    /// The config in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The registry (read-only).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Retained rollup segments (read-only).
    pub fn retention(&self) -> &Retention {
        &self.retention
    }

    /// Counters.
    pub fn stats(&self) -> MetricsStats {
        MetricsStats {
            series: self.registry.len() as u64,
            live_spans: self.spans.len() as u64,
            series_overflow: self.registry.overflow_total(),
            segments: self.rollup.stats().segments_emitted,
            sender_evictions: self.limiter.evictions(),
            ..self.stats
        }
    }

    /// Records waiting for logd, oldest first (taking them all).
    pub fn drain_exports(&mut self) -> Vec<Export> {
        self.outbox.drain(..).collect()
    }

    /// The oldest record waiting for logd.
    pub fn next_export(&mut self) -> Option<Export> {
        self.outbox.pop_front()
    }

    /// Puts back a record logd could not take now (it stays first in line).
    pub fn requeue_export(&mut self, e: Export) {
        self.outbox.push_front(e);
    }

    /// Records waiting for logd.
    pub fn pending_exports(&self) -> usize {
        self.outbox.len()
    }

    /// Entries waiting for the state store, in order.
    pub fn drain_persisted(&mut self) -> Vec<Persisted> {
        core::mem::take(&mut self.persisted)
    }

    /// Queues a record for logd. A record that some valid logd could
    /// refuse (beyond `nexus_log::limits`) is never sent: it is counted in
    /// `metricsd_export_trimmed_total{kind="record"}`. (With a valid config
    /// every snapshot fits and span records are trimmed to fit first, so
    /// this is a last guard, not the rule.)
    fn export(&mut self, e: Export) {
        if !limits::fits_guaranteed(e.target, &e.message, &e.fields) {
            self.unfit_records += 1;
            return;
        }
        if self.outbox.len() >= self.cfg.export.max_outbox as usize {
            self.exports_dropped += 1;
        } else {
            self.outbox.push_back(e);
        }
    }

    fn count(&mut self, s: Status) {
        self.stats.rejects.count(s);
    }

    /// Handles one frame from `sender` at `now_ns`.
    pub fn handle(&mut self, now_ns: u64, sender: ServiceId, frame: &[u8]) -> Handled {
        let (h, req) = match proto::decode_request(frame) {
            Ok(ok) => ok,
            Err(RequestError::NoHeader) => {
                self.count(Status::Malformed);
                return Handled {
                    reply: None,
                    status: None,
                    entry_rejects: Vec::new(),
                };
            }
            Err(RequestError::Unsupported(h)) => return self.refuse(&h, Status::Unsupported),
            Err(RequestError::Malformed(h)) => return self.refuse(&h, Status::Malformed),
        };
        let events = match &req {
            Request::Batch { entries, .. } => entries.len().max(1) as u64,
            _ => 1,
        };
        if !self
            .limiter
            .admit_n(now_ns, sender, events, frame.len() as u64)
        {
            return self.refuse(&h, Status::RateLimited);
        }
        // A one-way BATCH gets no reply: `answer` knows its op.
        let (reply, entry_rejects) = match req {
            Request::Register(r) => (
                match self.register(sender, &r) {
                    Ok(id) => Reply::Registered(id),
                    Err(s) => Reply::Rejected(s),
                },
                Vec::new(),
            ),
            Request::Batch { entries, .. } => {
                if entries.len() > self.cfg.batch.max_entries as usize {
                    (Reply::Rejected(Status::OverLimit), Vec::new())
                } else {
                    let (res, rejects) = self.batch(now_ns, sender, &entries);
                    (Reply::Batch(res), rejects)
                }
            }
            Request::Scrape { cursor, max_bytes } => {
                (Reply::Scrape(self.scrape(cursor, max_bytes)), Vec::new())
            }
            Request::Stats => (Reply::Stats(self.stats()), Vec::new()),
            Request::Segments { series, tier } => (
                match Tier::from_u8(tier) {
                    Some(t) if self.registry.get(series).is_some_and(|s| s.owner == sender) => {
                        Reply::Segments(self.segments(series, t))
                    }
                    _ => Reply::Rejected(Status::InvalidArgs),
                },
                Vec::new(),
            ),
        };
        for s in &entry_rejects {
            self.count(*s);
        }
        Handled {
            entry_rejects,
            ..self.answer(&h, reply)
        }
    }

    fn refuse(&mut self, h: &Header, s: Status) -> Handled {
        self.answer(h, Reply::Rejected(s))
    }

    /// Counts the outcome and replies, except to a reply frame or to a
    /// one-way BATCH.
    fn answer(&mut self, h: &Header, reply: Reply) -> Handled {
        let a = nexus_wire::answer(&mut self.stats.rejects, h, proto::op::BATCH_ONEWAY, &reply);
        Handled {
            reply: a.frame,
            status: Some(a.status),
            entry_rejects: Vec::new(),
        }
    }

    fn check_key(&mut self, k: &str) -> Result<(), Status> {
        if nexus_ipc::is_identity_claim(k) {
            self.stats.identity_spoofs += 1;
            return Err(Status::InvalidArgs);
        }
        Ok(())
    }

    fn register(&mut self, sender: ServiceId, r: &Register<'_>) -> Result<u32, Status> {
        let kind = MetricKind::from_u8(r.kind).ok_or(Status::InvalidArgs)?;
        let name = MetricName::new(r.name).map_err(type_status)?;
        for (k, _) in &r.labels {
            self.check_key(k)?;
            if *k == OWNER_LABEL || self.cfg.is_secret_key(k) {
                if *k != OWNER_LABEL {
                    self.redacted += 1;
                }
                return Err(Status::InvalidArgs);
            }
        }
        let labels = Labels::new(&r.labels).map_err(type_status)?;
        let buckets = match kind {
            MetricKind::Histogram => Some(Buckets::new(&r.bounds).map_err(type_status)?),
            _ if r.bounds.is_empty() => None,
            _ => return Err(Status::InvalidArgs),
        };
        let help = Help::new(r.help).map_err(type_status)?;
        let reg = Registration {
            owner: sender,
            kind,
            name,
            labels,
            buckets,
            help,
        };
        match self.registry.register(&reg)? {
            Registered::Existing(id) => Ok(id),
            Registered::New(id) => {
                self.persisted.push(Persisted::Register(id, reg));
                Ok(id)
            }
        }
    }

    fn batch(
        &mut self,
        now_ns: u64,
        sender: ServiceId,
        entries: &[Entry<'_>],
    ) -> (BatchResult, Vec<Status>) {
        let mut res = BatchResult {
            accepted: 0,
            rejected: 0,
            first_reject: Status::Ok,
        };
        let mut rejects = Vec::new();
        for e in entries {
            match self.entry(now_ns, sender, e) {
                Ok(()) => res.accepted = res.accepted.saturating_add(1),
                Err(s) => {
                    res.rejected = res.rejected.saturating_add(1);
                    if res.first_reject == Status::Ok {
                        res.first_reject = s;
                    }
                    rejects.push(s);
                }
            }
        }
        (res, rejects)
    }

    fn sample(&mut self, series: u32, ts_ns: u64, value: i64) {
        // Rollup refusals (late or full) are counted by the rollup itself.
        if self.rollup.ingest(series, ts_ns, value).is_ok() {
            self.persisted.push(Persisted::Sample {
                series,
                ts_ns,
                value,
            });
        }
    }

    fn entry(&mut self, now_ns: u64, sender: ServiceId, e: &Entry<'_>) -> Result<(), Status> {
        let (series, value) = match e {
            Entry::Inc { series, delta } => (*series, self.registry.inc(sender, *series, *delta)?),
            Entry::Set { series, value } => (*series, self.registry.set(sender, *series, *value)?),
            Entry::Add { series, delta } => (*series, self.registry.add(sender, *series, *delta)?),
            Entry::Hist {
                series,
                counts,
                sum,
            } => (
                *series,
                self.registry.observe(sender, *series, counts, *sum)?,
            ),
            Entry::SpanStart {
                span,
                trace,
                parent,
                start_ns,
                name,
            } => {
                if name.len() > self.cfg.spans.max_name_len as usize {
                    return Err(Status::OverLimit);
                }
                if name.is_empty() || name.chars().any(char::is_control) {
                    return Err(Status::InvalidArgs);
                }
                return self
                    .spans
                    .start(sender, *span, *trace, *parent, *start_ns, name, now_ns);
            }
            Entry::SpanEnd {
                span,
                end_ns,
                status,
                attrs,
            } => {
                // Refused attributes do not keep the span alive: it ends
                // without them (and the entry still reports the refusal),
                // so a bad attribute can never leak a live span.
                let (attrs, refused) = match self.attrs(attrs) {
                    Ok(a) => (a, None),
                    Err(st) => (Vec::new(), Some(st)),
                };
                let ended = self.spans.end(sender, *span, *end_ns, *status, attrs)?;
                self.stats.spans_ended += 1;
                self.export_span(&ended);
                return refused.map_or(Ok(()), Err);
            }
        };
        self.stats.updates += 1;
        self.sample(series, now_ns, value);
        Ok(())
    }

    /// Validates span attributes; secret-looking keys keep their key and
    /// lose their value.
    fn attrs(&mut self, attrs: &[(&str, &str)]) -> Result<Vec<(String, String)>, Status> {
        let s = self.cfg.spans;
        if attrs.len() > s.max_attrs as usize {
            return Err(Status::OverLimit);
        }
        let mut out = Vec::with_capacity(attrs.len());
        for (k, v) in attrs {
            if k.len() > s.max_attr_key_len as usize || v.len() > s.max_attr_value_len as usize {
                return Err(Status::OverLimit);
            }
            self.check_key(k)?;
            if !is_field_key(k) || v.contains('\n') {
                return Err(Status::InvalidArgs);
            }
            let value = if self.cfg.is_secret_key(k) {
                self.redacted += 1;
                String::from("[redacted]")
            } else {
                String::from(*v)
            };
            out.push((String::from(*k), value));
        }
        out.sort();
        out.dedup_by(|a, b| a.0 == b.0);
        Ok(out)
    }

    fn export_span(&mut self, s: &EndedSpan) {
        let level = if s.status == nexus_trace::SpanStatus::Error {
            Level::Warn
        } else {
            Level::Info
        };
        let (fields, dropped) =
            s.fields_within(|f| limits::fits_guaranteed(SPAN_TARGET, &s.name, f));
        self.trimmed_attrs += dropped as u64;
        self.export(Export {
            level,
            target: SPAN_TARGET,
            message: s.name.clone(),
            fields,
        });
    }

    /// Replays a WAL sample (after a restart); not persisted again.
    pub fn replay_sample(&mut self, series: u32, ts_ns: u64, value: i64) {
        self.resume_ns = self.resume_ns.max(ts_ns);
        let _ = self.rollup.ingest(series, ts_ns, value);
    }

    /// The latest time found in the replayed state. A platform whose clock
    /// restarts at zero on every boot adds this to it, so metricsd's time
    /// keeps moving forward across reboots (new samples may land in the
    /// last replayed window, which is still open: that is the same window).
    pub fn resume_ns(&self) -> u64 {
        self.resume_ns
    }

    /// Replays a registration with its original id.
    pub fn replay_register(&mut self, id: u32, reg: &Registration) -> bool {
        self.registry.restore(reg, id).is_ok()
    }

    /// Replays the persisted segments: retained again, and the rollup
    /// resumes after them (see `Rollup::resume`).
    pub fn replay_segments(&mut self, segs: &[Segment]) {
        for seg in segs {
            self.resume_ns = self.resume_ns.max(seg.end_ns());
            self.retention.insert(*seg);
        }
        self.rollup.resume(segs);
    }

    /// Periodic work at `now_ns`: closes rollup windows (their segments are
    /// retained and persisted), expires old segments, and exports a
    /// snapshot if one is due. Returns the segments closed now.
    pub fn tick(&mut self, now_ns: u64) -> Vec<Segment> {
        self.spans.expire(
            now_ns,
            self.cfg.spans.max_age_secs.saturating_mul(1_000_000_000),
        );
        let closed = self.rollup.advance(now_ns);
        for seg in &closed {
            self.retention.insert(*seg);
            self.persisted.push(Persisted::Segment(*seg));
        }
        self.retention.gc(now_ns);
        let interval = self
            .cfg
            .export
            .snapshot_interval_ms
            .saturating_mul(1_000_000);
        let due = self
            .last_snapshot_ns
            .is_none_or(|t| now_ns.saturating_sub(t) >= interval);
        if due {
            self.snapshot(now_ns);
        }
        closed
    }

    /// Exports one record per series now (cadence is the caller's: `tick`
    /// calls it every `export.snapshot_interval_ms`).
    pub fn snapshot(&mut self, now_ns: u64) {
        self.last_snapshot_ns = Some(now_ns);
        let max = self.cfg.export.max_records_per_snapshot as usize;
        let records: Vec<Export> = self
            .registry
            .iter()
            .take(max)
            .map(|(id, s)| {
                let mut f = FieldsBuilder::new();
                f.insert_value("series", FieldValue::U64(u64::from(id)));
                f.insert_value("owner", FieldValue::U64(u64::from(s.owner.get())));
                for (k, v) in s.labels.iter() {
                    f.insert_display(&label_field_key(k), &v);
                }
                let kind = match &s.value {
                    Value::Counter(v) => {
                        f.insert_value("value", FieldValue::U64(*v));
                        "counter"
                    }
                    Value::Gauge(v) => {
                        f.insert_value("value", FieldValue::I64(*v));
                        "gauge"
                    }
                    Value::Histogram { counts, sum, count } => {
                        let bounds = self
                            .registry
                            .family(&s.name)
                            .and_then(|fam| fam.buckets.as_ref())
                            .map_or(&[][..], |b| b.bounds());
                        let mut cum = 0u64;
                        for (i, c) in counts.iter().enumerate() {
                            cum = cum.saturating_add(*c);
                            match bounds.get(i) {
                                Some(b) => {
                                    f.insert_value(&format!("bucket.le_{b}"), FieldValue::U64(cum))
                                }
                                None => f.insert_value("bucket.le_inf", FieldValue::U64(cum)),
                            };
                        }
                        f.insert_value("sum", FieldValue::U64(*sum));
                        f.insert_value("count", FieldValue::U64(*count));
                        "histogram"
                    }
                };
                f.insert_display("kind", &kind);
                Export {
                    level: Level::Info,
                    target: SNAPSHOT_TARGET,
                    message: String::from(s.name.as_str()),
                    fields: f.build().unwrap_or_default(),
                }
            })
            .collect();
        self.snapshot_skipped += self.registry.len().saturating_sub(max) as u64;
        for r in records {
            self.stats.snapshots_exported += 1;
            self.export(r);
        }
    }

    fn segments(&self, series: u32, tier: Tier) -> Vec<WireSegment> {
        self.retention
            .query(series, tier)
            .map(|s| WireSegment {
                start_ns: s.start_ns,
                count: s.agg.count,
                sum: s.agg.sum,
                min: s.agg.min,
                max: s.agg.max,
            })
            .collect()
    }

    /// metricsd's own families, in exposition order: `(name, help, kind,
    /// value)` of the single-series ones.
    fn own_simple(&self) -> [(&'static str, &'static str, expo::Kind, i64); 8] {
        let st = self.stats();
        let c = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        [
            (
                "metricsd_series",
                "Series registered.",
                expo::Kind::Gauge,
                c(st.series),
            ),
            (
                "metricsd_spans_live",
                "Spans started and not ended.",
                expo::Kind::Gauge,
                c(st.live_spans),
            ),
            (
                "metricsd_updates_total",
                "Updates applied.",
                expo::Kind::Counter,
                c(st.updates),
            ),
            (
                "metricsd_spans_ended_total",
                "Spans ended and exported.",
                expo::Kind::Counter,
                c(st.spans_ended),
            ),
            (
                "metricsd_snapshot_records_total",
                "Snapshot records exported.",
                expo::Kind::Counter,
                c(st.snapshots_exported),
            ),
            (
                "metricsd_exports_dropped_total",
                "Export records dropped (outbox full).",
                expo::Kind::Counter,
                c(self.exports_dropped),
            ),
            (
                "metricsd_redacted_total",
                "Secret-looking keys refused or redacted.",
                expo::Kind::Counter,
                c(self.redacted),
            ),
            (
                "metricsd_spans_expired_total",
                "Spans dropped after spans.max_age_secs without an end.",
                expo::Kind::Counter,
                c(self.spans.expired()),
            ),
        ]
    }

    /// Writes metricsd's own family `i` (single-series ones, then
    /// `metricsd_rejects_total{status}`, then
    /// `metricsd_register_conflicts_total{reason}`); false past the last.
    fn write_own(&self, i: usize, out: &mut String) -> bool {
        let simple = self.own_simple();
        if let Some((name, help, kind, v)) = simple.get(i) {
            let value = match kind {
                expo::Kind::Counter => expo::Value::Counter(u64::try_from(*v).unwrap_or(0)),
                _ => expo::Value::Gauge(*v),
            };
            let series = [expo::Series { labels: &[], value }];
            let _ = expo::write_family(
                out,
                &expo::Family {
                    name,
                    help,
                    kind: *kind,
                    series: &series,
                },
            );
            return true;
        }
        let pairs: Vec<(&str, u64)> = match i - simple.len() {
            0 => {
                let st = self.stats();
                Status::ALL
                    .iter()
                    .filter(|s| **s != Status::Ok)
                    .map(|s| (s.as_str(), st.rejects.get(*s)))
                    .collect()
            }
            1 => self
                .registry
                .refusals()
                .map(|(r, n)| (r.as_str(), n))
                .collect(),
            2 => alloc::vec![
                ("record", self.unfit_records),
                ("span_attr", self.trimmed_attrs),
            ],
            _ => return false,
        };
        let (name, help, key) = match i - simple.len() {
            0 => (
                "metricsd_rejects_total",
                "Requests and entries refused, by status.",
                "status",
            ),
            1 => (
                "metricsd_register_conflicts_total",
                "Registrations refused for disagreeing with a registered name, by reason.",
                "reason",
            ),
            _ => (
                "metricsd_export_trimmed_total",
                "Export to logd cut to logd's guaranteed record limits: span attributes dropped (span_attr), records not sent (record).",
                "kind",
            ),
        };
        let labels: Vec<[(&str, &str); 1]> = pairs.iter().map(|(v, _)| [(key, *v)]).collect();
        let series: Vec<expo::Series<'_>> = labels
            .iter()
            .zip(&pairs)
            .map(|(l, (_, n))| expo::Series {
                labels: l,
                value: expo::Value::Counter(*n),
            })
            .collect();
        let _ = expo::write_family(
            out,
            &expo::Family {
                name,
                help,
                kind: expo::Kind::Counter,
                series: &series,
            },
        );
        true
    }

    /// Writes `metricsd_series_overflow_total{metric, owner}` (at most
    /// [`crate::registry::MAX_OVERFLOW_SERIES`] short lines: one unit).
    fn write_overflow(&self, out: &mut String) {
        let mut rows: Vec<(&str, u32, u64)> = self
            .registry
            .overflow()
            .map(|((owner, name), n)| (name.as_str(), owner.get(), *n))
            .collect();
        rows.sort_unstable();
        let owners: Vec<String> = rows.iter().map(|(_, o, _)| format!("{o}")).collect();
        let labels: Vec<[(&str, &str); 2]> = rows
            .iter()
            .zip(&owners)
            .map(|((m, _, _), o)| [("metric", *m), (OWNER_LABEL, o.as_str())])
            .collect();
        let series: Vec<expo::Series<'_>> = labels
            .iter()
            .zip(&rows)
            .map(|(l, (_, _, n))| expo::Series {
                labels: l,
                value: expo::Value::Counter(*n),
            })
            .collect();
        let _ = expo::write_family(
            out,
            &expo::Family {
                name: "metricsd_series_overflow_total",
                help: "Series registrations refused by a cardinality cap, per metric and owner.",
                kind: expo::Kind::Counter,
                series: &series,
            },
        );
    }

    /// Writes one client series (its family's `# HELP`/`# TYPE` first when
    /// it is the family's first series), labelled with its owner.
    fn write_client(w: &Walked<'_>, out: &mut String) {
        let s = w.series;
        let f = w.family;
        let kind = match f.kind {
            MetricKind::Counter => expo::Kind::Counter,
            MetricKind::Gauge => expo::Kind::Gauge,
            MetricKind::Histogram => expo::Kind::Histogram,
        };
        let name = w.name.as_str();
        if w.first {
            let help = if f.help.is_empty() {
                name
            } else {
                f.help.as_str()
            };
            if expo::write_header(out, name, help, kind).is_err() {
                return;
            }
        }
        let mut digits = [0u8; 10];
        let owner = fmt_u32(&mut digits, s.owner.get());
        let mut all: [(&str, &str); 1 + nexus_metrics::types::MAX_LABELS] =
            [("", ""); 1 + nexus_metrics::types::MAX_LABELS];
        let mut n = 0;
        for (slot, kv) in all
            .iter_mut()
            .zip(core::iter::once((OWNER_LABEL, owner)).chain(s.labels.iter()))
        {
            *slot = kv;
            n += 1;
        }
        let value = match &s.value {
            Value::Counter(v) => expo::Value::Counter(*v),
            Value::Gauge(v) => expo::Value::Gauge(*v),
            Value::Histogram { counts, sum, count } => expo::Value::Histogram {
                bounds: f.buckets.as_ref().map_or(&[][..], |b| b.bounds()),
                counts,
                sum: *sum,
                count: *count,
            },
        };
        let series = expo::Series {
            labels: all.get(..n).unwrap_or(&[]),
            value,
        };
        // The registry validated name, labels (grammar, `le`, duplicates)
        // and value at registration; the header was checked above.
        expo::write_registered(out, name, &series);
    }

    /// Writes units from `pos` while the text stays within `budget` (at
    /// least one unit); returns where to continue (`None`: done).
    fn write_page(&self, mut pos: Pos, budget: usize, out: &mut String) -> Option<Pos> {
        loop {
            let mark = out.len();
            let next = match pos {
                Pos::Own(i) => {
                    if self.write_own(i as usize, out) {
                        Some(Pos::Own(i + 1))
                    } else {
                        Some(Pos::Series(None))
                    }
                }
                Pos::Series(from) => {
                    for w in self.registry.walk(from) {
                        let at = out.len();
                        Self::write_client(&w, out);
                        if out.len() > budget && at > 0 {
                            out.truncate(at);
                            return Some(Pos::Series(Some(w.series.id)));
                        }
                    }
                    Some(Pos::Overflow)
                }
                Pos::Overflow => {
                    self.write_overflow(out);
                    None
                }
            };
            if out.len() > budget && mark > 0 {
                out.truncate(mark);
                return Some(pos);
            }
            pos = next?;
        }
    }

    /// One page of the exposition: from `cursor` (0: the start; else a
    /// page's `next`), whole series (a family's `# HELP`/`# TYPE` with its
    /// first series) while the text stays within `max_bytes` (and
    /// [`MAX_SCRAPE_BYTES`]), at least one. Pages concatenate to
    /// [`Self::exposition`] (for an unchanged registry); a page costs the
    /// series it holds plus `O(log n)` to find its start.
    pub fn scrape(&mut self, cursor: u32, max_bytes: u32) -> ScrapePage {
        let budget = (max_bytes as usize).min(MAX_SCRAPE_BYTES);
        let mut text = String::new();
        let next = self.write_page(Pos::decode(cursor), budget, &mut text);
        ScrapePage {
            next: next.map_or(u32::MAX, Pos::encode),
            more: next.is_some(),
            text,
        }
    }

    /// The whole exposition (host tools).
    pub fn exposition(&self) -> String {
        // About 80 bytes a series: one allocation for most scrapes.
        let mut text = String::with_capacity(self.registry.len().saturating_mul(80));
        let _ = self.write_page(Pos::Own(0), usize::MAX, &mut text);
        text
    }
}

/// Where a scrape page starts; the `u32` cursor on the wire. The top two
/// bits are the section: `00` metricsd's own family `i` (cursor 0 is the
/// start), `01` the client series with id `low 30 bits` (0: the first),
/// `10` the overflow family. An unknown series id restarts the client
/// series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pos {
    Own(u32),
    Series(Option<u32>),
    Overflow,
}

const SECTION_MASK: u32 = 0xC000_0000;
const SECTION_SERIES: u32 = 0x4000_0000;
const SECTION_OVERFLOW: u32 = 0x8000_0000;

impl Pos {
    fn decode(cursor: u32) -> Self {
        match cursor & SECTION_MASK {
            0 => Pos::Own(cursor),
            SECTION_SERIES => match cursor & !SECTION_MASK {
                0 => Pos::Series(None),
                id => Pos::Series(Some(id)),
            },
            _ => Pos::Overflow,
        }
    }

    fn encode(self) -> u32 {
        match self {
            Pos::Own(i) => i & !SECTION_MASK,
            Pos::Series(id) => SECTION_SERIES | (id.unwrap_or(0) & !SECTION_MASK),
            Pos::Overflow => SECTION_OVERFLOW,
        }
    }
}

/// `v` in decimal, in `buf`.
fn fmt_u32(buf: &mut [u8; 10], mut v: u32) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        if let Some(b) = buf.get_mut(i) {
            *b = b'0' + (v % 10) as u8;
        }
        v /= 10;
        if v == 0 || i == 0 {
            break;
        }
    }
    core::str::from_utf8(buf.get(i..).unwrap_or(b"")).unwrap_or("")
}

/// The logd field key of label `k` in a snapshot record: `label.` and the
/// key, each upper-case letter written `-` and its lower case (logd keys
/// are `[a-z0-9_.-]`; `-` never occurs in a label name, so two label keys
/// never share a field key): `Route_ID` → `label.-route_-i-d`.
fn label_field_key(k: &str) -> String {
    let mut out = String::with_capacity(6 + k.len() * 2);
    out.push_str("label.");
    for c in k.chars() {
        if c.is_ascii_uppercase() {
            out.push('-');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        for p in [
            Pos::Own(0),
            Pos::Own(9),
            Pos::Series(None),
            Pos::Series(Some(1)),
            Pos::Series(Some(crate::registry::MAX_SERIES_ID)),
            Pos::Overflow,
        ] {
            assert_eq!(Pos::decode(p.encode()), p);
        }
        assert_eq!(Pos::decode(0), Pos::Own(0));
    }

    #[test]
    fn decimal_and_label_keys() {
        let mut b = [0u8; 10];
        assert_eq!(fmt_u32(&mut b, 0), "0");
        assert_eq!(fmt_u32(&mut b, 42), "42");
        assert_eq!(fmt_u32(&mut b, u32::MAX), "4294967295");
        assert_eq!(label_field_key("route"), "label.route");
        assert_eq!(label_field_key("Route_ID"), "label.-route_-i-d");
    }
}
