//! [`BusClient`]: what a service uses to talk to busd.
//!
//! Calls are sequential: one request, then its reply. busd also pushes
//! events (one-way frames) at any time; the client keeps those that arrive
//! while it waits for a reply in a bounded queue ([`MAX_QUEUED_EVENTS`];
//! beyond it the oldest is dropped and counted), and [`BusClient::next_event`]
//! hands them out before waiting for new ones.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;

use nexus_ipc::{Endpoint, SendError, ServiceId};
use nexus_wire::{Status, WireError};

use crate::proto::{
    self, BusEvent, BusStats, DeviceId, Handle, PeerInfo, Reply, Request, MAX_DATA,
};

/// Events kept while waiting for replies.
pub const MAX_QUEUED_EVENTS: usize = 1024;

/// Why a call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusError {
    /// The request could not be sent.
    Send(SendError),
    /// A field does not fit its wire prefix.
    Encode(WireError),
    /// No reply in time.
    Timeout,
    /// busd refused.
    Rejected(Status),
    /// The reply does not fit the request.
    BadReply,
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusError::Send(e) => write!(f, "send failed: {e}"),
            BusError::Encode(e) => write!(f, "encode failed: {e}"),
            BusError::Timeout => f.write_str("timed out"),
            BusError::Rejected(s) => write!(f, "rejected: {s}"),
            BusError::BadReply => f.write_str("unexpected reply"),
        }
    }
}

/// A client of busd.
#[derive(Debug)]
pub struct BusClient<E> {
    ep: E,
    busd: ServiceId,
    timeout_ns: u64,
    nonce: u64,
    events: VecDeque<BusEvent>,
    events_dropped: u64,
    unmatched: u64,
}

impl<E: Endpoint> BusClient<E> {
    /// A client of busd at `busd`, waiting `timeout_ns` per reply.
    pub fn new(ep: E, busd: ServiceId, timeout_ns: u64) -> Self {
        Self {
            ep,
            busd,
            timeout_ns,
            nonce: 0,
            events: VecDeque::new(),
            events_dropped: 0,
            unmatched: 0,
        }
    }

    /// The endpoint (its id is the identity busd sees).
    pub fn endpoint(&self) -> &E {
        &self.ep
    }

    /// Events dropped because [`MAX_QUEUED_EVENTS`] were waiting, and
    /// frames that were neither an event nor the awaited reply.
    pub fn dropped(&self) -> (u64, u64) {
        (self.events_dropped, self.unmatched)
    }

    fn keep(&mut self, e: BusEvent) {
        if self.events.len() >= MAX_QUEUED_EVENTS {
            self.events.pop_front();
            self.events_dropped += 1;
        }
        self.events.push_back(e);
    }

    /// Takes one frame: an event is queued; returns a reply with `nonce`.
    fn take(&mut self, f: &nexus_ipc::Frame, nonce: u64) -> Option<Reply> {
        if f.meta.sender != self.busd {
            self.unmatched += 1;
            return None;
        }
        if let Ok((_, e)) = proto::decode_event(&f.bytes) {
            self.keep(e);
            return None;
        }
        match proto::decode_reply(&f.bytes) {
            Ok((h, r)) if h.nonce == nonce => Some(r),
            _ => {
                self.unmatched += 1;
                None
            }
        }
    }

    /// Sends `req` and waits for its reply; a refusal is an error.
    pub fn call(&mut self, req: &Request<'_>) -> Result<Reply, BusError> {
        self.nonce = self.nonce.wrapping_add(1);
        let nonce = self.nonce;
        let frame = proto::encode_request(nonce, req).map_err(BusError::Encode)?;
        self.ep.send(self.busd, &frame).map_err(BusError::Send)?;
        // Events may arrive before the reply; the wait restarts for each.
        loop {
            let Some(f) = self.ep.recv_timeout(self.timeout_ns) else {
                return Err(BusError::Timeout);
            };
            match self.take(&f, nonce) {
                Some(Reply::Rejected(s)) => return Err(BusError::Rejected(s)),
                Some(r) => return Ok(r),
                None => {}
            }
        }
    }

    fn done(&mut self, req: &Request<'_>) -> Result<(), BusError> {
        match self.call(req)? {
            Reply::Done => Ok(()),
            _ => Err(BusError::BadReply),
        }
    }

    /// Becomes the handler of stream `name`: peers' OPENs arrive as
    /// [`BusEvent::Incoming`].
    pub fn listen(&mut self, name: &str) -> Result<(), BusError> {
        self.done(&Request::Listen(name))
    }

    /// Stops handling `name`.
    pub fn unlisten(&mut self, name: &str) -> Result<(), BusError> {
        self.done(&Request::Unlisten(name))
    }

    /// Opens stream `name` to `peer`; returns once the peer accepted it.
    pub fn open(
        &mut self,
        peer: DeviceId,
        name: &str,
        trace: Option<&[u8]>,
    ) -> Result<Handle, BusError> {
        match self.call(&Request::Open { peer, name, trace })? {
            Reply::Opened(h) => Ok(h),
            _ => Err(BusError::BadReply),
        }
    }

    /// Writes as much of `data` (at most [`MAX_DATA`]) as the credit
    /// allows; returns the bytes taken (0: wait for [`BusEvent::Writable`]).
    pub fn send(&mut self, handle: Handle, data: &[u8]) -> Result<usize, BusError> {
        let data = data.get(..data.len().min(MAX_DATA)).unwrap_or_default();
        match self.call(&Request::Send { handle, data })? {
            Reply::Sent(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX).min(data.len())),
            _ => Err(BusError::BadReply),
        }
    }

    /// Reads up to `max` bytes; `fin` once the peer closed and all is read.
    pub fn recv(&mut self, handle: Handle, max: u16) -> Result<(bool, Vec<u8>), BusError> {
        match self.call(&Request::Recv { handle, max })? {
            Reply::Data { fin, data } => Ok((fin, data)),
            _ => Err(BusError::BadReply),
        }
    }

    /// Closes our direction (bytes already taken still go out first).
    pub fn close(&mut self, handle: Handle) -> Result<(), BusError> {
        self.done(&Request::Close(handle))
    }

    /// Aborts a stream.
    pub fn reset(&mut self, handle: Handle) -> Result<(), BusError> {
        self.done(&Request::Reset(handle))
    }

    /// The configured peers and whether each is up.
    pub fn peers(&mut self) -> Result<Vec<PeerInfo>, BusError> {
        match self.call(&Request::Peers)? {
            Reply::Peers(p) => Ok(p),
            _ => Err(BusError::BadReply),
        }
    }

    /// busd's counters and reject counts.
    pub fn stats(&mut self) -> Result<(BusStats, nexus_wire::Rejects), BusError> {
        match self.call(&Request::Stats)? {
            Reply::Stats(s, r) => Ok((s, r)),
            _ => Err(BusError::BadReply),
        }
    }

    /// Subscribes to peer up/down events.
    pub fn watch(&mut self) -> Result<(), BusError> {
        self.done(&Request::Watch)
    }

    /// Drops the session with `peer` (busd's control role only).
    pub fn drop_peer(&mut self, peer: DeviceId) -> Result<(), BusError> {
        self.done(&Request::Drop(peer))
    }

    /// The next event: a queued one, else one that arrives within
    /// `timeout_ns`.
    pub fn next_event(&mut self, timeout_ns: u64) -> Option<BusEvent> {
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        let f = self.ep.recv_timeout(timeout_ns)?;
        // No call is waiting: a reply now is stale (nonce 0 never matches).
        let _ = self.take(&f, 0);
        self.events.pop_front()
    }
}
