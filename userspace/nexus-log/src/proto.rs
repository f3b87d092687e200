//! The logd wire contract (version 1), used by both the clients in this
//! crate and the logd server. Layouts are documented byte by byte in
//! `docs/observability/logd.md`; the summary:
//!
//! ```text
//! header   magic "LG" | version u8 = 1 | op u8 | nonce u64      (12 bytes)
//! APPEND   (op 1, and op 4 = one-way: same body, never answered)
//!          level u8 | target u8-len+utf8 | message u16-len+utf8 | fields u16-len+utf8
//! QUERY    (op 2)
//!          since_ns u64 | until_ns u64 | min_level u8 | has_sender u8 (0|1)
//!          | sender u32 | cursor u64 | max_count u16 | max_bytes u32
//! STATS    (op 3) empty body
//! reply    header with op | 0x80 and the request's nonce, then status u8,
//!          then (only when status = ok) the op's reply body.
//! ```
//!
//! Decoders check structure only (lengths, UTF-8, flag values, trailing
//! bytes) and never panic; semantic limits are logd's policy and produce the
//! `invalid_args` / `over_limit` statuses.

use alloc::string::String;
use alloc::vec::Vec;

use nexus_ipc::wire::{put_bytes_u16, put_bytes_u8, Header, Reader, WireError, REPLY_BIT};
use nexus_ipc::ServiceId;

use crate::fields::Fields;
use crate::record::Record;
use crate::Level;

/// Protocol tag.
pub const MAGIC: [u8; 2] = *b"LG";
/// The version this crate speaks.
pub const VERSION: u8 = 1;

/// Request ops.
pub mod op {
    /// Append a record; answered with the record id or a reject status.
    pub const APPEND: u8 = 1;
    /// Read records.
    pub const QUERY: u8 = 2;
    /// Read counters.
    pub const STATS: u8 = 3;
    /// Append without a reply (used by the best-effort sink).
    pub const APPEND_ONEWAY: u8 = 4;
}

/// Reply statuses are shared by every nexus-obs protocol.
pub use nexus_ipc::wire::Status;

/// An APPEND body, borrowed from the frame. `level` is the raw byte: an
/// unknown level is `invalid_args`, judged by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendRequest<'a> {
    /// Raw level byte.
    pub level: u8,
    /// Scope.
    pub target: &'a str,
    /// Message.
    pub message: &'a str,
    /// Fields text (the server validates the convention).
    pub fields: &'a str,
}

/// A QUERY body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryRequest {
    /// Only records with `ts_ns >= since_ns`.
    pub since_ns: u64,
    /// Only records with `ts_ns <= until_ns` (`u64::MAX`: no bound).
    pub until_ns: u64,
    /// Raw minimum level byte: records at least this severe.
    pub min_level: u8,
    /// Only this sender's records.
    pub sender: Option<ServiceId>,
    /// First record id to consider (`0`: the oldest retained).
    pub cursor: u64,
    /// Most records in the reply (the server may lower it; `0` is invalid).
    pub max_count: u16,
    /// Most record bytes in the reply (the server may lower it).
    pub max_bytes: u32,
}

impl QueryRequest {
    /// Everything the caller may read, from the start, in pages of `max_count`.
    pub fn all(max_count: u16) -> Self {
        Self {
            since_ns: 0,
            until_ns: u64::MAX,
            min_level: Level::Trace.as_u8(),
            sender: None,
            cursor: 0,
            max_count,
            max_bytes: u32::MAX,
        }
    }
}

/// A decoded request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// APPEND; `oneway` for op 4.
    Append {
        /// No reply wanted.
        oneway: bool,
        /// The body.
        body: AppendRequest<'a>,
    },
    /// QUERY.
    Query(QueryRequest),
    /// STATS.
    Stats,
}

/// Why a request frame could not be decoded, with what the server needs to
/// answer: a header if there was one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// Not even a header with our magic: no nonce to echo, so no reply.
    NoHeader,
    /// Unknown version or op: reply `unsupported`.
    Unsupported(Header),
    /// The body does not parse: reply `malformed` (unless one-way).
    Malformed(Header),
}

/// Decodes a request frame. Never panics.
pub fn decode_request(frame: &[u8]) -> Result<(Header, Request<'_>), RequestError> {
    let (h, body) = Header::parse(frame, MAGIC).map_err(|_| RequestError::NoHeader)?;
    if h.version != VERSION || h.is_reply() {
        return Err(RequestError::Unsupported(h));
    }
    let mut r = Reader::new(body);
    let req = match h.op {
        op::APPEND | op::APPEND_ONEWAY => decode_append(&mut r).map(|body| Request::Append {
            oneway: h.op == op::APPEND_ONEWAY,
            body,
        }),
        op::QUERY => decode_query(&mut r).map(Request::Query),
        op::STATS => Ok(Request::Stats),
        _ => return Err(RequestError::Unsupported(h)),
    };
    match req {
        Ok(req) if r.finish().is_ok() => Ok((h, req)),
        _ => Err(RequestError::Malformed(h)),
    }
}

fn decode_append<'a>(r: &mut Reader<'a>) -> Result<AppendRequest<'a>, WireError> {
    Ok(AppendRequest {
        level: r.u8()?,
        target: r.str_u8()?,
        message: r.str_u16()?,
        fields: r.str_u16()?,
    })
}

fn decode_query(r: &mut Reader<'_>) -> Result<QueryRequest, WireError> {
    let since_ns = r.u64()?;
    let until_ns = r.u64()?;
    let min_level = r.u8()?;
    let has_sender = r.u8()?;
    let sender = r.u32()?;
    let sender = match has_sender {
        0 if sender == 0 => None,
        1 => Some(ServiceId::new(sender)),
        _ => return Err(WireError::BadValue),
    };
    Ok(QueryRequest {
        since_ns,
        until_ns,
        min_level,
        sender,
        cursor: r.u64()?,
        max_count: r.u16()?,
        max_bytes: r.u32()?,
    })
}

fn header(op: u8, nonce: u64) -> Header {
    Header::request(MAGIC, VERSION, op, nonce)
}

/// Encodes an APPEND (or one-way APPEND). Fails only if a string is longer
/// than its length prefix allows.
pub fn encode_append(
    nonce: u64,
    oneway: bool,
    body: &AppendRequest<'_>,
) -> Result<Vec<u8>, WireError> {
    let op = if oneway {
        op::APPEND_ONEWAY
    } else {
        op::APPEND
    };
    let mut out =
        Vec::with_capacity(16 + body.target.len() + body.message.len() + body.fields.len());
    header(op, nonce).emit(&mut out);
    out.push(body.level);
    put_bytes_u8(&mut out, body.target.as_bytes())?;
    put_bytes_u16(&mut out, body.message.as_bytes())?;
    put_bytes_u16(&mut out, body.fields.as_bytes())?;
    Ok(out)
}

/// Encodes a QUERY.
pub fn encode_query(nonce: u64, q: &QueryRequest) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + 36);
    header(op::QUERY, nonce).emit(&mut out);
    out.extend_from_slice(&q.since_ns.to_le_bytes());
    out.extend_from_slice(&q.until_ns.to_le_bytes());
    out.push(q.min_level);
    out.push(u8::from(q.sender.is_some()));
    out.extend_from_slice(&q.sender.map_or(0, ServiceId::get).to_le_bytes());
    out.extend_from_slice(&q.cursor.to_le_bytes());
    out.extend_from_slice(&q.max_count.to_le_bytes());
    out.extend_from_slice(&q.max_bytes.to_le_bytes());
    out
}

/// Encodes a STATS request.
pub fn encode_stats(nonce: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(12);
    header(op::STATS, nonce).emit(&mut out);
    out
}

/// One page of a QUERY reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryPage {
    /// The record id to pass as `cursor` to continue.
    pub next: u64,
    /// Records that existed in the scanned id range but were evicted before
    /// this read (all senders: an upper bound for a filtered query).
    pub gap: u64,
    /// True if the scan stopped early (count, bytes or scan bound), so more
    /// matching records may follow `next`.
    pub more: bool,
    /// The records, in id order.
    pub records: Vec<Record>,
}

/// Reject counters, one per non-ok status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rejects {
    /// `malformed` replies (and unanswerable header-less frames).
    pub malformed: u64,
    /// `unsupported`.
    pub unsupported: u64,
    /// `invalid_args`.
    pub invalid_args: u64,
    /// `over_limit`.
    pub over_limit: u64,
    /// `rate_limited`.
    pub rate_limited: u64,
    /// `denied`.
    pub denied: u64,
}

impl Rejects {
    /// Adds one to the counter of `status` (`ok` is not counted here).
    pub fn count(&mut self, status: Status) {
        let c = match status {
            Status::Ok => return,
            Status::Malformed => &mut self.malformed,
            Status::Unsupported => &mut self.unsupported,
            Status::InvalidArgs => &mut self.invalid_args,
            Status::OverLimit => &mut self.over_limit,
            Status::RateLimited => &mut self.rate_limited,
            Status::Denied => &mut self.denied,
        };
        *c = c.saturating_add(1);
    }

    fn as_array(&self) -> [u64; 6] {
        [
            self.malformed,
            self.unsupported,
            self.invalid_args,
            self.over_limit,
            self.rate_limited,
            self.denied,
        ]
    }

    fn from_array(a: [u64; 6]) -> Self {
        let [malformed, unsupported, invalid_args, over_limit, rate_limited, denied] = a;
        Self {
            malformed,
            unsupported,
            invalid_args,
            over_limit,
            rate_limited,
            denied,
        }
    }
}

/// Per-sender accounting in a STATS reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderStats {
    /// The sender.
    pub sender: ServiceId,
    /// Its records in the journal.
    pub records: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Its records evicted to make room (fair retention).
    pub evicted: u64,
    /// Its appends rejected (any status).
    pub rejected: u64,
}

/// A STATS reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Records held.
    pub records: u64,
    /// Bytes held (sum of record wire lengths).
    pub bytes: u64,
    /// Record bound.
    pub max_records: u64,
    /// Byte bound.
    pub max_bytes: u64,
    /// Records accepted since start.
    pub appended: u64,
    /// Records evicted since start.
    pub evicted: u64,
    /// Requests rejected, by status.
    pub rejects: Rejects,
    /// Appends refused for claiming an identity in a field (also counted
    /// in `invalid_args`).
    pub identity_spoofs: u64,
    /// Replies that could not be delivered (receiver queue full).
    pub replies_dropped: u64,
    /// Senders in the rate table.
    pub senders_tracked: u64,
    /// Idle senders evicted from the rate table.
    pub sender_evictions: u64,
    /// Per-sender accounting: the requester's own entry, or (for readers)
    /// the heaviest senders first, at most the configured number.
    pub senders: Vec<SenderStats>,
}

/// A decoded reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// APPEND accepted: the record id.
    Appended(u64),
    /// QUERY page.
    Page(QueryPage),
    /// STATS.
    Stats(Stats),
    /// Any request refused with this (non-ok) status.
    Rejected(Status),
}

/// Encodes the reply to the request whose header is `req`. The reply is
/// always in this crate's [`VERSION`] (so a client of another version
/// learns which version the server speaks), with the request's op and nonce.
pub fn encode_reply(req: &Header, reply: &Reply) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    Header {
        version: VERSION,
        ..req.reply()
    }
    .emit(&mut out);
    match reply {
        Reply::Rejected(s) => out.push(*s as u8),
        Reply::Appended(id) => {
            out.push(Status::Ok as u8);
            out.extend_from_slice(&id.to_le_bytes());
        }
        Reply::Page(p) => {
            out.push(Status::Ok as u8);
            out.extend_from_slice(&p.next.to_le_bytes());
            out.extend_from_slice(&p.gap.to_le_bytes());
            out.push(u8::from(p.more));
            let n = u16::try_from(p.records.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&n.to_le_bytes());
            for r in p.records.iter().take(usize::from(n)) {
                encode_record(&mut out, r);
            }
        }
        Reply::Stats(s) => {
            out.push(Status::Ok as u8);
            for v in [
                s.records,
                s.bytes,
                s.max_records,
                s.max_bytes,
                s.appended,
                s.evicted,
            ]
            .into_iter()
            .chain(s.rejects.as_array())
            .chain([
                s.identity_spoofs,
                s.replies_dropped,
                s.senders_tracked,
                s.sender_evictions,
            ]) {
                out.extend_from_slice(&v.to_le_bytes());
            }
            let n = u16::try_from(s.senders.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&n.to_le_bytes());
            for e in s.senders.iter().take(usize::from(n)) {
                out.extend_from_slice(&e.sender.get().to_le_bytes());
                for v in [e.records, e.bytes, e.evicted, e.rejected] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
    }
    out
}

/// Appends a record in its wire form. Lengths are bounded by logd's config
/// (far below the prefixes' range); an impossible overlong string is cut at
/// the prefix limit rather than corrupting the frame.
pub fn encode_record(out: &mut Vec<u8>, r: &Record) {
    out.extend_from_slice(&r.id.to_le_bytes());
    out.extend_from_slice(&r.ts_ns.to_le_bytes());
    out.extend_from_slice(&r.sender.get().to_le_bytes());
    out.push(r.level.as_u8());
    let _ = put_bytes_u8(out, prefix(&r.target, usize::from(u8::MAX)).as_bytes());
    for s in [r.message.as_str(), r.fields.as_str()] {
        let _ = put_bytes_u16(out, prefix(s, usize::from(u16::MAX)).as_bytes());
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a
/// character boundary.
fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    s.get(..s.floor_char_boundary(max)).unwrap_or("")
}

/// Decodes one record in its wire form, exactly (no trailing bytes). Used
/// by the state store, which keeps records in the same layout.
pub fn decode_record_bytes(bytes: &[u8]) -> Result<Record, WireError> {
    let mut r = Reader::new(bytes);
    let rec = decode_record(&mut r)?;
    r.finish()?;
    Ok(rec)
}

fn decode_record(r: &mut Reader<'_>) -> Result<Record, WireError> {
    Ok(Record {
        id: r.u64()?,
        ts_ns: r.u64()?,
        sender: ServiceId::new(r.u32()?),
        level: Level::from_u8(r.u8()?).ok_or(WireError::BadValue)?,
        target: String::from(r.str_u8()?),
        message: String::from(r.str_u16()?),
        fields: Fields::parse(r.str_u16()?).map_err(|_| WireError::BadValue)?,
    })
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
            op::APPEND => Reply::Appended(r.u64()?),
            op::QUERY => {
                let next = r.u64()?;
                let gap = r.u64()?;
                let more = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(WireError::BadValue),
                };
                let n = r.u16()?;
                // Each record is at least WIRE_OVERHEAD bytes: bound the
                // allocation by what the frame can actually hold.
                let cap = usize::from(n).min(r.remaining() / Record::WIRE_OVERHEAD);
                let mut records = Vec::with_capacity(cap);
                for _ in 0..n {
                    records.push(decode_record(&mut r)?);
                }
                Reply::Page(QueryPage {
                    next,
                    gap,
                    more,
                    records,
                })
            }
            op::STATS => {
                let mut v = [0u64; 16];
                for slot in v.iter_mut() {
                    *slot = r.u64()?;
                }
                let [records, bytes, max_records, max_bytes, appended, evicted, a, b, c, d, e, f, identity_spoofs, replies_dropped, senders_tracked, sender_evictions] =
                    v;
                let n = r.u16()?;
                let mut senders = Vec::with_capacity(usize::from(n).min(r.remaining() / 36));
                for _ in 0..n {
                    senders.push(SenderStats {
                        sender: ServiceId::new(r.u32()?),
                        records: r.u64()?,
                        bytes: r.u64()?,
                        evicted: r.u64()?,
                        rejected: r.u64()?,
                    });
                }
                Reply::Stats(Stats {
                    records,
                    bytes,
                    max_records,
                    max_bytes,
                    appended,
                    evicted,
                    rejects: Rejects::from_array([a, b, c, d, e, f]),
                    identity_spoofs,
                    replies_dropped,
                    senders_tracked,
                    sender_evictions,
                    senders,
                })
            }
            _ => return Err(WireError::BadValue),
        }
    };
    r.finish()?;
    Ok((h, reply))
}
