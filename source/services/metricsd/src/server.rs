//! metricsd's pure logic: decode → decide → encode, plus the periodic
//! work ([`Metricsd::tick`]): closing rollup windows, retention GC, and
//! snapshot export. No I/O and no clock reads: the I/O loop passes the time
//! and the transport-stamped sender, sends replies, forwards
//! [`Metricsd::drain_exports`] to logd and [`Metricsd::drain_persisted`] to
//! the state store.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use nexus_bounds::{BucketConfig, LimiterConfig, RateLimiter};
use nexus_ipc::ServiceId;
use nexus_log::{Fields, FieldsBuilder, Level};
use nexus_metrics::proto::{
    self, BatchResult, Entry, MetricsStats, Register, Reply, Request, RequestError, ScrapePage,
    Status, WireSegment,
};
use nexus_metrics::{Buckets, Labels, MetricKind, MetricName, TypeError};
use nexus_wire::Header;

use crate::config::Config;
use crate::expo;
use crate::registry::{Registered, Registration, Registry, Value};
use crate::retention::{Retention, RetentionConfig};
use crate::rollup::{Rollup, Segment, Tier};
use crate::spans::{EndedSpan, SpanTable};

/// The label every exposed series carries: the owner's transport id. It is
/// reserved, so a client cannot set it.
pub const OWNER_LABEL: &str = "owner";

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
    snapshot_skipped: u64,
    redacted: u64,
    resume_ns: u64,
    scrape_skipped: u64,
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
            snapshot_skipped: 0,
            redacted: 0,
            resume_ns: 0,
            scrape_skipped: 0,
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

    fn export(&mut self, e: Export) {
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
        let reg = Registration {
            owner: sender,
            kind,
            name,
            labels,
            buckets,
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
        self.export(Export {
            level,
            target: "trace.span",
            message: s.name.clone(),
            fields: s.fields(),
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
                f.insert_display("series", &id);
                f.insert_display("owner", &s.owner.get());
                for (k, v) in s.labels.iter() {
                    f.insert_display(&format!("label.{k}"), &v);
                }
                let kind = match &s.value {
                    Value::Counter(v) => {
                        f.insert_display("value", v);
                        "counter"
                    }
                    Value::Gauge(v) => {
                        f.insert_display("value", v);
                        "gauge"
                    }
                    Value::Histogram { counts, sum, count } => {
                        let bounds = self
                            .registry
                            .family(s.owner, &s.name)
                            .and_then(|fam| fam.buckets.as_ref())
                            .map_or(&[][..], |b| b.bounds());
                        let mut cum = 0u64;
                        for (i, c) in counts.iter().enumerate() {
                            cum = cum.saturating_add(*c);
                            match bounds.get(i) {
                                Some(b) => f.insert_display(&format!("bucket.le_{b}"), &cum),
                                None => f.insert_display("bucket.le_inf", &cum),
                            };
                        }
                        f.insert_display("sum", sum);
                        f.insert_display("count", count);
                        "histogram"
                    }
                };
                f.insert_display("kind", &kind);
                Export {
                    level: Level::Info,
                    target: "metrics.snapshot",
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

    /// Families in exposition order: metricsd's own, then every metric
    /// name, each with the series of every owner (labelled `owner`).
    fn exposition_families(&self) -> Vec<String> {
        let mut out = Vec::new();
        // metricsd's own instrumentation.
        let st = self.stats();
        let own: [(&str, &str, expo::Kind, i64); 9] = [
            (
                "metricsd_series",
                "Series registered.",
                expo::Kind::Gauge,
                st.series as i64,
            ),
            (
                "metricsd_spans_live",
                "Spans started and not ended.",
                expo::Kind::Gauge,
                st.live_spans as i64,
            ),
            (
                "metricsd_updates_total",
                "Updates applied.",
                expo::Kind::Counter,
                st.updates as i64,
            ),
            (
                "metricsd_spans_ended_total",
                "Spans ended and exported.",
                expo::Kind::Counter,
                st.spans_ended as i64,
            ),
            (
                "metricsd_snapshot_records_total",
                "Snapshot records exported.",
                expo::Kind::Counter,
                st.snapshots_exported as i64,
            ),
            (
                "metricsd_exports_dropped_total",
                "Export records dropped (outbox full).",
                expo::Kind::Counter,
                self.exports_dropped as i64,
            ),
            (
                "metricsd_redacted_total",
                "Secret-looking keys refused or redacted.",
                expo::Kind::Counter,
                self.redacted as i64,
            ),
            (
                "metricsd_spans_expired_total",
                "Spans dropped after spans.max_age_secs without an end.",
                expo::Kind::Counter,
                self.spans.expired() as i64,
            ),
            (
                "metricsd_scrape_families_skipped_total",
                "Families too large for one scrape page, skipped.",
                expo::Kind::Counter,
                self.scrape_skipped as i64,
            ),
        ];
        for (name, help, kind, v) in own {
            let value = match kind {
                expo::Kind::Counter => expo::Value::Counter(v as u64),
                _ => expo::Value::Gauge(v),
            };
            let series = [expo::Series { labels: &[], value }];
            let mut text = String::new();
            if expo::write_family(
                &mut text,
                &expo::Family {
                    name,
                    help,
                    kind,
                    series: &series,
                },
            )
            .is_ok()
            {
                out.push(text);
            }
        }
        let refusals = || Status::ALL.iter().copied().filter(|s| *s != Status::Ok);
        let labels: Vec<[(&str, &str); 1]> = refusals().map(|s| [("status", s.as_str())]).collect();
        let series: Vec<expo::Series<'_>> = labels
            .iter()
            .zip(refusals().map(|s| st.rejects.get(s)))
            .map(|(l, v)| expo::Series {
                labels: l,
                value: expo::Value::Counter(v),
            })
            .collect();
        let mut text = String::new();
        if expo::write_family(
            &mut text,
            &expo::Family {
                name: "metricsd_rejects_total",
                help: "Requests and entries refused, by status.",
                kind: expo::Kind::Counter,
                series: &series,
            },
        )
        .is_ok()
        {
            out.push(text);
        }

        // Client metrics, grouped by name across owners.
        let mut by_name: BTreeMap<&str, Vec<(u32, &crate::registry::Series)>> = BTreeMap::new();
        for (id, s) in self.registry.iter() {
            by_name.entry(s.name.as_str()).or_default().push((id, s));
        }
        let overflow_labels: Vec<(String, String, u64)> = self
            .registry
            .overflow()
            .map(|((owner, name), n)| (String::from(name.as_str()), format!("{}", owner.get()), *n))
            .collect();
        for (name, members) in by_name {
            let Some((_, first)) = members.first() else {
                continue;
            };
            let Some(fam) = self.registry.family(first.owner, &first.name) else {
                continue;
            };
            let kind = match fam.kind {
                MetricKind::Counter => expo::Kind::Counter,
                MetricKind::Gauge => expo::Kind::Gauge,
                MetricKind::Histogram => expo::Kind::Histogram,
            };
            let owners: Vec<String> = members
                .iter()
                .map(|(_, s)| format!("{}", s.owner.get()))
                .collect();
            let label_sets: Vec<Vec<(&str, &str)>> = members
                .iter()
                .zip(&owners)
                .map(|((_, s), o)| {
                    let mut l: Vec<(&str, &str)> = alloc::vec![(OWNER_LABEL, o.as_str())];
                    l.extend(s.labels.iter());
                    l
                })
                .collect();
            let mut series = Vec::new();
            for (((_, s), labels), _) in members.iter().zip(&label_sets).zip(&owners) {
                // Same name, other kind or layout (another owner): not in
                // this family, so the exposition stays valid.
                let Some(f) = self.registry.family(s.owner, &s.name) else {
                    continue;
                };
                if f.kind != fam.kind || f.buckets != fam.buckets {
                    continue;
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
                series.push(expo::Series { labels, value });
            }
            let mut text = String::new();
            if expo::write_family(
                &mut text,
                &expo::Family {
                    name,
                    help: name,
                    kind,
                    series: &series,
                },
            )
            .is_ok()
            {
                out.push(text);
            }
        }
        let ov_labels: Vec<[(&str, &str); 2]> = overflow_labels
            .iter()
            .map(|(m, o, _)| [("metric", m.as_str()), (OWNER_LABEL, o.as_str())])
            .collect();
        let ov_series: Vec<expo::Series<'_>> = ov_labels
            .iter()
            .zip(&overflow_labels)
            .map(|(l, (_, _, n))| expo::Series {
                labels: l,
                value: expo::Value::Counter(*n),
            })
            .collect();
        let mut text = String::new();
        if expo::write_family(
            &mut text,
            &expo::Family {
                name: "metricsd_series_overflow_total",
                help: "Series registrations refused by a cardinality cap, per metric and owner.",
                kind: expo::Kind::Counter,
                series: &ov_series,
            },
        )
        .is_ok()
        {
            out.push(text);
        }
        out
    }

    /// One page of the exposition: whole families from `cursor`, at most
    /// `max_bytes` (and [`MAX_SCRAPE_BYTES`]) of text, at least one family.
    pub fn scrape(&mut self, cursor: u32, max_bytes: u32) -> ScrapePage {
        let fams = self.exposition_families();
        let budget = (max_bytes as usize).min(MAX_SCRAPE_BYTES);
        let mut text = String::new();
        let mut next = cursor;
        for f in fams.iter().skip(cursor as usize) {
            if !text.is_empty() && text.len() + f.len() > budget {
                break;
            }
            if f.len() > MAX_SCRAPE_BYTES {
                // A family larger than a frame is skipped (never cut into
                // invalid text) and counted.
                self.scrape_skipped += 1;
                next += 1;
                continue;
            }
            text.push_str(f);
            next += 1;
        }
        ScrapePage {
            next,
            more: (next as usize) < fams.len(),
            text,
        }
    }

    /// The whole exposition (host tools).
    pub fn exposition(&self) -> String {
        self.exposition_families().concat()
    }
}
