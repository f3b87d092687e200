//! [`MemStorage`]: segments kept in memory (the OS node today, and tests),
//! bounded by the rotators' byte budgets (deleted segments are freed).

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::rotate::{Kind, Storage};

/// Segments in memory: (kind, index) → lines.
#[derive(Debug, Default)]
pub struct MemStorage {
    segments: BTreeMap<(u8, u64), Vec<u8>>,
    open: BTreeMap<u8, u64>,
}

impl MemStorage {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// The lines of segment `index` of `kind`.
    pub fn segment(&self, kind: Kind, index: u64) -> Option<&[u8]> {
        self.segments.get(&(kind.as_u8(), index)).map(Vec::as_slice)
    }

    /// The index of `kind`'s open segment.
    pub fn open_index(&self, kind: Kind) -> Option<u64> {
        self.open.get(&kind.as_u8()).copied()
    }

    /// Appends a line to segment `index` of `kind` (opening it if needed;
    /// used when rebuilding from a store).
    pub fn append_to(&mut self, kind: Kind, index: u64, line: &[u8]) {
        let seg = self.segments.entry((kind.as_u8(), index)).or_default();
        seg.extend_from_slice(line);
        seg.push(b'\n');
        self.open.insert(kind.as_u8(), index);
    }

    /// The indexes of `kind`'s segments, oldest first.
    pub fn indexes(&self, kind: Kind) -> Vec<u64> {
        self.segments
            .keys()
            .filter(|(k, _)| *k == kind.as_u8())
            .map(|(_, i)| *i)
            .collect()
    }
}

impl Storage for MemStorage {
    fn open(&mut self, kind: Kind, index: u64) -> bool {
        self.open.insert(kind.as_u8(), index);
        self.segments.insert((kind.as_u8(), index), Vec::new());
        true
    }

    fn append(&mut self, kind: Kind, line: &[u8]) -> bool {
        let Some(index) = self.open.get(&kind.as_u8()) else {
            return false;
        };
        match self.segments.get_mut(&(kind.as_u8(), *index)) {
            Some(seg) => {
                seg.extend_from_slice(line);
                seg.push(b'\n');
                true
            }
            None => false,
        }
    }

    fn delete(&mut self, kind: Kind, index: u64) -> bool {
        self.segments.remove(&(kind.as_u8(), index)).is_some()
    }
}
