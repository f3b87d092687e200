//! Moving bytes between a [`Link`] and a byte transport (a TCP socket),
//! written once for every user: busd on the OS and on the host, and the
//! selftest's raw dials.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;

use crate::link::{Link, LinkError};
use crate::policy::Acl;

/// Sealed bytes waiting for the transport, at most; beyond it the link's
/// own (bounded) buffers hold the rest.
pub const MAX_PENDING_OUT: usize = 64 * 1024;

/// A non-blocking byte transport.
pub trait ByteIo {
    /// Queues as much of `data` as it takes now; returns how much.
    fn send(&mut self, data: &[u8]) -> usize;
    /// Moves received bytes into `buf`; returns how many (0: none now).
    fn recv(&mut self, buf: &mut [u8]) -> usize;
    /// The connection is gone: nothing more will arrive or leave.
    fn is_gone(&self) -> bool;
}

/// Why pumping stopped for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PumpError {
    /// The link closed (handshake, record or mux failure).
    Link(LinkError),
    /// The transport closed under the link.
    Gone,
}

impl fmt::Display for PumpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PumpError::Link(e) => write!(f, "link: {e}"),
            PumpError::Gone => f.write_str("the connection closed"),
        }
    }
}

/// A link and the bytes it produced that the transport has not taken yet.
#[derive(Debug)]
pub struct Pumped {
    /// The link.
    pub link: Link,
    out: VecDeque<Vec<u8>>,
    out_bytes: usize,
    /// Offset into the front of `out` already sent.
    sent: usize,
}

impl Pumped {
    /// Wraps a link.
    pub fn new(link: Link) -> Self {
        Self {
            link,
            out: VecDeque::new(),
            out_bytes: 0,
            sent: 0,
        }
    }

    /// Sealed bytes waiting for the transport.
    pub fn pending_out(&self) -> usize {
        self.out_bytes.saturating_sub(self.sent)
    }

    fn flush(&mut self, io: &mut impl ByteIo) -> bool {
        let mut moved = false;
        while let Some(front) = self.out.front() {
            let rest = front.get(self.sent..).unwrap_or_default();
            let n = io.send(rest);
            if n > 0 {
                moved = true;
            }
            self.sent += n;
            if self.sent < front.len() {
                break;
            }
            self.out_bytes = self.out_bytes.saturating_sub(front.len());
            self.sent = 0;
            self.out.pop_front();
        }
        moved
    }

    /// One round at `now_ns`: send what the link has (as far as the
    /// transport takes it), feed it what arrived (through `buf`), run its
    /// timers. Returns whether any byte moved.
    pub fn pump(
        &mut self,
        io: &mut impl ByteIo,
        now_ns: u64,
        acl: &Acl,
        buf: &mut [u8],
    ) -> Result<bool, PumpError> {
        self.pump_with(io, now_ns, acl, &mut |_| true, buf)
    }

    /// [`Pumped::pump`] with a local accept policy for the peer's OPENs
    /// (see [`Link::on_bytes_with`]).
    pub fn pump_with(
        &mut self,
        io: &mut impl ByteIo,
        now_ns: u64,
        acl: &Acl,
        accept: &mut dyn FnMut(&str) -> bool,
        buf: &mut [u8],
    ) -> Result<bool, PumpError> {
        let mut moved = self.flush(io);
        while self.out_bytes < MAX_PENDING_OUT {
            let Some(rec) = self.link.poll_transmit(now_ns) else {
                break;
            };
            self.out_bytes += rec.len();
            self.out.push_back(rec);
            moved |= self.flush(io);
        }
        loop {
            let n = io.recv(buf);
            if n == 0 {
                break;
            }
            moved = true;
            self.link
                .on_bytes_with(buf.get(..n).unwrap_or_default(), now_ns, acl, accept)
                .map_err(PumpError::Link)?;
            // Answers (handshake messages, credit) go out in the same round.
            while self.out_bytes < MAX_PENDING_OUT {
                let Some(rec) = self.link.poll_transmit(now_ns) else {
                    break;
                };
                self.out_bytes += rec.len();
                self.out.push_back(rec);
            }
            moved |= self.flush(io);
        }
        self.link.tick(now_ns);
        if let Some(e) = self.link.closed() {
            return Err(PumpError::Link(e));
        }
        if io.is_gone() {
            return Err(PumpError::Gone);
        }
        Ok(moved)
    }
}
