//! The host entry: load the TOML recipe. Serving is the generic host shell
//! (`nexus_svc::host::serve`) over a `LogdService`.

use std::format;
use std::string::{String, ToString};
use std::sync::atomic::Ordering;

use nexus_bounds::Clock;

use crate::config::Config;

/// Parses a logd recipe (the format of `recipes/observability/logd.toml`).
pub fn parse_recipe(text: &str) -> Result<Config, String> {
    toml::from_str(text).map_err(|e| e.to_string())
}

/// Loads a logd recipe from a file.
pub fn load_recipe(path: &std::path::Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_recipe(&text)
}

/// The system clock, as nanoseconds since the Unix epoch (monotonic within
/// this process: it never goes backwards even if the wall clock does).
#[derive(Debug, Default)]
pub struct SystemClock {
    last: std::sync::atomic::AtomicU64,
}

impl Clock for SystemClock {
    fn now_ns(&self) -> u64 {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let prev = self.last.fetch_max(wall, Ordering::Relaxed);
        prev.max(wall)
    }
}
