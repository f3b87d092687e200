//! The logd wire contract (versions 1 and 2), used by both the clients in this
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
//! Version 2 has the same layouts; it only allows typed field values
//! (`key:i=…`, see [`crate::fields`]) in APPEND fields and in the records of
//! a QUERY reply. A frame is sent in version 1 whenever its fields have no
//! typed value, so such frames are byte for byte what version 1 peers send.
//!
//! Decoders check structure only (lengths, UTF-8, flag values, trailing
//! bytes) and never panic; semantic limits are logd's policy and produce the
//! `invalid_args` / `over_limit` statuses.

use alloc::string::String;
use alloc::vec::Vec;

use nexus_ipc::ServiceId;
use nexus_wire::{Header, Reader, WireError, Writer, REPLY_BIT};

use crate::fields::Fields;
use crate::record::Record;
use crate::Level;

/// Protocol tag.
pub const MAGIC: [u8; 2] = *b"LG";
/// The base version: fields are strings only.
pub const VERSION: u8 = 1;
/// The version with typed field values (same layouts as [`VERSION`]).
pub const VERSION_TYPED: u8 = 2;

/// True for the versions this crate speaks.
pub const fn is_supported(version: u8) -> bool {
    version == VERSION || version == VERSION_TYPED
}

/// The version of a reply to a request of `version`: the same version if
/// it is supported, else the highest one (so the requester learns it).
pub const fn reply_version(version: u8) -> u8 {
    if is_supported(version) {
        version
    } else {
        VERSION_TYPED
    }
}

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

/// Reply statuses and their reject counters are shared by every nexus-obs
/// protocol.
pub use nexus_wire::{Rejects, Status};

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
    if !is_supported(h.version) || h.is_reply() {
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
    let has_sender = r.bool()?;
    let sender = r.u32()?;
    let sender = match (has_sender, sender) {
        (false, 0) => None,
        (true, id) => Some(ServiceId::new(id)),
        (false, _) => return Err(WireError::BadValue),
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

/// Encodes an APPEND (or one-way APPEND): in version 1 when the fields have
/// no typed value (the exact version 1 frame), else in version 2. Fails
/// only if a string is longer than its length prefix allows.
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
    let version = if crate::fields::text_has_types(body.fields) {
        VERSION_TYPED
    } else {
        VERSION
    };
    let mut out =
        Vec::with_capacity(17 + body.target.len() + body.message.len() + body.fields.len());
    Writer::new(&mut out)
        .header(&Header::request(MAGIC, version, op, nonce))
        .u8(body.level)
        .str_u8(body.target)
        .str_u16(body.message)
        .str_u16(body.fields)
        .finish()?;
    Ok(out)
}

/// Encodes a QUERY in version 1: the reply's records carry every field
/// value as a string (typed values lose their marker).
pub fn encode_query(nonce: u64, q: &QueryRequest) -> Vec<u8> {
    encode_query_version(nonce, VERSION, q)
}

/// Encodes a QUERY in `version` ([`VERSION_TYPED`]: the reply's records
/// keep typed values).
pub fn encode_query_version(nonce: u64, version: u8, q: &QueryRequest) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + 36);
    // Unbounded writer, fixed-size fields: cannot fail.
    let _ = Writer::new(&mut out)
        .header(&Header::request(MAGIC, version, op::QUERY, nonce))
        .u64(q.since_ns)
        .u64(q.until_ns)
        .u8(q.min_level)
        .bool(q.sender.is_some())
        .u32(q.sender.map_or(0, ServiceId::get))
        .u64(q.cursor)
        .u16(q.max_count)
        .u32(q.max_bytes)
        .finish();
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

nexus_wire::reply_body!(Reply, encode_reply);

/// Encodes the reply to the request whose header is `req`. The reply is in
/// the request's version if it is supported, else in [`VERSION_TYPED`] (so
/// a client of another version learns the highest version the server
/// speaks), with the request's op and nonce. A version 1 page carries its
/// records' fields as strings only ([`Fields::untyped`]).
pub fn encode_reply(req: &Header, reply: &Reply) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let mut w = Writer::new(&mut out);
    let version = reply_version(req.version);
    w.header(&Header {
        version,
        ..req.reply()
    });
    match reply {
        Reply::Rejected(s) => {
            w.u8(s.as_u8());
        }
        Reply::Appended(id) => {
            w.u8(Status::Ok.as_u8()).u64(*id);
        }
        Reply::Page(p) => {
            let n = u16::try_from(p.records.len()).unwrap_or(u16::MAX);
            w.u8(Status::Ok.as_u8())
                .u64(p.next)
                .u64(p.gap)
                .bool(p.more)
                .u16(n);
            for r in p.records.iter().take(usize::from(n)) {
                if version == VERSION && r.fields.has_types() {
                    let untyped = r.fields.untyped();
                    write_parts(
                        &mut w,
                        &RecordParts {
                            fields: untyped.as_str(),
                            ..RecordParts::of(r)
                        },
                    );
                } else {
                    write_record(&mut w, r);
                }
            }
        }
        Reply::Stats(s) => {
            w.u8(Status::Ok.as_u8())
                .u64(s.records)
                .u64(s.bytes)
                .u64(s.max_records)
                .u64(s.max_bytes)
                .u64(s.appended)
                .u64(s.evicted);
            s.rejects.emit(&mut w);
            w.u64(s.identity_spoofs)
                .u64(s.replies_dropped)
                .u64(s.senders_tracked)
                .u64(s.sender_evictions);
            let n = u16::try_from(s.senders.len()).unwrap_or(u16::MAX);
            w.u16(n);
            for e in s.senders.iter().take(usize::from(n)) {
                w.u32(e.sender.get())
                    .u64(e.records)
                    .u64(e.bytes)
                    .u64(e.evicted)
                    .u64(e.rejected);
            }
        }
    }
    // Unbounded writer; counts are capped to their prefixes above and
    // record strings are cut to theirs in `write_record`: cannot fail.
    let _ = w.finish();
    out
}

/// Bytes of a QUERY `ok` reply before its records: header, status, `next`,
/// `gap`, `more`, `count`.
pub const PAGE_REPLY_HEAD: usize = 12 + 1 + 8 + 8 + 1 + 2;

/// The first [`PAGE_REPLY_HEAD`] bytes of a QUERY `ok` reply to `req`. A
/// server that keeps records in their wire form writes this, then `count`
/// records as [`encode_record`] would: the frame is byte for byte the one
/// [`encode_reply`] makes of the same page.
pub fn page_reply_head(
    req: &Header,
    next: u64,
    gap: u64,
    more: bool,
    count: u16,
) -> [u8; PAGE_REPLY_HEAD] {
    let head = Writer::to_array::<PAGE_REPLY_HEAD>(|w| {
        w.header(&Header {
            version: reply_version(req.version),
            ..req.reply()
        })
        .u8(Status::Ok.as_u8())
        .u64(next)
        .u64(gap)
        .bool(more)
        .u16(count);
    });
    // Fixed-size fields that add up to exactly PAGE_REPLY_HEAD: cannot fail.
    head.unwrap_or([0; PAGE_REPLY_HEAD])
}

/// Appends a record in its wire form. Lengths are bounded by logd's config
/// (far below the prefixes' range); an impossible overlong string is cut at
/// the prefix limit rather than corrupting the frame.
pub fn encode_record(out: &mut Vec<u8>, r: &Record) {
    write_record(&mut Writer::new(out), r);
}

/// A record's parts, borrowed: what [`encode_record_parts`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordParts<'a> {
    /// Journal sequence number.
    pub id: u64,
    /// logd's clock at acceptance.
    pub ts_ns: u64,
    /// The appender.
    pub sender: ServiceId,
    /// Severity.
    pub level: Level,
    /// Scope.
    pub target: &'a str,
    /// Message.
    pub message: &'a str,
    /// Fields text, in the fields convention.
    pub fields: &'a str,
}

impl<'a> RecordParts<'a> {
    /// The parts of `r`.
    pub fn of(r: &'a Record) -> Self {
        Self {
            id: r.id,
            ts_ns: r.ts_ns,
            sender: r.sender,
            level: r.level,
            target: &r.target,
            message: &r.message,
            fields: r.fields.as_str(),
        }
    }

    /// Bytes on the wire (as [`Record::wire_len`]).
    pub fn wire_len(&self) -> usize {
        Record::WIRE_OVERHEAD + self.target.len() + self.message.len() + self.fields.len()
    }
}

/// Appends a record given by its parts in its wire form (the same bytes as
/// [`encode_record`] of the equal record), without building a [`Record`].
pub fn encode_record_parts(out: &mut Vec<u8>, r: &RecordParts<'_>) {
    write_parts(&mut Writer::new(out), r);
}

fn write_record(w: &mut Writer<'_>, r: &Record) {
    write_parts(w, &RecordParts::of(r));
}

fn write_parts(w: &mut Writer<'_>, r: &RecordParts<'_>) {
    w.u64(r.id)
        .u64(r.ts_ns)
        .u32(r.sender.get())
        .u8(r.level.as_u8())
        .str_u8(prefix(r.target, usize::from(u8::MAX)))
        .str_u16(prefix(r.message, usize::from(u16::MAX)))
        .str_u16(prefix(r.fields, usize::from(u16::MAX)));
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
/// by the state store, which keeps records in the same layout. Accepts
/// both fields versions (a version 1 text is a version 2 text), so records
/// stored before typed values existed decode unchanged.
pub fn decode_record_bytes(bytes: &[u8]) -> Result<Record, WireError> {
    let mut r = Reader::new(bytes);
    let rec = decode_record(&mut r, true)?;
    r.finish()?;
    Ok(rec)
}

fn decode_record(r: &mut Reader<'_>, typed: bool) -> Result<Record, WireError> {
    let rec = Record {
        id: r.u64()?,
        ts_ns: r.u64()?,
        sender: ServiceId::new(r.u32()?),
        level: r.enum_u8(Level::from_u8)?,
        target: String::from(r.str_u8()?),
        message: String::from(r.str_u16()?),
        fields: Fields::parse(r.str_u16()?).map_err(|_| WireError::BadValue)?,
    };
    // A version 1 page never carries typed values.
    if !typed && rec.fields.has_types() {
        return Err(WireError::BadValue);
    }
    Ok(rec)
}

/// Rewrites a version 1 QUERY `ok` reply built from stored records (the
/// zero-copy path: [`page_reply_head`] then stored records) so that its
/// records carry no typed value. Returns `None` when no record has one
/// (the frame is already a valid version 1 page) or the frame is not a
/// page; otherwise the same page with [`Fields::untyped`] fields.
pub fn untype_page(frame: &[u8]) -> Option<Vec<u8>> {
    let (h, body) = Header::parse(frame, MAGIC).ok()?;
    let mut r = Reader::new(body);
    let head = (r.u8().ok()?, r.u64().ok()?, r.u64().ok()?, r.bool().ok()?);
    let n = r.u16().ok()?;
    let start = r.clone();
    let mut typed = false;
    for _ in 0..n {
        r.bytes(8 + 8 + 4 + 1).ok()?;
        r.bytes_u8().ok()?;
        r.bytes_u16().ok()?;
        typed |= crate::fields::text_has_types(r.str_u16().ok()?);
    }
    if !typed || head.0 != Status::Ok.as_u8() {
        return None;
    }
    let mut r = start;
    let mut records = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        records.push(decode_record(&mut r, true).ok()?);
    }
    let req = Header {
        version: VERSION,
        op: h.op & !REPLY_BIT,
        ..h
    };
    Some(encode_reply(
        &req,
        &Reply::Page(QueryPage {
            next: head.1,
            gap: head.2,
            more: head.3,
            records,
        }),
    ))
}

/// Decodes a reply frame. Never panics.
pub fn decode_reply(frame: &[u8]) -> Result<(Header, Reply), WireError> {
    let (h, body) = Header::parse(frame, MAGIC)?;
    if !is_supported(h.version) || !h.is_reply() {
        return Err(WireError::BadValue);
    }
    let mut r = Reader::new(body);
    let status = r.enum_u8(Status::from_u8)?;
    let reply = if status != Status::Ok {
        Reply::Rejected(status)
    } else {
        match h.op & !REPLY_BIT {
            op::APPEND => Reply::Appended(r.u64()?),
            op::QUERY => {
                let next = r.u64()?;
                let gap = r.u64()?;
                let more = r.bool()?;
                let n = r.u16()?;
                // Each record is at least WIRE_OVERHEAD bytes: bound the
                // allocation by what the frame can actually hold.
                let cap = usize::from(n).min(r.remaining() / Record::WIRE_OVERHEAD);
                let mut records = Vec::with_capacity(cap);
                for _ in 0..n {
                    records.push(decode_record(&mut r, h.version == VERSION_TYPED)?);
                }
                Reply::Page(QueryPage {
                    next,
                    gap,
                    more,
                    records,
                })
            }
            op::STATS => {
                let records = r.u64()?;
                let bytes = r.u64()?;
                let max_records = r.u64()?;
                let max_bytes = r.u64()?;
                let appended = r.u64()?;
                let evicted = r.u64()?;
                let rejects = Rejects::parse(&mut r)?;
                let identity_spoofs = r.u64()?;
                let replies_dropped = r.u64()?;
                let senders_tracked = r.u64()?;
                let sender_evictions = r.u64()?;
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
                    rejects,
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
