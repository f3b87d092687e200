//! The host entry: load the TOML recipe, serve logd over an [`Endpoint`].

use std::format;
use std::string::{String, ToString};
use std::sync::atomic::{AtomicBool, Ordering};

use nexus_bounds::Clock;
use nexus_ipc::Endpoint;

use crate::config::Config;
use crate::persist::Persist;
use crate::server::{Handled, Logd};

/// Parses a logd recipe (the format of `recipes/observability/logd.toml`).
pub fn parse_recipe(text: &str) -> Result<Config, String> {
    toml::from_str(text).map_err(|e| e.to_string())
}

/// Loads a logd recipe from a file.
pub fn load_recipe(path: &std::path::Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_recipe(&text)
}

/// Handles one received frame, persists what it appended, and sends the
/// reply. Returns what happened, so the caller can print or count it.
pub fn serve_one<E: Endpoint, C: Clock, P: Persist>(
    logd: &mut Logd,
    ep: &mut E,
    clock: &C,
    persist: &mut P,
    timeout_ns: u64,
) -> Option<Handled> {
    let frame = ep.recv_timeout(timeout_ns)?;
    let handled = logd.handle(clock.now_ns(), frame.meta.sender, &frame.bytes);
    if let Some(id) = handled.appended {
        persist.on_appended(logd, id);
    }
    if let Some(reply) = &handled.reply {
        if ep.send(frame.meta.sender, reply).is_err() {
            logd.note_reply_dropped();
        }
    }
    Some(handled)
}

/// Serves until `stop` is set, polling it every `poll_ns`, and flushes
/// `persist` whenever the queue runs dry.
pub fn serve<E: Endpoint, C: Clock, P: Persist>(
    logd: &mut Logd,
    ep: &mut E,
    clock: &C,
    persist: &mut P,
    stop: &AtomicBool,
    poll_ns: u64,
) {
    while !stop.load(Ordering::Relaxed) {
        if serve_one(logd, ep, clock, persist, poll_ns).is_none() {
            persist.flush();
        }
    }
    persist.flush();
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
