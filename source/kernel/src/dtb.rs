//! What the runtime needs from the device tree: RAM, timer frequency,
//! boot arguments and the virtio-mmio slots.

use alloc::string::String;
use alloc::vec::Vec;

use fdt::Fdt;

/// End of the first RAM region (heap end), or `None` if the tree has none.
pub fn ram_end(fdt: &Fdt<'_>) -> Option<usize> {
    let r = fdt.memory().regions().next()?;
    (r.starting_address as usize).checked_add(r.size?)
}

/// Facts read after the heap is up.
#[derive(Debug)]
pub struct BootInfo {
    /// `/chosen/bootargs` (QEMU `-append`).
    pub bootargs: String,
    /// Timer ticks per second (`/cpus/timebase-frequency`), 10 MHz on virt.
    pub timebase_hz: u64,
    /// `(base, size)` of every `virtio,mmio` node.
    pub virtio_slots: Vec<(usize, usize)>,
}

/// Reads [`BootInfo`].
pub fn boot_info(fdt: &Fdt<'_>) -> BootInfo {
    let bootargs = fdt
        .chosen()
        .bootargs()
        .map(String::from)
        .unwrap_or_default();
    let timebase_hz = fdt
        .find_node("/cpus")
        .and_then(|n| n.property("timebase-frequency"))
        .and_then(|p| p.as_usize())
        .map_or(10_000_000, |v| v as u64);
    let mut virtio_slots: Vec<(usize, usize)> = fdt
        .all_nodes()
        .filter(|n| {
            n.compatible()
                .is_some_and(|c| c.all().any(|s| s == "virtio,mmio"))
        })
        .filter_map(|n| n.reg()?.next())
        .map(|r| (r.starting_address as usize, r.size.unwrap_or(0x1000)))
        .collect();
    virtio_slots.sort_unstable();
    BootInfo {
        bootargs,
        timebase_hz,
        virtio_slots,
    }
}
