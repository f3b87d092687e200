//! Named regions of one disk, with their offsets recorded on the disk.
//!
//! Block 0 of the disk holds the region table; regions follow, each a run
//! of blocks owned by one store (logd's journal, metricsd's state, …). A
//! region is found by name, so adding a region to a boot profile appends
//! it after the last one and never moves an existing one. The table also
//! keeps the node's boot counter (one block write per boot).
//!
//! ```text
//! block 0 (512 bytes, little-endian)
//! 0    4   magic      "NXRT"
//! 4    1   version    1
//! 5    1   count      regions in use (≤ MAX_REGIONS)
//! 6    2   reserved   0
//! 8    4   boot       boot counter (1 on the first boot)
//! 12   4   reserved   0
//! 16   32×count       entries: name (16 bytes, zero-padded), first u64, blocks u64
//! 508  4   crc32      of bytes 0..508
//! ```
//!
//! A disk whose block 0 is all zeros is blank and gets a fresh table. A
//! disk whose block 0 is a state-store superblock has the layout of the
//! first wave (two halves split by position, no table): it is refused, not
//! guessed at. Anything else without a valid table is refused too.

use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

use crate::{BlockDevice, Region, BLOCK_SIZE, SUPER_MAGIC};

/// Magic at byte 0 of the table block.
pub const TABLE_MAGIC: [u8; 4] = *b"NXRT";
/// Table format version.
pub const TABLE_VERSION: u8 = 1;
/// Most regions one disk holds.
pub const MAX_REGIONS: usize = 15;
/// Longest region name, in bytes.
pub const NAME_LEN: usize = 16;
const ENTRY_LEN: usize = NAME_LEN + 16;
const ENTRIES_AT: usize = 16;
const CRC_AT: usize = BLOCK_SIZE - 4;

/// One region: blocks `[first, first + blocks)` of the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionEntry {
    /// Its name (`[a-z0-9._-]`, 1..=16 bytes).
    pub name: String,
    /// First block on the disk.
    pub first: u64,
    /// Length in blocks.
    pub blocks: u64,
}

/// The region table of a disk.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegionTable {
    /// The node's boot counter.
    pub boot: u32,
    /// Regions in allocation order.
    pub entries: Vec<RegionEntry>,
}

/// Why a disk layout could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutError<E> {
    /// The device failed.
    Device(E),
    /// Block 0 is a state-store superblock: the first wave's layout.
    LegacyLayout,
    /// Block 0 is neither blank nor a valid table (bad magic, version or
    /// checksum, overlapping or out-of-range entries).
    Unrecognised,
    /// A region name is empty, too long, or has characters outside
    /// `[a-z0-9._-]`, or is asked for twice.
    BadName(String),
    /// More than [`MAX_REGIONS`] regions.
    TooManyRegions,
    /// A new region does not fit in the free blocks after the last one.
    NoSpace {
        /// The region.
        name: String,
        /// Blocks asked for.
        need: u64,
        /// Blocks free at the end of the disk.
        free: u64,
    },
}

/// What [`RegionTable::open`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OpenReport {
    /// The disk was blank and got its first table.
    pub formatted: bool,
    /// Regions added by this open (names), in order.
    pub added: Vec<String>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

impl RegionTable {
    /// The region called `name`.
    pub fn get(&self, name: &str) -> Option<&RegionEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The first block after the last region.
    pub fn end(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| e.first.saturating_add(e.blocks))
            .max()
            .unwrap_or(1)
    }

    /// The region `name` of a shared device, as a block device of its own.
    pub fn region<D: BlockDevice>(&self, dev: &Rc<RefCell<D>>, name: &str) -> Option<Region<D>> {
        let e = self.get(name)?;
        Region::at(Rc::clone(dev), e.first, e.blocks)
    }

    /// Encodes the table block.
    pub fn encode(&self) -> [u8; BLOCK_SIZE] {
        let mut b = [0u8; BLOCK_SIZE];
        let mut w = Vec::with_capacity(BLOCK_SIZE);
        w.extend_from_slice(&TABLE_MAGIC);
        w.push(TABLE_VERSION);
        w.push(u8::try_from(self.entries.len()).unwrap_or(u8::MAX));
        w.extend_from_slice(&[0, 0]);
        w.extend_from_slice(&self.boot.to_le_bytes());
        w.extend_from_slice(&[0; 4]);
        for e in self.entries.iter().take(MAX_REGIONS) {
            let mut name = [0u8; NAME_LEN];
            for (d, s) in name.iter_mut().zip(e.name.bytes()) {
                *d = s;
            }
            w.extend_from_slice(&name);
            w.extend_from_slice(&e.first.to_le_bytes());
            w.extend_from_slice(&e.blocks.to_le_bytes());
        }
        for (d, s) in b.iter_mut().zip(w.iter()) {
            *d = *s;
        }
        let crc = crc32fast::hash(b.get(..CRC_AT).unwrap_or_default());
        if let Some(slot) = b.get_mut(CRC_AT..) {
            slot.copy_from_slice(&crc.to_le_bytes());
        }
        b
    }

    /// Decodes a table block; `None` if it is not a valid table of a disk
    /// of `disk_blocks` blocks.
    pub fn decode(b: &[u8; BLOCK_SIZE], disk_blocks: u64) -> Option<RegionTable> {
        let u32_at = |at: usize| -> Option<u32> {
            Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
        };
        let u64_at = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
        };
        if b.get(..4)? != TABLE_MAGIC || *b.get(4)? != TABLE_VERSION {
            return None;
        }
        if crc32fast::hash(b.get(..CRC_AT)?) != u32_at(CRC_AT)? {
            return None;
        }
        let count = usize::from(*b.get(5)?);
        if count > MAX_REGIONS {
            return None;
        }
        let mut t = RegionTable {
            boot: u32_at(8)?,
            entries: Vec::with_capacity(count),
        };
        let mut next_free = 1u64;
        for i in 0..count {
            let at = ENTRIES_AT + i * ENTRY_LEN;
            let raw = b.get(at..at + NAME_LEN)?;
            let len = raw.iter().position(|c| *c == 0).unwrap_or(NAME_LEN);
            let name = core::str::from_utf8(raw.get(..len)?).ok()?;
            let first = u64_at(at + NAME_LEN)?;
            let blocks = u64_at(at + NAME_LEN + 8)?;
            let end = first.checked_add(blocks)?;
            // Entries are allocated in order, never overlap, stay on the disk.
            if !valid_name(name) || t.get(name).is_some() || first < next_free || end > disk_blocks
            {
                return None;
            }
            next_free = end;
            t.entries.push(RegionEntry {
                name: String::from(name),
                first,
                blocks,
            });
        }
        Some(t)
    }

    /// Opens the layout of `dev` for the regions `wanted` (name, blocks):
    /// a blank disk gets a table; regions already on the disk are kept
    /// where they are (with their recorded size); missing ones are
    /// appended after the last. Adds one to the boot counter and writes
    /// the table back.
    pub fn open<D: BlockDevice>(
        dev: &mut D,
        wanted: &[(&str, u64)],
    ) -> Result<(RegionTable, OpenReport), LayoutError<D::Error>> {
        for (i, (name, _)) in wanted.iter().enumerate() {
            let twice = wanted.iter().take(i).any(|(n, _)| n == name);
            if !valid_name(name) || twice {
                return Err(LayoutError::BadName(String::from(*name)));
            }
        }
        let disk_blocks = dev.block_count();
        let mut block = [0u8; BLOCK_SIZE];
        dev.read_block(0, &mut block).map_err(LayoutError::Device)?;
        let mut report = OpenReport::default();
        let mut table = if block.iter().all(|b| *b == 0) {
            report.formatted = true;
            RegionTable::default()
        } else if let Some(t) = RegionTable::decode(&block, disk_blocks) {
            t
        } else if block.get(..SUPER_MAGIC.len()) == Some(&SUPER_MAGIC[..]) {
            return Err(LayoutError::LegacyLayout);
        } else {
            return Err(LayoutError::Unrecognised);
        };
        for (name, blocks) in wanted {
            if table.get(name).is_some() {
                continue;
            }
            if table.entries.len() >= MAX_REGIONS {
                return Err(LayoutError::TooManyRegions);
            }
            let first = table.end();
            let free = disk_blocks.saturating_sub(first);
            if *blocks == 0 || *blocks > free {
                return Err(LayoutError::NoSpace {
                    name: String::from(*name),
                    need: *blocks,
                    free,
                });
            }
            table.entries.push(RegionEntry {
                name: String::from(*name),
                first,
                blocks: *blocks,
            });
            report.added.push(String::from(*name));
        }
        table.boot = table.boot.saturating_add(1);
        dev.write_block(0, &table.encode())
            .map_err(LayoutError::Device)?;
        Ok((table, report))
    }

    /// Reads the table without writing (host tools); `None` if the disk has
    /// no valid table.
    pub fn read<D: BlockDevice>(dev: &mut D) -> Result<Option<RegionTable>, D::Error> {
        let mut block = [0u8; BLOCK_SIZE];
        dev.read_block(0, &mut block)?;
        Ok(RegionTable::decode(&block, dev.block_count()))
    }
}
