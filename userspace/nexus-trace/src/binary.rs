//! The compact binary span context: what a DSoftBus mux OPEN carries as
//! trace metadata and what a service puts in an IPC frame.
//!
//! ```text
//! offset size  field
//! 0      1     version: 0x01
//! 1      16    trace id, big-endian (W3C byte order), not all zero
//! 17     8     span id (the sender's span: the receiver's parent), big-endian, not zero
//! 25     1     trace flags (bit 0 sampled; other bits carried)
//! -- end here: no tracestate, no baggage (26 bytes) --
//! 26     2     T: tracestate length, u16 little-endian
//! 28     T     tracestate, its W3C header form (ASCII)
//! -- end here: no baggage --
//! 28+T   2     B: baggage length, u16 little-endian
//! 30+T   B     baggage, its W3C header form (percent-encoded ASCII)
//! -- end: nothing may follow --
//! ```
//!
//! A section of length 0 is the same as an absent one. A version above 1
//! (not 0xff) is read for its first 26 bytes, whatever follows (a newer
//! layout must keep them); version 0 and 0xff are refused. Decoding
//! returns an error, never panics; an invalid tracestate section is
//! dropped (the context is kept), baggage members are skipped and counted
//! as in the text form.
//!
//! Size bound (mux OPEN: [`MUX_META_MAX`] = 64 bytes): when the encoding
//! would be longer, baggage members are dropped from the last one
//! backwards, then tracestate members from the rightmost backwards, until
//! it fits; the 26-byte core is never cut. Dropped members are counted.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::baggage::{Baggage, BaggageLimits, Scope};
use crate::ids::{SpanContext, SpanId, TraceFlags, TraceId};
use crate::propagation::{ExtractReport, Extracted, InjectReport, Propagator, TraceContext};
use crate::tracestate::TraceState;

/// The version this code writes.
pub const VERSION: u8 = 1;
/// The fixed part: version, trace id, span id, flags.
pub const CORE_LEN: usize = 26;
/// The most trace metadata a mux OPEN carries.
pub const MUX_META_MAX: usize = 64;

/// Why a binary context was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryError {
    /// Fewer bytes than the layout needs (core or a section).
    Short,
    /// Version 0 or 0xff.
    Version,
    /// All-zero trace id.
    ZeroTraceId,
    /// Zero span id.
    ZeroSpanId,
    /// A section that is not ASCII text.
    Text,
    /// Bytes after the baggage section.
    Trailing,
    /// Encoding: the bound is below [`CORE_LEN`], or a section is over
    /// 65535 bytes.
    Bound,
}

impl fmt::Display for BinaryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Short => "binary context too short",
            Self::Version => "binary context version",
            Self::ZeroTraceId => "binary context all-zero trace id",
            Self::ZeroSpanId => "binary context zero span id",
            Self::Text => "binary context section not ASCII",
            Self::Trailing => "bytes after the binary context",
            Self::Bound => "binary context bound",
        })
    }
}

fn section(out: &mut Vec<u8>, text: &str) -> Result<(), BinaryError> {
    let n = u16::try_from(text.len()).map_err(|_| BinaryError::Bound)?;
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

/// Encodes the core only (26 bytes, no allocation).
pub fn encode_core(ctx: &SpanContext) -> [u8; CORE_LEN] {
    let mut out = [0u8; CORE_LEN];
    out[0] = VERSION;
    if let Some(t) = out.get_mut(1..17) {
        t.copy_from_slice(&ctx.trace.to_bytes());
    }
    if let Some(s) = out.get_mut(17..25) {
        s.copy_from_slice(&ctx.span.to_bytes());
    }
    out[25] = ctx.flags.bits();
    out
}

/// Encodes `ctx` and `baggage` for `scope` into `out` (appended), at most
/// `max` bytes (`None`: only the u16 section bound). See the module docs
/// for what is dropped to fit.
pub fn encode(
    ctx: &TraceContext,
    baggage: &Baggage,
    scope: Scope,
    max: Option<usize>,
    out: &mut Vec<u8>,
) -> Result<InjectReport, BinaryError> {
    let mut report = InjectReport::default();
    let max = max.unwrap_or(usize::MAX);
    if max < CORE_LEN {
        return Err(BinaryError::Bound);
    }
    let mut bag = baggage.clone();
    if scope == Scope::CrossNode {
        let private: Vec<String> = bag
            .iter()
            .filter(|e| e.is_private())
            .map(|e| String::from(e.key()))
            .collect();
        for k in &private {
            bag.remove(k);
        }
        report.private_dropped = u32::try_from(private.len()).unwrap_or(u32::MAX);
    }
    let mut ts = ctx.tracestate.clone();
    let size = |ts: &TraceState, bag: &Baggage| match (ts.is_empty(), bag.is_empty()) {
        (true, true) => CORE_LEN,
        (_, true) => CORE_LEN + 2 + ts.header_len(),
        _ => CORE_LEN + 4 + ts.header_len() + bag.header_len(),
    };
    while size(&ts, &bag) > max {
        if bag.pop_last().is_some() {
            report.baggage_dropped += 1;
        } else if ts.pop_last().is_some() {
            report.tracestate_dropped += 1;
        } else {
            break;
        }
    }
    let start = out.len();
    out.extend_from_slice(&encode_core(&ctx.span));
    if let Err(e) = sections(&ts, &bag, out) {
        out.truncate(start);
        return Err(e);
    }
    Ok(report)
}

fn sections(ts: &TraceState, bag: &Baggage, out: &mut Vec<u8>) -> Result<(), BinaryError> {
    if ts.is_empty() && bag.is_empty() {
        return Ok(());
    }
    let mut text = String::with_capacity(ts.header_len().max(bag.header_len()));
    let _ = fmt::write(&mut text, format_args!("{ts}"));
    section(out, &text)?;
    if !bag.is_empty() {
        text.clear();
        let _ = bag.write_header(Scope::Local, &mut text);
        section(out, &text)?;
    }
    Ok(())
}

/// Takes one length-prefixed ASCII section off `rest` (`None` at the end).
fn take<'a>(rest: &mut &'a [u8]) -> Result<Option<&'a str>, BinaryError> {
    if rest.is_empty() {
        return Ok(None);
    }
    let (len, tail) = rest.split_first_chunk::<2>().ok_or(BinaryError::Short)?;
    let n = usize::from(u16::from_le_bytes(*len));
    let (text, tail) = tail.split_at_checked(n).ok_or(BinaryError::Short)?;
    *rest = tail;
    if !text.is_ascii() {
        return Err(BinaryError::Text);
    }
    core::str::from_utf8(text)
        .map(Some)
        .map_err(|_| BinaryError::Text)
}

/// Decodes a binary context (see the module docs).
pub fn decode(bytes: &[u8], limits: BaggageLimits, scope: Scope) -> Result<Extracted, BinaryError> {
    let core: &[u8; CORE_LEN] = bytes
        .get(..CORE_LEN)
        .and_then(|c| c.try_into().ok())
        .ok_or(BinaryError::Short)?;
    let [version, rest @ ..] = core;
    if *version == 0 || *version == 0xff {
        return Err(BinaryError::Version);
    }
    let mut t = [0u8; 16];
    let mut s = [0u8; 8];
    t.copy_from_slice(rest.get(..16).ok_or(BinaryError::Short)?);
    s.copy_from_slice(rest.get(16..24).ok_or(BinaryError::Short)?);
    let flags = rest.get(24).copied().ok_or(BinaryError::Short)?;
    let trace = TraceId::from_bytes(t).ok_or(BinaryError::ZeroTraceId)?;
    let span = SpanId::from_bytes(s).ok_or(BinaryError::ZeroSpanId)?;
    let span = SpanContext::new(trace, span, TraceFlags::new(flags));
    let mut report = ExtractReport::default();
    let mut ctx = TraceContext::new(span);
    let mut baggage = Baggage::new(limits);
    if *version == VERSION {
        let mut rest = bytes.get(CORE_LEN..).unwrap_or(&[]);
        let ts = take(&mut rest)?;
        let bg = take(&mut rest)?;
        if !rest.is_empty() {
            return Err(BinaryError::Trailing);
        }
        if let Some(ts) = ts.filter(|t| !t.is_empty()) {
            match TraceState::parse(ts) {
                Ok(t) => ctx.tracestate = t,
                Err(e) => report.tracestate = Some(e),
            }
        }
        if let Some(bg) = bg.filter(|b| !b.is_empty()) {
            let (b, r) = Baggage::parse_all(core::iter::once(bg), limits, scope);
            baggage = b;
            report.baggage = r;
        }
    }
    Ok(Extracted {
        parent: Some(ctx),
        baggage,
        report,
    })
}

impl Propagator {
    /// Binary form for a service on this node (IPC frames): everything
    /// travels, no size bound beyond the sections' u16 lengths.
    pub fn encode_binary(
        &self,
        ctx: &TraceContext,
        baggage: &Baggage,
        out: &mut Vec<u8>,
    ) -> Result<InjectReport, BinaryError> {
        let r = encode(ctx, baggage, Scope::Local, None, out)?;
        self.count_inject(&r);
        Ok(r)
    }

    /// Binary form for another node, at most `max` bytes: `private:`
    /// baggage left out, then members dropped to fit; all counted.
    pub fn encode_binary_cross_node(
        &self,
        ctx: &TraceContext,
        baggage: &Baggage,
        max: usize,
        out: &mut Vec<u8>,
    ) -> Result<InjectReport, BinaryError> {
        let r = encode(ctx, baggage, Scope::CrossNode, Some(max), out)?;
        self.count_inject(&r);
        Ok(r)
    }

    /// Mux OPEN trace metadata: cross-node, at most [`MUX_META_MAX`].
    pub fn encode_mux_meta(
        &self,
        ctx: &TraceContext,
        baggage: &Baggage,
        out: &mut Vec<u8>,
    ) -> Result<InjectReport, BinaryError> {
        self.encode_binary_cross_node(ctx, baggage, MUX_META_MAX, out)
    }

    /// Decodes a binary context received with `scope`; a refused one is
    /// counted as an invalid parent.
    pub fn decode_binary(&self, bytes: &[u8], scope: Scope) -> Result<Extracted, BinaryError> {
        match decode(bytes, self.limits(), scope) {
            Ok(x) => {
                self.count_extract(&x.report);
                Ok(x)
            }
            Err(e) => {
                self.count_invalid_parent();
                Err(e)
            }
        }
    }
}
