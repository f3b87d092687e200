//! logd's pure logic: decode → decide → encode. No I/O, no clock reads:
//! the caller passes the time and the transport-stamped sender, and sends
//! the reply (if any) back to that sender. The same code runs in host
//! tests, the host demo and the OS runtime.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use nexus_bounds::{BucketConfig, LimiterConfig, RateLimiter};
use nexus_ipc::ServiceId;
use nexus_log::fields;
use nexus_log::proto::{
    self, AppendRequest, QueryRequest, RecordParts, Rejects, Reply, Request, RequestError, Stats,
    Status,
};
use nexus_log::{Level, Record};
use nexus_wire::Header;

use crate::config::{Config, ConfigError};
use crate::journal::{Filter, Journal, PageLimits};

/// What handling one frame produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    /// The frame to send back to the sender, if any.
    pub reply: Option<Vec<u8>>,
    /// The request's op, if the header parsed.
    pub op: Option<u8>,
    /// The outcome (`None` for a frame without a readable header).
    pub status: Option<Status>,
    /// The id of the record this frame appended, if it did.
    pub appended: Option<u64>,
}

/// The logd service core.
#[derive(Debug)]
pub struct Logd {
    cfg: Config,
    readers: BTreeSet<ServiceId>,
    journal: Journal,
    rates: RateLimiter<ServiceId>,
    rejects: Rejects,
    identity_spoofs: u64,
    replies_dropped: u64,
}

impl Logd {
    /// A logd with `cfg`, for a transport whose frames are at most
    /// `max_frame_bytes`. `readers` are the ids allowed to read everything.
    pub fn new(
        cfg: Config,
        max_frame_bytes: usize,
        readers: impl IntoIterator<Item = ServiceId>,
    ) -> Result<Self, ConfigError> {
        cfg.validate(max_frame_bytes)?;
        Ok(Self {
            journal: Journal::new(
                cfg.journal.max_records,
                cfg.journal.max_bytes,
                cfg.rate.max_senders,
            ),
            rates: RateLimiter::new(LimiterConfig {
                events: BucketConfig {
                    rate_per_sec: cfg.rate.events_per_sec,
                    burst: cfg.rate.events_burst,
                },
                bytes: BucketConfig {
                    rate_per_sec: cfg.rate.bytes_per_sec,
                    burst: cfg.rate.bytes_burst,
                },
                max_keys: usize::try_from(cfg.rate.max_senders).unwrap_or(usize::MAX),
            }),
            readers: readers.into_iter().collect(),
            cfg,
            rejects: Rejects::default(),
            identity_spoofs: 0,
            replies_dropped: 0,
        })
    }

    /// The config in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The journal (read-only).
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Puts back a record read from the state store (ids must increase).
    pub fn restore(&mut self, rec: Record) -> Result<(), crate::journal::RestoreError> {
        self.journal.restore(rec).map(|_| ())
    }

    /// Grants `id` the reader role (e.g. once a reader endpoint registers).
    pub fn add_reader(&mut self, id: ServiceId) {
        self.readers.insert(id);
    }

    /// Called by the I/O loop when a reply could not be delivered.
    pub fn note_reply_dropped(&mut self) {
        self.replies_dropped += 1;
    }

    /// Handles one frame from `sender` at time `now_ns`.
    pub fn handle(&mut self, now_ns: u64, sender: ServiceId, frame: &[u8]) -> Handled {
        let (h, req) = match proto::decode_request(frame) {
            Ok(ok) => ok,
            Err(RequestError::NoHeader) => {
                self.rejects.count(Status::Malformed);
                return Handled {
                    reply: None,
                    op: None,
                    status: None,
                    appended: None,
                };
            }
            Err(RequestError::Unsupported(h)) => return self.refuse(&h, Status::Unsupported),
            Err(RequestError::Malformed(h)) => return self.refuse(&h, Status::Malformed),
        };
        match req {
            // A one-way APPEND gets no reply: `answer` knows its op.
            Request::Append { body, .. } => {
                let result = self.append(now_ns, sender, frame.len(), h.version, &body);
                let reply = match result {
                    Ok(id) => Reply::Appended(id),
                    Err(s) => {
                        self.journal.note_rejected(sender);
                        Reply::Rejected(s)
                    }
                };
                Handled {
                    appended: result.ok(),
                    ..self.answer(&h, reply)
                }
            }
            Request::Query(q) => match self.query(&h, sender, &q) {
                Ok(frame) => {
                    self.rejects.count(Status::Ok);
                    Handled {
                        reply: Some(frame),
                        op: Some(h.op),
                        status: Some(Status::Ok),
                        appended: None,
                    }
                }
                Err(s) => self.answer(&h, Reply::Rejected(s)),
            },
            Request::Stats => {
                let s = self.stats_for(sender);
                self.answer(&h, Reply::Stats(s))
            }
        }
    }

    /// Counts a frame that could not be decoded and answers it.
    fn refuse(&mut self, h: &Header, status: Status) -> Handled {
        self.answer(h, Reply::Rejected(status))
    }

    /// Counts the outcome and replies, except to a reply (two servers would
    /// bounce frames forever) or to a one-way APPEND (its sender never reads
    /// replies).
    fn answer(&mut self, h: &Header, reply: Reply) -> Handled {
        let a = nexus_wire::answer(&mut self.rejects, h, proto::op::APPEND_ONEWAY, &reply);
        Handled {
            reply: a.frame,
            op: Some(h.op),
            status: Some(a.status),
            appended: None,
        }
    }

    fn append(
        &mut self,
        now_ns: u64,
        sender: ServiceId,
        frame_len: usize,
        version: u8,
        a: &AppendRequest<'_>,
    ) -> Result<u64, Status> {
        if !self.rates.admit(now_ns, sender, frame_len as u64) {
            return Err(Status::RateLimited);
        }
        let level = Level::from_u8(a.level).ok_or(Status::InvalidArgs)?;
        let lim = &self.cfg.record;
        let too_long = |s: &str, max: u32| s.len() > max as usize;
        if too_long(a.target, lim.max_target_len)
            || too_long(a.message, lim.max_message_len)
            || too_long(a.fields, lim.max_fields_bytes)
        {
            return Err(Status::OverLimit);
        }
        if a.target.is_empty() || a.target.chars().any(char::is_control) {
            return Err(Status::InvalidArgs);
        }
        // One pass over the fields text: identity claims, the grammar, the
        // version rule and the per-field bounds (see `check_fields`).
        match check_fields(a.fields, version, lim) {
            FieldsCheck::Ok => {}
            FieldsCheck::Spoof => {
                self.identity_spoofs += 1;
                return Err(Status::InvalidArgs);
            }
            FieldsCheck::Invalid => return Err(Status::InvalidArgs),
            FieldsCheck::OverLimit => return Err(Status::OverLimit),
        }
        let rec = RecordParts {
            id: 0,
            ts_ns: now_ns,
            sender,
            level,
            target: a.target,
            message: a.message,
            fields: a.fields,
        };
        if rec.wire_len() > lim.max_record_bytes as usize {
            return Err(Status::OverLimit);
        }
        Ok(self.journal.insert_parts(rec).id)
    }

    /// Answers a QUERY with its reply frame. Records are copied from the
    /// journal in their wire form, straight into the frame.
    fn query(&self, h: &Header, requester: ServiceId, q: &QueryRequest) -> Result<Vec<u8>, Status> {
        let min_level = Level::from_u8(q.min_level).ok_or(Status::InvalidArgs)?;
        // A cursor past the next id comes from another journal (e.g. before
        // a restart without persistence): refusing it tells the reader to
        // start again, instead of silently skipping records.
        if q.max_count == 0 || q.since_ns > q.until_ns || q.cursor > self.journal.next_id() {
            return Err(Status::InvalidArgs);
        }
        let reader = self.readers.contains(&requester);
        let only = match q.sender {
            Some(s) if s != requester && !reader => return Err(Status::Denied),
            Some(s) => Some(s),
            None if reader => None,
            None => Some(requester),
        };
        let lim = PageLimits {
            max_count: usize::from(q.max_count.min(self.cfg.query.max_count)),
            max_bytes: u64::from(q.max_bytes.min(self.cfg.query.max_bytes)),
            max_scan: usize::try_from(self.cfg.query.max_scan).unwrap_or(usize::MAX),
        };
        let filter = Filter {
            sender: only,
            min_level,
            since_ns: q.since_ns,
            until_ns: q.until_ns,
        };
        // Cursor 0 means "from the oldest retained record": nothing before
        // it counts as a gap. Otherwise every id in [cursor, next) that is
        // no longer held is a gap.
        let start = if q.cursor == 0 {
            self.journal.first_id().unwrap_or(self.journal.next_id())
        } else {
            q.cursor
        };
        let mut frame = alloc::vec![0u8; proto::PAGE_REPLY_HEAD];
        let page = self.journal.page_wire(start, &filter, &lim, &mut frame);
        let head = proto::page_reply_head(h, page.next, page.gap, page.more, page.count);
        if let Some(dst) = frame.get_mut(..proto::PAGE_REPLY_HEAD) {
            dst.copy_from_slice(&head);
        }
        // A version 1 reader gets every value as a string; the page is
        // rewritten only if one of its records has a typed value.
        if h.version == proto::VERSION {
            if let Some(untyped) = proto::untype_page(&frame) {
                return Ok(untyped);
            }
        }
        Ok(frame)
    }

    /// The STATS view for `requester`: readers see the heaviest senders,
    /// others only themselves.
    pub fn stats_for(&self, requester: ServiceId) -> Stats {
        let senders = if self.readers.contains(&requester) {
            self.journal
                .heaviest(usize::from(self.cfg.stats.max_senders))
        } else {
            alloc::vec![self.journal.sender(requester)]
        };
        Stats {
            senders,
            ..self.totals()
        }
    }

    /// The totals of the STATS view, without per-sender rows (logd's own
    /// metrics).
    pub fn totals(&self) -> Stats {
        Stats {
            records: self.journal.len() as u64,
            bytes: self.journal.bytes(),
            max_records: u64::from(self.cfg.journal.max_records),
            max_bytes: u64::from(self.cfg.journal.max_bytes),
            appended: self.journal.appended_total(),
            evicted: self.journal.evicted_total(),
            rejects: self.rejects,
            identity_spoofs: self.identity_spoofs,
            replies_dropped: self.replies_dropped,
            senders_tracked: self.rates.len() as u64,
            sender_evictions: self.rates.evictions(),
            senders: Vec::new(),
        }
    }
}

/// The verdict on an APPEND's fields text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldsCheck {
    Ok,
    /// A line claims an identity (counted as a spoof attempt).
    Spoof,
    /// The fields grammar is broken, or a version 1 frame has typed values.
    Invalid,
    /// A key, a value or the number of fields is over its bound.
    OverLimit,
}

/// Judges `text` in one pass, with the precedence of the separate checks
/// it replaces: identity claims are judged on the raw lines (keys without
/// a type marker, every line with a `=`, before the grammar), so a spoof
/// attempt is always counted as such; then the grammar
/// ([`nexus_log::Fields::check`]); then, in a version 1 frame, typed values (`:` is
/// not a key byte there); then the bounds, keys measured without their
/// marker.
fn check_fields(text: &str, version: u8, lim: &crate::config::RecordLimits) -> FieldsCheck {
    let too_long = |s: &str, max: u32| s.len() > max as usize;
    let mut spoof = false;
    let mut invalid = !text.is_empty() && !text.ends_with('\n');
    let mut typed = false;
    let mut over = false;
    let mut count = 0u32;
    let mut prev: Option<&str> = None;
    let mut rest = text;
    while !rest.is_empty() {
        let (line, tail) = match rest.as_bytes().iter().position(|&b| b == b'\n') {
            // `\n` is ASCII: both sides are on char boundaries.
            Some(i) => (rest.get(..i).unwrap_or(""), rest.get(i + 1..).unwrap_or("")),
            None => (rest, ""),
        };
        rest = tail;
        let Some(eq) = line.as_bytes().iter().position(|&b| b == b'=') else {
            invalid = true;
            continue;
        };
        let raw = line.get(..eq).unwrap_or("");
        let key = raw.split_once(':').map_or(raw, |(k, _)| k);
        if nexus_ipc::is_identity_claim(key) {
            spoof = true;
        }
        if invalid {
            // Only identity claims are still looked for.
            continue;
        }
        let Ok((key, ty, value)) = fields::split_line(line) else {
            invalid = true;
            continue;
        };
        if prev.is_some_and(|p| p >= key) {
            invalid = true;
            continue;
        }
        prev = Some(key);
        typed |= ty != fields::FieldType::Str;
        count += 1;
        if too_long(key, lim.max_key_len)
            || too_long(value, lim.max_value_len)
            || count > lim.max_fields
        {
            over = true;
        }
    }
    if spoof {
        FieldsCheck::Spoof
    } else if invalid || (version == proto::VERSION && typed) {
        FieldsCheck::Invalid
    } else if over {
        FieldsCheck::OverLimit
    } else {
        FieldsCheck::Ok
    }
}
