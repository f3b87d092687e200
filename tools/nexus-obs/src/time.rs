//! Times on the command line and in queries.
//!
//! The nodes' clocks count from their boot, and logd stamps records with
//! them: a record's `timestamp` reads as 1970-01-01 plus the node's uptime.
//! An absolute time (RFC 3339) is compared with those stamps as they are;
//! a relative one (`5m`, `90s`, `1h30m`) means that long before the newest
//! record of each node.

/// A `--since` / `--until` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Nanoseconds on the nodes' clocks.
    At(u64),
    /// That many nanoseconds before each node's newest record.
    Ago(u64),
}

/// Parses an RFC 3339 time to nanoseconds since the epoch.
pub fn parse_instant(s: &str) -> Result<u64, String> {
    let t = humantime::parse_rfc3339_weak(s)
        .map_err(|e| format!("'{s}' is not an RFC 3339 time (like 2026-12-05T10:00:00Z): {e}"))?;
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| format!("'{s}' is before 1970"))?;
    u64::try_from(d.as_nanos()).map_err(|_| format!("'{s}' is too far in the future"))
}

/// Parses `5m`-style durations or RFC 3339 times.
pub fn parse_when(s: &str) -> Result<When, String> {
    if let Ok(d) = humantime::parse_duration(s) {
        return u64::try_from(d.as_nanos())
            .map(When::Ago)
            .map_err(|_| format!("'{s}' is too long"));
    }
    parse_instant(s).map(When::At).map_err(|_| {
        format!("'{s}' is neither a duration (5m, 90s, 1h30m) nor an RFC 3339 time (2026-12-05T10:00:00Z)")
    })
}

/// The record timestamp of a log line (`timestamp` field), in ns.
pub fn record_ns(line: &serde_json::Value) -> Option<u64> {
    line.get("timestamp")
        .and_then(serde_json::Value::as_str)
        .and_then(|s| parse_instant(s).ok())
}
