//! A request/reply client for logd: APPEND with an answer, QUERY, STATS.
//!
//! Calls are sequential ([`nexus_ipc::caller::Caller`]). A reply is
//! accepted only from the logd endpoint and only with the nonce of the call
//! in progress; anything else that arrives meanwhile is dropped and counted
//! ([`LogdClient::unmatched`]).

use alloc::vec::Vec;
use core::fmt;

use nexus_ipc::caller::{CallError, Caller};
use nexus_ipc::{Endpoint, SendError, ServiceId};
use nexus_wire::WireError;

use crate::fields::Fields;
use crate::proto::{self, AppendRequest, QueryPage, QueryRequest, Reply, Stats, Status};
use crate::record::Record;
use crate::Level;

/// Why a call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientError {
    /// The request could not be sent.
    Send(SendError),
    /// The request could not be encoded (a string exceeds its wire prefix).
    Encode(WireError),
    /// No matching reply in time.
    Timeout,
    /// logd answered with a reject status.
    Rejected(Status),
    /// The reply does not fit the request.
    BadReply,
    /// A request is already in flight with this nonce.
    Busy,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Send(e) => write!(f, "send failed: {e}"),
            ClientError::Encode(e) => write!(f, "encode failed: {e}"),
            ClientError::Timeout => f.write_str("timed out"),
            ClientError::Rejected(s) => write!(f, "rejected: {s}"),
            ClientError::BadReply => f.write_str("unexpected reply"),
            ClientError::Busy => f.write_str("busy"),
        }
    }
}

/// Everything one paged read returned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadAll {
    /// Records in id order.
    pub records: Vec<Record>,
    /// Sum of the pages' gaps.
    pub gap: u64,
    /// Pages read.
    pub pages: u32,
}

/// A logd client over an endpoint.
#[derive(Debug)]
pub struct LogdClient<E> {
    caller: Caller<E>,
}

impl From<CallError> for ClientError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Send(e) => ClientError::Send(e),
            CallError::Timeout => ClientError::Timeout,
            CallError::Busy => ClientError::Busy,
        }
    }
}

impl<E: Endpoint> LogdClient<E> {
    /// A client of the logd endpoint `logd`, waiting `timeout_ns` per reply.
    pub fn new(ep: E, logd: ServiceId, timeout_ns: u64) -> Self {
        Self {
            caller: Caller::new(ep, logd, timeout_ns),
        }
    }

    /// Replies and foreign frames dropped so far.
    pub fn unmatched(&self) -> u64 {
        self.caller.unmatched()
    }

    /// The logd endpoint this client talks to.
    pub fn peer_id(&self) -> ServiceId {
        self.caller.peer()
    }

    /// The endpoint (its id is the identity logd will see).
    pub fn endpoint(&self) -> &E {
        self.caller.endpoint()
    }

    /// The next nonce this client would use (for hand-built frames).
    pub fn next_nonce(&mut self) -> u64 {
        self.caller.next_nonce()
    }

    /// Sends a hand-built frame carrying `nonce` and waits for its reply.
    /// Used by tests and the selftest to send malformed or hostile frames.
    pub fn call_raw(&mut self, nonce: u64, frame: &[u8]) -> Result<Reply, ClientError> {
        Ok(self.caller.call(nonce, frame, proto::decode_reply)?)
    }

    fn call(
        &mut self,
        build: impl FnOnce(u64) -> Result<Vec<u8>, WireError>,
    ) -> Result<Reply, ClientError> {
        let nonce = self.caller.next_nonce();
        let frame = build(nonce).map_err(ClientError::Encode)?;
        match self.call_raw(nonce, &frame)? {
            Reply::Rejected(s) => Err(ClientError::Rejected(s)),
            r => Ok(r),
        }
    }

    /// Appends a record and returns its journal id.
    pub fn append(
        &mut self,
        level: Level,
        target: &str,
        message: &str,
        fields: &Fields,
    ) -> Result<u64, ClientError> {
        self.append_raw(&AppendRequest {
            level: level.as_u8(),
            target,
            message,
            fields: fields.as_str(),
        })
    }

    /// Appends an unchecked body (raw level byte and fields text).
    pub fn append_raw(&mut self, body: &AppendRequest<'_>) -> Result<u64, ClientError> {
        match self.call(|n| proto::encode_append(n, false, body))? {
            Reply::Appended(id) => Ok(id),
            _ => Err(ClientError::BadReply),
        }
    }

    /// Reads one page.
    pub fn query(&mut self, q: &QueryRequest) -> Result<QueryPage, ClientError> {
        match self.call(|n| Ok(proto::encode_query_version(n, proto::VERSION_TYPED, q)))? {
            Reply::Page(p) => Ok(p),
            _ => Err(ClientError::BadReply),
        }
    }

    /// Pages through everything `q` matches, from `q.cursor`, reading at
    /// most `max_pages` pages.
    pub fn query_all(&mut self, q: &QueryRequest, max_pages: u32) -> Result<ReadAll, ClientError> {
        let mut q = *q;
        let mut out = ReadAll::default();
        while out.pages < max_pages {
            let page = self.query(&q)?;
            out.pages += 1;
            out.gap = out.gap.saturating_add(page.gap);
            out.records.extend(page.records);
            // A server that does not move the cursor forward would keep
            // us here: stop instead.
            let stuck = page.next <= q.cursor;
            q.cursor = page.next;
            if !page.more || stuck {
                break;
            }
        }
        Ok(out)
    }

    /// Reads logd's counters.
    pub fn stats(&mut self) -> Result<Stats, ClientError> {
        match self.call(|n| Ok(proto::encode_stats(n)))? {
            Reply::Stats(s) => Ok(s),
            _ => Err(ClientError::BadReply),
        }
    }
}
