use core::fmt;

/// Why bytes could not be decoded or encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Input ended before a field did.
    Truncated,
    /// The magic is not this protocol's.
    BadMagic,
    /// Bytes left over after the last field.
    TrailingBytes,
    /// A field holds a value the format does not allow (a length that does
    /// not fit its prefix, invalid UTF-8, an unknown enum byte, …).
    BadValue,
    /// Encoding would pass the writer's byte bound.
    TooLarge,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WireError::Truncated => "truncated",
            WireError::BadMagic => "bad magic",
            WireError::TrailingBytes => "trailing bytes",
            WireError::BadValue => "bad value",
            WireError::TooLarge => "too large",
        })
    }
}
