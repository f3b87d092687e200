//! logd serves its journal on the bus stream `obs.logs` (through busd):
//! a collector on another node opens the stream, sends an OPEN with the
//! last id it accounted for, and gets a HEADER (start, gap), then every
//! retained record after it in CHUNKs and every run of evicted ids as a
//! GAP — followed live: records appended later are pushed in the same
//! scheduler step. The frames are `nexus_remote::logs`; the rules are in
//! `docs/observability/remote.md`.
//!
//! Everything is bounded: at most [`MAX_SUBSCRIBERS`] collectors, one SEND
//! in flight each, at most one frame ([`nexus_remote::frame::MAX_FRAME`])
//! pending per collector; the busd stream's credit holds logd back when a
//! collector reads slowly (its cursor just stays behind).

use alloc::vec::Vec;

use nexus_bus::proto::{BusEvent, DeviceId, Handle};
use nexus_bus::{AgentEvent, BusAgent, Outbox};
use nexus_ipc::ServiceId;
use nexus_remote::frame::{frame, FrameReader};
use nexus_remote::logs::{self, ChunkWriter, Gap, GapReason, LogFrame, SenderHeader};
use nexus_svc::{Ctx, Event};

use crate::server::Logd;

/// The stream logd serves.
pub const STREAM: &str = nexus_remote::LOGS_STREAM;
/// Collectors served at once; more are reset (counted).
pub const MAX_SUBSCRIBERS: usize = 4;
/// Bytes asked per RECV while waiting for a collector's OPEN.
const RECV_MAX: u16 = 4096;

/// Counters of the `obs.logs` server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemoteStats {
    /// Collectors that opened the stream.
    pub opened: u64,
    /// Collectors refused (over [`MAX_SUBSCRIBERS`]).
    pub refused: u64,
    /// Collectors dropped for a protocol error (reason on the console).
    pub disconnected: u64,
    /// Records sent.
    pub records: u64,
    /// Ids reported missing (evicted) in GAPs and headers.
    pub gap_ids: u64,
}

enum State {
    /// Waiting for the collector's OPEN.
    Opening,
    /// Sending from `cursor` (the next id to consider).
    Streaming { cursor: u64, per_chunk: u16 },
}

struct Sub {
    handle: Handle,
    peer: DeviceId,
    state: State,
    reader: FrameReader,
    /// The framed frame being written.
    out: Outbox,
    recv_in_flight: bool,
}

/// logd's side of `obs.logs`.
pub struct LogsServer {
    agent: BusAgent,
    asked: bool,
    ready: bool,
    subs: Vec<Sub>,
    stats: RemoteStats,
}

impl core::fmt::Debug for LogsServer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LogsServer")
            .field("ready", &self.ready)
            .field("subscribers", &self.subs.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn sender<'a, 'b>(cx: &'a mut Ctx<'b>) -> impl FnMut(ServiceId, &[u8]) -> bool + use<'a, 'b> {
    move |to, frame| cx.send(to, frame).is_ok()
}

impl LogsServer {
    /// A server talking to busd at `busd`.
    pub fn new(busd: ServiceId) -> Self {
        Self {
            agent: BusAgent::new(busd),
            asked: false,
            ready: false,
            subs: Vec::new(),
            stats: RemoteStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> RemoteStats {
        self.stats
    }

    /// Collectors connected now.
    pub fn subscribers(&self) -> usize {
        self.subs.len()
    }

    fn drop_sub(&mut self, cx: &mut Ctx<'_>, i: usize, why: Option<&str>) {
        if i >= self.subs.len() {
            return;
        }
        let sub = self.subs.swap_remove(i);
        if let Some(why) = why {
            self.stats.disconnected += 1;
            cx.event(Event::Console(alloc::format!(
                "logd: obs logs peer {} dropped: {why}",
                sub.peer
            )));
            self.agent.reset(&mut sender(cx), sub.handle);
        }
    }

    fn index(&self, h: Handle) -> Option<usize> {
        self.subs.iter().position(|s| s.handle == h)
    }

    /// Takes `frame` if it is from busd; returns whether it was.
    pub fn on_frame(
        &mut self,
        cx: &mut Ctx<'_>,
        logd: &Logd,
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
            AgentEvent::Listening(name) if name == STREAM => {
                self.ready = true;
                cx.event(Event::Console(alloc::string::String::from(
                    "logd: obs logs live ready",
                )));
            }
            AgentEvent::ListenFailed(name, status) => {
                cx.event(Event::Console(alloc::format!(
                    "logd: listen {name} refused: {status}"
                )));
            }
            AgentEvent::Bus(BusEvent::Incoming {
                handle, peer, name, ..
            }) if name == STREAM => {
                if self.subs.len() >= MAX_SUBSCRIBERS {
                    self.stats.refused += 1;
                    self.agent.reset(&mut sender(cx), handle);
                } else {
                    self.stats.opened += 1;
                    self.subs.push(Sub {
                        handle,
                        peer,
                        state: State::Opening,
                        reader: FrameReader::new(),
                        out: Outbox::new(),
                        recv_in_flight: false,
                    });
                }
            }
            AgentEvent::Data { handle, fin, data } => {
                if let Some(i) = self.index(handle) {
                    self.on_data(cx, logd, i, fin, &data);
                }
            }
            AgentEvent::Sent { handle, n } => {
                if let Some(s) = self.index(handle).and_then(|i| self.subs.get_mut(i)) {
                    s.out.on_sent(n);
                }
            }
            AgentEvent::Bus(BusEvent::Writable(h)) => {
                if let Some(s) = self.index(h).and_then(|i| self.subs.get_mut(i)) {
                    s.out.on_writable();
                }
            }
            AgentEvent::Bus(BusEvent::Readable(h)) => {
                // Collectors say nothing after their OPEN; the next RECV
                // (if any) will see it.
                let _ = h;
            }
            AgentEvent::Bus(BusEvent::Closed(h) | BusEvent::Reset { handle: h, .. })
            | AgentEvent::StreamFailed { handle: h, .. } => {
                if let Some(i) = self.index(h) {
                    self.drop_sub(cx, i, None);
                }
            }
            _ => {}
        }
        true
    }

    fn on_data(&mut self, cx: &mut Ctx<'_>, logd: &Logd, i: usize, fin: bool, data: &[u8]) {
        let Some(s) = self.subs.get_mut(i) else {
            return;
        };
        s.recv_in_flight = false;
        if let Err(e) = s.reader.push(data) {
            self.drop_sub(cx, i, Some(e.reason()));
            return;
        }
        let open = match s.reader.next_frame() {
            Ok(Some(body)) => match logs::decode(body) {
                Ok(LogFrame::Open(o)) => Some(o),
                Ok(_) => {
                    self.drop_sub(cx, i, Some("expected OPEN"));
                    return;
                }
                Err(e) => {
                    self.drop_sub(cx, i, Some(e.reason()));
                    return;
                }
            },
            Ok(None) => None,
            Err(e) => {
                self.drop_sub(cx, i, Some(e.reason()));
                return;
            }
        };
        if let Some(o) = open {
            // The OPEN decides where the stream starts (see the module docs).
            let j = logd.journal();
            let next = j.next_id();
            let (mut resume, restarted) = if o.resume_after >= next {
                (0, true)
            } else {
                (o.resume_after, false)
            };
            if resume == u64::MAX {
                resume = 0;
            }
            let start = j
                .range_from(resume.saturating_add(1))
                .next()
                .map_or(next, |r| r.id);
            let gap = start.saturating_sub(1).saturating_sub(resume);
            let header = SenderHeader {
                sample_ppm: logs::PPM,
                exempt_warn_error: true,
                restarted,
                rate_events_per_s: 0,
                rate_bytes_per_s: 0,
                start,
                gap,
            };
            self.stats.gap_ids += gap;
            match logs::encode_header(&header).and_then(|b| frame(&b)) {
                Ok(f) => {
                    s.out.load(&f);
                    s.state = State::Streaming {
                        cursor: start,
                        per_chunk: o.max_records_per_chunk.max(1),
                    };
                }
                Err(e) => self.drop_sub(cx, i, Some(e.reason())),
            }
        } else if fin {
            // The collector closed before its OPEN.
            self.drop_sub(cx, i, None);
        }
    }

    /// The next frame for a streaming collector: a GAP for a run of
    /// evicted ids at the cursor, else a CHUNK of the records after it.
    fn next_frame(
        logd: &Logd,
        cursor: &mut u64,
        per_chunk: u16,
        stats: &mut RemoteStats,
    ) -> Option<Vec<u8>> {
        let j = logd.journal();
        let next = j.next_id();
        if *cursor >= next {
            return None;
        }
        let mut records = j.range_from(*cursor).peekable();
        let first = records.peek().map_or(next, |r| r.id);
        if first > *cursor {
            let g = Gap {
                after_id: cursor.saturating_sub(1),
                missing: first - *cursor,
                reason: GapReason::Evicted,
            };
            stats.gap_ids += g.missing;
            *cursor = first;
            return logs::encode_gap(&g).and_then(|b| frame(&b)).ok();
        }
        let mut chunk = ChunkWriter::new(per_chunk);
        let mut expect = *cursor;
        for r in records {
            // A hole: end the chunk here; the next frame is its GAP.
            if r.id != expect {
                break;
            }
            match chunk.push_record(&r) {
                Ok(true) => {
                    expect = r.id + 1;
                    stats.records += 1;
                }
                _ => break,
            }
        }
        *cursor = expect;
        chunk.finish().and_then(|b| frame(&b).ok())
    }

    /// Asks busd for the stream once; reads OPENs; writes what is due.
    pub fn tick(&mut self, cx: &mut Ctx<'_>, logd: &Logd) {
        if !self.asked {
            self.asked = self.agent.listen(&mut sender(cx), STREAM);
        }
        for s in &mut self.subs {
            if matches!(s.state, State::Opening) && !s.recv_in_flight {
                s.recv_in_flight = self.agent.recv(&mut sender(cx), s.handle, RECV_MAX);
            }
            if let State::Streaming { cursor, per_chunk } = &mut s.state {
                if s.out.is_empty() {
                    if let Some(f) = Self::next_frame(logd, cursor, *per_chunk, &mut self.stats) {
                        s.out.load(&f);
                    }
                }
            }
            s.out.pump(&mut self.agent, &mut sender(cx), s.handle);
        }
    }
}
