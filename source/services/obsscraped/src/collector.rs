//! The collector: a service that opens `obs.logs` and `obs.metrics` on the
//! peers in its config (its ACL: no other device is ever opened), through
//! busd, and keeps what it receives.
//!
//! - Logs: an OPEN with the last id accounted for (so a reconnect resumes
//!   exactly), then CHUNKs and GAPs checked by `nexus_remote::logs::Resume`
//!   (an out-of-order or duplicate id disconnects the peer with a reason).
//!   Records are sampled by a pure rule of (peer, id) (`keep`), warn and
//!   error exempt; what is kept is stored as JSON lines and held in a
//!   bounded recent window for queries.
//! - Per-peer token buckets (records/s, bytes/s): while a bucket is empty
//!   the collector does not read, so busd's credit holds the peer back.
//! - Metrics: DEFINE/INTERVAL frames rebuild the peer's values exactly
//!   (`Reconstructor`, with a per-peer series cap); sample lines are stored
//!   at full resolution and downsampled.
//! - Storage rotates per kind on size and time and drops by retention
//!   ([`crate::rotate`]).
//! - Queries over IPC ([`crate::query`]): recent logs, latest metrics, STATS.

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use nexus_bounds::{BucketConfig, TokenBucket};
use nexus_bus::proto::{BusEvent, DeviceId, Handle};
use nexus_bus::{AgentEvent, BusAgent, Outbox};
use nexus_ipc::ServiceId;
use nexus_remote::frame::{frame, FrameReader};
use nexus_remote::logs::{self, LogFrame, Resume};
use nexus_remote::metrics::{Reconstructor, ReconstructorConfig, Value};
use nexus_svc::{Ctx, Event, Service};
use nexus_wire::{Header, Rejects, Status};

use crate::config::{parse_device, Config};
use crate::query::{self, CollectorStats, LogsQuery, Reply, Request, SeriesValue};
use crate::rotate::{Kind, Rotator, Storage};

/// The name obsscraped registers and prints under.
pub const NAME: &str = "obsscraped";
/// The link to busd.
pub const BUSD: &str = "busd";
/// Bytes asked per RECV.
const RECV_MAX: u16 = 16 * 1024;
/// Downsampled metric lines: one per series per minute.
const DOWNSAMPLE_NS: u64 = 60_000_000_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stream {
    Logs,
    Metrics,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Logs => nexus_remote::LOGS_STREAM,
            Stream::Metrics => nexus_remote::METRICS_STREAM,
        }
    }
    fn word(self) -> &'static str {
        match self {
            Stream::Logs => "logs",
            Stream::Metrics => "metrics",
        }
    }
}

struct Open {
    handle: Handle,
    reader: FrameReader,
    out: Outbox,
    recv_in_flight: bool,
}

enum Conn {
    Idle { retry_at: u64 },
    Opening,
    Open(Open),
}

struct Peer {
    id: DeviceId,
    raw: u64,
    wants: [bool; 2],
    conns: [Conn; 2],
    resume: Resume,
    recon: Reconstructor,
    events: TokenBucket,
    bytes: TokenBucket,
    /// Records and bytes taken beyond the buckets: no RECV until repaid.
    events_debt: u64,
    bytes_debt: u64,
    last_sample_ns: Option<u64>,
    last_downsample_ns: Option<u64>,
}

/// One record kept in memory for queries.
#[derive(Debug, Clone)]
struct Recent {
    seq: u64,
    peer: DeviceId,
    ts_ns: u64,
    level: u8,
    sender: u32,
    line: String,
}

/// The collector service.
pub struct Collector<S> {
    cfg: Config,
    agent: Option<BusAgent>,
    peers: Vec<Peer>,
    storage: S,
    rotators: [Rotator; 4],
    recent: VecDeque<Recent>,
    recent_seq: u64,
    stats: CollectorStats,
    rejects: Rejects,
    /// Lines stored since the last flush.
    unflushed: bool,
}

impl<S> core::fmt::Debug for Collector<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Collector")
            .field("peers", &self.peers.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn sender<'a, 'b>(cx: &'a mut Ctx<'b>) -> impl FnMut(ServiceId, &[u8]) -> bool + use<'a, 'b> {
    move |to, frame| cx.send(to, frame).is_ok()
}

fn kind_index(k: Kind) -> usize {
    match k {
        Kind::Logs => 0,
        Kind::Metrics => 1,
        Kind::MetricsDownsampled => 2,
        Kind::Traces => 3,
    }
}

/// Takes `n` from `bucket`; what it does not hold becomes `debt`.
fn charge(bucket: &mut TokenBucket, debt: &mut u64, n: u64) {
    let have = bucket.available().min(n);
    bucket.take(have);
    *debt = debt.saturating_add(n - have);
}

/// Pays `debt` from `bucket` as it refills.
fn repay(bucket: &mut TokenBucket, debt: &mut u64) {
    let pay = bucket.available().min(*debt);
    bucket.take(pay);
    *debt -= pay;
}

/// The `"sender":N` of a JSON line (0 if absent).
fn sender_of(line: &str) -> u32 {
    let Some(i) = line.find("\"sender\":") else {
        return 0;
    };
    let rest = line.get(i + 9..).unwrap_or_default();
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest.get(..end).and_then(|d| d.parse().ok()).unwrap_or(0)
}

impl<S: Storage> Collector<S> {
    /// A collector with `cfg`, writing to `storage`.
    pub fn new(cfg: Config, storage: S, now_ns: u64) -> Self {
        let bucket = |rate: u32, burst: u32| BucketConfig {
            rate_per_sec: rate,
            burst,
        };
        let events = bucket(cfg.logs.events_per_sec, cfg.logs.events_burst);
        let bytes = bucket(cfg.logs.bytes_per_sec, cfg.logs.bytes_burst);
        let peers = cfg
            .peers
            .iter()
            .filter_map(|p| {
                let id = parse_device(&p.device)?;
                Some(Peer {
                    id: DeviceId(id),
                    raw: u64::from_be_bytes(id),
                    wants: [p.logs, p.metrics],
                    conns: [Conn::Idle { retry_at: 0 }, Conn::Idle { retry_at: 0 }],
                    resume: Resume::new(cfg.logs.records_per_chunk),
                    recon: Reconstructor::new(ReconstructorConfig {
                        max_series: cfg.metrics.max_series_per_peer as usize,
                        max_refused: cfg.metrics.max_refused_per_peer as usize,
                    }),
                    events: TokenBucket::full(events, now_ns),
                    bytes: TokenBucket::full(bytes, now_ns),
                    events_debt: 0,
                    bytes_debt: 0,
                    last_sample_ns: None,
                    last_downsample_ns: None,
                })
            })
            .collect();
        let s = cfg.storage;
        Self {
            rotators: [
                Rotator::new(s.logs),
                Rotator::new(s.metrics),
                Rotator::new(s.metrics_downsampled),
                Rotator::new(s.traces),
            ],
            cfg,
            agent: None,
            peers,
            storage,
            recent: VecDeque::new(),
            recent_seq: 0,
            stats: CollectorStats::default(),
            rejects: Rejects::default(),
            unflushed: false,
        }
    }

    /// Resumes the rotators with the segments the storage already holds
    /// (after a reboot), so numbering and budgets continue.
    pub fn resume(&mut self, found: &[(Kind, crate::rotate::Segment)]) {
        let b = self.cfg.storage;
        for (kind, budget) in [
            (Kind::Logs, b.logs),
            (Kind::Metrics, b.metrics),
            (Kind::MetricsDownsampled, b.metrics_downsampled),
            (Kind::Traces, b.traces),
        ] {
            if let Some(r) = self.rotators.get_mut(kind_index(kind)) {
                *r = Rotator::resume(
                    budget,
                    found.iter().filter(|(k, _)| *k == kind).map(|(_, s)| *s),
                );
            }
        }
    }

    /// Leaves `device` out of the peers (this node itself: a node does not
    /// collect from itself through the bus).
    pub fn exclude(&mut self, device: DeviceId) {
        self.peers.retain(|p| p.id != device);
    }

    /// Counters.
    pub fn stats(&self) -> CollectorStats {
        let mut s = self.stats;
        s.segments_dropped = self.rotators.iter().map(|r| r.dropped_segments).sum();
        s.store_failures += self.rotators.iter().map(|r| r.oversized).sum::<u64>();
        s
    }

    /// The storage (host tools read it back).
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The rotator of `kind` (its segments).
    pub fn rotator(&self, kind: Kind) -> Option<&Rotator> {
        self.rotators.get(kind_index(kind))
    }

    /// The latest values of one peer's series: (name, labels, value).
    pub fn series(&self, peer: DeviceId) -> Vec<(String, String, Value)> {
        self.peers
            .iter()
            .filter(|p| p.id == peer)
            .flat_map(|p| p.recon.iter())
            .map(|(_, d, v)| {
                let labels: Vec<String> = d
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{v}\""))
                    .collect();
                (String::from(d.name.as_str()), labels.join(","), v.clone())
            })
            .collect()
    }

    fn store(&mut self, kind: Kind, now_ns: u64, line: &[u8]) {
        let Some(rot) = self.rotators.get_mut(kind_index(kind)) else {
            return;
        };
        let Some(plan) = rot.write(now_ns, line.len() as u64 + 1) else {
            return;
        };
        if let Some(index) = plan.open {
            if !self.storage.open(kind, index) {
                self.stats.store_failures += 1;
            }
        }
        for index in plan.delete {
            let _ = self.storage.delete(kind, index);
        }
        if self.storage.append(kind, line) {
            self.stats.stored_lines += 1;
            self.unflushed = true;
        } else {
            self.stats.store_failures += 1;
        }
    }

    fn conn_of(&mut self, h: Handle) -> Option<(usize, Stream)> {
        for (i, p) in self.peers.iter().enumerate() {
            for (k, s) in [(0, Stream::Logs), (1, Stream::Metrics)] {
                if let Some(Conn::Open(o)) = p.conns.get(k) {
                    if o.handle == h {
                        return Some((i, s));
                    }
                }
            }
        }
        None
    }

    fn set_idle(&mut self, cx: &mut Ctx<'_>, i: usize, s: Stream, why: Option<&str>) {
        let retry_at = cx
            .now_ns()
            .saturating_add(self.cfg.retry_ms.saturating_mul(1_000_000));
        let Some(p) = self.peers.get_mut(i) else {
            return;
        };
        let Some(slot) = p.conns.get_mut(s as usize) else {
            return;
        };
        let old = core::mem::replace(slot, Conn::Idle { retry_at });
        if let (Some(why), Conn::Open(o)) = (why, old) {
            self.stats.disconnects += 1;
            cx.event(Event::Console(format!(
                "obsscraped: {} {} disconnected: {why}",
                s.word(),
                p.id
            )));
            if let Some(a) = self.agent.as_mut() {
                a.reset(&mut sender(cx), o.handle);
            }
        }
    }

    fn on_logs(&mut self, cx: &mut Ctx<'_>, i: usize, data: &[u8]) -> Result<(), &'static str> {
        let now = cx.now_ns();
        let ppm = self.cfg.logs.sample_ppm;
        let exempt = self.cfg.logs.keep_warn_error;
        let Some(p) = self.peers.get_mut(i) else {
            return Ok(());
        };
        charge(&mut p.bytes, &mut p.bytes_debt, data.len() as u64);
        let Some(Conn::Open(o)) = p.conns.get_mut(0) else {
            return Ok(());
        };
        o.reader.push(data).map_err(|e| e.reason())?;
        let mut kept: Vec<(u64, u8, u64, String)> = Vec::new();
        loop {
            let body = match o.reader.next_frame() {
                Ok(Some(b)) => b,
                Ok(None) => break,
                Err(e) => return Err(e.reason()),
            };
            let missing_before = p.resume.missing_evicted();
            match p.resume.on_frame(body) {
                Ok(LogFrame::Chunk(records)) => {
                    for r in records {
                        self.stats.records_received += 1;
                        charge(&mut p.events, &mut p.events_debt, 1);
                        if logs::keep(p.raw, r.id, r.level, ppm, exempt) {
                            kept.push((r.ts_ns, r.level.as_u8(), r.id, String::from(r.line)));
                        } else {
                            self.stats.records_sampled_out += 1;
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(e.reason()),
            }
            self.stats.records_missing += p.resume.missing_evicted() - missing_before;
        }
        let peer = p.id;
        let bound = self.cfg.logs.recent as usize;
        for (ts_ns, level, _id, line) in kept {
            self.stats.records_kept += 1;
            self.store(Kind::Logs, now, line.as_bytes());
            if self.recent.len() >= bound {
                self.recent.pop_front();
                self.stats.recent_evicted += 1;
            }
            self.recent_seq += 1;
            self.recent.push_back(Recent {
                seq: self.recent_seq,
                peer,
                ts_ns,
                level,
                sender: sender_of(&line),
                line,
            });
        }
        Ok(())
    }

    fn on_metrics(&mut self, cx: &mut Ctx<'_>, i: usize, data: &[u8]) -> Result<(), &'static str> {
        let now = cx.now_ns();
        let every = self.cfg.metrics.sample_every_ms.saturating_mul(1_000_000);
        let Some(p) = self.peers.get_mut(i) else {
            return Ok(());
        };
        let Some(Conn::Open(o)) = p.conns.get_mut(1) else {
            return Ok(());
        };
        o.reader.push(data).map_err(|e| e.reason())?;
        loop {
            let body = match o.reader.next_frame() {
                Ok(Some(b)) => b,
                Ok(None) => break,
                Err(e) => return Err(e.reason()),
            };
            p.recon.apply(body).map_err(|e| e.reason())?;
            self.stats.metric_frames += 1;
        }
        self.stats.series_refused = p.recon.stats().refused_defines;
        let sample = p.recon.settled()
            && p.last_sample_ns
                .is_none_or(|t| now.saturating_sub(t) >= every);
        let down = p.recon.settled()
            && p.last_downsample_ns
                .is_none_or(|t| now.saturating_sub(t) >= DOWNSAMPLE_NS);
        if !(sample || down) {
            return Ok(());
        }
        if sample {
            p.last_sample_ns = Some(now);
        }
        if down {
            p.last_downsample_ns = Some(now);
        }
        let peer = p.id;
        let lines: Vec<String> = p
            .recon
            .iter()
            .map(|(id, d, v)| {
                let value = match v {
                    Value::Counter(c) => format!("{c}"),
                    Value::Gauge(g) => format!("{g}"),
                    Value::Histogram(h) => format!("{{\"sum\":{},\"count\":{}}}", h.sum, h.count),
                };
                format!(
                    "{{\"ts_ns\":{now},\"peer\":\"{peer}\",\"series\":{id},\"name\":\"{}\",\"value\":{value}}}",
                    d.name.as_str()
                )
            })
            .collect();
        for l in &lines {
            if sample {
                self.store(Kind::Metrics, now, l.as_bytes());
            }
            if down {
                self.store(Kind::MetricsDownsampled, now, l.as_bytes());
            }
        }
        Ok(())
    }

    fn on_agent(&mut self, cx: &mut Ctx<'_>, ev: AgentEvent) {
        match ev {
            AgentEvent::Opened { tag, handle } => {
                let i = (tag / 2) as usize;
                let s = if tag % 2 == 0 {
                    Stream::Logs
                } else {
                    Stream::Metrics
                };
                let Some(p) = self.peers.get_mut(i) else {
                    return;
                };
                let mut open = Open {
                    handle,
                    reader: FrameReader::new(),
                    out: Outbox::new(),
                    recv_in_flight: false,
                };
                match s {
                    Stream::Logs => {
                        let o = p.resume.open();
                        if let Ok(f) = logs::encode_open(&o).and_then(|b| frame(&b)) {
                            open.out.load(&f);
                        }
                    }
                    Stream::Metrics => p.recon.reconnect(),
                }
                if let Some(c) = p.conns.get_mut(s as usize) {
                    *c = Conn::Open(open);
                }
                self.stats.connects += 1;
                cx.event(Event::Console(format!(
                    "obsscraped: connect {} {} ok",
                    s.word(),
                    p.id
                )));
            }
            AgentEvent::OpenFailed { tag, .. } => {
                self.stats.open_refused += 1;
                let s = if tag % 2 == 0 {
                    Stream::Logs
                } else {
                    Stream::Metrics
                };
                self.set_idle(cx, (tag / 2) as usize, s, None);
            }
            AgentEvent::Data { handle, fin, data } => {
                let Some((i, s)) = self.conn_of(handle) else {
                    return;
                };
                if let Some(Some(Conn::Open(o))) =
                    self.peers.get_mut(i).map(|p| p.conns.get_mut(s as usize))
                {
                    o.recv_in_flight = false;
                }
                let r = match s {
                    Stream::Logs => self.on_logs(cx, i, &data),
                    Stream::Metrics => self.on_metrics(cx, i, &data),
                };
                match r {
                    Err(why) => self.set_idle(cx, i, s, Some(why)),
                    Ok(()) if fin => self.set_idle(cx, i, s, None),
                    Ok(()) => {}
                }
            }
            AgentEvent::Sent { handle, n } => {
                if let Some((i, s)) = self.conn_of(handle) {
                    if let Some(Some(Conn::Open(o))) =
                        self.peers.get_mut(i).map(|p| p.conns.get_mut(s as usize))
                    {
                        o.out.on_sent(n);
                    }
                }
            }
            AgentEvent::Bus(BusEvent::Writable(h)) => {
                if let Some((i, s)) = self.conn_of(h) {
                    if let Some(Some(Conn::Open(o))) =
                        self.peers.get_mut(i).map(|p| p.conns.get_mut(s as usize))
                    {
                        o.out.on_writable();
                    }
                }
            }
            AgentEvent::Bus(BusEvent::Reset { handle: h, .. })
            | AgentEvent::StreamFailed { handle: h, .. } => {
                if let Some((i, s)) = self.conn_of(h) {
                    self.set_idle(cx, i, s, None);
                }
            }
            _ => {}
        }
    }

    fn logs_page(&self, q: &LogsQuery) -> Reply {
        let max = usize::from(q.max.clamp(1, query::MAX_LOG_LINES));
        let any_peer = q.peer == [0; 8];
        let matches = |r: &&Recent| {
            r.seq >= q.token
                && r.ts_ns >= q.since_ns
                && (q.until_ns == 0 || r.ts_ns <= q.until_ns)
                && r.level >= q.min_level
                && (any_peer || r.peer.0 == q.peer)
                && (q.sender == 0 || r.sender == q.sender)
        };
        let all: Vec<&Recent> = self.recent.iter().filter(matches).collect();
        let from = if q.tail > 0 {
            all.len().saturating_sub(usize::from(q.tail))
        } else {
            0
        };
        let mut lines = Vec::new();
        let mut bytes = 0usize;
        let mut next_token = 0;
        for r in all.get(from..).unwrap_or_default() {
            if lines.len() >= max || bytes + r.line.len() + 2 > query::MAX_REPLY {
                next_token = r.seq;
                break;
            }
            bytes += r.line.len() + 2;
            lines.push(r.line.clone());
        }
        Reply::Logs { next_token, lines }
    }

    fn metrics_page(&self, peer: [u8; 8], prefix: &str) -> Reply {
        let any = peer == [0; 8];
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for p in self.peers.iter().filter(|p| any || p.id.0 == peer) {
            for (_, d, v) in p.recon.iter() {
                if !d.name.as_str().starts_with(prefix) {
                    continue;
                }
                let labels: Vec<String> = d
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{v}\""))
                    .collect();
                let labels = labels.join(",");
                let (value, sum, count) = match v {
                    Value::Counter(c) => (i64::try_from(*c).unwrap_or(i64::MAX), 0, 0),
                    Value::Gauge(g) => (*g, 0, 0),
                    Value::Histogram(h) => (0, h.sum, h.count),
                };
                bytes += d.name.as_str().len() + labels.len() + 40;
                if out.len() >= usize::from(query::MAX_SERIES) || bytes > query::MAX_REPLY {
                    return Reply::Metrics(out);
                }
                out.push(SeriesValue {
                    peer: p.id.0,
                    name: String::from(d.name.as_str()),
                    labels,
                    kind: d.kind.as_u8(),
                    value,
                    sum,
                    count,
                });
            }
        }
        Reply::Metrics(out)
    }

    fn query(&mut self, cx: &mut Ctx<'_>, from: ServiceId, frame: &[u8]) {
        let (h, reply): (Header, Reply) = match query::decode_request(frame) {
            Ok((h, Request::Logs(q))) => (h, self.logs_page(&q)),
            Ok((h, Request::Metrics { peer, prefix })) => {
                let r = self.metrics_page(peer, prefix);
                (h, r)
            }
            Ok((h, Request::Stats)) => (h, Reply::Stats(self.stats())),
            Err(Some(h)) => (h, Reply::Rejected(Status::Malformed)),
            Err(None) => {
                self.rejects.count(Status::Malformed);
                cx.event(Event::Rejected(Status::Malformed));
                return;
            }
        };
        let a = nexus_wire::answer(&mut self.rejects, &h, u8::MAX, &reply);
        if a.status != Status::Ok {
            cx.event(Event::Rejected(a.status));
        }
        if let Some(f) = a.frame {
            let _ = cx.send(from, &f);
        }
    }
}

impl<S: Storage> Service for Collector<S> {
    fn name(&self) -> &'static str {
        NAME
    }

    fn handle(&mut self, cx: &mut Ctx<'_>, from: ServiceId, frame: &[u8]) {
        if let Some(a) = self.agent.as_mut() {
            if let Some(ev) = a.on_frame(from, frame) {
                if let Some(ev) = ev {
                    self.on_agent(cx, ev);
                }
                return;
            }
        }
        self.query(cx, from, frame);
    }

    fn tick(&mut self, cx: &mut Ctx<'_>) {
        let now = cx.now_ns();
        if core::mem::take(&mut self.unflushed) && !self.storage.flush() {
            self.stats.store_failures += 1;
        }
        if self.agent.is_none() {
            self.agent = cx.link(BUSD).map(BusAgent::new);
        }
        let Some(agent) = self.agent.as_mut() else {
            return;
        };
        let events_cfg = BucketConfig {
            rate_per_sec: self.cfg.logs.events_per_sec,
            burst: self.cfg.logs.events_burst,
        };
        let bytes_cfg = BucketConfig {
            rate_per_sec: self.cfg.logs.bytes_per_sec,
            burst: self.cfg.logs.bytes_burst,
        };
        for (i, p) in self.peers.iter_mut().enumerate() {
            p.events.refill(events_cfg, now);
            p.bytes.refill(bytes_cfg, now);
            repay(&mut p.events, &mut p.events_debt);
            repay(&mut p.bytes, &mut p.bytes_debt);
            for s in [Stream::Logs, Stream::Metrics] {
                let k = s as usize;
                if !p.wants.get(k).copied().unwrap_or(false) {
                    continue;
                }
                let Some(conn) = p.conns.get_mut(k) else {
                    continue;
                };
                match conn {
                    Conn::Idle { retry_at } if now >= *retry_at => {
                        let tag = (i as u64) * 2 + k as u64;
                        if agent.open(&mut sender(cx), p.id, s.name(), tag) {
                            *conn = Conn::Opening;
                        }
                    }
                    Conn::Open(o) => {
                        o.out.pump(agent, &mut sender(cx), o.handle);
                        if !o.recv_in_flight {
                            // Logs: read only with tokens; an empty bucket
                            // leaves the bytes with busd, whose credit
                            // then holds the peer back.
                            let allowed = s == Stream::Metrics
                                || (p.events_debt == 0
                                    && p.bytes_debt == 0
                                    && p.events.has(1)
                                    && p.bytes.has(1));
                            if allowed {
                                o.recv_in_flight = agent.recv(&mut sender(cx), o.handle, RECV_MAX);
                            } else {
                                self.stats.throttled += 1;
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    fn discard_unsaved(&mut self) {}
}
