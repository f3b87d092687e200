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
//! [`SpanStart::parse`] and [`SpanEnd::parse`] check structure and
//! non-zero span and trace ids; the status byte is kept raw
//! ([`SpanEnd::status`]) so the server judges it, as it judges names,
//! attributes and limits. [`RawSpanStart`] and [`RawSpanEnd`] are the same
//! bodies with the ids unchecked: a server that refuses one bad entry of
//! a batch (rather than the whole frame) decodes those and judges the ids
//! itself with [`RawSpanStart::check`] / [`RawSpanEnd::check`]. Both forms
//! read and write the same bytes.

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
    /// The body with its ids as plain integers.
    pub const fn raw(&self) -> RawSpanStart<'a> {
        RawSpanStart {
            span: self.span.get(),
            trace: self.trace.get(),
            parent: match self.parent {
                Some(p) => p.get(),
                None => 0,
            },
            start_ns: self.start_ns,
            name: self.name,
        }
    }

    /// Appends the body. A name past 255 bytes latches
    /// [`WireError::BadValue`] in `w`.
    pub fn emit(&self, w: &mut Writer<'_>) {
        self.raw().emit(w);
    }

    /// Reads a body. A zero span or trace id is [`WireError::BadValue`].
    pub fn parse(r: &mut Reader<'a>) -> Result<Self, WireError> {
        RawSpanStart::parse(r)?.check()
    }
}

/// A START body as read, ids unchecked (zero allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawSpanStart<'a> {
    /// Span id.
    pub span: u64,
    /// Trace id.
    pub trace: u128,
    /// Parent span id, 0 for a root.
    pub parent: u64,
    /// The producer's clock at the start.
    pub start_ns: u64,
    /// Name.
    pub name: &'a str,
}

impl<'a> RawSpanStart<'a> {
    /// Appends the body. A name past 255 bytes latches
    /// [`WireError::BadValue`] in `w`.
    pub fn emit(&self, w: &mut Writer<'_>) {
        w.u64(self.span)
            .u128(self.trace)
            .u64(self.parent)
            .u64(self.start_ns)
            .str_u8(self.name);
    }

    /// Reads a body, checking structure only.
    pub fn parse(r: &mut Reader<'a>) -> Result<Self, WireError> {
        Ok(Self {
            span: r.u64()?,
            trace: r.u128()?,
            parent: r.u64()?,
            start_ns: r.u64()?,
            name: r.str_u8()?,
        })
    }

    /// The typed entry; a zero span or trace id is [`WireError::BadValue`].
    pub const fn check(&self) -> Result<SpanStart<'a>, WireError> {
        match (SpanId::new(self.span), TraceId::new(self.trace)) {
            (Some(span), Some(trace)) => Ok(SpanStart {
                span,
                trace,
                parent: SpanId::new(self.parent),
                start_ns: self.start_ns,
                name: self.name,
            }),
            _ => Err(WireError::BadValue),
        }
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
        RawSpanEnd::emit_fields(w, self.span.get(), self.end_ns, self.status, &self.attrs);
    }

    /// Reads a body. A zero span id is [`WireError::BadValue`]; the status
    /// byte is not judged.
    pub fn parse(r: &mut Reader<'a>) -> Result<Self, WireError> {
        RawSpanEnd::parse(r)?.check()
    }
}

/// An END body as read, span id unchecked (zero allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSpanEnd<'a> {
    /// Span id.
    pub span: u64,
    /// The producer's clock at the end.
    pub end_ns: u64,
    /// The raw status byte.
    pub status: u8,
    /// Attributes as sent.
    pub attrs: Vec<(&'a str, &'a str)>,
}

impl<'a> RawSpanEnd<'a> {
    /// Appends the body. More than 255 attributes, or a key or value past
    /// 255 bytes, latches [`WireError::BadValue`] in `w`.
    pub fn emit(&self, w: &mut Writer<'_>) {
        Self::emit_fields(w, self.span, self.end_ns, self.status, &self.attrs);
    }

    /// [`RawSpanEnd::emit`] from borrowed fields (no attribute vector
    /// needed).
    pub fn emit_fields(
        w: &mut Writer<'_>,
        span: u64,
        end_ns: u64,
        status: u8,
        attrs: &[(&str, &str)],
    ) {
        w.u64(span).u64(end_ns).u8(status).count_u8(attrs.len());
        for (k, v) in attrs {
            w.str_u8(k).str_u8(v);
        }
    }

    /// Reads a body, checking structure only.
    pub fn parse(r: &mut Reader<'a>) -> Result<Self, WireError> {
        let span = r.u64()?;
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

    /// The typed entry; a zero span id is [`WireError::BadValue`].
    pub fn check(self) -> Result<SpanEnd<'a>, WireError> {
        Ok(SpanEnd {
            span: SpanId::new(self.span).ok_or(WireError::BadValue)?,
            end_ns: self.end_ns,
            status: self.status,
            attrs: self.attrs,
        })
    }
}
