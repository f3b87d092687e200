//! [`RegionStorage`]: segments on a state-store region (the OS node's
//! disk), kept across reboots. Every line is appended to the store as an
//! entry `kind u8 | index u64 LE | line`, and every segment opening as
//! `0xFF | kind u8 | index u64 LE`; a mirror in memory ([`MemStorage`],
//! bounded by the rotators' budgets) answers reads. Deleting a segment, or
//! a full half, compacts the store to exactly the mirror's segments, so
//! the disk never holds more than the budgets allow.

use alloc::vec::Vec;

use nexus_store::{BlockDevice, StateStore, StoreError};

use crate::rotate::{Kind, Segment, Storage};
use crate::storage::MemStorage;

const OPEN_TAG: u8 = 0xFF;

/// The segments found on a region at mount, per kind.
pub type Found = Vec<(Kind, Segment)>;

/// Segments on a region.
#[derive(Debug)]
pub struct RegionStorage<D: BlockDevice> {
    mem: MemStorage,
    store: StateStore<D>,
    /// Writes the store refused (device errors, or a live set larger than
    /// a half): the lines stay in memory only.
    pub failed: u64,
    /// Compactions.
    pub compactions: u64,
}

fn line_entry(kind: Kind, index: u64, line: &[u8]) -> Vec<u8> {
    let mut e = Vec::with_capacity(9 + line.len());
    e.push(kind.as_u8());
    e.extend_from_slice(&index.to_le_bytes());
    e.extend_from_slice(line);
    e
}

fn open_entry(kind: Kind, index: u64) -> Vec<u8> {
    let mut e = Vec::with_capacity(10);
    e.push(OPEN_TAG);
    e.push(kind.as_u8());
    e.extend_from_slice(&index.to_le_bytes());
    e
}

impl<D: BlockDevice> RegionStorage<D> {
    /// Mounts the region and rebuilds the segments found on it; returns
    /// them per kind for `Rotator::resume` (times unknown: 0).
    pub fn open(dev: D) -> Result<(Self, Found), StoreError<D::Error>> {
        let (store, _, entries) = StateStore::mount(dev)?;
        let mut mem = MemStorage::new();
        for e in &entries {
            match e.split_first() {
                Some((&OPEN_TAG, rest)) => {
                    let (Some(kind), Some(index)) = (
                        rest.first().and_then(|k| Kind::from_u8(*k)),
                        rest.get(1..9)
                            .and_then(|b| <[u8; 8]>::try_from(b).ok())
                            .map(u64::from_le_bytes),
                    ) else {
                        continue;
                    };
                    mem.open(kind, index);
                }
                Some((k, rest)) => {
                    let (Some(kind), Some(index)) = (
                        Kind::from_u8(*k),
                        rest.get(..8)
                            .and_then(|b| <[u8; 8]>::try_from(b).ok())
                            .map(u64::from_le_bytes),
                    ) else {
                        continue;
                    };
                    mem.append_to(kind, index, rest.get(8..).unwrap_or_default());
                }
                None => {}
            }
        }
        let mut found = Vec::new();
        for kind in Kind::ALL {
            for index in mem.indexes(*kind) {
                let bytes = mem.segment(*kind, index).map_or(0, |s| s.len() as u64);
                found.push((
                    *kind,
                    Segment {
                        index,
                        start_ns: 0,
                        end_ns: 0,
                        bytes,
                    },
                ));
            }
        }
        Ok((
            Self {
                mem,
                store,
                failed: 0,
                compactions: 0,
            },
            found,
        ))
    }

    /// The mirror (reads).
    pub fn mem(&self) -> &MemStorage {
        &self.mem
    }

    /// Rewrites the store to exactly the mirror's segments.
    fn compact(&mut self) -> bool {
        let mut live: Vec<Vec<u8>> = Vec::new();
        for kind in Kind::ALL {
            for index in self.mem.indexes(*kind) {
                live.push(open_entry(*kind, index));
                if let Some(seg) = self.mem.segment(*kind, index) {
                    for line in seg.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                        live.push(line_entry(*kind, index, line));
                    }
                }
            }
        }
        self.compactions += 1;
        self.store.compact(live.iter().map(Vec::as_slice)).is_ok()
    }

    fn put(&mut self, entry: &[u8]) {
        match self.store.append(entry) {
            Ok(()) => {}
            Err(StoreError::Full) => {
                // The mirror already holds the entry: compacting writes it.
                if !self.compact() {
                    self.failed += 1;
                }
            }
            Err(_) => self.failed += 1,
        }
    }
}

impl<D: BlockDevice> Storage for RegionStorage<D> {
    fn open(&mut self, kind: Kind, index: u64) -> bool {
        self.mem.open(kind, index);
        self.put(&open_entry(kind, index));
        true
    }

    fn append(&mut self, kind: Kind, line: &[u8]) -> bool {
        let Some(index) = self.mem.open_index(kind) else {
            return false;
        };
        if !self.mem.append(kind, line) {
            return false;
        }
        self.put(&line_entry(kind, index, line));
        true
    }

    fn delete(&mut self, kind: Kind, index: u64) -> bool {
        let gone = self.mem.delete(kind, index);
        if gone && !self.compact() {
            self.failed += 1;
        }
        gone
    }

    fn flush(&mut self) -> bool {
        self.store.flush().is_ok()
    }
}
