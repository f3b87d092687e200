//! The span entries of the metricsd BATCH, defined once for the client
//! that encodes them and the server that decodes them.
//!
//! A BATCH entry is a tag byte followed by a body; these are the bodies of
//! tags [`tag::SPAN_START`] and [`tag::SPAN_END`] (the tag itself, and the
//! batch around it, belong to the metricsd contract). All integers are
//! little-endian, as everywhere in `nexus-wire`:
//!
//! ```text
//! START  span u64 | trace u128 | parent u64 (0: root) | start_ns u64 | name u8-len    (41 + name bytes)
//! END    span u64 | end_ns u64 | status u8 | nattrs u8 | (key u8-len, value u8-len)*  (18 + pairs)
//! ```
//!
//! Decoding checks structure and non-zero span and trace ids; the status
//! byte is kept raw ([`SpanEnd::status`]) so the server judges it, as it
//! judges names, attributes and limits.

use alloc::vec::Vec;

use nexus_wire::{Reader, WireError, Writer};

use crate::ids::{SpanId, SpanStatus, TraceId};

/// The BATCH entry tags these bodies follow.
pub mod tag {
    /// [`super::SpanStart`].
    pub const SPAN_START: u8 = 5;
    /// [`super::SpanEnd`].
    pub const SPAN_END: u8 = 6;
}

/// A span began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanStart<'a> {
    /// The span.
    pub span: SpanId,
    /// Its trace.
    pub trace: TraceId,
    /// Its parent; `None` for a root (0 on the wire).
    pub parent: Option<SpanId>,
    /// The producer's clock at the start.
    pub start_ns: u64,
    /// Name (at most 255 bytes on the wire).
    pub name: &'a str,
}

impl<'a> SpanStart<'a> {
    /// Appends the body. A name past 255 bytes latches
    /// [`WireError::BadValue`] in `w`.
    pub fn emit(&self, w: &mut Writer<'_>) {
        w.u64(self.span.get())
            .u128(self.trace.get())
            .u64(self.parent.map_or(0, SpanId::get))
            .u64(self.start_ns)
            .str_u8(self.name);
    }

    /// Reads a body. A zero span or trace id is [`WireError::BadValue`].
    pub fn parse(r: &mut Reader<'a>) -> Result<Self, WireError> {
        let span = SpanId::new(r.u64()?).ok_or(WireError::BadValue)?;
        let trace = TraceId::new(r.u128()?).ok_or(WireError::BadValue)?;
        let parent = SpanId::new(r.u64()?);
        let start_ns = r.u64()?;
        let name = r.str_u8()?;
        Ok(Self {
            span,
            trace,
            parent,
            start_ns,
            name,
        })
    }
}

/// A span ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanEnd<'a> {
    /// The span.
    pub span: SpanId,
    /// The producer's clock at the end.
    pub end_ns: u64,
    /// The raw status byte (a [`SpanStatus`] when valid: see
    /// [`SpanEnd::status`]).
    pub status: u8,
    /// Attributes, at most 255, each key and value at most 255 bytes.
    pub attrs: Vec<(&'a str, &'a str)>,
}

impl<'a> SpanEnd<'a> {
    /// The status, if the byte is a known one.
    pub const fn status(&self) -> Option<SpanStatus> {
        SpanStatus::from_u8(self.status)
    }

    /// Appends the body. More than 255 attributes, or a key or value past
    /// 255 bytes, latches [`WireError::BadValue`] in `w`.
    pub fn emit(&self, w: &mut Writer<'_>) {
        w.u64(self.span.get()).u64(self.end_ns).u8(self.status);
        match u8::try_from(self.attrs.len()) {
            Ok(n) => {
                w.u8(n);
            }
            // An impossible count: make the writer fail the same way a
            // too-long string does.
            Err(_) => {
                w.bytes_u8(&[0; 256]);
            }
        }
        for (k, v) in &self.attrs {
            w.str_u8(k).str_u8(v);
        }
    }

    /// Reads a body. A zero span id is [`WireError::BadValue`]; the status
    /// byte is not judged.
    pub fn parse(r: &mut Reader<'a>) -> Result<Self, WireError> {
        let span = SpanId::new(r.u64()?).ok_or(WireError::BadValue)?;
        let end_ns = r.u64()?;
        let status = r.u8()?;
        let n = r.u8()?;
        // Each pair takes at least 2 bytes: bound the allocation by the input.
        let mut attrs = Vec::with_capacity(usize::from(n).min(r.remaining() / 2));
        for _ in 0..n {
            attrs.push((r.str_u8()?, r.str_u8()?));
        }
        Ok(Self {
            span,
            end_ns,
            status,
            attrs,
        })
    }
}
