//! The wire form of a finished span: what a service sends traced in a span
//! batch, and what one traced forwards to another over `obs.traces`.
//! Defined once here for the encoder and the decoder.
//!
//! Little-endian, as everywhere in `nexus-wire`. `str_u8` / `str_u16` are
//! a one- / two-byte length and that many UTF-8 bytes.
//!
//! ```text
//! offset size
//!  0     16   trace id u128 (non-zero)
//! 16      8   span id u64 (non-zero)
//! 24      8   parent span id u64 (0: a root)
//! 32      1   trace flags
//! 33      1   remote parent: 0 or 1
//! 34      8   start_ns (the producer's clock)
//! 42      8   end_ns (not before start_ns)
//! 50      1   status: 0 unset, 1 ok, 2 error
//! 51      4   dropped attributes u32
//! 55      4   dropped events u32
//! 59      …   name str_u8
//!             status message: 0 (none) | 1 + str_u16
//!             tracestate str_u16 (its header form; empty: none)
//!             nattrs u8, then per attribute: key str_u8, value str_u16
//!             nevents u8, then per event: time_ns u64, name str_u8,
//!               nattrs u8, then key str_u8, value str_u16 per attribute
//! ```
//!
//! [`parse`] refuses every malformed body with a [`WireError`]: truncated
//! fields, zero ids, an unknown status, a flag byte other than 0/1, an end
//! before the start, invalid UTF-8, an invalid tracestate. Allocation is
//! bounded by the input's length. [`emit`] latches `BadValue` in the
//! writer for a field past its length prefix (more than 255 attributes or
//! events, a key or name over 255 bytes, a value over 65,535).

use alloc::string::String;
use alloc::vec::Vec;

use nexus_wire::{Reader, WireError, Writer};

use crate::ids::{SpanContext, SpanId, SpanStatus, TraceFlags, TraceId};
use crate::recent::SpanRecord;
use crate::tracer::{FinishedSpan, SpanEvent};
use crate::tracestate::TraceState;

/// Bytes before the name.
pub const FIXED_LEN: usize = 59;

fn emit_attrs(w: &mut Writer<'_>, attrs: &[(String, String)]) {
    w.count_u8(attrs.len());
    for (k, v) in attrs {
        w.str_u8(k).str_u16(v);
    }
}

/// Appends `span`'s body to `w`.
pub fn emit(span: &FinishedSpan<'_>, w: &mut Writer<'_>) {
    let c = &span.context;
    w.u128(c.trace.get())
        .u64(c.span.get())
        .u64(span.parent.map_or(0, SpanId::get))
        .u8(c.flags.bits())
        .bool(span.remote_parent)
        .u64(span.start_ns)
        .u64(span.end_ns)
        .u8(span.status.as_u8())
        .u32(span.dropped_attrs)
        .u32(span.dropped_events)
        .str_u8(span.name);
    match span.status_message {
        Some(m) => {
            w.u8(1).str_u16(m);
        }
        None => {
            w.u8(0);
        }
    }
    match span.tracestate {
        Some(t) if !t.is_empty() => {
            w.str_u16(&alloc::format!("{t}"));
        }
        _ => {
            w.str_u16("");
        }
    }
    emit_attrs(w, span.attrs);
    w.count_u8(span.events.len());
    for e in span.events {
        w.u64(e.time_ns).str_u8(&e.name);
        emit_attrs(w, &e.attrs);
    }
}

fn parse_attrs(r: &mut Reader<'_>) -> Result<Vec<(String, String)>, WireError> {
    let n = r.u8()?;
    // Each pair takes at least 3 bytes: bound the allocation by the input.
    let mut out = Vec::with_capacity(usize::from(n).min(r.remaining() / 3));
    for _ in 0..n {
        let k = r.str_u8()?;
        let v = r.str_u16()?;
        out.push((String::from(k), String::from(v)));
    }
    Ok(out)
}

/// Reads one body (see the module doc for what is refused).
pub fn parse(r: &mut Reader<'_>) -> Result<SpanRecord, WireError> {
    let trace = TraceId::new(r.u128()?).ok_or(WireError::BadValue)?;
    let span = SpanId::new(r.u64()?).ok_or(WireError::BadValue)?;
    let parent = SpanId::new(r.u64()?);
    let flags = TraceFlags::new(r.u8()?);
    let remote_parent = r.bool()?;
    let start_ns = r.u64()?;
    let end_ns = r.u64()?;
    if end_ns < start_ns {
        return Err(WireError::BadValue);
    }
    let status = r.enum_u8(SpanStatus::from_u8)?;
    let dropped_attrs = r.u32()?;
    let dropped_events = r.u32()?;
    let name = String::from(r.str_u8()?);
    let status_message = if r.bool()? {
        Some(String::from(r.str_u16()?))
    } else {
        None
    };
    let ts = r.str_u16()?;
    let tracestate = if ts.is_empty() {
        None
    } else {
        Some(TraceState::parse_all([ts]).map_err(|_| WireError::BadValue)?)
    };
    let attrs = parse_attrs(r)?;
    let n = r.u8()?;
    // Each event takes at least 10 bytes.
    let mut events = Vec::with_capacity(usize::from(n).min(r.remaining() / 10));
    for _ in 0..n {
        let time_ns = r.u64()?;
        let name = String::from(r.str_u8()?);
        let attrs = parse_attrs(r)?;
        events.push(SpanEvent {
            name,
            time_ns,
            attrs,
        });
    }
    Ok(SpanRecord {
        context: SpanContext::new(trace, span, flags),
        parent,
        remote_parent,
        name,
        start_ns,
        end_ns,
        status,
        status_message,
        attrs,
        events,
        tracestate,
        dropped_attrs,
        dropped_events,
    })
}
