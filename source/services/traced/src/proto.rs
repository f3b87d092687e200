//! traced's IPC contract (version 1).
//!
//! ```text
//! header  magic "TR" | version u8 = 1 | op u8 | nonce u64        (12 bytes)
//! SPANS   op 1, one-way   count u8 (1..=MAX_BATCH_SPANS) | count × finished span
//!                         (the body of `nexus_trace::finished`)
//! TRACE   op 2            trace u128
//! RECENT  op 3            max u8 (1..=MAX_RECENT)
//! STATS   op 4            (empty)
//! OFFSETS op 5            (empty): the clock offsets of the forwarders
//!                         this collector measured
//! reply   op | 0x80 | nonce, status u8, then for ok:
//!         SPANS   added u8 (never sent: SPANS is one-way)
//!         TRACE   line str_u32 (the trace's JSONL line, without `\n`)
//!         RECENT  count u8 | count × (trace u128 | spans u16 | start_ns u64
//!                 | end_ns u64 | continuation u8)
//!         STATS   10 × u64: the correlator's 7 counters, batches, spans
//!                 received, recent evicted, then the reject counters:
//!                 the six of `Rejects` in status order, then `unavailable`
//!         OFFSETS count u8 (≤ 8) | count × (node u64 | offset_ns i64
//!                 | error_ns u64 | rtt_ns u64); `unavailable` on a
//!                 traced that does not collect
//! ```
//!
//! A frame is at most [`MAX_FRAME`] bytes. The span's node and service are
//! never in the payload: traced takes them from the transport.

use alloc::string::String;
use alloc::vec::Vec;

use nexus_trace::{finished, SpanRecord, TraceId};
use nexus_wire::{Header, Reader, Rejects, Status, WireError, Writer, HEADER_LEN};

use crate::correlate::Stats;

/// Protocol tag.
pub const MAGIC: [u8; 2] = *b"TR";
/// Version.
pub const VERSION: u8 = 1;
/// Largest request frame.
pub const MAX_FRAME: usize = 16 * 1024;
/// Most spans in one SPANS batch.
pub const MAX_BATCH_SPANS: u8 = 32;
/// Most traces in a RECENT reply.
pub const MAX_RECENT: u8 = 32;
/// Largest reply frame.
pub const MAX_REPLY: usize = 60 * 1024;

nexus_wire::byte_enum! {
    /// Ops.
    pub enum Op {
        /// A batch of finished spans (one-way).
        Spans = 1 => "spans",
        /// A completed trace by id, as its JSONL line.
        Trace = 2 => "trace",
        /// The most recently completed traces.
        Recent = 3 => "recent",
        /// Counters.
        Stats = 4 => "stats",
        /// The forwarders' clock offsets (a collecting traced).
        Offsets = 5 => "offsets",
    }
}

/// A decoded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// SPANS.
    Spans(Vec<SpanRecord>),
    /// TRACE.
    Trace(TraceId),
    /// RECENT.
    Recent(u8),
    /// STATS.
    Stats,
    /// OFFSETS.
    Offsets,
}

/// Forwarders listed in an OFFSETS reply at most.
pub const MAX_OFFSETS: usize = 8;

/// One forwarder's clock, as the collector measured it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerOffset {
    /// The forwarder's node (its bus device as a number).
    pub node: u64,
    /// Its clock minus the collector's, in ns (best exchange).
    pub offset_ns: i64,
    /// The true offset is within `offset_ns ± error_ns`.
    pub error_ns: u64,
    /// The best exchange's round trip.
    pub rtt_ns: u64,
}

/// One line of a RECENT reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceSummary {
    /// The trace.
    pub trace: TraceId,
    /// Spans held.
    pub spans: u16,
    /// Earliest aligned start.
    pub start_ns: u64,
    /// Latest aligned end.
    pub end_ns: u64,
    /// True for a continuation.
    pub continuation: bool,
}

/// traced's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TracedStats {
    /// The correlator's.
    pub correlator: Stats,
    /// SPANS batches accepted.
    pub batches: u64,
    /// Spans received in accepted batches.
    pub spans_received: u64,
    /// Completed traces pushed out of the recent list.
    pub recent_evicted: u64,
    /// Requests refused, by status.
    pub rejects: Rejects,
}

/// A reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// SPANS (not sent: one-way).
    Spans(u8),
    /// TRACE.
    Trace(String),
    /// RECENT.
    Recent(Vec<TraceSummary>),
    /// STATS.
    Stats(TracedStats),
    /// OFFSETS.
    Offsets(Vec<PeerOffset>),
    /// Refused.
    Rejected(Status),
}

nexus_wire::reply_body!(Reply, encode_reply);

/// Why a request was refused: the status to answer with, and the header
/// when it parsed (so the answer can carry its nonce).
pub type Refusal = (Status, Option<Header>);

/// Decodes a request. A frame over [`MAX_FRAME`] is `over_limit`; a bad
/// header, op or version `unsupported` (or `malformed` when the header
/// itself does not parse); a bad body `malformed`; a batch count of 0 or
/// over [`MAX_BATCH_SPANS`], a RECENT max of 0 or a zero trace id
/// `invalid_args`.
pub fn decode_request(frame: &[u8]) -> Result<(Header, Request), Refusal> {
    let (h, body) = Header::parse(frame, MAGIC).map_err(|_| (Status::Malformed, None))?;
    if frame.len() > MAX_FRAME {
        return Err((Status::OverLimit, Some(h)));
    }
    if h.version != VERSION || h.is_reply() {
        return Err((Status::Unsupported, Some(h)));
    }
    let op = Op::from_u8(h.op).ok_or((Status::Unsupported, Some(h)))?;
    let mut r = Reader::new(body);
    let bad = |s: Status| (s, Some(h));
    let req = match op {
        Op::Spans => {
            let n = r.u8().map_err(|_| bad(Status::Malformed))?;
            if n == 0 || n > MAX_BATCH_SPANS {
                return Err(bad(Status::InvalidArgs));
            }
            let mut spans = Vec::with_capacity(usize::from(n).min(r.remaining() / 59));
            for _ in 0..n {
                spans.push(finished::parse(&mut r).map_err(|_| bad(Status::Malformed))?);
            }
            Request::Spans(spans)
        }
        Op::Trace => {
            let id = r.u128().map_err(|_| bad(Status::Malformed))?;
            Request::Trace(TraceId::new(id).ok_or(bad(Status::InvalidArgs))?)
        }
        Op::Recent => {
            let max = r.u8().map_err(|_| bad(Status::Malformed))?;
            if max == 0 || max > MAX_RECENT {
                return Err(bad(Status::InvalidArgs));
            }
            Request::Recent(max)
        }
        Op::Stats => Request::Stats,
        Op::Offsets => Request::Offsets,
    };
    r.finish().map_err(|_| bad(Status::Malformed))?;
    Ok((h, req))
}

/// Encodes a SPANS batch of `spans` (1..=[`MAX_BATCH_SPANS`], within
/// [`MAX_FRAME`]), or a TRACE / RECENT / STATS request.
pub fn encode_request(nonce: u64, req: &Request) -> Result<Vec<u8>, WireError> {
    let op = match req {
        Request::Spans(_) => Op::Spans,
        Request::Trace(_) => Op::Trace,
        Request::Recent(_) => Op::Recent,
        Request::Stats => Op::Stats,
        Request::Offsets => Op::Offsets,
    };
    let mut out = Vec::with_capacity(128);
    let mut w = Writer::bounded(&mut out, MAX_FRAME);
    w.header(&Header::request(MAGIC, VERSION, op.as_u8(), nonce));
    match req {
        Request::Spans(spans) => {
            if spans.is_empty() || spans.len() > usize::from(MAX_BATCH_SPANS) {
                return Err(WireError::BadValue);
            }
            let mut f = SpansFrame::new(nonce);
            for s in spans {
                if !f.push(s)? {
                    return Err(WireError::TooLarge);
                }
            }
            return f.finish().ok_or(WireError::BadValue);
        }
        Request::Trace(t) => {
            w.u128(t.get());
        }
        Request::Recent(max) => {
            w.u8(*max);
        }
        Request::Stats | Request::Offsets => {}
    }
    w.finish()?;
    Ok(out)
}

/// Builds one SPANS frame span by span, within [`MAX_BATCH_SPANS`] and
/// [`MAX_FRAME`]: each span is encoded once, straight into the frame.
#[derive(Debug)]
pub struct SpansFrame {
    out: Vec<u8>,
    count: u8,
    scratch: Vec<u8>,
}

impl SpansFrame {
    /// An empty frame (one-way: `nonce` is normally 0).
    pub fn new(nonce: u64) -> Self {
        let mut out = Vec::with_capacity(256);
        Header::request(MAGIC, VERSION, Op::Spans.as_u8(), nonce).emit(&mut out);
        out.push(0);
        Self {
            out,
            count: 0,
            scratch: Vec::new(),
        }
    }

    /// Spans in the frame.
    pub fn count(&self) -> u8 {
        self.count
    }

    /// Adds `span` if it fits: `Ok(false)` when the frame is full (by
    /// count or bytes), an error when the span fits no frame at all.
    pub fn push(&mut self, span: &SpanRecord) -> Result<bool, WireError> {
        if self.count >= MAX_BATCH_SPANS {
            return Ok(false);
        }
        self.scratch.clear();
        let mut w = Writer::bounded(&mut self.scratch, MAX_FRAME - HEADER_LEN - 1);
        finished::emit(&span.as_finished(), &mut w);
        w.finish()?;
        if self.out.len() + self.scratch.len() > MAX_FRAME {
            return Ok(false);
        }
        self.out.extend_from_slice(&self.scratch);
        self.count += 1;
        Ok(true)
    }

    /// The frame, or `None` when it holds no span.
    pub fn finish(mut self) -> Option<Vec<u8>> {
        if self.count == 0 {
            return None;
        }
        *self.out.get_mut(HEADER_LEN)? = self.count;
        Some(self.out)
    }
}

fn stats_array(s: &TracedStats) -> [u64; 10] {
    let c = &s.correlator;
    [
        c.spans_added,
        c.spans_dropped_full,
        c.spans_dropped_duplicate,
        c.traces_started,
        c.continuations,
        c.completed_idle,
        c.completed_evicted,
        s.batches,
        s.spans_received,
        s.recent_evicted,
    ]
}

/// Encodes a reply. A TRACE line that would pass [`MAX_REPLY`] is sent as
/// `over_limit` instead.
pub fn encode_reply(req: &Header, reply: &Reply) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let mut w = Writer::new(&mut out);
    w.header(&req.reply());
    match reply {
        Reply::Rejected(s) => {
            w.u8(s.as_u8());
        }
        Reply::Spans(n) => {
            w.u8(Status::Ok.as_u8()).u8(*n);
        }
        Reply::Trace(line) => {
            if line.len() + 17 > MAX_REPLY {
                w.u8(Status::OverLimit.as_u8());
            } else {
                w.u8(Status::Ok.as_u8()).str_u32(line);
            }
        }
        Reply::Recent(list) => {
            let n = list.len().min(usize::from(MAX_RECENT));
            w.u8(Status::Ok.as_u8()).count_u8(n);
            for t in list.iter().take(n) {
                w.u128(t.trace.get())
                    .u16(t.spans)
                    .u64(t.start_ns)
                    .u64(t.end_ns)
                    .bool(t.continuation);
            }
        }
        Reply::Stats(s) => {
            w.u8(Status::Ok.as_u8());
            for v in stats_array(s) {
                w.u64(v);
            }
            s.rejects.emit(&mut w);
            w.u64(s.rejects.unavailable);
        }
        Reply::Offsets(list) => {
            let n = list.len().min(MAX_OFFSETS);
            w.u8(Status::Ok.as_u8()).count_u8(n);
            for o in list.iter().take(n) {
                w.u64(o.node).i64(o.offset_ns).u64(o.error_ns).u64(o.rtt_ns);
            }
        }
    }
    // Fixed fields and capped lists: cannot pass a bound.
    let _ = w.finish();
    out
}

/// Decodes a reply.
pub fn decode_reply(frame: &[u8]) -> Result<(Header, Reply), WireError> {
    let (h, body) = Header::parse(frame, MAGIC)?;
    if h.version != VERSION || !h.is_reply() {
        return Err(WireError::BadValue);
    }
    let op = Op::from_u8(h.op & !nexus_wire::REPLY_BIT).ok_or(WireError::BadValue)?;
    let mut r = Reader::new(body);
    let status = r.enum_u8(Status::from_u8)?;
    let reply = if status != Status::Ok {
        Reply::Rejected(status)
    } else {
        match op {
            Op::Spans => Reply::Spans(r.u8()?),
            Op::Trace => Reply::Trace(String::from(r.str_u32()?)),
            Op::Recent => {
                let n = r.u8()?;
                let mut list = Vec::with_capacity(usize::from(n.min(MAX_RECENT)));
                for _ in 0..n {
                    list.push(TraceSummary {
                        trace: TraceId::new(r.u128()?).ok_or(WireError::BadValue)?,
                        spans: r.u16()?,
                        start_ns: r.u64()?,
                        end_ns: r.u64()?,
                        continuation: r.bool()?,
                    });
                }
                Reply::Recent(list)
            }
            Op::Offsets => {
                let n = r.u8()?;
                if usize::from(n) > MAX_OFFSETS {
                    return Err(WireError::BadValue);
                }
                let mut list = Vec::with_capacity(usize::from(n));
                for _ in 0..n {
                    list.push(PeerOffset {
                        node: r.u64()?,
                        offset_ns: r.i64()?,
                        error_ns: r.u64()?,
                        rtt_ns: r.u64()?,
                    });
                }
                Reply::Offsets(list)
            }
            Op::Stats => {
                let mut a = [0u64; 10];
                for v in &mut a {
                    *v = r.u64()?;
                }
                let [spans_added, spans_dropped_full, spans_dropped_duplicate, traces_started, continuations, completed_idle, completed_evicted, batches, spans_received, recent_evicted] =
                    a;
                let mut rejects = Rejects::parse(&mut r)?;
                rejects.unavailable = r.u64()?;
                Reply::Stats(TracedStats {
                    correlator: Stats {
                        spans_added,
                        spans_dropped_full,
                        spans_dropped_duplicate,
                        traces_started,
                        continuations,
                        completed_idle,
                        completed_evicted,
                    },
                    batches,
                    spans_received,
                    recent_evicted,
                    rejects,
                })
            }
        }
    };
    r.finish()?;
    Ok((h, reply))
}
