//! The metricsd wire contract (version 1), shared by the client in this
//! crate and the metricsd server. Layouts byte by byte are in
//! `docs/observability/metrics.md`; the summary:
//!
//! ```text
//! header     magic "MT" | version 1 | op | nonce u64                 (12 bytes)
//! REGISTER   (op 1) kind u8 | name u8-len | nlabels u8 | (key u8-len, value u8-len)*
//!                   | nbounds u8 | bound u64*            → ok: series u32
//! BATCH      (op 2; op 3 = one-way, never answered) count u16 | entry*
//!   entry    tag u8, then
//!            1 INC      series u32 | delta u64
//!            2 SET      series u32 | value i64
//!            3 ADD      series u32 | delta i64
//!            4 HIST     series u32 | n u8 | count u64 * n | sum u64   (per-bucket deltas)
//!            5 START    span u64 | trace u128 | parent u64 (0: root) | start_ns u64 | name u8-len
//!            6 END      span u64 | end_ns u64 | status u8 | nattrs u8 | (key u8-len, value u8-len)*
//!                                                        → ok: accepted u16 | rejected u16 | first_reject u8
//! SCRAPE     (op 4) cursor u32 | max_bytes u32           → ok: next u32 | more u8 | text u32-len
//! STATS      (op 5) empty                                → ok: 16 × u64
//! SEGMENTS   (op 6) series u32 | tier u8 (1: 10 s, 2: 60 s) → ok: n u16 | segment*
//!   segment  start_ns u64 | count u64 | sum i64 | min i64 | max i64
//! reply      header with op | 0x80, same nonce; status u8; body only if ok
//! ```
//!
//! Decoders check structure only and never panic; limits and policy are
//! metricsd's (`invalid_args`, `over_limit`, `rate_limited`).

use alloc::vec::Vec;

use nexus_ipc::wire::{put_bytes_u8, Header, Reader, WireError, REPLY_BIT};

pub use nexus_ipc::wire::Status;

/// Protocol tag.
pub const MAGIC: [u8; 2] = *b"MT";
/// The version this crate speaks.
pub const VERSION: u8 = 1;

/// Request ops.
pub mod op {
    /// Register (or look up) a series.
    pub const REGISTER: u8 = 1;
    /// A batch of updates and span events, answered.
    pub const BATCH: u8 = 2;
    /// A batch, never answered (the client's flush).
    pub const BATCH_ONEWAY: u8 = 3;
    /// Prometheus text exposition, paged by family.
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
    /// A span began.
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
    /// A span ended.
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
    pub const SPAN_START: u8 = 5;
    /// [`super::Entry::SpanEnd`].
    pub const SPAN_END: u8 = 6;
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
        /// First family index.
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

fn pairs<'a>(r: &mut Reader<'a>) -> Result<Vec<(&'a str, &'a str)>, WireError> {
    let n = r.u8()?;
    // Each pair takes at least 2 bytes: bound the allocation by the input.
    let mut v = Vec::with_capacity(usize::from(n).min(r.remaining() / 2));
    for _ in 0..n {
        v.push((r.str_u8()?, r.str_u8()?));
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
            value: r.u64()? as i64,
        },
        tag::ADD => Entry::Add {
            series: r.u32()?,
            delta: r.u64()? as i64,
        },
        tag::HIST => {
            let series = r.u32()?;
            let n = r.u8()?;
            let mut counts = Vec::with_capacity(usize::from(n).min(r.remaining() / 8));
            for _ in 0..n {
                counts.push(r.u64()?);
            }
            Entry::Hist {
                series,
                counts,
                sum: r.u64()?,
            }
        }
        tag::SPAN_START => Entry::SpanStart {
            span: r.u64()?,
            trace: u128::from_le_bytes(r.array()?),
            parent: r.u64()?,
            start_ns: r.u64()?,
            name: r.str_u8()?,
        },
        tag::SPAN_END => Entry::SpanEnd {
            span: r.u64()?,
            end_ns: r.u64()?,
            status: r.u8()?,
            attrs: pairs(r)?,
        },
        _ => return Err(WireError::BadValue),
    })
}

/// Decodes a request frame. Never panics.
pub fn decode_request(frame: &[u8]) -> Result<(Header, Request<'_>), RequestError> {
    let (h, body) = Header::parse(frame, MAGIC).map_err(|_| RequestError::NoHeader)?;
    if h.version != VERSION || h.is_reply() {
        return Err(RequestError::Unsupported(h));
    }
    let mut r = Reader::new(body);
    let req = match h.op {
        op::REGISTER => (|| -> Result<Request<'_>, WireError> {
            let kind = r.u8()?;
            let name = r.str_u8()?;
            let labels = pairs(&mut r)?;
            let n = r.u8()?;
            let mut bounds = Vec::with_capacity(usize::from(n).min(r.remaining() / 8));
            for _ in 0..n {
                bounds.push(r.u64()?);
            }
            Ok(Request::Register(Register {
                kind,
                name,
                labels,
                bounds,
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

fn put_pairs(out: &mut Vec<u8>, pairs: &[(&str, &str)]) -> Result<(), WireError> {
    out.push(u8::try_from(pairs.len()).map_err(|_| WireError::BadValue)?);
    for (k, v) in pairs {
        put_bytes_u8(out, k.as_bytes())?;
        put_bytes_u8(out, v.as_bytes())?;
    }
    Ok(())
}

/// Encodes a REGISTER.
pub fn encode_register(nonce: u64, reg: &Register<'_>) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(64);
    header(op::REGISTER, nonce).emit(&mut out);
    out.push(reg.kind);
    put_bytes_u8(&mut out, reg.name.as_bytes())?;
    put_pairs(&mut out, &reg.labels)?;
    out.push(u8::try_from(reg.bounds.len()).map_err(|_| WireError::BadValue)?);
    for b in &reg.bounds {
        out.extend_from_slice(&b.to_le_bytes());
    }
    Ok(out)
}

/// Appends one entry's wire form to `out`.
pub fn encode_entry(out: &mut Vec<u8>, e: &Entry<'_>) -> Result<(), WireError> {
    match e {
        Entry::Inc { series, delta } => {
            out.push(tag::INC);
            out.extend_from_slice(&series.to_le_bytes());
            out.extend_from_slice(&delta.to_le_bytes());
        }
        Entry::Set { series, value } => {
            out.push(tag::SET);
            out.extend_from_slice(&series.to_le_bytes());
            out.extend_from_slice(&value.to_le_bytes());
        }
        Entry::Add { series, delta } => {
            out.push(tag::ADD);
            out.extend_from_slice(&series.to_le_bytes());
            out.extend_from_slice(&delta.to_le_bytes());
        }
        Entry::Hist {
            series,
            counts,
            sum,
        } => {
            out.push(tag::HIST);
            out.extend_from_slice(&series.to_le_bytes());
            out.push(u8::try_from(counts.len()).map_err(|_| WireError::BadValue)?);
            for c in counts {
                out.extend_from_slice(&c.to_le_bytes());
            }
            out.extend_from_slice(&sum.to_le_bytes());
        }
        Entry::SpanStart {
            span,
            trace,
            parent,
            start_ns,
            name,
        } => {
            out.push(tag::SPAN_START);
            out.extend_from_slice(&span.to_le_bytes());
            out.extend_from_slice(&trace.to_le_bytes());
            out.extend_from_slice(&parent.to_le_bytes());
            out.extend_from_slice(&start_ns.to_le_bytes());
            put_bytes_u8(out, name.as_bytes())?;
        }
        Entry::SpanEnd {
            span,
            end_ns,
            status,
            attrs,
        } => {
            out.push(tag::SPAN_END);
            out.extend_from_slice(&span.to_le_bytes());
            out.extend_from_slice(&end_ns.to_le_bytes());
            out.push(*status);
            put_pairs(out, attrs)?;
        }
    }
    Ok(())
}

/// Starts a BATCH frame; append entries with [`encode_entry`] and finish
/// with [`finish_batch`].
pub fn begin_batch(nonce: u64, oneway: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    header(if oneway { op::BATCH_ONEWAY } else { op::BATCH }, nonce).emit(&mut out);
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// Writes the entry count into a frame started by [`begin_batch`].
pub fn finish_batch(frame: &mut [u8], count: u16) {
    if let Some(slot) = frame.get_mut(12..14) {
        slot.copy_from_slice(&count.to_le_bytes());
    }
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
    header(op::SCRAPE, nonce).emit(&mut out);
    out.extend_from_slice(&cursor.to_le_bytes());
    out.extend_from_slice(&max_bytes.to_le_bytes());
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
    header(op::SEGMENTS, nonce).emit(&mut out);
    out.extend_from_slice(&series.to_le_bytes());
    out.push(tier);
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
    /// Family index to continue from.
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
    /// Rejects by status: malformed, unsupported, invalid_args, over_limit, rate_limited, denied.
    pub rejects: [u64; 6],
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
    fn to_array(self) -> [u64; 16] {
        let [a, b, c, d, e, f] = self.rejects;
        [
            self.series,
            self.live_spans,
            self.updates,
            self.spans_ended,
            a,
            b,
            c,
            d,
            e,
            f,
            self.series_overflow,
            self.identity_spoofs,
            self.snapshots_exported,
            self.segments,
            self.sender_evictions,
            0,
        ]
    }

    fn from_array(v: [u64; 16]) -> Self {
        let [series, live_spans, updates, spans_ended, a, b, c, d, e, f, series_overflow, identity_spoofs, snapshots_exported, segments, sender_evictions, _] =
            v;
        Self {
            series,
            live_spans,
            updates,
            spans_ended,
            rejects: [a, b, c, d, e, f],
            series_overflow,
            identity_spoofs,
            snapshots_exported,
            segments,
            sender_evictions,
        }
    }

    /// Reject counter of `status`.
    pub fn rejected(&self, status: Status) -> u64 {
        let i = (status as usize).wrapping_sub(1);
        self.rejects.get(i).copied().unwrap_or(0)
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

/// Encodes the reply to `req`.
pub fn encode_reply(req: &Header, reply: &Reply) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    Header {
        version: VERSION,
        ..req.reply()
    }
    .emit(&mut out);
    if let Reply::Rejected(s) = reply {
        out.push(*s as u8);
        return out;
    }
    out.push(Status::Ok as u8);
    match reply {
        Reply::Rejected(_) => {}
        Reply::Registered(id) => out.extend_from_slice(&id.to_le_bytes()),
        Reply::Batch(b) => {
            out.extend_from_slice(&b.accepted.to_le_bytes());
            out.extend_from_slice(&b.rejected.to_le_bytes());
            out.push(b.first_reject as u8);
        }
        Reply::Scrape(p) => {
            out.extend_from_slice(&p.next.to_le_bytes());
            out.push(u8::from(p.more));
            let n = u32::try_from(p.text.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(p.text.as_bytes().get(..n as usize).unwrap_or(b""));
        }
        Reply::Stats(s) => {
            for v in s.to_array() {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        Reply::Segments(v) => {
            let n = u16::try_from(v.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&n.to_le_bytes());
            for s in v.iter().take(usize::from(n)) {
                out.extend_from_slice(&s.start_ns.to_le_bytes());
                out.extend_from_slice(&s.count.to_le_bytes());
                out.extend_from_slice(&s.sum.to_le_bytes());
                out.extend_from_slice(&s.min.to_le_bytes());
                out.extend_from_slice(&s.max.to_le_bytes());
            }
        }
    }
    out
}

/// Decodes a reply frame. Never panics.
pub fn decode_reply(frame: &[u8]) -> Result<(Header, Reply), WireError> {
    let (h, body) = Header::parse(frame, MAGIC)?;
    if h.version != VERSION || !h.is_reply() {
        return Err(WireError::BadValue);
    }
    let mut r = Reader::new(body);
    let status = Status::from_u8(r.u8()?).ok_or(WireError::BadValue)?;
    let reply = if status != Status::Ok {
        Reply::Rejected(status)
    } else {
        match h.op & !REPLY_BIT {
            op::REGISTER => Reply::Registered(r.u32()?),
            op::BATCH => Reply::Batch(BatchResult {
                accepted: r.u16()?,
                rejected: r.u16()?,
                first_reject: Status::from_u8(r.u8()?).ok_or(WireError::BadValue)?,
            }),
            op::SCRAPE => {
                let next = r.u32()?;
                let more = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(WireError::BadValue),
                };
                let n = r.u32()?;
                let text =
                    core::str::from_utf8(r.bytes(n as usize)?).map_err(|_| WireError::BadValue)?;
                Reply::Scrape(ScrapePage {
                    next,
                    more,
                    text: alloc::string::String::from(text),
                })
            }
            op::STATS => {
                let mut v = [0u64; 16];
                for slot in v.iter_mut() {
                    *slot = r.u64()?;
                }
                Reply::Stats(MetricsStats::from_array(v))
            }
            op::SEGMENTS => {
                let n = r.u16()?;
                let mut v = Vec::with_capacity(usize::from(n).min(r.remaining() / 40));
                for _ in 0..n {
                    v.push(WireSegment {
                        start_ns: r.u64()?,
                        count: r.u64()?,
                        sum: r.u64()? as i64,
                        min: r.u64()? as i64,
                        max: r.u64()? as i64,
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
