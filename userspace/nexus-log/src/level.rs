use core::fmt;

/// Severity of a record. Ordered: `Trace < Debug < Info < Warn < Error`.
/// On the wire a level is one byte, its discriminant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Level {
    /// Very detailed tracing of internal steps.
    Trace = 0,
    /// Internal state useful when debugging.
    Debug = 1,
    /// Meaningful events in normal operation.
    Info = 2,
    /// A recoverable problem.
    Warn = 3,
    /// An unexpected failure.
    Error = 4,
}

impl Level {
    /// All levels, least severe first.
    pub const ALL: [Level; 5] = [
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Warn,
        Level::Error,
    ];

    /// The wire byte.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// Decodes a wire byte; `None` for values above 4.
    pub const fn from_u8(b: u8) -> Option<Level> {
        match b {
            0 => Some(Level::Trace),
            1 => Some(Level::Debug),
            2 => Some(Level::Info),
            3 => Some(Level::Warn),
            4 => Some(Level::Error),
            _ => None,
        }
    }

    /// Lower-case name, as used in JSON lines.
    pub const fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }

    /// Parses a lower-case name (`warning` is accepted for `warn`).
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "trace" => Some(Level::Trace),
            "debug" => Some(Level::Debug),
            "info" => Some(Level::Info),
            "warn" | "warning" => Some(Level::Warn),
            "error" => Some(Level::Error),
            _ => None,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_bytes_round_trip_and_reject_unknown() {
        for l in Level::ALL {
            assert_eq!(Level::from_u8(l.as_u8()), Some(l));
            assert_eq!(Level::parse(l.as_str()), Some(l));
        }
        assert_eq!(Level::from_u8(5), None);
        assert!(Level::Error > Level::Warn && Level::Debug > Level::Trace);
    }
}
