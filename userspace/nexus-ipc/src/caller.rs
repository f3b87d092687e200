//! Sequential request/reply over an [`Endpoint`]: send a frame, wait for
//! the reply from the same peer with the same nonce, drop and count
//! everything else. Every protocol client (logd, metricsd, …) is built on
//! this, so correlation is written once.

use crate::correlate::{NonceGen, Pending};
use crate::{Endpoint, SendError, ServiceId};
use nexus_wire::{Header, WireError};

/// Most foreign frames one call drops before giving up as a timeout, so a
/// flood of unrelated frames cannot keep a caller waiting forever.
pub const MAX_FOREIGN_PER_CALL: usize = 1024;

/// Why a call got no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallError {
    /// The request could not be sent.
    Send(SendError),
    /// No matching reply in time.
    Timeout,
    /// A call with this nonce is already in flight.
    Busy,
}

/// A client of one peer endpoint.
#[derive(Debug)]
pub struct Caller<E> {
    ep: E,
    peer: ServiceId,
    nonces: NonceGen,
    pending: Pending,
    timeout_ns: u64,
}

impl<E: Endpoint> Caller<E> {
    /// Calls `peer` from `ep`, waiting `timeout_ns` per reply.
    pub fn new(ep: E, peer: ServiceId, timeout_ns: u64) -> Self {
        Self {
            ep,
            peer,
            nonces: NonceGen::default(),
            pending: Pending::new(1),
            timeout_ns,
        }
    }

    /// The endpoint (its id is the identity the peer sees).
    pub fn endpoint(&self) -> &E {
        &self.ep
    }

    /// The endpoint, mutably (for one-way sends).
    pub fn endpoint_mut(&mut self) -> &mut E {
        &mut self.ep
    }

    /// The peer.
    pub fn peer(&self) -> ServiceId {
        self.peer
    }

    /// A fresh nonce.
    pub fn next_nonce(&mut self) -> u64 {
        self.nonces.next_nonce()
    }

    /// Replies and foreign frames dropped so far.
    pub fn unmatched(&self) -> u64 {
        self.pending.unmatched()
    }

    /// Sends `frame` (which carries `nonce`) without waiting.
    pub fn send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        self.ep.send(self.peer, frame)
    }

    /// Sends `frame` and waits for the reply carrying `nonce`, decoded by
    /// `decode` (which returns the reply's header and body). Frames from
    /// other endpoints, undecodable frames and replies with other nonces
    /// are dropped and counted.
    pub fn call<R>(
        &mut self,
        nonce: u64,
        frame: &[u8],
        decode: impl Fn(&[u8]) -> Result<(Header, R), WireError>,
    ) -> Result<R, CallError> {
        self.pending
            .start(self.peer, nonce)
            .map_err(|_| CallError::Busy)?;
        if let Err(e) = self.ep.send(self.peer, frame) {
            self.pending.cancel(self.peer, nonce);
            return Err(CallError::Send(e));
        }
        for _ in 0..MAX_FOREIGN_PER_CALL {
            let Some(f) = self.ep.recv_timeout(self.timeout_ns) else {
                break;
            };
            if f.meta.sender != self.peer {
                self.pending.complete(f.meta.sender, 0);
                continue;
            }
            match decode(&f.bytes) {
                Ok((h, reply)) if h.nonce == nonce && self.pending.complete(self.peer, nonce) => {
                    return Ok(reply)
                }
                Ok((h, _)) => {
                    self.pending.complete(self.peer, h.nonce);
                }
                Err(_) => {
                    self.pending.complete(self.peer, 0);
                }
            }
        }
        self.pending.cancel(self.peer, nonce);
        Err(CallError::Timeout)
    }
}
