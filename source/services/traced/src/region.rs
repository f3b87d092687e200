//! [`JsonlRegion`]: completed traces as JSON lines on a state-store region
//! (the OS node's disk), one store entry per line, kept across reboots
//! and read from the image on the host with
//! `nexus-state-dump IMAGE --region traced`.
//!
//! Bounded: the store's entries are CRC-checked and live in one half of
//! the region. When a line does not fit, the oldest lines are dropped
//! (counted) until the kept ones fill at most half a half, and the store
//! is rewritten with them ([`StateStore::compact`]); then the line is
//! appended. A line over [`nexus_store::MAX_ENTRY`] bytes is not stored
//! (counted). A mirror of the kept lines (at most one half's bytes) is
//! what the compaction writes.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use nexus_store::{BlockDevice, StateStore, StoreError, MAX_ENTRY};
use nexus_svc::Persist;

use crate::jsonl;
use crate::service::TracedService;

/// Counters of the region store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegionStats {
    /// Lines found at mount.
    pub restored: u64,
    /// Lines appended.
    pub written: u64,
    /// Old lines dropped to make room.
    pub dropped_old: u64,
    /// Lines over the entry limit, not stored.
    pub too_large: u64,
    /// Compactions.
    pub compactions: u64,
    /// Writes the device refused.
    pub failed: u64,
}

/// Completed traces as JSON lines on a region.
#[derive(Debug)]
pub struct JsonlRegion<D: BlockDevice> {
    store: StateStore<D>,
    lines: VecDeque<Vec<u8>>,
    bytes: usize,
    capacity: usize,
    stats: RegionStats,
}

impl<D: BlockDevice> JsonlRegion<D> {
    /// Mounts the region (formats a blank one); the lines already on it
    /// are kept.
    pub fn open(dev: D) -> Result<Self, StoreError<D::Error>> {
        let (store, report, entries) = StateStore::mount(dev)?;
        let bytes = entries.iter().map(Vec::len).sum();
        let restored = entries.len() as u64;
        Ok(Self {
            store,
            lines: entries.into_iter().collect(),
            bytes,
            capacity: usize::try_from(report.capacity).unwrap_or(usize::MAX),
            stats: RegionStats {
                restored,
                ..RegionStats::default()
            },
        })
    }

    /// Counters.
    pub fn stats(&self) -> RegionStats {
        self.stats
    }

    /// The lines held, oldest first (without their `\n`).
    pub fn lines(&self) -> impl Iterator<Item = &[u8]> {
        self.lines.iter().map(Vec::as_slice)
    }

    /// The device back (tests and tools).
    pub fn into_device(self) -> D {
        self.store.into_device()
    }

    /// Appends one line (without `\n`).
    pub fn push(&mut self, line: Vec<u8>) {
        if line.len() > MAX_ENTRY {
            self.stats.too_large += 1;
            return;
        }
        match self.store.append(&line) {
            Ok(()) => {}
            Err(StoreError::Full) => {
                // Keep the newest lines, at most half of a half, then
                // write them and this one.
                let keep = self.capacity / 2;
                while self.bytes.saturating_add(line.len()) > keep {
                    let Some(old) = self.lines.pop_front() else {
                        break;
                    };
                    self.bytes -= old.len();
                    self.stats.dropped_old += 1;
                }
                self.stats.compactions += 1;
                let all = self
                    .lines
                    .iter()
                    .map(Vec::as_slice)
                    .chain(core::iter::once(line.as_slice()));
                if self.store.compact(all).is_err() {
                    self.stats.failed += 1;
                    return;
                }
            }
            Err(_) => {
                self.stats.failed += 1;
                return;
            }
        }
        self.stats.written += 1;
        self.bytes += line.len();
        self.lines.push_back(line);
    }
}

impl<D: BlockDevice> Persist<TracedService> for JsonlRegion<D> {
    fn save(&mut self, svc: &mut TracedService) -> u32 {
        let mut n = 0u32;
        while let Some(t) = svc.traced.next_export() {
            let mut line = Vec::new();
            if jsonl::write_line(&t, &mut line).is_ok() {
                line.pop();
                self.push(line);
                n = n.saturating_add(1);
            }
        }
        n
    }

    fn flush(&mut self) -> bool {
        match self.store.flush() {
            Ok(()) => true,
            Err(_) => {
                self.stats.failed += 1;
                false
            }
        }
    }
}
