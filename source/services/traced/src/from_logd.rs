//! The logd fallback: finished spans read back from logd's journal.
//!
//! metricsd writes one record per ended span to logd (target
//! [`SPAN_TARGET`], the span's name as message, its ids, times, status,
//! owner and attributes as fields; `tracing.md`, *Span-end records in
//! logd*). [`LogdFollower`] pages through logd with QUERY frames and turns
//! those records into [`TracedSpan`]s, so a span that never reached
//! traced over IPC is still correlated. Like the rest of the crate it does
//! no I/O: [`LogdFollower::poll`] says when to send which frame,
//! [`LogdFollower::on_reply`] takes logd's answer. The frames are
//! `nexus_log::proto`'s, the codec logd and all its clients share.
//!
//! **Identity.** A record's service is never read from a field that any
//! appender could write. Each record carries the sender logd stamped from
//! the transport. If that sender is the *forwarder* (metricsd's id, given
//! by the runtime), the span belongs to the service metricsd names in
//! `owner`, a field metricsd fills from *its* transport stamp of the
//! span's START and END (spans are keyed by owner there, so no service can
//! end another's span). Any other sender's span-end record belongs to that
//! sender: an `owner` field in it must name the sender itself, otherwise
//! the record is refused and counted as an identity claim.
//!
//! **Bounds.** One QUERY in flight; one every `poll_interval_ms` (at once
//! after a page logd cut at a bound); a reply unanswered for
//! `reply_timeout_ms` is given up and counted; at most `page_records`
//! records, so spans, per reply (a page with more is refused whole).
//!
//! **Cursor.** The follower keeps the id of the next record to read.
//! Records evicted before they were read are skipped by logd and counted
//! here ([`FollowStats::gap`]); the cursor continues after them. logd
//! refuses a cursor beyond its journal with `invalid_args` (a journal that
//! restarted without its records): the follower starts again from the
//! oldest retained record and counts it.

use alloc::string::String;
use alloc::vec::Vec;

use nexus_ipc::ServiceId;
use nexus_log::proto::{self, QueryPage, QueryRequest, Reply};
use nexus_log::{Level, Record};
use nexus_trace::{SpanContext, SpanId, SpanRecord, SpanStatus, TraceFlags, TraceId};
use nexus_wire::{Header, Status, REPLY_BIT};

use crate::config::LogdFallback;
use crate::correlate::{Origin, TracedSpan};

/// Target of the span-end records metricsd writes (metricsd's
/// `server::SPAN_TARGET`; a test keeps the two equal).
pub const SPAN_TARGET: &str = "trace.span";
/// Prefix of an attribute's field key in a span-end record.
pub const ATTR_PREFIX: &str = "attr.";

const MS: u64 = 1_000_000;

/// Why [`LogdFollower::on_reply`] took nothing from a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowError {
    /// Not a logd reply that decodes (short, garbage, bad record); the
    /// QUERY it answers, if any, is given up.
    Malformed,
    /// A well-formed reply to no QUERY in flight (stale nonce, another
    /// op): ignored, the QUERY in flight stays.
    Unexpected,
    /// logd refused the QUERY with this status (`denied`: traced lacks
    /// logd's reader role; `invalid_args`: the cursor was reset).
    Refused(Status),
    /// A page logd cannot have sent: `next` before the cursor, record ids
    /// outside `[cursor, next)` or not increasing, more records than
    /// asked. Nothing of it is kept and the cursor stays.
    BadPage,
}

/// Why one span-end record was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanReject {
    /// A required field is absent (`trace_id`, `span_id`, `start_ns`,
    /// `end_ns`, `status`, or `owner` in a forwarder's record).
    Missing(&'static str),
    /// An id field is not lower-case hex of the right length.
    BadId(&'static str),
    /// An id field is all zeros.
    ZeroId(&'static str),
    /// A number field is not a plain decimal in range.
    BadNumber(&'static str),
    /// `status` is not `unset`, `ok` or `error`.
    BadStatus,
    /// `end_ns` is before `start_ns`, or `duration_ns` disagrees.
    BadTimes,
    /// The message (the span's name) is empty.
    EmptyName,
    /// An attribute field with an empty key (`attr.`).
    BadAttr,
    /// `owner` in a record from a sender other than the forwarder names
    /// another service: an identity claim.
    IdentityClaim,
}

/// The follower's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FollowStats {
    /// QUERY frames handed out by `poll`.
    pub queries: u64,
    /// QUERYs given up after `reply_timeout_ms` without a reply.
    pub timeouts: u64,
    /// Pages taken (replies with status ok that were accepted).
    pub pages: u64,
    /// Frames refused as [`FollowError::Malformed`] or
    /// [`FollowError::BadPage`].
    pub bad_replies: u64,
    /// Replies ignored as [`FollowError::Unexpected`].
    pub unexpected: u64,
    /// QUERYs logd refused ([`FollowError::Refused`]).
    pub refused: u64,
    /// Cursor resets after logd refused the cursor (`invalid_args`).
    pub cursor_resets: u64,
    /// Records read.
    pub records: u64,
    /// Record ids evicted from logd before they could be read (logd's
    /// `gap`, summed; for a sender-filtered read an upper bound).
    pub gap: u64,
    /// Span-end records turned into spans.
    pub spans: u64,
    /// Records that are not span ends (another target), skipped.
    pub skipped: u64,
    /// Span-end records refused as malformed (any [`SpanReject`] but
    /// [`SpanReject::IdentityClaim`]).
    pub rejected: u64,
    /// Span-end records refused for an identity claim.
    pub identity_claims: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InFlight {
    nonce: u64,
    cursor: u64,
    sent_ns: u64,
}

/// Follows logd's journal for span-end records (see the module docs).
#[derive(Debug, Clone)]
pub struct LogdFollower {
    cfg: LogdFallback,
    node: u64,
    forwarder: Option<ServiceId>,
    cursor: u64,
    nonce: u64,
    in_flight: Option<InFlight>,
    last_sent_ns: Option<u64>,
    catch_up: bool,
    stats: FollowStats,
}

/// Time from `then` to `now`; a clock that went back counts as "long
/// ago", so the follower never stalls on it.
fn elapsed(now: u64, then: u64) -> u64 {
    now.checked_sub(then).unwrap_or(u64::MAX)
}

impl LogdFollower {
    /// A follower on node `node` (this node's device id: the node of every
    /// span read), starting at the oldest record logd retains. `forwarder`
    /// is metricsd's service id as the runtime knows it (the sender whose
    /// `owner` field is trusted); with it, QUERYs ask for that sender's
    /// records only; without it, for every record traced may read.
    pub fn new(cfg: LogdFallback, node: u64, forwarder: Option<ServiceId>) -> Self {
        Self {
            cfg,
            node,
            forwarder,
            cursor: 0,
            nonce: 0,
            in_flight: None,
            last_sent_ns: None,
            catch_up: false,
            stats: FollowStats::default(),
        }
    }

    /// The bounds in force.
    pub fn config(&self) -> &LogdFallback {
        &self.cfg
    }

    /// Counters so far.
    pub fn stats(&self) -> FollowStats {
        self.stats
    }

    /// The id of the next record to read (`0`: the oldest retained).
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Continues from `cursor` (e.g. one kept across a restart of traced).
    /// A QUERY in flight is given up (its reply will be unexpected).
    pub fn set_cursor(&mut self, cursor: u64) {
        self.cursor = cursor;
        self.in_flight = None;
    }

    /// Sets the forwarder (metricsd's id, once the runtime knows it).
    pub fn set_forwarder(&mut self, forwarder: Option<ServiceId>) {
        self.forwarder = forwarder;
    }

    /// True while a QUERY waits for its reply.
    pub fn in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// The QUERY frame to send to logd now, if one is due: the follower is
    /// enabled, no QUERY is in flight (or the one in flight timed out),
    /// and `poll_interval_ms` passed since the last one (or the last page
    /// was cut at a bound).
    pub fn poll(&mut self, now_ns: u64) -> Option<Vec<u8>> {
        if !self.cfg.enabled {
            return None;
        }
        if let Some(f) = self.in_flight {
            if elapsed(now_ns, f.sent_ns) < self.cfg.reply_timeout_ms.saturating_mul(MS) {
                return None;
            }
            self.stats.timeouts += 1;
            self.in_flight = None;
        } else if !self.catch_up {
            if let Some(t) = self.last_sent_ns {
                if elapsed(now_ns, t) < self.cfg.poll_interval_ms.saturating_mul(MS) {
                    return None;
                }
            }
        }
        self.nonce = self.nonce.wrapping_add(1);
        let q = QueryRequest {
            since_ns: 0,
            until_ns: u64::MAX,
            min_level: Level::Trace.as_u8(),
            sender: self.forwarder,
            cursor: self.cursor,
            max_count: self.page_records(),
            max_bytes: self.cfg.page_bytes,
        };
        self.in_flight = Some(InFlight {
            nonce: self.nonce,
            cursor: self.cursor,
            sent_ns: now_ns,
        });
        self.last_sent_ns = Some(now_ns);
        self.catch_up = false;
        self.stats.queries += 1;
        // Version 2: records come back with their typed values as stored.
        Some(proto::encode_query_version(
            self.nonce,
            proto::VERSION_TYPED,
            &q,
        ))
    }

    fn page_records(&self) -> u16 {
        self.cfg.page_records.max(1)
    }

    /// Takes logd's reply to the QUERY in flight: advances the cursor past
    /// the page (and any evicted gap), appends a span to `out` for every
    /// valid span-end record, and returns how many. Other records are
    /// skipped, malformed span ends refused; both counted. Never panics,
    /// whatever `frame` holds.
    pub fn on_reply(
        &mut self,
        frame: &[u8],
        out: &mut Vec<TracedSpan>,
    ) -> Result<usize, FollowError> {
        let Ok((h, _)) = Header::parse(frame, proto::MAGIC) else {
            self.stats.bad_replies += 1;
            return Err(FollowError::Malformed);
        };
        let asked = match self.in_flight {
            Some(f) if f.nonce == h.nonce && h.op == (proto::op::QUERY | REPLY_BIT) => f,
            _ => {
                self.stats.unexpected += 1;
                return Err(FollowError::Unexpected);
            }
        };
        self.in_flight = None;
        let page = match proto::decode_reply(frame) {
            Ok((_, Reply::Page(p))) => p,
            Ok((_, Reply::Rejected(s))) => {
                self.stats.refused += 1;
                if s == Status::InvalidArgs && self.cursor != 0 {
                    self.cursor = 0;
                    self.stats.cursor_resets += 1;
                }
                return Err(FollowError::Refused(s));
            }
            _ => {
                self.stats.bad_replies += 1;
                return Err(FollowError::Malformed);
            }
        };
        if !self.page_is_sound(asked.cursor, &page) {
            self.stats.bad_replies += 1;
            return Err(FollowError::BadPage);
        }
        self.stats.pages += 1;
        self.stats.gap = self.stats.gap.saturating_add(page.gap);
        self.cursor = page.next;
        self.catch_up = page.more;
        let mut n = 0;
        for r in &page.records {
            self.stats.records += 1;
            match span_of_record(r, self.node, self.forwarder) {
                Ok(Some(span)) => {
                    out.push(span);
                    self.stats.spans += 1;
                    n += 1;
                }
                Ok(None) => self.stats.skipped += 1,
                Err(SpanReject::IdentityClaim) => self.stats.identity_claims += 1,
                Err(_) => self.stats.rejected += 1,
            }
        }
        Ok(n)
    }

    /// A page logd could have sent for a QUERY from `cursor`: `next` does
    /// not go back, records are in `[cursor, next)` in increasing id
    /// order, and there are no more than asked.
    fn page_is_sound(&self, cursor: u64, p: &QueryPage) -> bool {
        if p.next < cursor || p.records.len() > usize::from(self.page_records()) {
            return false;
        }
        let mut low = cursor;
        let mut first = true;
        for r in &p.records {
            if r.id < low || (!first && r.id == low) || r.id >= p.next {
                return false;
            }
            low = r.id;
            first = false;
        }
        true
    }
}

/// A plain decimal (ASCII digits only, no sign) in `u64`.
fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn number(r: &Record, key: &'static str) -> Result<u64, SpanReject> {
    let v = r.fields.get(key).ok_or(SpanReject::Missing(key))?;
    decimal(v).ok_or(SpanReject::BadNumber(key))
}

fn service_id(v: &str, key: &'static str) -> Result<u32, SpanReject> {
    decimal(v)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or(SpanReject::BadNumber(key))
}

fn id_error(e: nexus_trace::HexError, key: &'static str) -> SpanReject {
    match e {
        nexus_trace::HexError::Zero => SpanReject::ZeroId(key),
        _ => SpanReject::BadId(key),
    }
}

/// The span a logd record describes, with its origin: `Ok(None)` if the
/// record is not a span end (another target), `Err` if it is one that is
/// malformed or claims another service's identity. `forwarder` is the
/// sender whose `owner` field is trusted (metricsd); see the module docs.
pub fn span_of_record(
    r: &Record,
    node: u64,
    forwarder: Option<ServiceId>,
) -> Result<Option<TracedSpan>, SpanReject> {
    if r.target != SPAN_TARGET {
        return Ok(None);
    }
    let owner = r.fields.get("owner");
    let service = if Some(r.sender) == forwarder {
        service_id(owner.ok_or(SpanReject::Missing("owner"))?, "owner")?
    } else {
        let me = r.sender.get();
        match owner {
            Some(o) if service_id(o, "owner")? != me => return Err(SpanReject::IdentityClaim),
            _ => me,
        }
    };
    let field = |key: &'static str| r.fields.get(key).ok_or(SpanReject::Missing(key));
    let trace = TraceId::from_hex(field("trace_id")?).map_err(|e| id_error(e, "trace_id"))?;
    let span = SpanId::from_hex(field("span_id")?).map_err(|e| id_error(e, "span_id"))?;
    let parent = match r.fields.get("parent_id") {
        Some(p) => Some(SpanId::from_hex(p).map_err(|e| id_error(e, "parent_id"))?),
        None => None,
    };
    let start_ns = number(r, "start_ns")?;
    let end_ns = number(r, "end_ns")?;
    if end_ns < start_ns {
        return Err(SpanReject::BadTimes);
    }
    if r.fields.get("duration_ns").is_some() && number(r, "duration_ns")? != end_ns - start_ns {
        return Err(SpanReject::BadTimes);
    }
    let status = SpanStatus::parse(field("status")?).ok_or(SpanReject::BadStatus)?;
    if r.message.is_empty() {
        return Err(SpanReject::EmptyName);
    }
    let mut attrs = Vec::new();
    for (k, v) in r.fields.iter() {
        if let Some(key) = k.strip_prefix(ATTR_PREFIX) {
            if key.is_empty() {
                return Err(SpanReject::BadAttr);
            }
            attrs.push((String::from(key), String::from(v)));
        }
    }
    let record = SpanRecord {
        // Only sampled spans reach metricsd (a tracer gives its sink
        // nothing else).
        context: SpanContext::new(trace, span, TraceFlags::SAMPLED),
        parent,
        // The record does not say whether the parent was remote.
        remote_parent: false,
        name: r.message.clone(),
        start_ns,
        end_ns,
        status,
        status_message: None,
        attrs,
        events: Vec::new(),
        tracestate: None,
        dropped_attrs: 0,
        dropped_events: 0,
    };
    Ok(Some(TracedSpan::local(record, Origin { node, service })))
}
