//! The collector's query contract (version 1), over IPC.
//!
//! ```text
//! header   magic "OQ" | version u8 = 1 | op u8 | nonce u64
//! LOGS     op 1  since_ns u64 | until_ns u64 | min_level u8 | peer [8] (zeros: any)
//!                | sender u32 (0: any) | tail u16 (0: no tail) | token u64 (0: start)
//!                | max u16
//! METRICS  op 2  peer [8] (zeros: any) | prefix str_u8 (empty: all)
//! STATS    op 3  (empty)
//! reply    op | 0x80, status u8, then for ok:
//!          LOGS    next_token u64 (0: no more) | count u16 | count × line bytes_u16
//!          METRICS count u16 | count × (peer [8] | name str_u8 | labels str_u16
//!                  (`k="v",…`) | kind u8 | value i64 | sum u64 | count u64)
//!          STATS   CollectorStats as 14 × u64
//! ```

use alloc::string::String;
use alloc::vec::Vec;

use nexus_wire::{Header, Reader, Status, WireError, Writer};

/// Protocol tag.
pub const MAGIC: [u8; 2] = *b"OQ";
/// Version.
pub const VERSION: u8 = 1;
/// Most lines in a LOGS reply.
pub const MAX_LOG_LINES: u16 = 256;
/// Most series in a METRICS reply.
pub const MAX_SERIES: u16 = 512;
/// Largest reply body.
pub const MAX_REPLY: usize = 60 * 1024;

nexus_wire::byte_enum! {
    /// Ops.
    pub enum Op {
        /// Recent records.
        Logs = 1 => "logs",
        /// The latest metric values.
        Metrics = 2 => "metrics",
        /// Counters.
        Stats = 3 => "stats",
    }
}

/// A LOGS query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogsQuery {
    /// Records with a timestamp at or after this.
    pub since_ns: u64,
    /// Records with a timestamp at or before this (0: no bound).
    pub until_ns: u64,
    /// Lowest level (raw byte).
    pub min_level: u8,
    /// Only this peer (zeros: any).
    pub peer: [u8; 8],
    /// Only this sender on the peer (0: any).
    pub sender: u32,
    /// Only the last `tail` matching records (0: all).
    pub tail: u16,
    /// Continue after a previous page (0: from the start).
    pub token: u64,
    /// Most lines in the reply.
    pub max: u16,
}

/// A request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    /// LOGS.
    Logs(LogsQuery),
    /// METRICS.
    Metrics {
        /// Only this peer (zeros: any).
        peer: [u8; 8],
        /// Only names starting with this.
        prefix: &'a str,
    },
    /// STATS.
    Stats,
}

/// One series in a METRICS reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesValue {
    /// The peer.
    pub peer: [u8; 8],
    /// Metric name.
    pub name: String,
    /// Labels, `k="v"` joined by commas.
    pub labels: String,
    /// Kind byte (nexus-metrics `MetricKind`).
    pub kind: u8,
    /// Counter or gauge value (histograms: 0).
    pub value: i64,
    /// Histogram sum.
    pub sum: u64,
    /// Histogram count.
    pub count: u64,
}

/// The collector's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CollectorStats {
    /// Streams opened (logs and metrics).
    pub connects: u64,
    /// Streams dropped for a peer's protocol error.
    pub disconnects: u64,
    /// Records received.
    pub records_received: u64,
    /// Records kept after sampling.
    pub records_kept: u64,
    /// Records sampled out.
    pub records_sampled_out: u64,
    /// Ids the peers reported missing (evicted).
    pub records_missing: u64,
    /// RECVs held back by the rate limit.
    pub throttled: u64,
    /// Metric frames applied.
    pub metric_frames: u64,
    /// Series refused by the cardinality cap.
    pub series_refused: u64,
    /// Lines written to storage.
    pub stored_lines: u64,
    /// Lines refused by storage (too large, storage failure).
    pub store_failures: u64,
    /// Segments rotated out by retention or budget.
    pub segments_dropped: u64,
    /// Opens refused by a peer or busd.
    pub open_refused: u64,
    /// Recent records dropped from memory (bound).
    pub recent_evicted: u64,
}

impl CollectorStats {
    fn to_array(self) -> [u64; 14] {
        [
            self.connects,
            self.disconnects,
            self.records_received,
            self.records_kept,
            self.records_sampled_out,
            self.records_missing,
            self.throttled,
            self.metric_frames,
            self.series_refused,
            self.stored_lines,
            self.store_failures,
            self.segments_dropped,
            self.open_refused,
            self.recent_evicted,
        ]
    }

    fn from_array(a: [u64; 14]) -> Self {
        let [connects, disconnects, records_received, records_kept, records_sampled_out, records_missing, throttled, metric_frames, series_refused, stored_lines, store_failures, segments_dropped, open_refused, recent_evicted] =
            a;
        Self {
            connects,
            disconnects,
            records_received,
            records_kept,
            records_sampled_out,
            records_missing,
            throttled,
            metric_frames,
            series_refused,
            stored_lines,
            store_failures,
            segments_dropped,
            open_refused,
            recent_evicted,
        }
    }
}

/// A reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// LOGS.
    Logs {
        /// Pass as `token` for the next page (0: no more).
        next_token: u64,
        /// JSON lines.
        lines: Vec<String>,
    },
    /// METRICS.
    Metrics(Vec<SeriesValue>),
    /// STATS.
    Stats(CollectorStats),
    /// Refused.
    Rejected(Status),
}

nexus_wire::reply_body!(Reply, encode_reply);

/// Decodes a request.
pub fn decode_request(frame: &[u8]) -> Result<(Header, Request<'_>), Option<Header>> {
    let (h, body) = Header::parse(frame, MAGIC).map_err(|_| None)?;
    if h.version != VERSION || h.is_reply() {
        return Err(Some(h));
    }
    let mut r = Reader::new(body);
    let req = match Op::from_u8(h.op) {
        Some(Op::Logs) => (|| -> Result<Request<'_>, WireError> {
            Ok(Request::Logs(LogsQuery {
                since_ns: r.u64()?,
                until_ns: r.u64()?,
                min_level: r.u8()?,
                peer: r.array()?,
                sender: r.u32()?,
                tail: r.u16()?,
                token: r.u64()?,
                max: r.u16()?,
            }))
        })(),
        Some(Op::Metrics) => (|| -> Result<Request<'_>, WireError> {
            Ok(Request::Metrics {
                peer: r.array()?,
                prefix: r.str_u8()?,
            })
        })(),
        Some(Op::Stats) => Ok(Request::Stats),
        None => return Err(Some(h)),
    };
    match req {
        Ok(req) if r.finish().is_ok() => Ok((h, req)),
        _ => Err(Some(h)),
    }
}

/// Encodes a request.
pub fn encode_request(nonce: u64, req: &Request<'_>) -> Result<Vec<u8>, WireError> {
    let op = match req {
        Request::Logs(_) => Op::Logs,
        Request::Metrics { .. } => Op::Metrics,
        Request::Stats => Op::Stats,
    };
    let mut out = Vec::with_capacity(64);
    let mut w = Writer::new(&mut out);
    w.header(&Header::request(MAGIC, VERSION, op.as_u8(), nonce));
    match req {
        Request::Logs(q) => {
            w.u64(q.since_ns)
                .u64(q.until_ns)
                .u8(q.min_level)
                .bytes(&q.peer)
                .u32(q.sender)
                .u16(q.tail)
                .u64(q.token)
                .u16(q.max);
        }
        Request::Metrics { peer, prefix } => {
            w.bytes(peer).str_u8(prefix);
        }
        Request::Stats => {}
    }
    w.finish()?;
    Ok(out)
}

/// Encodes a reply (lists past their caps or [`MAX_REPLY`] are cut, and
/// the LOGS token then continues after the last line sent).
pub fn encode_reply(req: &Header, reply: &Reply) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut w = Writer::new(&mut out);
    w.header(&req.reply());
    match reply {
        Reply::Rejected(s) => {
            w.u8(s.as_u8());
        }
        Reply::Logs { next_token, lines } => {
            let n = lines.len().min(usize::from(MAX_LOG_LINES));
            w.u8(Status::Ok.as_u8())
                .u64(*next_token)
                .u16(u16::try_from(n).unwrap_or(0));
            for l in lines.iter().take(n) {
                w.str_u16(l);
            }
        }
        Reply::Metrics(list) => {
            let n = list.len().min(usize::from(MAX_SERIES));
            w.u8(Status::Ok.as_u8()).u16(u16::try_from(n).unwrap_or(0));
            for s in list.iter().take(n) {
                w.bytes(&s.peer)
                    .str_u8(&s.name)
                    .str_u16(&s.labels)
                    .u8(s.kind)
                    .i64(s.value)
                    .u64(s.sum)
                    .u64(s.count);
            }
        }
        Reply::Stats(s) => {
            w.u8(Status::Ok.as_u8());
            for c in s.to_array() {
                w.u64(c);
            }
        }
    }
    // The collector builds replies within the caps (see `Collector`).
    let _ = w.finish();
    out
}

/// Decodes a reply (`op` from its header).
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
            Op::Logs => {
                let next_token = r.u64()?;
                let n = r.u16()?;
                let mut lines = Vec::with_capacity(usize::from(n.min(MAX_LOG_LINES)));
                for _ in 0..n {
                    lines.push(String::from(r.str_u16()?));
                }
                Reply::Logs { next_token, lines }
            }
            Op::Metrics => {
                let n = r.u16()?;
                let mut list = Vec::with_capacity(usize::from(n.min(MAX_SERIES)));
                for _ in 0..n {
                    list.push(SeriesValue {
                        peer: r.array()?,
                        name: String::from(r.str_u8()?),
                        labels: String::from(r.str_u16()?),
                        kind: r.u8()?,
                        value: r.i64()?,
                        sum: r.u64()?,
                        count: r.u64()?,
                    });
                }
                Reply::Metrics(list)
            }
            Op::Stats => {
                let mut a = [0u64; 14];
                for c in &mut a {
                    *c = r.u64()?;
                }
                Reply::Stats(CollectorStats::from_array(a))
            }
        }
    };
    r.finish()?;
    Ok((h, reply))
}
