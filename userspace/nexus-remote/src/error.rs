//! The one error type of the remote wire.

use core::fmt;

use nexus_wire::WireError;

/// Why a frame or a stream was refused. Every variant means "disconnect
/// the peer"; [`RemoteError::reason`] is the short reason to log and count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteError {
    /// The bytes do not parse (truncated, trailing bytes, bad value).
    Wire(WireError),
    /// A frame announced a body longer than [`crate::frame::MAX_FRAME`].
    FrameTooLarge(u32),
    /// The stream ended in the middle of a frame.
    EndMidFrame,
    /// [`crate::frame::FrameReader::push`] was called while a whole frame
    /// was still waiting to be taken (the caller must drain first).
    Undrained,
    /// Not this protocol's magic.
    BadMagic,
    /// A version this crate does not speak.
    BadVersion(u8),
    /// An op this protocol does not have.
    BadOp(u8),
    /// A frame that is valid but not allowed here (a chunk before the
    /// header, a second header, an OPEN from the sender, …).
    Unexpected,
    /// A record id not above the last one seen (duplicate or out of order).
    OutOfOrder {
        /// Last id accounted for.
        last: u64,
        /// The offending id.
        got: u64,
    },
    /// A chunk with more records than the collector asked for.
    ChunkTooLarge {
        /// Records in the chunk.
        count: u16,
        /// The collector's `max_records_per_chunk`.
        max: u16,
    },
    /// An interval updates a series no Define introduced.
    UndefinedSeries(u32),
    /// An update's kind (or bucket count) is not its series' definition.
    KindMismatch(u32),
    /// A second, different Define for a series id already defined.
    Redefined(u32),
    /// An interval's seq is not above the previous one.
    SeqBackwards {
        /// Previous seq.
        last: u64,
        /// The offending seq.
        got: u64,
    },
    /// A delta interval before any full one on this stream.
    NoBaseline,
    /// A delta would overflow a counter, sum or bucket.
    Overflow(u32),
    /// More refused series than the collector keeps track of.
    TooManySeries,
}

impl RemoteError {
    /// A short, stable reason (snake_case) for logs, counters and the
    /// disconnect.
    pub const fn reason(&self) -> &'static str {
        match self {
            RemoteError::Wire(_) => "malformed",
            RemoteError::FrameTooLarge(_) => "frame_too_large",
            RemoteError::EndMidFrame => "end_mid_frame",
            RemoteError::Undrained => "undrained",
            RemoteError::BadMagic => "bad_magic",
            RemoteError::BadVersion(_) => "bad_version",
            RemoteError::BadOp(_) => "bad_op",
            RemoteError::Unexpected => "unexpected_frame",
            RemoteError::OutOfOrder { .. } => "out_of_order",
            RemoteError::ChunkTooLarge { .. } => "chunk_too_large",
            RemoteError::UndefinedSeries(_) => "undefined_series",
            RemoteError::KindMismatch(_) => "kind_mismatch",
            RemoteError::Redefined(_) => "redefined",
            RemoteError::SeqBackwards { .. } => "seq_backwards",
            RemoteError::NoBaseline => "no_baseline",
            RemoteError::Overflow(_) => "overflow",
            RemoteError::TooManySeries => "too_many_series",
        }
    }
}

impl From<WireError> for RemoteError {
    fn from(e: WireError) -> Self {
        RemoteError::Wire(e)
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteError::Wire(e) => write!(f, "malformed: {e}"),
            RemoteError::FrameTooLarge(n) => write!(f, "frame of {n} bytes over the limit"),
            RemoteError::BadVersion(v) => write!(f, "unsupported version {v}"),
            RemoteError::BadOp(o) => write!(f, "unknown op {o}"),
            RemoteError::OutOfOrder { last, got } => {
                write!(f, "record {got} not after {last}")
            }
            RemoteError::ChunkTooLarge { count, max } => {
                write!(f, "chunk of {count} records, asked for at most {max}")
            }
            RemoteError::UndefinedSeries(s) => write!(f, "series {s} not defined"),
            RemoteError::KindMismatch(s) => write!(f, "series {s}: kind mismatch"),
            RemoteError::Redefined(s) => write!(f, "series {s} redefined"),
            RemoteError::SeqBackwards { last, got } => write!(f, "seq {got} not after {last}"),
            RemoteError::Overflow(s) => write!(f, "series {s}: overflow"),
            other => f.write_str(other.reason()),
        }
    }
}
