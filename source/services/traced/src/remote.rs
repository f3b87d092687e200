//! traced across nodes, through busd: a forwarding node's
//! [`TraceForwarder`] opens `obs.traces` on the collector node and sends
//! it every local finished span; the collector's [`TraceCollector`]
//! listens, measures each forwarder's clock offset with four-timestamp
//! probes over the same stream, and ingests the spans aligned to its own
//! clock. Frames: [`crate::link`]; the rules are in
//! `docs/observability/tracing.md` (Across nodes).
//!
//! Identity: a remote span's node is the bus session's peer device, from
//! busd's INCOMING event; its service is what the forwarding node's
//! transport stamped. Nothing in a span's payload names a node.
//!
//! A forwarder whose stream failed retries with a doubling backoff, and
//! at once when busd reports the collector's node up again (it WATCHes).
//! An idle stream is not polled: after a RECV answered with nothing, the
//! next waits for busd's Readable event.
//!
//! Bounds: at most [`MAX_FORWARDERS`] forwarders per collector (more are
//! reset, counted); one SEND in flight per stream; a forwarder's spans
//! wait for the first offset estimate in a queue of [`MAX_UNALIGNED`]
//! spans (oldest dropped, counted); a forwarder answers at most one probe
//! per frame it reads and skips a PONG when [`MAX_OUTBOX`] bytes already
//! wait (counted).

use alloc::collections::VecDeque;
use alloc::format;
use alloc::vec::Vec;

use nexus_bus::proto::{BusEvent, DeviceId, Handle};
use nexus_bus::{AgentEvent, BusAgent, Outbox};
use nexus_ipc::ServiceId;
use nexus_remote::frame::{frame as framed, FrameReader};
use nexus_svc::{Ctx, Event};
use nexus_trace::SpanRecord;

use crate::correlate::{Origin, TracedSpan};
use crate::link::{self, LinkFrame, SpansBody};
use crate::offset::{Exchange, OffsetEstimator};
use crate::server::Traced;

/// Forwarders a collector serves at once: as many as an OFFSETS reply
/// lists.
pub const MAX_FORWARDERS: usize = crate::proto::MAX_OFFSETS;
/// Spans of one forwarder held until its first clock estimate.
pub const MAX_UNALIGNED: usize = 256;
/// Bytes waiting to be sent on one stream before a PONG is skipped.
pub const MAX_OUTBOX: usize = 2 * link::MAX_LINK_BODY;
/// Exchanges the collector keeps per forwarder (the least round trip wins).
pub const OFFSET_WINDOW: usize = 8;
/// Probes sent quickly after a forwarder connects, before the slow pace.
pub const FAST_PROBES: u32 = 4;
/// Gap between the first probes.
pub const FAST_PROBE_NS: u64 = 20_000_000;
/// Gap between later probes.
pub const PROBE_INTERVAL_NS: u64 = 1_000_000_000;
/// A probe unanswered this long is replaced by a new one.
pub const PROBE_TIMEOUT_NS: u64 = 5_000_000_000;
/// First wait before a forwarder reopens a failed stream; doubles up to
/// [`MAX_BACKOFF_NS`].
pub const INITIAL_BACKOFF_NS: u64 = 100_000_000;
/// Longest wait between reopen attempts.
pub const MAX_BACKOFF_NS: u64 = 8_000_000_000;
/// Bytes asked per RECV.
const RECV_MAX: u16 = 4096;
/// Spans of recently completed traces a forwarder replays when it
/// connects (at most): what a collector holds until its first clock
/// estimate of the forwarder.
pub const MAX_REPLAY_SPANS: usize = MAX_UNALIGNED;

fn sender<'a, 'b>(cx: &'a mut Ctx<'b>) -> impl FnMut(ServiceId, &[u8]) -> bool + use<'a, 'b> {
    move |to, frame| cx.send(to, frame).is_ok()
}

/// The node id of a bus device: its eight id bytes, big-endian (what
/// `busd: peer up <id>` prints, as a number).
pub fn node_of(d: DeviceId) -> u64 {
    u64::from_be_bytes(d.0)
}

/// Counters of a forwarding node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForwardStats {
    /// Streams to the collector opened.
    pub opened: u64,
    /// OPENs refused or streams lost (each followed by a backoff).
    pub failures: u64,
    /// Spans written to the stream.
    pub spans_sent: u64,
    /// Probes answered.
    pub probes_answered: u64,
    /// Probes not answered because the outbox was full.
    pub probes_skipped: u64,
    /// Streams dropped for a bad frame from the collector.
    pub disconnected: u64,
    /// Spans of completed traces replayed on connecting.
    pub replayed: u64,
}

enum FwdState {
    /// No stream; try again at this time.
    Idle { retry_at_ns: u64 },
    /// OPEN sent with this tag.
    Opening { tag: u64 },
    /// Streaming.
    Open { handle: Handle },
}

/// A forwarding node's side of `obs.traces`.
pub struct TraceForwarder {
    agent: BusAgent,
    collector: DeviceId,
    state: FwdState,
    next_tag: u64,
    backoff_ns: u64,
    reader: FrameReader,
    out: Outbox,
    recv_in_flight: bool,
    /// Data may be waiting: RECV again (cleared by an empty answer, set
    /// by busd's Readable event, so an idle stream is not polled).
    readable: bool,
    /// Spans to replay on this stream before new ones.
    replay: Option<alloc::collections::VecDeque<(u32, SpanRecord)>>,
    /// busd tells us when peers come up (a WATCH was accepted).
    watching: bool,
    stats: ForwardStats,
}

impl core::fmt::Debug for TraceForwarder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TraceForwarder")
            .field("collector", &self.collector)
            .field("open", &matches!(self.state, FwdState::Open { .. }))
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl TraceForwarder {
    /// Forwards to `collector` through busd at `busd`.
    pub fn new(busd: ServiceId, collector: DeviceId) -> Self {
        Self {
            agent: BusAgent::new(busd),
            collector,
            state: FwdState::Idle { retry_at_ns: 0 },
            next_tag: 1,
            backoff_ns: INITIAL_BACKOFF_NS,
            reader: FrameReader::new(),
            out: Outbox::new(),
            recv_in_flight: false,
            readable: true,
            replay: None,
            watching: false,
            stats: ForwardStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> ForwardStats {
        self.stats
    }

    /// The stream to the collector is open.
    pub fn is_open(&self) -> bool {
        matches!(self.state, FwdState::Open { .. })
    }

    fn fail(&mut self, cx: &mut Ctx<'_>, why: &str) {
        if let FwdState::Open { handle } = self.state {
            self.agent.reset(&mut sender(cx), handle);
        }
        self.stats.failures += 1;
        let now = cx.now_ns();
        cx.event(Event::Console(format!(
            "traced: forward to {} lost: {why}",
            self.collector
        )));
        self.state = FwdState::Idle {
            retry_at_ns: now.saturating_add(self.backoff_ns),
        };
        self.backoff_ns = self.backoff_ns.saturating_mul(2).min(MAX_BACKOFF_NS);
        self.reader = FrameReader::new();
        self.out = Outbox::new();
        self.recv_in_flight = false;
        self.readable = true;
        self.replay = None;
    }

    /// Takes `frame` if it is from busd; returns whether it was.
    pub fn on_frame(&mut self, cx: &mut Ctx<'_>, from: ServiceId, frame: &[u8]) -> bool {
        let Some(ev) = self.agent.on_frame(from, frame) else {
            return false;
        };
        let Some(ev) = ev else {
            return true;
        };
        let handle = match self.state {
            FwdState::Open { handle } => Some(handle),
            _ => None,
        };
        match ev {
            AgentEvent::Opened { tag, handle: h } => {
                if matches!(self.state, FwdState::Opening { tag: t } if t == tag) {
                    self.state = FwdState::Open { handle: h };
                    self.backoff_ns = INITIAL_BACKOFF_NS;
                    self.stats.opened += 1;
                    if let Ok(f) = framed(&link::hello()) {
                        self.out.load(&f);
                    }
                    cx.event(Event::Console(format!(
                        "traced: forwarding to {}",
                        self.collector
                    )));
                } else {
                    // An answer to an OPEN we gave up on.
                    self.agent.reset(&mut sender(cx), h);
                }
            }
            AgentEvent::OpenFailed { tag, status } => {
                if matches!(self.state, FwdState::Opening { tag: t } if t == tag) {
                    self.fail(cx, status.as_str());
                }
            }
            AgentEvent::Data {
                handle: h,
                fin,
                data,
            } if Some(h) == handle => {
                self.recv_in_flight = false;
                self.readable = !data.is_empty();
                self.on_data(cx, &data);
                if fin && self.is_open() {
                    self.fail(cx, "collector closed the stream");
                }
            }
            AgentEvent::Sent { handle: h, n } if Some(h) == handle => self.out.on_sent(n),
            AgentEvent::Bus(BusEvent::Writable(h)) if Some(h) == handle => self.out.on_writable(),
            AgentEvent::Bus(BusEvent::Readable(h)) if Some(h) == handle => self.readable = true,
            AgentEvent::Bus(BusEvent::PeerUp(id)) if id == self.collector => {
                // The collector's node is back: try now, not after the
                // backoff.
                if let FwdState::Idle { retry_at_ns } = &mut self.state {
                    *retry_at_ns = 0;
                    self.backoff_ns = INITIAL_BACKOFF_NS;
                }
            }
            AgentEvent::Bus(BusEvent::Closed(h) | BusEvent::Reset { handle: h, .. })
            | AgentEvent::StreamFailed { handle: h, .. }
                if Some(h) == handle =>
            {
                self.fail(cx, "stream reset");
            }
            _ => {}
        }
        true
    }

    fn on_data(&mut self, cx: &mut Ctx<'_>, data: &[u8]) {
        if let Err(e) = self.reader.push(data) {
            self.stats.disconnected += 1;
            self.fail(cx, e.reason());
            return;
        }
        loop {
            let f = match self.reader.next_frame() {
                Ok(Some(body)) => link::decode(body),
                Ok(None) => return,
                Err(e) => {
                    self.stats.disconnected += 1;
                    self.fail(cx, e.reason());
                    return;
                }
            };
            match f {
                Ok(LinkFrame::Ping { seq, t1 }) => {
                    // t2 (read) and t3 (written) are both now: the answer
                    // is built in the step the probe is read.
                    let now = cx.now_ns();
                    if self.out.pending() > MAX_OUTBOX {
                        self.stats.probes_skipped += 1;
                    } else if let Ok(f) = framed(&link::pong(seq, t1, now, now)) {
                        self.out.load(&f);
                        self.stats.probes_answered += 1;
                    }
                }
                Ok(_) => {
                    self.stats.disconnected += 1;
                    self.fail(cx, "unexpected frame from the collector");
                    return;
                }
                Err(e) => {
                    self.stats.disconnected += 1;
                    self.fail(cx, e.reason());
                    return;
                }
            }
        }
    }

    /// Opens the stream when due, reads probes, writes queued spans.
    pub fn tick(&mut self, cx: &mut Ctx<'_>, traced: &mut Traced) {
        let now = cx.now_ns();
        if !self.watching {
            self.watching = self.agent.watch(&mut sender(cx));
        }
        match self.state {
            FwdState::Idle { retry_at_ns } if now >= retry_at_ns => {
                let tag = self.next_tag;
                self.next_tag += 1;
                if self
                    .agent
                    .open(&mut sender(cx), self.collector, link::STREAM, tag)
                {
                    self.state = FwdState::Opening { tag };
                }
            }
            FwdState::Open { handle } => {
                if !self.recv_in_flight && self.readable {
                    self.recv_in_flight = self.agent.recv(&mut sender(cx), handle, RECV_MAX);
                }
                let replay = self.replay.get_or_insert_with(|| {
                    traced
                        .recent_local_spans(MAX_REPLAY_SPANS)
                        .into_iter()
                        .collect()
                });
                if self.out.is_empty() && !replay.is_empty() {
                    let mut body = SpansBody::replay();
                    while let Some((service, span)) = replay.pop_front() {
                        match body.push(service, &span) {
                            Ok(true) => self.stats.replayed += 1,
                            Ok(false) => {
                                replay.push_front((service, span));
                                break;
                            }
                            Err(_) => {}
                        }
                    }
                    if let Some(f) = body.finish().and_then(|b| framed(&b).ok()) {
                        self.out.load(&f);
                    }
                }
                if self.out.is_empty() {
                    if let Some(body) = spans_body(traced, &mut self.stats) {
                        if let Ok(f) = framed(&body) {
                            self.out.load(&f);
                        }
                    }
                }
                self.out.pump(&mut self.agent, &mut sender(cx), handle);
            }
            _ => {}
        }
    }
}

/// The next SPANS body from `traced`'s forward queue (at most
/// [`link::MAX_LINK_SPANS`] spans); a span that fits no body is dropped.
fn spans_body(traced: &mut Traced, stats: &mut ForwardStats) -> Option<Vec<u8>> {
    let mut body = SpansBody::new();
    while let Some((service, span)) = traced.next_forward() {
        match body.push(service, &span) {
            Ok(true) => stats.spans_sent += 1,
            Ok(false) => {
                traced.unforward(service, span);
                break;
            }
            // Cannot be framed at all (it would not fit an IPC SPANS
            // frame either); dropped.
            Err(_) => {}
        }
    }
    body.finish()
}

/// Counters of a collector node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CollectStats {
    /// Forwarders that opened the stream.
    pub opened: u64,
    /// Forwarders refused (over [`MAX_FORWARDERS`]).
    pub refused: u64,
    /// Forwarders dropped for a protocol error.
    pub disconnected: u64,
    /// Remote spans ingested (aligned).
    pub spans: u64,
    /// Remote spans dropped while waiting for a clock estimate.
    pub unaligned_dropped: u64,
    /// Probe answers accepted into an estimator.
    pub exchanges: u64,
    /// Probe answers refused (unknown probe, clock went back).
    pub exchanges_refused: u64,
    /// Replayed spans of traces this collector had completed already.
    pub replay_skipped: u64,
}

struct Forwarder {
    handle: Handle,
    peer: DeviceId,
    reader: FrameReader,
    out: Outbox,
    recv_in_flight: bool,
    /// Data may be waiting (see the forwarder's).
    readable: bool,
    hello: bool,
    estimator: OffsetEstimator<OFFSET_WINDOW>,
    /// The probe in flight: (seq, t1).
    probe: Option<(u32, u64)>,
    next_seq: u32,
    next_probe_ns: u64,
    unaligned: VecDeque<(u32, SpanRecord)>,
}

/// The collector's side of `obs.traces`.
pub struct TraceCollector {
    agent: BusAgent,
    asked: bool,
    ready: bool,
    peers: Vec<Forwarder>,
    stats: CollectStats,
}

impl core::fmt::Debug for TraceCollector {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TraceCollector")
            .field("ready", &self.ready)
            .field("forwarders", &self.peers.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl TraceCollector {
    /// A collector talking to busd at `busd`.
    pub fn new(busd: ServiceId) -> Self {
        Self {
            agent: BusAgent::new(busd),
            asked: false,
            ready: false,
            peers: Vec::new(),
            stats: CollectStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> CollectStats {
        self.stats
    }

    /// Listening on `obs.traces`.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// The current best offset estimate of `peer`'s clock, if any.
    pub fn offset_of(&self, peer: DeviceId) -> Option<crate::offset::Estimate> {
        self.peers
            .iter()
            .find(|p| p.peer == peer)
            .and_then(|p| p.estimator.best())
    }

    fn index(&self, h: Handle) -> Option<usize> {
        self.peers.iter().position(|p| p.handle == h)
    }

    /// Every connected forwarder with a clock estimate.
    pub fn offsets(&self) -> Vec<crate::proto::PeerOffset> {
        self.peers
            .iter()
            .filter_map(|p| {
                p.estimator.best().map(|e| crate::proto::PeerOffset {
                    node: node_of(p.peer),
                    offset_ns: e.offset_ns,
                    error_ns: e.error_ns,
                    rtt_ns: e.rtt_ns,
                })
            })
            .collect()
    }

    fn drop_peer(&mut self, cx: &mut Ctx<'_>, i: usize, why: Option<&str>) {
        if i >= self.peers.len() {
            return;
        }
        let p = self.peers.swap_remove(i);
        if let Some(why) = why {
            self.stats.disconnected += 1;
            cx.event(Event::Console(format!(
                "traced: forwarder {} dropped: {why}",
                p.peer
            )));
            self.agent.reset(&mut sender(cx), p.handle);
        }
    }

    /// Takes `frame` if it is from busd; returns whether it was.
    pub fn on_frame(
        &mut self,
        cx: &mut Ctx<'_>,
        traced: &mut Traced,
        from: ServiceId,
        frame: &[u8],
    ) -> bool {
        let Some(ev) = self.agent.on_frame(from, frame) else {
            return false;
        };
        let Some(ev) = ev else {
            return true;
        };
        match ev {
            AgentEvent::Listening(name) if name == link::STREAM => {
                self.ready = true;
                cx.event(Event::Console(alloc::string::String::from(
                    "traced: obs traces live ready",
                )));
            }
            AgentEvent::ListenFailed(name, status) => {
                cx.event(Event::Console(format!(
                    "traced: listen {name} refused: {status}"
                )));
            }
            AgentEvent::Bus(BusEvent::Incoming {
                handle, peer, name, ..
            }) if name == link::STREAM => {
                if self.peers.len() >= MAX_FORWARDERS {
                    self.stats.refused += 1;
                    self.agent.reset(&mut sender(cx), handle);
                } else {
                    self.stats.opened += 1;
                    self.peers.push(Forwarder {
                        handle,
                        peer,
                        reader: FrameReader::new(),
                        out: Outbox::new(),
                        recv_in_flight: false,
                        readable: true,
                        hello: false,
                        estimator: OffsetEstimator::new(),
                        probe: None,
                        next_seq: 1,
                        next_probe_ns: 0,
                        unaligned: VecDeque::new(),
                    });
                }
            }
            AgentEvent::Data { handle, fin, data } => {
                if let Some(i) = self.index(handle) {
                    if let Some(p) = self.peers.get_mut(i) {
                        p.recv_in_flight = false;
                        p.readable = !data.is_empty();
                    }
                    self.on_data(cx, traced, i, &data);
                    if fin {
                        if let Some(i) = self.index(handle) {
                            self.drop_peer(cx, i, None);
                        }
                    }
                }
            }
            AgentEvent::Sent { handle, n } => {
                if let Some(p) = self.index(handle).and_then(|i| self.peers.get_mut(i)) {
                    p.out.on_sent(n);
                }
            }
            AgentEvent::Bus(BusEvent::Writable(h)) => {
                if let Some(p) = self.index(h).and_then(|i| self.peers.get_mut(i)) {
                    p.out.on_writable();
                }
            }
            AgentEvent::Bus(BusEvent::Readable(h)) => {
                if let Some(p) = self.index(h).and_then(|i| self.peers.get_mut(i)) {
                    p.readable = true;
                }
            }
            AgentEvent::Bus(BusEvent::Closed(h) | BusEvent::Reset { handle: h, .. })
            | AgentEvent::StreamFailed { handle: h, .. } => {
                if let Some(i) = self.index(h) {
                    self.drop_peer(cx, i, None);
                }
            }
            _ => {}
        }
        true
    }

    fn on_data(&mut self, cx: &mut Ctx<'_>, traced: &mut Traced, i: usize, data: &[u8]) {
        let now = cx.now_ns();
        let Some(p) = self.peers.get_mut(i) else {
            return;
        };
        if let Err(e) = p.reader.push(data) {
            self.drop_peer(cx, i, Some(e.reason()));
            return;
        }
        loop {
            let Some(p) = self.peers.get_mut(i) else {
                return;
            };
            let f = match p.reader.next_frame() {
                Ok(Some(body)) => link::decode(body),
                Ok(None) => return,
                Err(e) => {
                    self.drop_peer(cx, i, Some(e.reason()));
                    return;
                }
            };
            let f = match f {
                Ok(f) => f,
                Err(e) => {
                    self.drop_peer(cx, i, Some(e.reason()));
                    return;
                }
            };
            let why = match (p.hello, f) {
                (false, LinkFrame::Hello { .. }) => {
                    p.hello = true;
                    None
                }
                (false, _) => Some("expected HELLO"),
                (true, LinkFrame::Hello { .. }) => Some("a second HELLO"),
                (true, LinkFrame::Ping { .. }) => Some("PING from a forwarder"),
                (true, LinkFrame::Pong { seq, t1, t2, t3 }) => {
                    match p.probe {
                        Some((s, t)) if s == seq && t == t1 => {
                            p.probe = None;
                            let ex = Exchange {
                                t1,
                                t2,
                                t3,
                                t4: now,
                            };
                            match p.estimator.add(&ex) {
                                Ok(_) => self.stats.exchanges += 1,
                                Err(_) => self.stats.exchanges_refused += 1,
                            }
                        }
                        _ => self.stats.exchanges_refused += 1,
                    }
                    None
                }
                (true, LinkFrame::Replay(spans)) => {
                    for (service, span) in spans {
                        if traced.completed_recently(span.context.trace) {
                            self.stats.replay_skipped += 1;
                            continue;
                        }
                        if p.unaligned.len() >= MAX_UNALIGNED {
                            p.unaligned.pop_front();
                            self.stats.unaligned_dropped += 1;
                        }
                        p.unaligned.push_back((service, span));
                    }
                    None
                }
                (true, LinkFrame::Spans(spans)) => {
                    for (service, span) in spans {
                        if p.unaligned.len() >= MAX_UNALIGNED {
                            p.unaligned.pop_front();
                            self.stats.unaligned_dropped += 1;
                        }
                        p.unaligned.push_back((service, span));
                    }
                    None
                }
            };
            if let Some(why) = why {
                self.drop_peer(cx, i, Some(why));
                return;
            }
            Self::release(traced, p, now, &mut self.stats);
        }
    }

    /// Ingests a forwarder's waiting spans once its clock offset is known.
    fn release(traced: &mut Traced, p: &mut Forwarder, now: u64, stats: &mut CollectStats) {
        let Some(est) = p.estimator.best() else {
            return;
        };
        let node = node_of(p.peer);
        while let Some((service, span)) = p.unaligned.pop_front() {
            stats.spans += 1;
            traced.ingest(now, TracedSpan::remote(span, Origin { node, service }, est));
        }
    }

    /// Asks busd for the stream once; reads, probes and writes what is due.
    pub fn tick(&mut self, cx: &mut Ctx<'_>, traced: &mut Traced) {
        if !self.asked {
            self.asked = self.agent.listen(&mut sender(cx), link::STREAM);
        }
        let now = cx.now_ns();
        for p in &mut self.peers {
            if !p.recv_in_flight && p.readable {
                p.recv_in_flight = self.agent.recv(&mut sender(cx), p.handle, RECV_MAX);
            }
            let stale = p
                .probe
                .is_some_and(|(_, t1)| now.saturating_sub(t1) >= PROBE_TIMEOUT_NS);
            if (p.probe.is_none() || stale) && now >= p.next_probe_ns && p.out.is_empty() {
                let seq = p.next_seq;
                p.next_seq = p.next_seq.wrapping_add(1);
                if let Ok(f) = framed(&link::ping(seq, now)) {
                    p.out.load(&f);
                    p.probe = Some((seq, now));
                    let gap = if seq <= FAST_PROBES {
                        FAST_PROBE_NS
                    } else {
                        PROBE_INTERVAL_NS
                    };
                    p.next_probe_ns = now.saturating_add(gap);
                }
            }
            p.out.pump(&mut self.agent, &mut sender(cx), p.handle);
            Self::release(traced, p, now, &mut self.stats);
        }
    }
}
