//! Carrying a span context (and tracestate, baggage) to another service
//! or node, in two forms:
//!
//! * the W3C text map (`traceparent`, `tracestate`, `baggage` headers) on
//!   any [`Carrier`] — HTTP headers, a tool's key/value list;
//! * the compact binary form of [`crate::binary`] for mux OPEN trace
//!   metadata and IPC frames.
//!
//! Every injection and extraction takes a [`Scope`]: `CrossNode` removes
//! `private:` baggage (counted in [`PropagationStats::private_dropped`]).
//! The rules are listed in `docs/observability/tracing.md`.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::baggage::{Baggage, BaggageLimits, BaggageReport, Scope};
use crate::ids::{HexError, SpanContext, SpanId, TraceFlags, TraceId};
use crate::tracestate::{trim_ows, TraceState, TraceStateError};

/// Header name of the span context.
pub const TRACEPARENT: &str = "traceparent";
/// Header name of the vendor list.
pub const TRACESTATE: &str = "tracestate";
/// Header name of the baggage.
pub const BAGGAGE: &str = "baggage";
/// Length of a version-00 `traceparent`.
pub const TRACEPARENT_LEN: usize = 55;

/// A header map the propagator reads and writes. `get` and `for_each`
/// match names ASCII case-insensitively; `set` replaces every value of
/// that name.
pub trait Carrier {
    /// The first value of header `name`.
    fn get(&self, name: &str) -> Option<&str>;
    /// Sets header `name` to `value` (replacing previous values).
    fn set(&mut self, name: &str, value: &str);
    /// Every value of header `name`, in order (repeated headers). The
    /// default gives [`Carrier::get`]'s only.
    fn for_each<'a>(&'a self, name: &str, f: &mut dyn FnMut(&'a str)) {
        if let Some(v) = self.get(name) {
            f(v);
        }
    }
    /// Every header once, in order, as (name, value); `false` if the
    /// carrier cannot list its headers (then extraction looks each name
    /// up). Extraction in one pass costs no lookup per header it looks
    /// for: a carrier that can list should.
    fn visit<'a>(&'a self, f: &mut dyn FnMut(&'a str, &'a str)) -> bool {
        let _ = f;
        false
    }
}

/// A list of headers, repeated names allowed.
impl Carrier for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn set(&mut self, name: &str, value: &str) {
        self.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.push((String::from(name), String::from(value)));
    }
    fn for_each<'a>(&'a self, name: &str, f: &mut dyn FnMut(&'a str)) {
        for (k, v) in self {
            if k.eq_ignore_ascii_case(name) {
                f(v);
            }
        }
    }
    fn visit<'a>(&'a self, f: &mut dyn FnMut(&'a str, &'a str)) -> bool {
        for (k, v) in self {
            f(k, v);
        }
        true
    }
}

/// A map of headers (one value per name).
impl Carrier for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        match BTreeMap::get(self, name) {
            Some(v) => Some(v.as_str()),
            None => self
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str()),
        }
    }
    fn set(&mut self, name: &str, value: &str) {
        self.retain(|k, _| !k.eq_ignore_ascii_case(name));
        self.insert(String::from(name), String::from(value));
    }
    fn visit<'a>(&'a self, f: &mut dyn FnMut(&'a str, &'a str)) -> bool {
        for (k, v) in self {
            f(k, v);
        }
        true
    }
}

#[cfg(feature = "std")]
mod http_carrier {
    use super::Carrier;
    use http::header::{HeaderMap, HeaderName, HeaderValue};

    /// `http`'s header map: names are case-insensitive there already;
    /// values that are not visible ASCII are skipped, and a name or value
    /// `http` refuses is not set.
    impl Carrier for HeaderMap {
        fn get(&self, name: &str) -> Option<&str> {
            HeaderMap::get(self, name).and_then(|v| v.to_str().ok())
        }
        fn set(&mut self, name: &str, value: &str) {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                self.insert(n, v);
            }
        }
        fn for_each<'a>(&'a self, name: &str, f: &mut dyn FnMut(&'a str)) {
            for v in self.get_all(name) {
                if let Ok(s) = v.to_str() {
                    f(s);
                }
            }
        }
        fn visit<'a>(&'a self, f: &mut dyn FnMut(&'a str, &'a str)) -> bool {
            for (k, v) in self {
                if let Ok(s) = v.to_str() {
                    f(k.as_str(), s);
                }
            }
            true
        }
    }
}

/// Why a `traceparent` was refused (a refused one starts a new trace and
/// its `tracestate` is not read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceparentError {
    /// Too short, or a version-00 header that is not exactly 55 long.
    Length,
    /// Version not two lower-case hex digits, or `ff`.
    Version,
    /// A `-` missing where the layout puts one (also after the flags of
    /// a longer, higher-version header).
    Separator,
    /// Trace id, parent id or flags not lower-case hex.
    Hex,
    /// All-zero trace id.
    ZeroTraceId,
    /// All-zero parent id.
    ZeroSpanId,
    /// More than one `traceparent` header.
    Multiple,
}

impl fmt::Display for TraceparentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Length => "traceparent length",
            Self::Version => "traceparent version",
            Self::Separator => "traceparent separator",
            Self::Hex => "traceparent hex",
            Self::ZeroTraceId => "traceparent all-zero trace id",
            Self::ZeroSpanId => "traceparent all-zero parent id",
            Self::Multiple => "several traceparent headers",
        })
    }
}

fn hex2(b: &[u8]) -> Option<u8> {
    let d = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    match b {
        [h, l] => Some(d(*h)? << 4 | d(*l)?),
        _ => None,
    }
}

fn field(s: &str, from: usize, to: usize) -> &str {
    s.get(from..to).unwrap_or("")
}

/// Parses a `traceparent` value (surrounding spaces and tabs ignored).
///
/// Version `00` must be exactly `00-<32 hex>-<16 hex>-<2 hex>`. A higher
/// version (not `ff`) is read for this known part: at least 55
/// characters, and anything after the flags must begin with `-`; only its
/// sampled flag is taken.
pub fn parse_traceparent(value: &str) -> Result<SpanContext, TraceparentError> {
    let s = trim_ows(value);
    let b = s.as_bytes();
    if b.len() < TRACEPARENT_LEN {
        return Err(TraceparentError::Length);
    }
    let version = b
        .get(0..2)
        .and_then(hex2)
        .ok_or(TraceparentError::Version)?;
    if version == 0xff {
        return Err(TraceparentError::Version);
    }
    if version == 0 && b.len() != TRACEPARENT_LEN {
        return Err(TraceparentError::Length);
    }
    for at in [2, 35, 52] {
        if b.get(at) != Some(&b'-') {
            return Err(TraceparentError::Separator);
        }
    }
    if b.len() > TRACEPARENT_LEN && b.get(TRACEPARENT_LEN) != Some(&b'-') {
        return Err(TraceparentError::Separator);
    }
    let trace = TraceId::from_hex(field(s, 3, 35)).map_err(|e| match e {
        HexError::Zero => TraceparentError::ZeroTraceId,
        _ => TraceparentError::Hex,
    })?;
    let span = SpanId::from_hex(field(s, 36, 52)).map_err(|e| match e {
        HexError::Zero => TraceparentError::ZeroSpanId,
        _ => TraceparentError::Hex,
    })?;
    let flags = b.get(53..55).and_then(hex2).ok_or(TraceparentError::Hex)?;
    let flags = if version == 0 {
        TraceFlags::new(flags)
    } else {
        TraceFlags::new(flags) & TraceFlags::SAMPLED
    };
    Ok(SpanContext::new(trace, span, flags))
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn put_hex(out: &mut [u8], v: u128, digits: usize) {
    for (i, slot) in out.iter_mut().take(digits).enumerate() {
        let shift = 4 * (digits - 1 - i);
        let nib = (v >> shift) & 0xf;
        *slot = HEX.get(nib as usize).copied().unwrap_or(b'0');
    }
}

/// The version-00 `traceparent` bytes of `ctx` (always ASCII).
pub fn traceparent_bytes(ctx: &SpanContext) -> [u8; TRACEPARENT_LEN] {
    let mut out = [b'-'; TRACEPARENT_LEN];
    out[0] = b'0';
    out[1] = b'0';
    if let Some(t) = out.get_mut(3..35) {
        put_hex(t, ctx.trace.get(), 32);
    }
    if let Some(s) = out.get_mut(36..52) {
        put_hex(s, u128::from(ctx.span.get()), 16);
    }
    if let Some(f) = out.get_mut(53..55) {
        put_hex(f, u128::from(ctx.flags.bits()), 2);
    }
    out
}

/// Writes `traceparent_bytes` as a string to `f`.
pub fn format_traceparent(ctx: &SpanContext, f: &mut impl fmt::Write) -> fmt::Result {
    let b = traceparent_bytes(ctx);
    f.write_str(core::str::from_utf8(&b).map_err(|_| fmt::Error)?)
}

/// A span context with its vendor list: what a child on another service
/// or node continues from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceContext {
    /// Trace, span, flags.
    pub span: SpanContext,
    /// The `tracestate` that travels with it.
    pub tracestate: TraceState,
}

impl TraceContext {
    /// A context without vendor list.
    pub const fn new(span: SpanContext) -> Self {
        Self {
            span,
            tracestate: TraceState::new(),
        }
    }
}

impl From<SpanContext> for TraceContext {
    fn from(span: SpanContext) -> Self {
        Self::new(span)
    }
}

/// What an extraction found and skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractReport {
    /// Why a present `traceparent` was refused.
    pub traceparent: Option<TraceparentError>,
    /// Why a present `tracestate` was dropped (the parent is kept).
    pub tracestate: Option<TraceStateError>,
    /// What the baggage parser skipped.
    pub baggage: BaggageReport,
}

/// The result of an extraction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// The remote parent, if a valid one came (else: start a new trace).
    pub parent: Option<TraceContext>,
    /// Baggage (independent of the parent's validity).
    pub baggage: Baggage,
    /// What was skipped.
    pub report: ExtractReport,
}

/// What an injection left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InjectReport {
    /// `private:` baggage members removed (cross-node).
    pub private_dropped: u32,
    /// Baggage members dropped to fit a size bound (binary form).
    pub baggage_dropped: u32,
    /// Tracestate members dropped to fit a size bound (binary form).
    pub tracestate_dropped: u32,
}

/// Counters of a [`Propagator`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PropagationStats {
    /// `private:` baggage members kept from leaving the node (injection)
    /// or refused from another node (extraction).
    pub private_dropped: u64,
    /// Baggage members past the limits or the size bound.
    pub baggage_dropped: u64,
    /// Baggage members outside the grammar.
    pub baggage_invalid: u64,
    /// `traceparent`s (or binary contexts) refused.
    pub traceparent_invalid: u64,
    /// `tracestate`s dropped (invalid, or members cut to fit).
    pub tracestate_dropped: u64,
}

#[derive(Debug, Default)]
struct Counters {
    private_dropped: AtomicU64,
    baggage_dropped: AtomicU64,
    baggage_invalid: AtomicU64,
    traceparent_invalid: AtomicU64,
    tracestate_dropped: AtomicU64,
}

fn add(c: &AtomicU64, n: u32) {
    if n > 0 {
        c.fetch_add(u64::from(n), Ordering::Relaxed);
    }
}

/// Injects and extracts contexts with baggage limits, counting what it
/// drops. Shared by `&`; counters are atomics.
#[derive(Debug, Default)]
pub struct Propagator {
    limits: BaggageLimits,
    counters: Counters,
}

impl Propagator {
    /// A propagator whose extracted baggage is bounded by `limits`.
    pub fn new(limits: BaggageLimits) -> Self {
        Self {
            limits,
            counters: Counters::default(),
        }
    }

    /// The baggage limits.
    pub fn limits(&self) -> BaggageLimits {
        self.limits
    }

    /// Counters so far.
    pub fn stats(&self) -> PropagationStats {
        let c = &self.counters;
        PropagationStats {
            private_dropped: c.private_dropped.load(Ordering::Relaxed),
            baggage_dropped: c.baggage_dropped.load(Ordering::Relaxed),
            baggage_invalid: c.baggage_invalid.load(Ordering::Relaxed),
            traceparent_invalid: c.traceparent_invalid.load(Ordering::Relaxed),
            tracestate_dropped: c.tracestate_dropped.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn count_inject(&self, r: &InjectReport) {
        add(&self.counters.private_dropped, r.private_dropped);
        add(&self.counters.baggage_dropped, r.baggage_dropped);
        if r.tracestate_dropped > 0 {
            add(&self.counters.tracestate_dropped, 1);
        }
    }

    pub(crate) fn count_invalid_parent(&self) {
        add(&self.counters.traceparent_invalid, 1);
    }

    pub(crate) fn count_extract(&self, r: &ExtractReport) {
        if r.traceparent.is_some() {
            add(&self.counters.traceparent_invalid, 1);
        }
        if r.tracestate.is_some() {
            add(&self.counters.tracestate_dropped, 1);
        }
        add(&self.counters.private_dropped, r.baggage.private_dropped);
        add(&self.counters.baggage_dropped, r.baggage.dropped);
        add(&self.counters.baggage_invalid, r.baggage.invalid);
    }

    /// Writes `traceparent`, and `tracestate` / `baggage` when not empty,
    /// to `carrier` for a service on this node (everything travels).
    pub fn inject(
        &self,
        ctx: &TraceContext,
        baggage: &Baggage,
        carrier: &mut impl Carrier,
    ) -> InjectReport {
        self.inject_scoped(ctx, baggage, carrier, Scope::Local)
    }

    /// Like [`Propagator::inject`] for another node: `private:` baggage
    /// is left out and counted.
    pub fn inject_cross_node(
        &self,
        ctx: &TraceContext,
        baggage: &Baggage,
        carrier: &mut impl Carrier,
    ) -> InjectReport {
        self.inject_scoped(ctx, baggage, carrier, Scope::CrossNode)
    }

    /// Injection with an explicit scope.
    pub fn inject_scoped(
        &self,
        ctx: &TraceContext,
        baggage: &Baggage,
        carrier: &mut impl Carrier,
        scope: Scope,
    ) -> InjectReport {
        let tp = traceparent_bytes(&ctx.span);
        carrier.set(TRACEPARENT, core::str::from_utf8(&tp).unwrap_or(""));
        if !ctx.tracestate.is_empty() {
            let mut s = String::with_capacity(ctx.tracestate.header_len());
            let _ = fmt::write(&mut s, format_args!("{}", ctx.tracestate));
            carrier.set(TRACESTATE, &s);
        }
        let mut report = InjectReport::default();
        if !baggage.is_empty() {
            let (s, skipped) = baggage.to_header(scope);
            report.private_dropped = skipped;
            if !s.is_empty() {
                carrier.set(BAGGAGE, &s);
            }
        }
        self.count_inject(&report);
        report
    }

    /// Reads a context sent by a service on this node.
    pub fn extract(&self, carrier: &impl Carrier) -> Extracted {
        self.extract_scoped(carrier, Scope::Local)
    }

    /// Reads a context from another node: `private:` baggage is refused
    /// and counted.
    pub fn extract_cross_node(&self, carrier: &impl Carrier) -> Extracted {
        self.extract_scoped(carrier, Scope::CrossNode)
    }

    /// Extraction with an explicit scope. Rules: one valid `traceparent`
    /// gives the parent (several, or an invalid one: no parent and the
    /// `tracestate` is not read); repeated `tracestate` headers are one
    /// list joined in order, dropped whole when invalid; baggage is read
    /// whatever the parent, bounded by the limits.
    pub fn extract_scoped(&self, carrier: &impl Carrier, scope: Scope) -> Extracted {
        let mut report = ExtractReport::default();
        let mut tp: Option<&str> = None;
        let mut count = 0usize;
        // One pass over a carrier that can list its headers; else a
        // lookup per name.
        let mut states: Vec<&str> = Vec::new();
        let mut bags: Vec<&str> = Vec::new();
        let listed = carrier.visit(&mut |k, v| {
            if k.eq_ignore_ascii_case(TRACEPARENT) {
                count += 1;
                tp = Some(v);
            } else if k.eq_ignore_ascii_case(TRACESTATE) {
                states.push(v);
            } else if k.eq_ignore_ascii_case(BAGGAGE) {
                bags.push(v);
            }
        });
        if !listed {
            carrier.for_each(TRACEPARENT, &mut |v| {
                count += 1;
                tp = Some(v);
            });
        }
        let span = match (count, tp) {
            (0, _) | (_, None) => None,
            (1, Some(v)) => match parse_traceparent(v) {
                Ok(c) => Some(c),
                Err(e) => {
                    report.traceparent = Some(e);
                    None
                }
            },
            _ => {
                report.traceparent = Some(TraceparentError::Multiple);
                None
            }
        };
        let parent = span.map(|span| {
            let mut values = core::mem::take(&mut states);
            if !listed {
                carrier.for_each(TRACESTATE, &mut |v| values.push(v));
            }
            let tracestate = match TraceState::parse_all(values) {
                Ok(t) => t,
                Err(e) => {
                    report.tracestate = Some(e);
                    TraceState::new()
                }
            };
            TraceContext { span, tracestate }
        });
        let mut values = bags;
        if !listed {
            carrier.for_each(BAGGAGE, &mut |v| values.push(v));
        }
        let (baggage, br) = if values.is_empty() {
            (Baggage::new(self.limits), BaggageReport::default())
        } else {
            Baggage::parse_all(values, self.limits, scope)
        };
        report.baggage = br;
        self.count_extract(&report);
        Extracted {
            parent,
            baggage,
            report,
        }
    }
}
