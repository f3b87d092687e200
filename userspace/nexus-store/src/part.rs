//! Regions of one device, so several stores (logd's, metricsd's) share a
//! disk. Single-threaded by design (`Rc<RefCell<_>>`): the OS runtime runs
//! its tasks on one hart, and each region only touches its own blocks.

use alloc::rc::Rc;
use core::cell::RefCell;

use crate::{BlockDevice, BLOCK_SIZE};

/// Why a region access failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartError<E> {
    /// Outside the region.
    OutOfRange,
    /// The device is in use (re-entrant access).
    Busy,
    /// The device failed.
    Device(E),
}

/// Blocks `[first, first + len)` of a shared device.
#[derive(Debug)]
pub struct Region<D> {
    dev: Rc<RefCell<D>>,
    first: u64,
    len: u64,
}

impl<D: BlockDevice> Region<D> {
    /// Splits `dev` into `n` equal regions (the remainder is unused).
    pub fn split(dev: D, n: u64) -> alloc::vec::Vec<Region<D>> {
        Self::split_shared(Rc::new(RefCell::new(dev)), n)
    }

    /// Like [`split`](Self::split) for a device the caller keeps a handle
    /// to (tests keep the disk across simulated reboots).
    pub fn split_shared(dev: Rc<RefCell<D>>, n: u64) -> alloc::vec::Vec<Region<D>> {
        let len = dev.borrow().block_count() / n.max(1);
        (0..n)
            .map(|i| Region {
                dev: Rc::clone(&dev),
                first: i * len,
                len,
            })
            .collect()
    }

    /// Blocks `[first, first + len)` of a shared device; `None` if that
    /// range is not inside the device.
    pub fn at(dev: Rc<RefCell<D>>, first: u64, len: u64) -> Option<Region<D>> {
        let end = first.checked_add(len)?;
        if end > dev.try_borrow().ok()?.block_count() {
            return None;
        }
        Some(Region { dev, first, len })
    }

    fn index(&self, i: u64) -> Option<u64> {
        (i < self.len).then(|| self.first + i)
    }
}

impl<D: BlockDevice> BlockDevice for Region<D> {
    type Error = PartError<D::Error>;

    fn block_count(&self) -> u64 {
        self.len
    }

    fn read_block(&mut self, index: u64, buf: &mut [u8; BLOCK_SIZE]) -> Result<(), Self::Error> {
        let i = self.index(index).ok_or(PartError::OutOfRange)?;
        let mut dev = self.dev.try_borrow_mut().map_err(|_| PartError::Busy)?;
        dev.read_block(i, buf).map_err(PartError::Device)
    }

    fn write_block(&mut self, index: u64, buf: &[u8; BLOCK_SIZE]) -> Result<(), Self::Error> {
        let i = self.index(index).ok_or(PartError::OutOfRange)?;
        let mut dev = self.dev.try_borrow_mut().map_err(|_| PartError::Busy)?;
        dev.write_block(i, buf).map_err(PartError::Device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemDisk, StateStore};

    #[test]
    fn regions_are_disjoint_stores() {
        let mut parts = Region::split(MemDisk::new(64), 2).into_iter();
        let (a, b) = (parts.next().unwrap(), parts.next().unwrap());
        assert_eq!((a.block_count(), b.block_count()), (32, 32));
        let (mut sa, _, _) = StateStore::mount(a).unwrap();
        let (mut sb, _, _) = StateStore::mount(b).unwrap();
        sa.append(b"in a").unwrap();
        sb.append(b"in b").unwrap();
        sa.flush().unwrap();
        sb.flush().unwrap();
        let a = sa.into_device();
        let b = sb.into_device();
        let (_, _, ea) = StateStore::mount(a).unwrap();
        let (_, _, eb) = StateStore::mount(b).unwrap();
        assert_eq!(
            (ea, eb),
            (alloc::vec![b"in a".to_vec()], alloc::vec![b"in b".to_vec()])
        );
    }

    #[test]
    fn out_of_range_is_an_error() {
        let mut r = Region::split(MemDisk::new(10), 2)
            .into_iter()
            .next()
            .unwrap();
        let mut buf = [0u8; BLOCK_SIZE];
        assert_eq!(r.read_block(5, &mut buf), Err(PartError::OutOfRange));
        assert!(r.read_block(4, &mut buf).is_ok());
    }
}
