//! The metricsd wire contract (version 1), shared by the client in this
//! crate and the metricsd server. Layouts byte by byte are in
//! `docs/observability/metrics.md`; the summary:
//!
//! ```text
//! header     magic "MT" | version 1 | op | nonce u64                 (12 bytes)
//! REGISTER   (op 1) kind u8 | name u8-len | nlabels u8 | (key u8-len, value u8-len)*
//!                   | nbounds u8 | bound u64*            → ok: series u32
//!            version 2 (REGISTER only): the same, then help u8-len; a
//!            REGISTER without help is always sent as version 1 (unchanged bytes)
//! BATCH      (op 2; op 3 = one-way, never answered) count u16 | entry*
//!   entry    tag u8, then
//!            1 INC      series u32 | delta u64
//!            2 SET      series u32 | value i64
//!            3 ADD      series u32 | delta i64
//!            4 HIST     series u32 | n u8 | count u64 * n | sum u64   (per-bucket deltas)
//!            5 START    span u64 | trace u128 | parent u64 (0: root) | start_ns u64 | name u8-len
//!            6 END      span u64 | end_ns u64 | status u8 | nattrs u8 | (key u8-len, value u8-len)*
//!                                                        → ok: accepted u16 | rejected u16 | first_reject u8
//! SCRAPE     (op 4) cursor u32 (0 or a page's next) | max_bytes u32 → ok: next u32 | more u8 | text u32-len
//! STATS      (op 5) empty                                → ok: 16 × u64
//! SEGMENTS   (op 6) series u32 | tier u8 (1: 10 s, 2: 60 s) → ok: n u16 | segment*
//!   segment  start_ns u64 | count u64 | sum i64 | min i64 | max i64
//! reply      header with op | 0x80, same nonce; status u8; body only if ok
//! ```
//!
//! Decoders check structure only and never panic; limits and policy are
//! metricsd's (`invalid_args`, `over_limit`, `rate_limited`).

use alloc::vec::Vec;

use nexus_trace::wire::{RawSpanEnd, RawSpanStart};
use nexus_wire::{Header, Reader, WireError, Writer, REPLY_BIT};

pub use nexus_wire::{Rejects, Status};

/// Protocol tag.
pub const MAGIC: [u8; 2] = *b"MT";
/// The version this crate speaks (every reply, every request but a
/// REGISTER with help).
pub const VERSION: u8 = 1;
/// The version of a REGISTER that carries help text: the version 1 body
/// followed by `help u8-len`. Only REGISTER exists in this version.
pub const VERSION_HELP: u8 = 2;

/// Request ops.
pub mod op {
    /// Register (or look up) a series.
    pub const REGISTER: u8 = 1;
    /// A batch of updates and span events, answered.
    pub const BATCH: u8 = 2;
    /// A batch, never answered (the client's flush).
    pub const BATCH_ONEWAY: u8 = 3;
    /// Prometheus text exposition, paged by series (see `docs/observability/metrics.md`).
    pub const SCRAPE: u8 = 4;
    /// Counters.
    pub const STATS: u8 = 5;
    /// Rollup segments of one series.
    pub const SEGMENTS: u8 = 6;
}

/// A REGISTER body, borrowed from the frame (raw: metricsd validates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register<'a> {
    /// Raw kind byte.
    pub kind: u8,
    /// Name.
    pub name: &'a str,
    /// Labels as sent.
    pub labels: Vec<(&'a str, &'a str)>,
    /// Histogram bounds as sent (empty for other kinds).
    pub bounds: Vec<u64>,
    /// Help text as sent; empty when none (then the frame is version 1).
    pub help: &'a str,
}

/// One entry of a BATCH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry<'a> {
    /// Counter increment.
    Inc {
        /// Series.
        series: u32,
        /// Delta.
        delta: u64,
    },
    /// Gauge set.
    Set {
        /// Series.
        series: u32,
        /// New value.
        value: i64,
    },
    /// Gauge add.
    Add {
        /// Series.
        series: u32,
        /// Delta.
        delta: i64,
    },
    /// Histogram per-bucket deltas (finite buckets then `+Inf`) and sum delta.
    Hist {
        /// Series.
        series: u32,
        /// Non-cumulative count deltas, one per bucket incl. `+Inf`.
        counts: Vec<u64>,
        /// Sum delta.
        sum: u64,
    },
    /// A span began (the body of [`nexus_trace::wire::RawSpanStart`]:
    /// ids as sent, judged by metricsd per entry).
    SpanStart {
        /// Span id (non-zero).
        span: u64,
        /// Trace id (non-zero).
        trace: u128,
        /// Parent span id, 0 for a root.
        parent: u64,
        /// Client clock at start.
        start_ns: u64,
        /// Span name.
        name: &'a str,
    },
    /// A span ended (the body of [`nexus_trace::wire::RawSpanEnd`]).
    SpanEnd {
        /// Span id.
        span: u64,
        /// Client clock at end.
        end_ns: u64,
        /// Raw status byte.
        status: u8,
        /// Attributes as sent.
        attrs: Vec<(&'a str, &'a str)>,
    },
}

/// Entry tags.
pub mod tag {
    /// [`super::Entry::Inc`].
    pub const INC: u8 = 1;
    /// [`super::Entry::Set`].
    pub const SET: u8 = 2;
    /// [`super::Entry::Add`].
    pub const ADD: u8 = 3;
    /// [`super::Entry::Hist`].
    pub const HIST: u8 = 4;
    /// [`super::Entry::SpanStart`].
    pub const SPAN_START: u8 = nexus_trace::wire::tag::SPAN_START;
    /// [`super::Entry::SpanEnd`].
    pub const SPAN_END: u8 = nexus_trace::wire::tag::SPAN_END;
}

/// A decoded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    /// REGISTER.
    Register(Register<'a>),
    /// BATCH; `oneway` for op 3.
    Batch {
        /// No reply wanted.
        oneway: bool,
        /// Entries in order.
        entries: Vec<Entry<'a>>,
    },
    /// SCRAPE.
    Scrape {
        /// 0 for the start, else a previous page's `next` (an opaque position).
        cursor: u32,
        /// Most text bytes wanted.
        max_bytes: u32,
    },
    /// STATS.
    Stats,
    /// SEGMENTS.
    Segments {
        /// Series.
        series: u32,
        /// Raw tier byte.
        tier: u8,
    },
}

/// Why a request frame could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// No header with our magic: nothing to answer.
    NoHeader,
    /// Unknown version or op.
    Unsupported(Header),
    /// The body does not parse.
    Malformed(Header),
}

/// Reads what [`write_pairs`] wrote.
pub fn read_pairs<'a>(r: &mut Reader<'a>) -> Result<Vec<(&'a str, &'a str)>, WireError> {
    let n = r.u8()?;
    // Each pair takes at least 2 bytes: bound the allocation by the input.
    let mut v = Vec::with_capacity(usize::from(n).min(r.remaining() / 2));
    for _ in 0..n {
        v.push((r.str_u8()?, r.str_u8()?));
    }
    Ok(v)
}

/// Reads what [`write_u64s`] wrote.
pub fn read_u64s(r: &mut Reader<'_>) -> Result<Vec<u64>, WireError> {
    let n = r.u8()?;
    // Each value takes 8 bytes: bound the allocation by the input.
    let mut v = Vec::with_capacity(usize::from(n).min(r.remaining() / 8));
    for _ in 0..n {
        v.push(r.u64()?);
    }
    Ok(v)
}

fn decode_entry<'a>(r: &mut Reader<'a>) -> Result<Entry<'a>, WireError> {
    Ok(match r.u8()? {
        tag::INC => Entry::Inc {
            series: r.u32()?,
            delta: r.u64()?,
        },
        tag::SET => Entry::Set {
            series: r.u32()?,
            value: r.i64()?,
        },
        tag::ADD => Entry::Add {
            series: r.u32()?,
            delta: r.i64()?,
        },
        tag::HIST => Entry::Hist {
            series: r.u32()?,
            counts: read_u64s(r)?,
            sum: r.u64()?,
        },
        tag::SPAN_START => {
            let s = RawSpanStart::parse(r)?;
            Entry::SpanStart {
                span: s.span,
                trace: s.trace,
                parent: s.parent,
                start_ns: s.start_ns,
                name: s.name,
            }
        }
        tag::SPAN_END => {
            let e = RawSpanEnd::parse(r)?;
            Entry::SpanEnd {
                span: e.span,
                end_ns: e.end_ns,
                status: e.status,
                attrs: e.attrs,
            }
        }
        _ => return Err(WireError::BadValue),
    })
}

/// Decodes a request frame. Never panics.
pub fn decode_request(frame: &[u8]) -> Result<(Header, Request<'_>), RequestError> {
    let (h, body) = Header::parse(frame, MAGIC).map_err(|_| RequestError::NoHeader)?;
    let register_with_help = h.version == VERSION_HELP && h.op == op::REGISTER;
    if (h.version != VERSION && !register_with_help) || h.is_reply() {
        return Err(RequestError::Unsupported(h));
    }
    let mut r = Reader::new(body);
    let req = match h.op {
        op::REGISTER => (|| -> Result<Request<'_>, WireError> {
            let kind = r.u8()?;
            let name = r.str_u8()?;
            let labels = read_pairs(&mut r)?;
            let bounds = read_u64s(&mut r)?;
            let help = if register_with_help { r.str_u8()? } else { "" };
            Ok(Request::Register(Register {
                kind,
                name,
                labels,
                bounds,
                help,
            }))
        })(),
        op::BATCH | op::BATCH_ONEWAY => (|| -> Result<Request<'_>, WireError> {
            let n = r.u16()?;
            // Every entry is at least 13 bytes.
            let mut entries = Vec::with_capacity(usize::from(n).min(r.remaining() / 13));
            for _ in 0..n {
                entries.push(decode_entry(&mut r)?);
            }
            Ok(Request::Batch {
                oneway: h.op == op::BATCH_ONEWAY,
                entries,
            })
        })(),
        op::SCRAPE => (|| -> Result<Request<'_>, WireError> {
            Ok(Request::Scrape {
                cursor: r.u32()?,
                max_bytes: r.u32()?,
            })
        })(),
        op::STATS => Ok(Request::Stats),
        op::SEGMENTS => (|| -> Result<Request<'_>, WireError> {
            Ok(Request::Segments {
                series: r.u32()?,
                tier: r.u8()?,
            })
        })(),
        _ => return Err(RequestError::Unsupported(h)),
    };
    match req {
        Ok(req) if r.finish().is_ok() => Ok((h, req)),
        _ => Err(RequestError::Malformed(h)),
    }
}

fn header(op: u8, nonce: u64) -> Header {
    Header::request(MAGIC, VERSION, op, nonce)
}

/// Appends a u8 count, then each pair as two u8-prefixed strings (REGISTER
/// labels, span attributes, metricsd's persisted registrations).
pub fn write_pairs<'s>(
    w: &mut Writer<'_>,
    pairs: impl ExactSizeIterator<Item = (&'s str, &'s str)>,
) {
    w.count_u8(pairs.len());
    for (k, v) in pairs {
        w.str_u8(k).str_u8(v);
    }
}

/// Appends a u8 count, then each value as a u64 (histogram bounds and
/// bucket counts).
pub fn write_u64s(w: &mut Writer<'_>, vs: &[u64]) {
    w.count_u8(vs.len());
    for v in vs {
        w.u64(*v);
    }
}

/// Encodes a REGISTER: version 1 without help (the bytes every version 1
/// peer knows), version 2 with `help` appended when there is some.
pub fn encode_register(nonce: u64, reg: &Register<'_>) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(64);
    let mut w = Writer::new(&mut out);
    let version = if reg.help.is_empty() {
        VERSION
    } else {
        VERSION_HELP
    };
    w.header(&Header::request(MAGIC, version, op::REGISTER, nonce))
        .u8(reg.kind)
        .str_u8(reg.name);
    write_pairs(&mut w, reg.labels.iter().copied());
    write_u64s(&mut w, &reg.bounds);
    if !reg.help.is_empty() {
        w.str_u8(reg.help);
    }
    w.finish()?;
    Ok(out)
}

/// Appends one entry's wire form to `out`; on error `out` is left as it was.
pub fn encode_entry(out: &mut Vec<u8>, e: &Entry<'_>) -> Result<(), WireError> {
    Writer::append(out, usize::MAX, |w| match e {
        Entry::Inc { series, delta } => {
            w.u8(tag::INC).u32(*series).u64(*delta);
        }
        Entry::Set { series, value } => {
            w.u8(tag::SET).u32(*series).i64(*value);
        }
        Entry::Add { series, delta } => {
            w.u8(tag::ADD).u32(*series).i64(*delta);
        }
        Entry::Hist {
            series,
            counts,
            sum,
        } => {
            w.u8(tag::HIST).u32(*series);
            write_u64s(w, counts);
            w.u64(*sum);
        }
        Entry::SpanStart {
            span,
            trace,
            parent,
            start_ns,
            name,
        } => {
            w.u8(tag::SPAN_START);
            RawSpanStart {
                span: *span,
                trace: *trace,
                parent: *parent,
                start_ns: *start_ns,
                name,
            }
            .emit(w);
        }
        Entry::SpanEnd {
            span,
            end_ns,
            status,
            attrs,
        } => {
            w.u8(tag::SPAN_END);
            RawSpanEnd::emit_fields(w, *span, *end_ns, *status, attrs);
        }
    })
    .map(|_| ())
}

/// Starts a BATCH frame; append entries with [`encode_entry`] and finish
/// with [`finish_batch`].
pub fn begin_batch(nonce: u64, oneway: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let op = if oneway { op::BATCH_ONEWAY } else { op::BATCH };
    // Unbounded writer, fixed-size fields: cannot fail.
    let _ = Writer::new(&mut out)
        .header(&header(op, nonce))
        .u16(0)
        .finish();
    out
}

/// Offset of the entry count in a BATCH frame.
const BATCH_COUNT_AT: usize = nexus_wire::HEADER_LEN;

/// Writes the entry count into a frame started by [`begin_batch`].
pub fn finish_batch(frame: &mut Vec<u8>, count: u16) {
    // A frame shorter than a header is not one of ours: left alone.
    let _ = Writer::new(frame).patch_u16(BATCH_COUNT_AT, count).finish();
}

/// Encodes a whole BATCH.
pub fn encode_batch(nonce: u64, oneway: bool, entries: &[Entry<'_>]) -> Result<Vec<u8>, WireError> {
    let mut out = begin_batch(nonce, oneway);
    for e in entries {
        encode_entry(&mut out, e)?;
    }
    finish_batch(
        &mut out,
        u16::try_from(entries.len()).map_err(|_| WireError::BadValue)?,
    );
    Ok(out)
}

/// Encodes a SCRAPE.
pub fn encode_scrape(nonce: u64, cursor: u32, max_bytes: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(20);
    // Unbounded writer, fixed-size fields: cannot fail.
    let _ = Writer::new(&mut out)
        .header(&header(op::SCRAPE, nonce))
        .u32(cursor)
        .u32(max_bytes)
        .finish();
    out
}

/// Encodes a STATS request.
pub fn encode_stats(nonce: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(12);
    header(op::STATS, nonce).emit(&mut out);
    out
}

/// Encodes a SEGMENTS request.
pub fn encode_segments(nonce: u64, series: u32, tier: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(17);
    // Unbounded writer, fixed-size fields: cannot fail.
    let _ = Writer::new(&mut out)
        .header(&header(op::SEGMENTS, nonce))
        .u32(series)
        .u8(tier)
        .finish();
    out
}

/// The outcome of a BATCH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchResult {
    /// Entries applied.
    pub accepted: u16,
    /// Entries refused.
    pub rejected: u16,
    /// Status of the first refused entry (`Ok` if none).
    pub first_reject: Status,
}

/// One page of exposition text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapePage {
    /// Position to continue from (opaque; `u32::MAX` on the last page).
    pub next: u32,
    /// More families follow.
    pub more: bool,
    /// Prometheus text.
    pub text: alloc::string::String,
}

/// A rollup segment on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireSegment {
    /// Window start (aligned to the tier width).
    pub start_ns: u64,
    /// Samples.
    pub count: u64,
    /// Sum of samples.
    pub sum: i64,
    /// Smallest sample.
    pub min: i64,
    /// Largest sample.
    pub max: i64,
}

/// metricsd's counters (STATS).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsStats {
    /// Series registered.
    pub series: u64,
    /// Live spans.
    pub live_spans: u64,
    /// Entries applied.
    pub updates: u64,
    /// Spans ended and exported.
    pub spans_ended: u64,
    /// Requests and entries refused, by status.
    pub rejects: Rejects,
    /// Registrations refused by a cardinality cap.
    pub series_overflow: u64,
    /// Identity claims refused.
    pub identity_spoofs: u64,
    /// Snapshot records exported to logd.
    pub snapshots_exported: u64,
    /// Rollup segments produced.
    pub segments: u64,
    /// Senders evicted from the rate table.
    pub sender_evictions: u64,
}

impl MetricsStats {
    /// Appends the 16 u64 of a STATS reply body: series, live_spans,
    /// updates, spans_ended, the six reject counters, series_overflow,
    /// identity_spoofs, snapshots_exported, segments, sender_evictions and
    /// a reserved 0.
    fn emit(&self, w: &mut Writer<'_>) {
        w.u64(self.series)
            .u64(self.live_spans)
            .u64(self.updates)
            .u64(self.spans_ended);
        self.rejects.emit(w);
        w.u64(self.series_overflow)
            .u64(self.identity_spoofs)
            .u64(self.snapshots_exported)
            .u64(self.segments)
            .u64(self.sender_evictions)
            .u64(0);
    }

    /// Reads what [`Self::emit`] wrote (the reserved word is ignored).
    fn parse(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let series = r.u64()?;
        let live_spans = r.u64()?;
        let updates = r.u64()?;
        let spans_ended = r.u64()?;
        let rejects = Rejects::parse(r)?;
        let s = Self {
            series,
            live_spans,
            updates,
            spans_ended,
            rejects,
            series_overflow: r.u64()?,
            identity_spoofs: r.u64()?,
            snapshots_exported: r.u64()?,
            segments: r.u64()?,
            sender_evictions: r.u64()?,
        };
        r.u64()?;
        Ok(s)
    }

    /// Reject counter of `status` (`ok` is always 0).
    pub fn rejected(&self, status: Status) -> u64 {
        self.rejects.get(status)
    }
}

/// A decoded reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// REGISTER: the series.
    Registered(u32),
    /// BATCH.
    Batch(BatchResult),
    /// SCRAPE.
    Scrape(ScrapePage),
    /// STATS.
    Stats(MetricsStats),
    /// SEGMENTS.
    Segments(Vec<WireSegment>),
    /// Refused with a non-ok status.
    Rejected(Status),
}

nexus_wire::reply_body!(Reply, encode_reply);

/// Encodes the reply to `req`.
pub fn encode_reply(req: &Header, reply: &Reply) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let mut w = Writer::new(&mut out);
    w.header(&Header {
        version: VERSION,
        ..req.reply()
    });
    let status = match reply {
        Reply::Rejected(s) => *s,
        _ => Status::Ok,
    };
    w.u8(status.as_u8());
    match reply {
        Reply::Rejected(_) => {}
        Reply::Registered(id) => {
            w.u32(*id);
        }
        Reply::Batch(b) => {
            w.u16(b.accepted).u16(b.rejected).u8(b.first_reject.as_u8());
        }
        Reply::Scrape(p) => {
            // Text past 4 GiB (never produced: pages are bounded) is cut at
            // the prefix limit rather than refused.
            let n = p.text.len().min(u32::MAX as usize);
            w.u32(p.next)
                .bool(p.more)
                .bytes_u32(p.text.as_bytes().get(..n).unwrap_or(b""));
        }
        Reply::Stats(s) => s.emit(&mut w),
        Reply::Segments(v) => {
            let n = u16::try_from(v.len()).unwrap_or(u16::MAX);
            w.u16(n);
            for s in v.iter().take(usize::from(n)) {
                w.u64(s.start_ns)
                    .u64(s.count)
                    .i64(s.sum)
                    .i64(s.min)
                    .i64(s.max);
            }
        }
    }
    // Unbounded writer; every count is capped to its prefix above: cannot fail.
    let _ = w.finish();
    out
}

/// Decodes a reply frame. Never panics.
pub fn decode_reply(frame: &[u8]) -> Result<(Header, Reply), WireError> {
    let (h, body) = Header::parse(frame, MAGIC)?;
    if h.version != VERSION || !h.is_reply() {
        return Err(WireError::BadValue);
    }
    let mut r = Reader::new(body);
    let status = r.enum_u8(Status::from_u8)?;
    let reply = if status != Status::Ok {
        Reply::Rejected(status)
    } else {
        match h.op & !REPLY_BIT {
            op::REGISTER => Reply::Registered(r.u32()?),
            op::BATCH => Reply::Batch(BatchResult {
                accepted: r.u16()?,
                rejected: r.u16()?,
                first_reject: r.enum_u8(Status::from_u8)?,
            }),
            op::SCRAPE => {
                let next = r.u32()?;
                let more = r.bool()?;
                let text = r.str_u32()?;
                Reply::Scrape(ScrapePage {
                    next,
                    more,
                    text: alloc::string::String::from(text),
                })
            }
            op::STATS => Reply::Stats(MetricsStats::parse(&mut r)?),
            op::SEGMENTS => {
                let n = r.u16()?;
                let mut v = Vec::with_capacity(usize::from(n).min(r.remaining() / 40));
                for _ in 0..n {
                    v.push(WireSegment {
                        start_ns: r.u64()?,
                        count: r.u64()?,
                        sum: r.i64()?,
                        min: r.i64()?,
                        max: r.i64()?,
                    });
                }
                Reply::Segments(v)
            }
            _ => return Err(WireError::BadValue),
        }
    };
    r.finish()?;
    Ok((h, reply))
}
