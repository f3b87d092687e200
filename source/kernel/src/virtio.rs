//! virtio-mmio discovery, the block device behind the state store, and
//! the network device under the TCP/IP stack (`net`).
//!
//! Paging is off (satp = 0), so physical and virtual addresses are equal:
//! the DMA HAL hands out page-aligned heap memory and shares buffers by
//! address.

use core::alloc::Layout;
use core::ptr::NonNull;

use nexus_store::{BlockDevice, BLOCK_SIZE};
use virtio_drivers::device::blk::VirtIOBlk;
use virtio_drivers::device::net::VirtIONet;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::{DeviceType, Transport};
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

/// Identity-mapped DMA.
pub struct IdentityHal;

/// The layout of `pages` DMA pages (at least one), page-aligned; `None` if
/// the size overflows.
fn dma_layout(pages: usize) -> Option<Layout> {
    let bytes = pages.max(1).checked_mul(PAGE_SIZE)?;
    Layout::from_size_align(bytes, PAGE_SIZE).ok()
}

// SAFETY: dma_alloc returns zeroed, page-aligned, exclusively owned heap
// memory whose physical address equals its virtual address (paging off);
// share/unshare pass addresses through for the same reason.
unsafe impl Hal for IdentityHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let Some(layout) = dma_layout(pages) else {
            // A device asked for more than the address space: fail loudly
            // rather than hand it a smaller buffer than it will DMA into.
            crate::kprintln!("KERNEL PANIC: DMA allocation of {pages} pages has no layout");
            crate::arch::exit(5)
        };
        // SAFETY: the layout has a non-zero size (at least one page).
        let p = unsafe { alloc::alloc::alloc_zeroed(layout) };
        match NonNull::new(p) {
            Some(nn) => (p as PhysAddr, nn),
            None => alloc::alloc::handle_alloc_error(layout),
        }
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        if let Some(layout) = dma_layout(pages) {
            // SAFETY: allocated by dma_alloc with this same layout.
            unsafe { alloc::alloc::dealloc(vaddr.as_ptr(), layout) };
        }
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as usize as *mut u8).unwrap_or(NonNull::dangling())
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr() as *mut u8 as usize as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// A probed virtio-mmio device.
pub struct Probed {
    /// Slot base address.
    pub base: usize,
    /// Device type.
    pub kind: DeviceType,
    /// The transport, ready for a driver.
    pub transport: MmioTransport<'static>,
}

/// Probes every slot; empty slots (device id 0) are skipped.
pub fn probe(slots: &[(usize, usize)]) -> alloc::vec::Vec<Probed> {
    let mut out = alloc::vec::Vec::new();
    for &(base, size) in slots {
        let Some(header) = NonNull::new(base as *mut VirtIOHeader) else {
            continue;
        };
        // SAFETY: `base..base+size` is a virtio-mmio register window listed
        // in the device tree, identity mapped, used by nothing else.
        if let Ok(t) = unsafe { MmioTransport::new(header, size) } {
            out.push(Probed {
                base,
                kind: t.device_type(),
                transport: t,
            });
        }
    }
    out
}

/// A virtio-blk device as a [`BlockDevice`] of 512-byte blocks.
pub struct Blk {
    dev: VirtIOBlk<IdentityHal, MmioTransport<'static>>,
}

impl Blk {
    /// Initialises the driver on a probed block transport.
    pub fn new(transport: MmioTransport<'static>) -> Option<Self> {
        VirtIOBlk::new(transport).ok().map(|dev| Self { dev })
    }
}

impl BlockDevice for Blk {
    type Error = virtio_drivers::Error;

    fn block_count(&self) -> u64 {
        self.dev.capacity()
    }

    fn read_block(&mut self, index: u64, buf: &mut [u8; BLOCK_SIZE]) -> Result<(), Self::Error> {
        self.dev.read_blocks(index as usize, buf)
    }

    fn write_block(&mut self, index: u64, buf: &[u8; BLOCK_SIZE]) -> Result<(), Self::Error> {
        self.dev.write_blocks(index as usize, buf)
    }
}

/// Descriptors per virtio-net queue (receive and transmit).
pub const NET_QUEUE_SIZE: usize = 64;
/// Bytes of each receive buffer: a 1514-byte Ethernet frame plus the
/// virtio-net header fit (the driver's minimum is 1526).
pub const NET_BUF_LEN: usize = 2048;

/// The virtio-net driver: its safe API posts [`NET_QUEUE_SIZE`] receive
/// buffers of [`NET_BUF_LEN`] bytes (heap memory shared with the device
/// through [`IdentityHal`]) and sends one frame at a time.
pub type NetDev = VirtIONet<IdentityHal, MmioTransport<'static>, NET_QUEUE_SIZE>;

/// Initialises the virtio-net driver on a probed network transport.
pub fn net_device(transport: MmioTransport<'static>) -> Option<NetDev> {
    NetDev::new(transport, NET_BUF_LEN).ok()
}

/// A virtio-rng device: the entropy for handshake seeds.
pub struct Rng {
    dev: virtio_drivers::device::rng::VirtIORng<IdentityHal, MmioTransport<'static>>,
}

impl Rng {
    /// Initialises the driver on a probed entropy transport.
    pub fn new(transport: MmioTransport<'static>) -> Option<Self> {
        virtio_drivers::device::rng::VirtIORng::new(transport)
            .ok()
            .map(|dev| Self { dev })
    }

    /// Fills `buf` with device entropy; false if the device failed.
    pub fn fill(&mut self, buf: &mut [u8]) -> bool {
        let mut got = 0;
        for _ in 0..64 {
            let Some(rest) = buf.get_mut(got..) else {
                return false;
            };
            if rest.is_empty() {
                return true;
            }
            match self.dev.request_entropy(rest) {
                Ok(n) => got += n,
                Err(_) => return false,
            }
        }
        got >= buf.len()
    }
}
