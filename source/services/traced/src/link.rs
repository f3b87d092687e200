//! The `obs.traces` stream between a forwarding node's traced and the
//! collector's (through busd). The stream is cut into frames by
//! `nexus_remote::frame` (`len u32 | body`); a body is one of:
//!
//! ```text
//! body     kind u8 | ...                                  (little-endian)
//! 1 HELLO  version u8 = 1                  forwarder → collector, first frame
//! 2 PING   seq u32 | t1 u64                collector → forwarder
//! 3 PONG   seq u32 | t1 u64 | t2 u64 | t3 u64
//!                                          forwarder → collector: t1 echoed,
//!                                          t2 = PING read, t3 = PONG written
//!                                          (the forwarder's clock)
//! 4 SPANS  count u8 (1..=MAX_LINK_SPANS) | count × (service u32 | finished span)
//!                                          forwarder → collector; the span
//!                                          body is `nexus_trace::finished`
//! 5 REPLAY same body as SPANS               forwarder → collector, right after
//!                                          HELLO: spans of the forwarder's
//!                                          recently completed traces; the
//!                                          collector takes those of traces it
//!                                          has not completed itself
//! ```
//!
//! The node of every span is the bus session's peer device, never the
//! payload; `service` is the id the forwarding node's transport stamped on
//! the IPC frame that brought the span there. A body is at most
//! [`MAX_LINK_BODY`] bytes.
//!
//! # Invariants
//!
//! * [`decode`] never panics and accepts a body only if it is exactly one
//!   well-formed frame: known kind, supported version, a span count in
//!   range, every span well-formed, no trailing bytes.
//! * [`SpansBody`] never builds a body [`decode`] would refuse.

use alloc::vec::Vec;

use nexus_trace::{finished, SpanRecord};
use nexus_wire::{Reader, WireError, Writer};

/// The stream's name on the bus.
pub const STREAM: &str = "obs.traces";
/// The HELLO version this traced speaks.
pub const LINK_VERSION: u8 = 1;
/// Most spans in one SPANS body: what one IPC SPANS batch holds.
pub const MAX_LINK_SPANS: u8 = crate::proto::MAX_BATCH_SPANS;
/// Largest body: an IPC SPANS frame's bound plus the 4-byte service id of
/// each span, so every span traced accepted over IPC fits a body; well
/// under the stream framing's `nexus_remote::frame::MAX_FRAME`.
pub const MAX_LINK_BODY: usize = crate::proto::MAX_FRAME + 4 * MAX_LINK_SPANS as usize;

const _: () =
    assert!(MAX_LINK_BODY + nexus_remote::frame::LEN_PREFIX <= nexus_remote::frame::MAX_FRAME);

const KIND_HELLO: u8 = 1;
const KIND_PING: u8 = 2;
const KIND_PONG: u8 = 3;
const KIND_SPANS: u8 = 4;
const KIND_REPLAY: u8 = 5;

/// One decoded body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkFrame {
    /// The forwarder's first frame.
    Hello {
        /// Its version (only [`LINK_VERSION`] is accepted).
        version: u8,
    },
    /// A clock probe.
    Ping {
        /// Probe number.
        seq: u32,
        /// Sent (collector's clock).
        t1: u64,
    },
    /// The answer to a probe.
    Pong {
        /// The probe's number.
        seq: u32,
        /// The probe's `t1`, echoed.
        t1: u64,
        /// Probe read (forwarder's clock).
        t2: u64,
        /// Answer written (forwarder's clock).
        t3: u64,
    },
    /// Finished spans with the service each came from on the forwarder.
    Spans(Vec<(u32, SpanRecord)>),
    /// Spans of the forwarder's recently completed traces, replayed to a
    /// collector that just connected.
    Replay(Vec<(u32, SpanRecord)>),
}

/// Why a body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    /// Not a well-formed body.
    Malformed(WireError),
    /// An unknown kind byte.
    UnknownKind(u8),
    /// A HELLO with a version this traced does not speak.
    Version(u8),
    /// A SPANS count of 0 or over [`MAX_LINK_SPANS`].
    Count(u8),
    /// Over [`MAX_LINK_BODY`].
    TooLarge,
}

impl LinkError {
    /// A short reason, for the console and counters.
    pub fn reason(&self) -> &'static str {
        match self {
            LinkError::Malformed(_) => "malformed frame",
            LinkError::UnknownKind(_) => "unknown frame kind",
            LinkError::Version(_) => "unsupported version",
            LinkError::Count(_) => "span count out of range",
            LinkError::TooLarge => "frame too large",
        }
    }
}

impl From<WireError> for LinkError {
    fn from(e: WireError) -> Self {
        LinkError::Malformed(e)
    }
}

/// Decodes one body.
pub fn decode(body: &[u8]) -> Result<LinkFrame, LinkError> {
    if body.len() > MAX_LINK_BODY {
        return Err(LinkError::TooLarge);
    }
    let mut r = Reader::new(body);
    let f = match r.u8()? {
        KIND_HELLO => match r.u8()? {
            LINK_VERSION => LinkFrame::Hello {
                version: LINK_VERSION,
            },
            v => return Err(LinkError::Version(v)),
        },
        KIND_PING => LinkFrame::Ping {
            seq: r.u32()?,
            t1: r.u64()?,
        },
        KIND_PONG => LinkFrame::Pong {
            seq: r.u32()?,
            t1: r.u64()?,
            t2: r.u64()?,
            t3: r.u64()?,
        },
        k @ (KIND_SPANS | KIND_REPLAY) => {
            let n = r.u8()?;
            if n == 0 || n > MAX_LINK_SPANS {
                return Err(LinkError::Count(n));
            }
            let mut spans = Vec::with_capacity(usize::from(n));
            for _ in 0..n {
                let service = r.u32()?;
                spans.push((service, finished::parse(&mut r)?));
            }
            if k == KIND_SPANS {
                LinkFrame::Spans(spans)
            } else {
                LinkFrame::Replay(spans)
            }
        }
        k => return Err(LinkError::UnknownKind(k)),
    };
    r.finish()?;
    Ok(f)
}

/// The HELLO body.
pub fn hello() -> Vec<u8> {
    alloc::vec![KIND_HELLO, LINK_VERSION]
}

/// A PING body.
pub fn ping(seq: u32, t1: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(13);
    out.push(KIND_PING);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&t1.to_le_bytes());
    out
}

/// A PONG body.
pub fn pong(seq: u32, t1: u64, t2: u64, t3: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(29);
    out.push(KIND_PONG);
    out.extend_from_slice(&seq.to_le_bytes());
    for t in [t1, t2, t3] {
        out.extend_from_slice(&t.to_le_bytes());
    }
    out
}

/// Builds one SPANS body span by span, within [`MAX_LINK_SPANS`] and
/// [`MAX_LINK_BODY`].
#[derive(Debug)]
pub struct SpansBody {
    out: Vec<u8>,
    count: u8,
}

impl Default for SpansBody {
    fn default() -> Self {
        Self::new()
    }
}

impl SpansBody {
    /// An empty SPANS body.
    pub fn new() -> Self {
        Self {
            out: alloc::vec![KIND_SPANS, 0],
            count: 0,
        }
    }

    /// An empty REPLAY body.
    pub fn replay() -> Self {
        Self {
            out: alloc::vec![KIND_REPLAY, 0],
            count: 0,
        }
    }

    /// Spans in the body.
    pub fn count(&self) -> u8 {
        self.count
    }

    /// Adds `span` (from `service`) if it fits: `Ok(false)` when the body
    /// is full, an error when the span fits no body at all.
    pub fn push(&mut self, service: u32, span: &SpanRecord) -> Result<bool, WireError> {
        if self.count >= MAX_LINK_SPANS {
            return Ok(false);
        }
        let room = MAX_LINK_BODY.saturating_sub(self.out.len());
        let mut one = Vec::new();
        Writer::append(&mut one, MAX_LINK_BODY - 2, |w| {
            w.u32(service);
            finished::emit(&span.as_finished(), w);
        })?;
        if one.len() > room {
            return Ok(false);
        }
        self.out.extend_from_slice(&one);
        self.count += 1;
        Ok(true)
    }

    /// The body, or `None` when it holds no span.
    pub fn finish(mut self) -> Option<Vec<u8>> {
        if self.count == 0 {
            return None;
        }
        *self.out.get_mut(1)? = self.count;
        Some(self.out)
    }
}
