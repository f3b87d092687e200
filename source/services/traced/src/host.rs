//! traced's store on the host (feature `std`): completed traces go to
//! rotated JSONL files ([`crate::files`]) and, with the `otlp` feature and
//! `[otlp] enabled = true`, to an OTLP/HTTP endpoint.
//!
//! The OTLP exporter blocks (HTTP, retries with backoff), so it runs on
//! its own thread, fed through a bounded channel of `queue_traces`
//! traces: when the exporter falls behind, new traces are dropped and
//! counted here ([`HostStats::otlp_dropped`]), and traced itself never
//! waits on the network.

use std::path::Path;
use std::vec::Vec;

use nexus_svc::Persist;

use crate::files::{FileBounds, JsonlFiles};
use crate::service::TracedService;

/// Counters of the host store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostStats {
    /// Traces written to files.
    pub written: u64,
    /// Traces the files refused (I/O errors).
    pub write_errors: u64,
    /// Traces handed to the OTLP thread.
    pub otlp_queued: u64,
    /// Traces dropped because the OTLP thread's queue was full.
    pub otlp_dropped: u64,
}

#[cfg(feature = "otlp")]
struct OtlpThread {
    tx: std::sync::mpsc::SyncSender<crate::Completed>,
    handle: Option<std::thread::JoinHandle<crate::otlp::OtlpStats>>,
}

/// Files, and OTLP when enabled.
pub struct HostStore {
    files: Option<JsonlFiles>,
    #[cfg(feature = "otlp")]
    otlp: Option<OtlpThread>,
    stats: HostStats,
}

impl core::fmt::Debug for HostStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HostStore")
            .field("files", &self.files)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl HostStore {
    /// Completed traces as JSONL files in `dir`, within `bounds`.
    pub fn files(dir: &Path, bounds: FileBounds) -> std::io::Result<Self> {
        Ok(Self {
            files: Some(JsonlFiles::open(dir, bounds)?),
            #[cfg(feature = "otlp")]
            otlp: None,
            stats: HostStats::default(),
        })
    }

    /// No files (OTLP only, or nothing).
    pub fn none() -> Self {
        Self {
            files: None,
            #[cfg(feature = "otlp")]
            otlp: None,
            stats: HostStats::default(),
        }
    }

    /// Also exports to OTLP/HTTP when `cfg.enabled` (a disabled config
    /// starts nothing).
    #[cfg(feature = "otlp")]
    pub fn with_otlp(
        mut self,
        cfg: &crate::config::OtlpConfig,
    ) -> Result<Self, crate::otlp::OtlpConfigError> {
        if !cfg.enabled {
            return Ok(self);
        }
        let mut exporter = crate::otlp::OtlpExporter::new(cfg)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(cfg.queue_traces.max(1));
        let handle = std::thread::spawn(move || {
            // Blocks for the next trace; exports whatever queued up with
            // it, then waits again. Ends when the store is dropped.
            while let Ok(t) = rx.recv() {
                exporter.push(t);
                while let Ok(t) = rx.try_recv() {
                    exporter.push(t);
                }
                let _ = exporter.flush();
            }
            let _ = exporter.flush();
            exporter.stats()
        });
        self.otlp = Some(OtlpThread {
            tx,
            handle: Some(handle),
        });
        Ok(self)
    }

    /// Counters.
    pub fn stats(&self) -> HostStats {
        self.stats
    }

    /// Stops the OTLP thread after it exported what it holds, and returns
    /// its counters (`None` without OTLP).
    #[cfg(feature = "otlp")]
    pub fn finish_otlp(&mut self) -> Option<crate::otlp::OtlpStats> {
        let mut t = self.otlp.take()?;
        drop(t.tx);
        t.handle.take()?.join().ok()
    }

    fn store(&mut self, t: crate::Completed) {
        if let Some(f) = self.files.as_mut() {
            match f.write(&t) {
                Ok(()) => self.stats.written += 1,
                Err(_) => self.stats.write_errors += 1,
            }
        }
        self.send_otlp(t);
    }

    #[cfg(feature = "otlp")]
    fn send_otlp(&mut self, t: crate::Completed) {
        if let Some(o) = self.otlp.as_ref() {
            match o.tx.try_send(t) {
                Ok(()) => self.stats.otlp_queued += 1,
                Err(_) => self.stats.otlp_dropped += 1,
            }
        }
    }

    #[cfg(not(feature = "otlp"))]
    fn send_otlp(&mut self, _: crate::Completed) {}
}

impl Persist<TracedService> for HostStore {
    fn save(&mut self, svc: &mut TracedService) -> u32 {
        let mut done: Vec<crate::Completed> = Vec::new();
        while let Some(t) = svc.traced.next_export() {
            done.push(t);
        }
        let n = u32::try_from(done.len()).unwrap_or(u32::MAX);
        for t in done {
            self.store(t);
        }
        n
    }

    fn flush(&mut self) -> bool {
        true
    }
}
