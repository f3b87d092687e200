//! Mux v2 frames: one frame is the plaintext of one session record.
//!
//! ```text
//! every frame      type: u8 | stream: u32 | body
//! 1 OPEN           window: u32 | meta_len: u16 | meta (meta_len bytes, <= 256)
//! 2 OPEN_ACK       window: u32
//! 3 REJECT         reason: u8 (1 policy, 2 too many streams, 3 bad metadata, 4 unknown)
//! 4 DATA           len: u16 | payload (len bytes)
//! 5 CREDIT         increment: u32
//! 6 RST            reason: u8 (opaque to the mux, chosen by the application)
//! 7 CLOSE          (empty)
//! 8 PING           nonce: u64          stream must be 0
//! 9 PONG           nonce: u64          stream must be 0
//! 10 CAPS          caps: u32           stream must be 0; each side's first
//!                                      frame, exactly once per session
//!
//! OPEN metadata    (tag: u8 | len: u8 | value)*
//!   tag 1  stream name, UTF-8, 1..=64 bytes, required, at most once
//!   tag 2  priority, exactly 1 byte, at most once (absent = 0)
//!   tag 3  trace context, opaque, 0..=64 bytes, at most once
//!   other  skipped (room for later versions)
//! ```
//!
//! All integers are little-endian. Stream 0 is the control stream: PING,
//! PONG and CAPS use it and nothing else may.
//!
//! CAPS bits: bit 0 ([`CAP_TRACE`]) = this side carries trace context in
//! OPEN metadata. A capability is on for the session only when both sides
//! announced it; other bits are ignored (room for later versions).
//!
//! # Invariants
//!
//! * [`Frame::parse`] never panics and accepts a frame only if it has
//!   exactly the bytes its type needs (no trailing bytes), a known type, a
//!   valid stream id for that type, a valid REJECT reason and at most
//!   [`MAX_META_LEN`] bytes of metadata.
//! * [`Frame::parse`] does not look inside OPEN metadata: a well-framed
//!   OPEN with bad metadata is a stream-level problem (the mux answers it
//!   with a REJECT), not a framing error. [`OpenMeta::parse`] judges it.
//! * [`Frame::emit`] and [`OpenMeta::emit`] refuse what `parse` would
//!   refuse and leave `out` untouched when they do, so every emitted frame
//!   parses back to itself.
//! * A frame is never longer than [`max_frame_len`] of the payload limit.

use alloc::vec::Vec;

use nexus_wire::{Reader, WireError, Writer};

/// The control stream id (PING/PONG only).
pub const CONTROL_STREAM: u32 = 0;
/// Bytes before the body of every frame: type and stream.
pub const HEADER_LEN: usize = 5;
/// Bytes of a DATA frame before its payload.
pub const DATA_HEADER_LEN: usize = HEADER_LEN + 2;
/// Largest OPEN metadata block.
pub const MAX_META_LEN: usize = 256;
/// Largest OPEN frame: header, window, meta_len and a full metadata block.
pub const MAX_OPEN_LEN: usize = HEADER_LEN + 4 + 2 + MAX_META_LEN;
/// Longest stream name, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Longest trace context, in bytes.
pub const MAX_TRACE_LEN: usize = 64;

/// Metadata tag: stream name.
pub const TAG_NAME: u8 = 1;
/// Metadata tag: priority.
pub const TAG_PRIORITY: u8 = 2;
/// Metadata tag: trace context.
pub const TAG_TRACE: u8 = 3;

/// Frame type bytes.
pub const TYPE_OPEN: u8 = 1;
/// OPEN_ACK type byte.
pub const TYPE_OPEN_ACK: u8 = 2;
/// REJECT type byte.
pub const TYPE_REJECT: u8 = 3;
/// DATA type byte.
pub const TYPE_DATA: u8 = 4;
/// CREDIT type byte.
pub const TYPE_CREDIT: u8 = 5;
/// RST type byte.
pub const TYPE_RST: u8 = 6;
/// CLOSE type byte.
pub const TYPE_CLOSE: u8 = 7;
/// PING type byte.
pub const TYPE_PING: u8 = 8;
/// PONG type byte.
pub const TYPE_PONG: u8 = 9;
/// CAPS type byte.
pub const TYPE_CAPS: u8 = 10;

/// CAPS bit: trace context (OPEN metadata tag 3) is carried.
pub const CAP_TRACE: u32 = 1;

/// The longest frame a mux with this `max_frame_payload` ever emits or
/// accepts: the larger of a full DATA frame and a full OPEN frame. The
/// session's record limit must be at least this.
pub const fn max_frame_len(max_frame_payload: u16) -> usize {
    let data = DATA_HEADER_LEN + max_frame_payload as usize;
    if data > MAX_OPEN_LEN {
        data
    } else {
        MAX_OPEN_LEN
    }
}

nexus_wire::byte_enum! {
    /// Why an OPEN was refused.
    pub enum RejectReason {
        /// The accept policy refused the name for this peer.
        Policy = 1 => "policy",
        /// No room: stream cap, buffer budget or unread events.
        TooManyStreams = 2 => "too_many_streams",
        /// The metadata block is malformed (see [`OpenMeta::parse`]).
        BadMetadata = 3 => "bad_metadata",
        /// Anything else.
        Unknown = 4 => "unknown",
    }
}

/// One mux frame, borrowing its variable-length parts from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Opens `stream`, granting the acceptor `window` bytes of credit.
    Open {
        /// The new stream id (the opener's parity).
        stream: u32,
        /// Initial credit for the acceptor → opener direction.
        window: u32,
        /// The raw metadata block (parse with [`OpenMeta::parse`]).
        meta: &'a [u8],
    },
    /// Accepts `stream`, granting the opener `window` bytes of credit.
    OpenAck {
        /// The accepted stream.
        stream: u32,
        /// Initial credit for the opener → acceptor direction.
        window: u32,
    },
    /// Refuses an OPEN.
    Reject {
        /// The refused stream.
        stream: u32,
        /// Why.
        reason: RejectReason,
    },
    /// Stream bytes.
    Data {
        /// The stream.
        stream: u32,
        /// At most `u16::MAX` bytes (the mux enforces its own smaller limit).
        payload: &'a [u8],
    },
    /// Returns credit to the sender of a direction.
    Credit {
        /// The stream.
        stream: u32,
        /// Bytes of additional credit.
        increment: u32,
    },
    /// Aborts both directions of a stream.
    Rst {
        /// The stream.
        stream: u32,
        /// Application-defined reason.
        reason: u8,
    },
    /// Half-close: the sender sends no more DATA on this stream.
    Close {
        /// The stream.
        stream: u32,
    },
    /// Keepalive probe (control stream).
    Ping {
        /// Echoed in the PONG.
        nonce: u64,
    },
    /// Keepalive answer (control stream).
    Pong {
        /// The PING's nonce.
        nonce: u64,
    },
    /// The sender's capabilities (control stream; its first frame).
    Caps {
        /// Capability bits ([`CAP_TRACE`], ...).
        caps: u32,
    },
}

impl<'a> Frame<'a> {
    /// The type byte of this frame.
    pub fn type_byte(&self) -> u8 {
        match self {
            Frame::Open { .. } => TYPE_OPEN,
            Frame::OpenAck { .. } => TYPE_OPEN_ACK,
            Frame::Reject { .. } => TYPE_REJECT,
            Frame::Data { .. } => TYPE_DATA,
            Frame::Credit { .. } => TYPE_CREDIT,
            Frame::Rst { .. } => TYPE_RST,
            Frame::Close { .. } => TYPE_CLOSE,
            Frame::Ping { .. } => TYPE_PING,
            Frame::Pong { .. } => TYPE_PONG,
            Frame::Caps { .. } => TYPE_CAPS,
        }
    }

    /// The stream id the frame carries ([`CONTROL_STREAM`] for PING, PONG
    /// and CAPS).
    pub fn stream(&self) -> u32 {
        match *self {
            Frame::Open { stream, .. }
            | Frame::OpenAck { stream, .. }
            | Frame::Reject { stream, .. }
            | Frame::Data { stream, .. }
            | Frame::Credit { stream, .. }
            | Frame::Rst { stream, .. }
            | Frame::Close { stream } => stream,
            Frame::Ping { .. } | Frame::Pong { .. } | Frame::Caps { .. } => CONTROL_STREAM,
        }
    }

    /// Decodes one whole frame. Never panics; see the module invariants
    /// for what is refused.
    pub fn parse(buf: &'a [u8]) -> Result<Frame<'a>, WireError> {
        let mut r = Reader::new(buf);
        let ty = r.u8()?;
        let stream = r.u32()?;
        let frame = match ty {
            TYPE_OPEN => {
                let window = r.u32()?;
                let meta = r.bytes_u16()?;
                if meta.len() > MAX_META_LEN {
                    return Err(WireError::BadValue);
                }
                Frame::Open {
                    stream,
                    window,
                    meta,
                }
            }
            TYPE_OPEN_ACK => Frame::OpenAck {
                stream,
                window: r.u32()?,
            },
            TYPE_REJECT => Frame::Reject {
                stream,
                reason: r.enum_u8(RejectReason::from_u8)?,
            },
            TYPE_DATA => Frame::Data {
                stream,
                payload: r.bytes_u16()?,
            },
            TYPE_CREDIT => Frame::Credit {
                stream,
                increment: r.u32()?,
            },
            TYPE_RST => Frame::Rst {
                stream,
                reason: r.u8()?,
            },
            TYPE_CLOSE => Frame::Close { stream },
            TYPE_PING => Frame::Ping { nonce: r.u64()? },
            TYPE_PONG => Frame::Pong { nonce: r.u64()? },
            TYPE_CAPS => Frame::Caps { caps: r.u32()? },
            _ => return Err(WireError::BadValue),
        };
        r.finish()?;
        if stream_id_fits(&frame, stream) {
            Ok(frame)
        } else {
            Err(WireError::BadValue)
        }
    }

    /// Appends the encoded frame to `out`. Fails, leaving `out` untouched,
    /// for a frame [`parse`](Self::parse) would refuse: a stream frame on
    /// stream 0, metadata over [`MAX_META_LEN`], a payload over `u16::MAX`.
    pub fn emit(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        let stream = self.stream();
        if !stream_id_fits(self, stream) {
            return Err(WireError::BadValue);
        }
        match *self {
            Frame::Open { meta, .. } if meta.len() > MAX_META_LEN => {
                return Err(WireError::BadValue)
            }
            Frame::Data { payload, .. } if payload.len() > usize::from(u16::MAX) => {
                return Err(WireError::BadValue)
            }
            _ => {}
        }
        Writer::append(out, usize::MAX, |w| {
            w.u8(self.type_byte()).u32(stream);
            match *self {
                Frame::Open { window, meta, .. } => {
                    w.u32(window).bytes_u16(meta);
                }
                Frame::OpenAck { window, .. } => {
                    w.u32(window);
                }
                Frame::Reject { reason, .. } => {
                    w.u8(reason.as_u8());
                }
                Frame::Data { payload, .. } => {
                    w.bytes_u16(payload);
                }
                Frame::Credit { increment, .. } => {
                    w.u32(increment);
                }
                Frame::Rst { reason, .. } => {
                    w.u8(reason);
                }
                Frame::Close { .. } => {}
                Frame::Ping { nonce } | Frame::Pong { nonce } => {
                    w.u64(nonce);
                }
                Frame::Caps { caps } => {
                    w.u32(caps);
                }
            }
        })
        .map(|_| ())
    }

    /// The encoded frame as a new buffer.
    pub fn to_vec(&self) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::new();
        self.emit(&mut out)?;
        Ok(out)
    }
}

/// PING, PONG and CAPS live on the control stream, everything else off it.
fn stream_id_fits(frame: &Frame<'_>, stream: u32) -> bool {
    let control = matches!(
        frame,
        Frame::Ping { .. } | Frame::Pong { .. } | Frame::Caps { .. }
    );
    control == (stream == CONTROL_STREAM)
}

/// The decoded metadata of an OPEN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenMeta<'a> {
    /// Stream name (1..=64 bytes of UTF-8); what the accept policy judges.
    pub name: &'a str,
    /// Advisory priority (0 when absent).
    pub priority: u8,
    /// Opaque trace context the opener propagates (≤ 64 bytes).
    pub trace: Option<&'a [u8]>,
}

impl<'a> OpenMeta<'a> {
    /// Decodes a metadata block. Refuses (with `Truncated` or `BadValue`):
    /// a block over [`MAX_META_LEN`], a TLV running past the block, a
    /// missing name, a name that is empty, over [`MAX_NAME_LEN`] bytes or
    /// not UTF-8, a priority that is not exactly one byte, a trace over
    /// [`MAX_TRACE_LEN`] bytes, and any of the three known tags repeated.
    /// Unknown tags are skipped.
    pub fn parse(meta: &'a [u8]) -> Result<OpenMeta<'a>, WireError> {
        if meta.len() > MAX_META_LEN {
            return Err(WireError::BadValue);
        }
        let mut r = Reader::new(meta);
        let mut name = None;
        let mut priority = None;
        let mut trace = None;
        while r.remaining() > 0 {
            let tag = r.u8()?;
            let value = r.bytes_u8()?;
            match tag {
                TAG_NAME => {
                    let s = core::str::from_utf8(value).map_err(|_| WireError::BadValue)?;
                    check_name(s)?;
                    set_once(&mut name, s)?;
                }
                TAG_PRIORITY => match value {
                    [p] => set_once(&mut priority, *p)?,
                    _ => return Err(WireError::BadValue),
                },
                TAG_TRACE => {
                    check_trace(value)?;
                    set_once(&mut trace, value)?;
                }
                _ => {}
            }
        }
        Ok(OpenMeta {
            name: name.ok_or(WireError::BadValue)?,
            priority: priority.unwrap_or(0),
            trace,
        })
    }

    /// Appends the metadata block (name, priority, then trace if any).
    /// Fails, leaving `out` untouched, if the name or trace breaks a limit.
    pub fn emit(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        check_name(self.name)?;
        if let Some(t) = self.trace {
            check_trace(t)?;
        }
        Writer::append(out, usize::MAX, |w| {
            w.u8(TAG_NAME)
                .str_u8(self.name)
                .u8(TAG_PRIORITY)
                .bytes_u8(&[self.priority]);
            if let Some(t) = self.trace {
                w.u8(TAG_TRACE).bytes_u8(t);
            }
        })
        .map(|_| ())
    }

    /// The encoded block as a new buffer (at most 2 + 64 + 3 + 2 + 64 bytes).
    pub fn to_vec(&self) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::new();
        self.emit(&mut out)?;
        Ok(out)
    }
}

/// Checks a stream name against the wire limits: 1..=[`MAX_NAME_LEN`] bytes.
pub fn check_name(name: &str) -> Result<(), WireError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        Err(WireError::BadValue)
    } else {
        Ok(())
    }
}

/// Checks a trace context against [`MAX_TRACE_LEN`].
pub fn check_trace(trace: &[u8]) -> Result<(), WireError> {
    if trace.len() > MAX_TRACE_LEN {
        Err(WireError::BadValue)
    } else {
        Ok(())
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T) -> Result<(), WireError> {
    if slot.is_some() {
        return Err(WireError::BadValue);
    }
    *slot = Some(value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn layouts_are_exact() {
        let f = Frame::Data {
            stream: 0x0102_0304,
            payload: b"hi",
        };
        assert_eq!(f.to_vec().unwrap(), [4, 4, 3, 2, 1, 2, 0, b'h', b'i']);
        let f = Frame::Ping {
            nonce: 0x0102_0304_0506_0708,
        };
        assert_eq!(f.to_vec().unwrap(), [8, 0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1]);
        let f = Frame::Caps { caps: CAP_TRACE };
        assert_eq!(f.to_vec().unwrap(), [10, 0, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(Frame::parse(&[10, 0, 0, 0, 0, 1, 0, 0, 0]), Ok(f));
        assert_eq!(
            Frame::parse(&[10, 1, 0, 0, 0, 1, 0, 0, 0]),
            Err(WireError::BadValue),
            "CAPS off stream 0"
        );
        let meta = OpenMeta {
            name: "obs.logs",
            priority: 7,
            trace: Some(b"tp"),
        }
        .to_vec()
        .unwrap();
        let mut want = vec![1, 8];
        want.extend_from_slice(b"obs.logs");
        want.extend_from_slice(&[2, 1, 7, 3, 2, b't', b'p']);
        assert_eq!(meta, want);
        let open = Frame::Open {
            stream: 1,
            window: 0x100,
            meta: &meta,
        }
        .to_vec()
        .unwrap();
        assert_eq!(open[..11], [1, 1, 0, 0, 0, 0, 1, 0, 0, 17, 0]);
        assert_eq!(Frame::parse(&open).unwrap().stream(), 1);
    }

    #[test]
    fn control_stream_is_only_for_ping_and_pong() {
        assert_eq!(
            Frame::parse(&[7, 0, 0, 0, 0]),
            Err(WireError::BadValue),
            "CLOSE on stream 0"
        );
        assert_eq!(
            Frame::parse(&[8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(WireError::BadValue),
            "PING off stream 0"
        );
        let mut out = vec![9];
        assert_eq!(
            Frame::Close { stream: 0 }.emit(&mut out),
            Err(WireError::BadValue)
        );
        assert_eq!(out, [9], "a refused emit leaves the buffer alone");
    }

    #[test]
    fn refuses_what_it_cannot_frame() {
        assert_eq!(Frame::parse(&[]), Err(WireError::Truncated));
        assert_eq!(Frame::parse(&[11, 1, 0, 0, 0]), Err(WireError::BadValue));
        assert_eq!(
            Frame::parse(&[7, 1, 0, 0, 0, 0]),
            Err(WireError::TrailingBytes)
        );
        assert_eq!(
            Frame::parse(&[3, 1, 0, 0, 0, 5]),
            Err(WireError::BadValue),
            "reject reason 5"
        );
        let mut open = vec![1, 1, 0, 0, 0, 0, 0, 0, 0];
        open.extend_from_slice(&257u16.to_le_bytes());
        open.extend_from_slice(&[0; 257]);
        assert_eq!(Frame::parse(&open), Err(WireError::BadValue));
        let big = [0u8; 257];
        let f = Frame::Open {
            stream: 1,
            window: 0,
            meta: &big,
        };
        assert_eq!(f.to_vec(), Err(WireError::BadValue));
        let huge = vec![0u8; 65_536];
        let f = Frame::Data {
            stream: 1,
            payload: &huge,
        };
        assert_eq!(f.to_vec(), Err(WireError::BadValue));
    }

    #[test]
    fn metadata_rules() {
        fn ok(b: &[u8]) -> Result<OpenMeta<'_>, WireError> {
            OpenMeta::parse(b)
        }
        assert_eq!(
            ok(&[1, 1, b'a']).unwrap(),
            OpenMeta {
                name: "a",
                priority: 0,
                trace: None
            }
        );
        // Unknown tag skipped.
        assert_eq!(ok(&[9, 2, 0, 0, 1, 1, b'a']).unwrap().name, "a");
        assert_eq!(ok(&[]), Err(WireError::BadValue), "name required");
        assert_eq!(ok(&[1, 0]), Err(WireError::BadValue), "empty name");
        assert_eq!(ok(&[1, 1, 0xff]), Err(WireError::BadValue), "not UTF-8");
        assert_eq!(ok(&[1, 2, b'a']), Err(WireError::Truncated));
        assert_eq!(
            ok(&[1, 1, b'a', 1, 1, b'b']),
            Err(WireError::BadValue),
            "two names"
        );
        assert_eq!(
            ok(&[1, 1, b'a', 2, 2, 0, 0]),
            Err(WireError::BadValue),
            "two-byte priority"
        );
        let mut long = vec![1, 65];
        long.extend_from_slice(&[b'x'; 65]);
        assert_eq!(ok(&long), Err(WireError::BadValue), "65-byte name");
        let mut trace = vec![1, 1, b'a', 3, 65];
        trace.extend_from_slice(&[0; 65]);
        assert_eq!(ok(&trace), Err(WireError::BadValue), "65-byte trace");
        let long_name = "x".repeat(65);
        let m = OpenMeta {
            name: &long_name,
            priority: 0,
            trace: None,
        };
        assert_eq!(m.to_vec(), Err(WireError::BadValue));
    }

    #[test]
    fn max_frame_len_covers_open_and_data() {
        assert_eq!(max_frame_len(0), MAX_OPEN_LEN);
        assert_eq!(max_frame_len(4096), 4096 + DATA_HEADER_LEN);
    }
}
