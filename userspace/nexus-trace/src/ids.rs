//! Trace and span ids, trace flags, span context and span status.
//!
//! Ids are non-zero integers. Their text form is fixed-width lower-case
//! hex (32 digits for a trace, 16 for a span) and their byte form is
//! big-endian, both as in W3C trace context, so `to_bytes` of an id and
//! the hex it prints read the same from left to right. (The span entries
//! of the metricsd BATCH carry ids as little-endian integers instead; see
//! [`crate::wire`].)

use core::fmt;
use core::num::{NonZeroU128, NonZeroU64};
use core::str::FromStr;

/// Why a hex id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HexError {
    /// Not exactly 32 (trace) or 16 (span) characters.
    Length,
    /// A character outside `0-9a-f` (upper case is refused too).
    Digit,
    /// All zeros: not a valid id.
    Zero,
}

impl fmt::Display for HexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HexError::Length => "wrong length",
            HexError::Digit => "not a lower-case hex digit",
            HexError::Zero => "all-zero id",
        })
    }
}

/// Parses exactly `digits` lower-case hex digits into a `u128`.
fn parse_hex(s: &str, digits: usize) -> Result<u128, HexError> {
    if s.len() != digits {
        return Err(HexError::Length);
    }
    let mut v: u128 = 0;
    for b in s.bytes() {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return Err(HexError::Digit),
        };
        v = (v << 4) | u128::from(d);
    }
    Ok(v)
}

/// A 64-bit span id; zero is invalid.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpanId(NonZeroU64);

impl SpanId {
    /// Length of the hex form.
    pub const HEX_LEN: usize = 16;

    /// Refuses zero.
    pub const fn new(v: u64) -> Option<Self> {
        match NonZeroU64::new(v) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }
    /// From a value known to be non-zero.
    pub const fn from_nonzero(v: NonZeroU64) -> Self {
        Self(v)
    }
    /// The raw id.
    pub const fn get(self) -> u64 {
        self.0.get()
    }
    /// Big-endian bytes (W3C order).
    pub const fn to_bytes(self) -> [u8; 8] {
        self.0.get().to_be_bytes()
    }
    /// From big-endian bytes; all zeros is `None`.
    pub const fn from_bytes(b: [u8; 8]) -> Option<Self> {
        Self::new(u64::from_be_bytes(b))
    }
    /// Parses exactly 16 lower-case hex digits, not all zero.
    pub fn from_hex(s: &str) -> Result<Self, HexError> {
        let v = parse_hex(s, Self::HEX_LEN)?;
        u64::try_from(v)
            .ok()
            .and_then(Self::new)
            .ok_or(HexError::Zero)
    }
}

impl fmt::Display for SpanId {
    /// 16 lower-case hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

impl FromStr for SpanId {
    type Err = HexError;
    fn from_str(s: &str) -> Result<Self, HexError> {
        Self::from_hex(s)
    }
}

/// A 128-bit trace id; zero is invalid.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TraceId(NonZeroU128);

impl TraceId {
    /// Length of the hex form.
    pub const HEX_LEN: usize = 32;

    /// Refuses zero.
    pub const fn new(v: u128) -> Option<Self> {
        match NonZeroU128::new(v) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }
    /// From a value known to be non-zero.
    pub const fn from_nonzero(v: NonZeroU128) -> Self {
        Self(v)
    }
    /// The raw id.
    pub const fn get(self) -> u128 {
        self.0.get()
    }
    /// Big-endian bytes (W3C order).
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0.get().to_be_bytes()
    }
    /// From big-endian bytes; all zeros is `None`.
    pub const fn from_bytes(b: [u8; 16]) -> Option<Self> {
        Self::new(u128::from_be_bytes(b))
    }
    /// Parses exactly 32 lower-case hex digits, not all zero.
    pub fn from_hex(s: &str) -> Result<Self, HexError> {
        Self::new(parse_hex(s, Self::HEX_LEN)?).ok_or(HexError::Zero)
    }
}

impl fmt::Display for TraceId {
    /// 32 lower-case hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl FromStr for TraceId {
    type Err = HexError;
    fn from_str(s: &str) -> Result<Self, HexError> {
        Self::from_hex(s)
    }
}

bitflags::bitflags! {
    /// The 8 trace-flag bits of W3C trace context. Only
    /// [`TraceFlags::SAMPLED`] has a meaning here; every other bit is
    /// carried unchanged (`const _ = !0` keeps unknown bits, so a newer
    /// peer's flags survive a hop through us).
    #[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
    pub struct TraceFlags: u8 {
        /// The trace is recorded.
        const SAMPLED = 0x01;
        /// Every other bit: kept as received.
        const _ = !0;
    }
}

impl TraceFlags {
    /// No flag set.
    pub const NONE: TraceFlags = TraceFlags::empty();

    /// Flags from their byte, unknown bits kept.
    pub const fn new(bits: u8) -> Self {
        Self::from_bits_retain(bits)
    }
    /// True if the sampled bit is set.
    pub const fn is_sampled(self) -> bool {
        self.contains(Self::SAMPLED)
    }
    /// The same flags with the sampled bit set or cleared.
    pub const fn with_sampled(self, sampled: bool) -> Self {
        if sampled {
            self.union(Self::SAMPLED)
        } else {
            self.difference(Self::SAMPLED)
        }
    }
}

impl fmt::Display for TraceFlags {
    /// Two lower-case hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}", self.bits())
    }
}

impl fmt::Debug for TraceFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceFlags({self})")
    }
}

/// What identifies a span to its children and to other services: its
/// trace, its own id, and the trace flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanContext {
    /// The trace.
    pub trace: TraceId,
    /// The span.
    pub span: SpanId,
    /// Trace flags.
    pub flags: TraceFlags,
}

impl SpanContext {
    /// A context.
    pub const fn new(trace: TraceId, span: SpanId, flags: TraceFlags) -> Self {
        Self { trace, span, flags }
    }
    /// True if the sampled flag is set.
    pub const fn is_sampled(&self) -> bool {
        self.flags.is_sampled()
    }
}

nexus_wire::byte_enum! {
    /// How a span ended (the END entry's status byte).
    pub enum SpanStatus {
        /// Not set by the code that ended it.
        Unset = 0 => "unset",
        /// Succeeded.
        Ok = 1 => "ok",
        /// Failed.
        Error = 2 => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::ToString;

    #[test]
    fn hex_is_fixed_width_lower_case() {
        let s = SpanId::new(0xab).unwrap();
        assert_eq!(s.to_string(), "00000000000000ab");
        assert_eq!(SpanId::from_hex("00000000000000ab"), Ok(s));
        let t = TraceId::new(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736).unwrap();
        assert_eq!(t.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.to_string().parse::<TraceId>(), Ok(t));
        assert_eq!(
            SpanId::new(u64::MAX).unwrap().to_string(),
            "ffffffffffffffff"
        );
        assert_eq!(format!("{s:?}"), "SpanId(00000000000000ab)");
    }

    #[test]
    fn hex_parsing_refuses_bad_forms() {
        assert_eq!(SpanId::from_hex("ab"), Err(HexError::Length));
        assert_eq!(SpanId::from_hex("000000000000000ab"), Err(HexError::Length));
        assert_eq!(SpanId::from_hex("00000000000000AB"), Err(HexError::Digit));
        assert_eq!(SpanId::from_hex("00000000000000ag"), Err(HexError::Digit));
        assert_eq!(SpanId::from_hex("+0000000000000ab"), Err(HexError::Digit));
        assert_eq!(SpanId::from_hex("0000000000000000"), Err(HexError::Zero));
        assert_eq!(TraceId::from_hex(&"0".repeat(32)), Err(HexError::Zero));
        assert_eq!(TraceId::from_hex(&"0".repeat(31)), Err(HexError::Length));
        // Multi-byte characters: right byte length, wrong digits.
        assert_eq!(SpanId::from_hex("ééééééé00"), Err(HexError::Digit));
        assert_eq!(TraceId::from_hex(""), Err(HexError::Length));
    }

    #[test]
    fn bytes_are_big_endian() {
        let t = TraceId::new(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10).unwrap();
        assert_eq!(
            t.to_bytes(),
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]
        );
        assert_eq!(TraceId::from_bytes(t.to_bytes()), Some(t));
        let s = SpanId::new(0x0102_0304_0506_0708).unwrap();
        assert_eq!(s.to_bytes(), [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(SpanId::from_bytes(s.to_bytes()), Some(s));
        assert_eq!(SpanId::from_bytes([0; 8]), None);
        assert_eq!(TraceId::from_bytes([0; 16]), None);
    }

    #[test]
    fn flags_keep_unknown_bits() {
        let f = TraceFlags::new(0x82);
        assert!(!f.is_sampled());
        let s = f.with_sampled(true);
        assert_eq!(s.bits(), 0x83);
        assert!(s.is_sampled());
        assert_eq!(s.with_sampled(false), f);
        assert_eq!(s.to_string(), "83");
        assert_eq!(TraceFlags::default(), TraceFlags::NONE);
    }

    #[test]
    fn status_bytes_and_names_match_metrics() {
        assert_eq!(SpanStatus::ALL.len(), 3);
        for (b, name) in [(0, "unset"), (1, "ok"), (2, "error")] {
            let s = SpanStatus::from_u8(b).unwrap();
            assert_eq!((s.as_u8(), s.as_str()), (b, name));
        }
        assert_eq!(SpanStatus::from_u8(3), None);
    }

    proptest::proptest! {
        #[test]
        fn span_hex_and_bytes_round_trip(v in 1u64..) {
            let s = SpanId::new(v).unwrap();
            let hex = s.to_string();
            proptest::prop_assert_eq!(hex.len(), 16);
            proptest::prop_assert_eq!(SpanId::from_hex(&hex), Ok(s));
            proptest::prop_assert_eq!(SpanId::from_bytes(s.to_bytes()), Some(s));
        }

        #[test]
        fn trace_hex_and_bytes_round_trip(v in 1u128..) {
            let t = TraceId::new(v).unwrap();
            let hex = t.to_string();
            proptest::prop_assert_eq!(hex.len(), 32);
            proptest::prop_assert_eq!(TraceId::from_hex(&hex), Ok(t));
            proptest::prop_assert_eq!(TraceId::from_bytes(t.to_bytes()), Some(t));
        }

        #[test]
        fn hex_parsing_never_panics(s in "\\PC{0,40}") {
            let _ = SpanId::from_hex(&s);
            let _ = TraceId::from_hex(&s);
        }
    }
}
