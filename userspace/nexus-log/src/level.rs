nexus_wire::byte_enum! {
    /// Severity of a record. Ordered: `Trace < Debug < Info < Warn < Error`.
    /// On the wire a level is one byte, its discriminant; its name is the
    /// lower-case word used in JSON lines (`parse` also takes `warning`).
    pub enum Level {
        /// Very detailed tracing of internal steps.
        Trace = 0 => "trace",
        /// Internal state useful when debugging.
        Debug = 1 => "debug",
        /// Meaningful events in normal operation.
        Info = 2 => "info",
        /// A recoverable problem.
        Warn = 3 => "warn" | "warning",
        /// An unexpected failure.
        Error = 4 => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_bytes_round_trip_and_reject_unknown() {
        for &l in Level::ALL {
            assert_eq!(Level::from_u8(l.as_u8()), Some(l));
            assert_eq!(Level::parse(l.as_str()), Some(l));
        }
        assert_eq!(Level::from_u8(5), None);
        assert_eq!(Level::parse("warning"), Some(Level::Warn));
        assert!(Level::Error > Level::Warn && Level::Debug > Level::Trace);
    }
}
