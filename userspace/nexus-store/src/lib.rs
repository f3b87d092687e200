//! An append-only, crash-safe record store on a 512-byte block device.
//!
//! The device holds a superblock (block 0) and two equal halves. One half is
//! active: its entries form a byte stream of `header | payload` records, each
//! CRC-checked and stamped with the low 32 bits of the store's generation.
//!
//! * [`StateStore::mount`] formats a device without a valid superblock,
//!   counts the boot, and returns every valid entry in append order. A torn
//!   last entry (power lost mid-flush) is detected, reported and skipped.
//! * [`StateStore::append`] buffers entries in memory; [`StateStore::flush`]
//!   writes them. A half that would overflow returns [`StoreError::Full`], and
//!   the caller then rewrites its live set with [`StateStore::compact`], which
//!   fills the other half under a new generation and switches the superblock
//!   only once that half is complete.
//! * [`StateStore::open_read_only`] reads an image without writing anything,
//!   for host tools.
//! * [`RegionTable`] names the regions of a disk (logd's, metricsd's, …)
//!   and records their offsets in block 0, with the node's boot counter.
//! * [`MemDisk`] is an in-memory [`BlockDevice`] for tests and host tools.
//!
//! The on-disk format and the memory bounds are described in
//! `docs/observability/state-store.md`.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod format;
mod memdisk;
mod part;
mod store;
mod table;

use core::fmt;

pub use format::{ENTRY_HEADER_LEN, ENTRY_MAGIC, SUPER_MAGIC, VERSION};
pub use memdisk::{MemDisk, MemDiskError};
pub use part::{PartError, Region};
pub use store::StateStore;
pub use table::{
    LayoutError, OpenReport, RegionEntry, RegionTable, MAX_REGIONS, NAME_LEN, TABLE_MAGIC,
    TABLE_VERSION,
};

/// Size of one device block in bytes.
pub const BLOCK_SIZE: usize = 512;

/// Largest payload a single entry may carry, in bytes.
pub const MAX_ENTRY: usize = 8192;

/// Largest half, in blocks (2 TiB of entries). Blocks of a larger device
/// beyond the two halves are left unused.
pub const MAX_HALF_BLOCKS: u64 = 1 << 32;

/// A device of 512-byte blocks addressed by index.
///
/// The store assumes each `write_block` is atomic per block (after a crash
/// the block holds either the old or the new contents) and that writes reach
/// the medium in the order they were issued.
pub trait BlockDevice {
    /// The device's own error, handed back in [`StoreError::Device`].
    type Error: fmt::Debug;
    /// Number of 512-byte blocks.
    fn block_count(&self) -> u64;
    /// Reads block `index` into `buf`.
    fn read_block(&mut self, index: u64, buf: &mut [u8; BLOCK_SIZE]) -> Result<(), Self::Error>;
    /// Writes `buf` to block `index`.
    fn write_block(&mut self, index: u64, buf: &[u8; BLOCK_SIZE]) -> Result<(), Self::Error>;
}

impl<D: BlockDevice + ?Sized> BlockDevice for &mut D {
    type Error = D::Error;

    fn block_count(&self) -> u64 {
        (**self).block_count()
    }

    fn read_block(&mut self, index: u64, buf: &mut [u8; BLOCK_SIZE]) -> Result<(), Self::Error> {
        (**self).read_block(index, buf)
    }

    fn write_block(&mut self, index: u64, buf: &[u8; BLOCK_SIZE]) -> Result<(), Self::Error> {
        (**self).write_block(index, buf)
    }
}

/// Why a store operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError<E> {
    /// The device failed. The on-disk state is still consistent, but the
    /// in-memory view may not match it any more: remount before going on.
    Device(E),
    /// The device has fewer than 5 blocks (each half needs at least 2).
    TooSmall,
    /// A payload is longer than [`MAX_ENTRY`].
    EntryTooLarge,
    /// The entry (or the live set given to `compact`) does not fit in a half.
    Full,
    /// The store was opened with [`StateStore::open_read_only`].
    ReadOnly,
}

impl<E: fmt::Debug> fmt::Display for StoreError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Device(e) => write!(f, "block device error: {e:?}"),
            Self::TooSmall => f.write_str("device too small for a state store"),
            Self::EntryTooLarge => f.write_str("entry larger than MAX_ENTRY"),
            Self::Full => f.write_str("state store half is full"),
            Self::ReadOnly => f.write_str("state store opened read-only"),
        }
    }
}

impl<E: fmt::Debug> core::error::Error for StoreError<E> {}

/// What a mount found, and the store's current numbers (see
/// [`StateStore::report`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MountReport {
    /// Boot counter from the superblock (incremented by every `mount`).
    pub boot_count: u32,
    /// Current generation (0 for a read-only open of an unformatted image).
    pub generation: u64,
    /// Valid entries: found at mount plus appended since (buffered included).
    pub entries: u64,
    /// The mount scan stopped at an entry whose magic and generation matched
    /// but whose length or CRC did not: a torn or corrupted write. Stays as
    /// found at mount.
    pub torn: bool,
    /// The mount formatted the device (no valid superblock was found).
    pub formatted: bool,
    /// Bytes of the active half in use (headers included, buffered included).
    pub bytes_used: u64,
    /// Size of one half in bytes.
    pub capacity: u64,
}
