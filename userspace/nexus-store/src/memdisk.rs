//! An in-memory block device.

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use crate::{BlockDevice, BLOCK_SIZE};

/// A [`BlockDevice`] backed by a `Vec<u8>`, for tests and host tools.
///
/// Its image is the raw device contents, so a host tool can load a dump
/// with [`from_image`](Self::from_image) and tests can corrupt bytes through
/// [`as_bytes_mut`](Self::as_bytes_mut).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemDisk {
    bytes: Vec<u8>,
}

/// The only way a [`MemDisk`] fails: a block index past its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemDiskError {
    /// The block asked for.
    pub index: u64,
    /// Blocks the disk has.
    pub block_count: u64,
}

impl MemDisk {
    /// A zero-filled disk of `blocks` blocks.
    pub fn new(blocks: u64) -> Self {
        let len = usize::try_from(blocks)
            .ok()
            .and_then(|b| b.checked_mul(BLOCK_SIZE))
            .unwrap_or(usize::MAX - usize::MAX % BLOCK_SIZE);
        Self {
            bytes: vec![0; len],
        }
    }

    /// Wraps an image, zero-padding it to a whole number of blocks.
    pub fn from_image(mut image: Vec<u8>) -> Self {
        let rem = image.len() % BLOCK_SIZE;
        if rem != 0 {
            image.resize(image.len().saturating_add(BLOCK_SIZE - rem), 0);
        }
        Self { bytes: image }
    }

    /// The raw device contents.
    pub fn into_image(self) -> Vec<u8> {
        self.bytes
    }

    /// The raw device contents.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The raw device contents, writable (tests use this to corrupt bytes).
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }

    fn range(&self, index: u64) -> Result<Range<usize>, MemDiskError> {
        let err = MemDiskError {
            index,
            block_count: self.block_count(),
        };
        let start = usize::try_from(index)
            .ok()
            .and_then(|i| i.checked_mul(BLOCK_SIZE))
            .ok_or(err)?;
        let end = start.checked_add(BLOCK_SIZE).ok_or(err)?;
        if end > self.bytes.len() {
            return Err(err);
        }
        Ok(start..end)
    }
}

impl BlockDevice for MemDisk {
    type Error = MemDiskError;

    fn block_count(&self) -> u64 {
        (self.bytes.len() / BLOCK_SIZE) as u64
    }

    fn read_block(&mut self, index: u64, buf: &mut [u8; BLOCK_SIZE]) -> Result<(), MemDiskError> {
        let range = self.range(index)?;
        if let Some(src) = self.bytes.get(range) {
            buf.copy_from_slice(src);
        }
        Ok(())
    }

    fn write_block(&mut self, index: u64, buf: &[u8; BLOCK_SIZE]) -> Result<(), MemDiskError> {
        let range = self.range(index)?;
        if let Some(dst) = self.bytes.get_mut(range) {
            dst.copy_from_slice(buf);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_image_pads_to_whole_blocks() {
        let d = MemDisk::from_image(vec![1; 513]);
        assert_eq!(d.block_count(), 2);
        assert_eq!(d.as_bytes().len(), 1024);
        assert!(d.as_bytes()[513..].iter().all(|&b| b == 0));
        assert_eq!(MemDisk::from_image(Vec::new()).block_count(), 0);
    }

    #[test]
    fn out_of_range_blocks_are_errors() {
        let mut d = MemDisk::new(2);
        let mut buf = [0u8; BLOCK_SIZE];
        assert!(d.read_block(1, &mut buf).is_ok());
        assert_eq!(
            d.read_block(2, &mut buf),
            Err(MemDiskError {
                index: 2,
                block_count: 2
            })
        );
        assert!(d.write_block(u64::MAX, &buf).is_err());
    }

    #[test]
    fn writes_land_at_the_block_offset() {
        let mut d = MemDisk::new(3);
        d.write_block(1, &[7u8; BLOCK_SIZE]).unwrap();
        let img = d.into_image();
        assert!(img[..512].iter().all(|&b| b == 0));
        assert!(img[512..1024].iter().all(|&b| b == 7));
        assert!(img[1024..].iter().all(|&b| b == 0));
    }
}
